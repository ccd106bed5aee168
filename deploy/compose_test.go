package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// composeSteps is long enough that the worker killed after the first
// checkpoint dies mid-run (2000 steps of synthetic-test: ~15 s on 2 cores).
const composeSteps = 2000

// TestComposeJobSurvivesACrashedWorker builds the image from this checkout,
// runs deploy/compose.yaml (a coordinator and two workers on a compose
// network), SIGKILLs worker1's process once rank 0 has written a
// checkpoint, and expects what the README promises: Docker restarts the
// worker (restart: on-failure), the coordinator forms generation 2 resuming
// from the checkpoint, and the job completes with exit status 0 everywhere.
func TestComposeJobSurvivesACrashedWorker(t *testing.T) {
	compose := composeCommand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	id := randomHex(t)
	image := "hjepa-compose-test:" + id
	buildImage(ctx, t, image)

	project := "hjepatest" + id
	env := append(os.Environ(), "HJEPA_IMAGE="+image, "HJEPA_JOB_TOKEN="+randomHex(t),
		"HJEPA_CONFIG=synthetic-test.yaml", "HJEPA_STEPS="+strconv.Itoa(composeSteps))
	run := func(ctx context.Context, args ...string) (string, error) {
		args = append(append(append([]string{}, compose[1:]...), "-p", project, "-f", "compose.yaml"), args...)
		cmd := exec.CommandContext(ctx, compose[0], args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if out, err := run(cctx, "down", "-v", "--timeout", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := run(ctx, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	container := func(service string) string {
		out, err := run(ctx, "ps", "-q", service)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("compose ps -q %s: %v\n%s", service, err, out)
		}
		return strings.TrimSpace(out)
	}
	coordinator, worker0, worker1 := container("coordinator"), container("worker0"), container("worker1")
	dumpLogs := func() {
		for name, c := range map[string]string{"coordinator": coordinator, "worker0": worker0, "worker1": worker1} {
			out, _ := exec.Command("docker", "logs", "--tail", "40", c).CombinedOutput()
			t.Logf("%s's last log lines:\n%s", name, out)
		}
	}

	// Kill worker1's process (not `docker kill`: Docker does not restart a
	// container it was asked to stop) once rank 0 has a checkpoint.
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(dockerOut(t, "logs", worker0), "\tcheckpoint\t") {
		if time.Now().After(deadline) {
			dumpLogs()
			t.Fatal("rank 0 wrote no checkpoint within 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(dockerOut(t, "inspect", "-f", "{{.State.Pid}}", worker1)))
	if err != nil || pid <= 0 {
		t.Fatalf("worker1's pid: %v (%d)", err, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err == syscall.EPERM {
		t.Skipf("may not signal worker1's process (pid %d; rootless Docker?): this test kills it as a crash would", pid)
	} else if err != nil {
		t.Fatalf("SIGKILL worker1 (pid %d): %v", pid, err)
	}

	// `docker wait` on a container between its crash and Docker's restart of
	// it returns the crash's status (137): wait for the restart first.
	deadline = time.Now().Add(2 * time.Minute)
	for strings.TrimSpace(dockerOut(t, "inspect", "-f", "{{.RestartCount}}", worker1)) == "0" {
		if time.Now().After(deadline) {
			dumpLogs()
			t.Fatal("Docker did not restart worker1 within 2 minutes of its crash")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, c := range map[string]string{"coordinator": coordinator, "worker0": worker0, "worker1": worker1} {
		code, err := exec.CommandContext(ctx, "docker", "wait", c).Output()
		if err != nil {
			dumpLogs()
			t.Fatalf("docker wait %s: %v", name, err)
		}
		if s := strings.TrimSpace(string(code)); s != "0" {
			dumpLogs()
			t.Fatalf("%s exited with status %s, want 0", name, s)
		}
	}
	logs := dockerOut(t, "logs", coordinator)
	for _, want := range []string{
		`"generation": 2, "world_size": 2, "resume": true`,
		fmt.Sprintf("completed at step %d", composeSteps),
	} {
		if !strings.Contains(logs, want) {
			dumpLogs()
			t.Fatalf("coordinator's log lacks %q", want)
		}
	}
	if restarts := strings.TrimSpace(dockerOut(t, "inspect", "-f", "{{.RestartCount}}", worker1)); restarts != "1" {
		t.Fatalf("worker1 restarted %s times, want 1", restarts)
	}
}

// composeCommand returns docker-compose (v1) or docker compose (v2), or
// skips the test when Docker is not usable here.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed: this test runs deploy/compose.yaml on Docker Engine")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("the Docker daemon is not reachable (%v: %s): this test runs deploy/compose.yaml on it", err, bytes.TrimSpace(out))
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	t.Skip("neither docker-compose nor the docker compose plugin is installed")
	return nil
}

// buildImage builds deploy/Dockerfile's image as `make image` does: a
// static CPU build of hjepa and the presets, FROM scratch.
func buildImage(ctx context.Context, t *testing.T, image string) {
	t.Helper()
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-tags", "nocuda", "-o", filepath.Join(dir, "hjepa"), "../cmd/hjepa")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-r", "../configs", filepath.Join(dir, "configs")).CombinedOutput(); err != nil {
		t.Fatalf("copy configs: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-f", "Dockerfile", "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
}

func dockerOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
