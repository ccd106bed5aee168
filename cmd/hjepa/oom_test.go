package main

// A device that runs out of memory ends a distributed job at once: the
// CUDA backend on the host emulator (a binary built with -tags cudaemu,
// device cuda-emu) with a device too small for the batch.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/device"
)

// buildEmuBinary builds hjepa with -tags cudaemu (device cuda-emu) into a
// temporary directory; it needs cgo and a C++ compiler (cuda/emu).
func buildEmuBinary(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("go", "env", "CGO_ENABLED").Output(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Skip("the CUDA emulator needs cgo")
	}
	bin := filepath.Join(t.TempDir(), "hjepa-cudaemu")
	if out, err := exec.Command("go", "build", "-tags", "cudaemu", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags cudaemu: %v\n%s", err, out)
	}
	return bin
}

// TestLaunchOutOfMemoryEndsJob: `hjepa launch --nproc 2` on emulated GPUs
// of 48 MiB of which another process takes 36 MiB right after the resource
// check (a shared GPU): the check passes, the 12 MiB left are too small for
// the batch. The worker whose device runs out of memory reports it (a
// sticky error of the backend, not a panic), and the coordinator ends the
// job in its first generation with a message naming the rank, the batch
// size and the device memory, instead of restarting it max_restarts times.
func TestLaunchOutOfMemoryEndsJob(t *testing.T) {
	bin := buildEmuBinary(t)
	root := t.TempDir()
	out := filepath.Join(root, "out")
	args := []string{"launch", "--nproc", "2", "--threads", "1", "--device", "cuda-emu", "--max-restarts", "3",
		"--config", syntheticCfg, "--out", out}
	for _, s := range []string{"data.batch_size=8", "training.max_steps=20", "checkpoint.every_steps=1",
		"model.embed_dim=8", "model.predictor.embed_dim=128", "model.predictor.mlp_ratio=4"} {
		args = append(args, "--set", s)
	}
	// A bound for a hang (a restart loop, a worker that never exits), not
	// a measure of speed: the job ends within seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	c.Dir = root
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HJEPA_") {
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, device.EmuMemoryEnv+"=50331648", device.EmuTenantEnv+"=37748736") // 48 MiB, 36 taken
	var so, se lockedBuffer
	c.Stdout, c.Stderr = &so, &se
	err := c.Run()
	r := result{stdout: so.String(), stderr: se.String(), code: c.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("launch did not exit within the bound:\n%s", r)
	}
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || r.code == 0 {
		t.Fatalf("launch with a device too small for the batch: %v\n%s", err, r)
	}
	for _, want := range []string{
		"ran out of memory on its 48.0 MiB device", // the coordinator's verdict: device memory,
		"with data.batch_size 8",                   // batch size,
		"(rank ",                                   // rank,
		"so the job ends without one",              // and no restart
		`"failure_kind": "FAILURE_KIND_OUT_OF_MEMORY"`,
		"the device has ", // the backend's own message: what was free
		"free of 48.0 MiB",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("launch output lacks %q:\n%s", want, tail(r.stderr, 6000))
		}
	}
	// One generation: no worker process started twice, no second
	// generation, no abort of the coordinator's that would lead to one (the
	// other rank logs its own abort: the coordinator's ABORT ended its wait).
	for _, line := range strings.Split(r.stderr, "\n") {
		coordAbort := strings.HasPrefix(line, "[coordinator]") && strings.Contains(line, "\tgeneration aborted\t")
		if coordAbort || strings.Contains(line, `"generation": 2`) || strings.Contains(line, `"restart": `) || strings.Contains(line, "panic:") {
			t.Errorf("launch output has: %s", line)
		}
	}
	if n := strings.Count(r.stderr, "generation formed"); n != 1 {
		t.Errorf("%d generations formed, want 1:\n%s", n, tail(r.stderr, 6000))
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints", "checkpoint_latest")); err == nil {
		t.Errorf("a checkpoint was written from the failed device")
	}
}
