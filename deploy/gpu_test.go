package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// compose.gpu.yaml is what `hjepa deploy compose --gpus 2` prints.
func TestComposeGPUFileIsGenerated(t *testing.T) {
	want, err := ComposeGPU(2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("compose.gpu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/compose.gpu.yaml is stale: go run ./cmd/hjepa deploy compose --gpus 2 > deploy/compose.gpu.yaml")
	}
}

// Every worker gets its own GPU and the world size is the GPU count; the
// file passes `docker-compose config` where compose is installed.
func TestComposeGPUWiring(t *testing.T) {
	for _, n := range []int{1, 3, 8} {
		raw, err := ComposeGPU(n)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Services map[string]struct {
				Command []string `yaml:"command"`
				Deploy  struct {
					Resources struct {
						Reservations struct {
							Devices []struct {
								Driver       string   `yaml:"driver"`
								DeviceIDs    []string `yaml:"device_ids"`
								Capabilities []string `yaml:"capabilities"`
							} `yaml:"devices"`
						} `yaml:"reservations"`
					} `yaml:"resources"`
				} `yaml:"deploy"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(raw, &f); err != nil {
			t.Fatalf("--gpus %d: %v\n%s", n, err, raw)
		}
		if len(f.Services) != n+1 {
			t.Fatalf("--gpus %d: %d services", n, len(f.Services))
		}
		if got := flagValue(f.Services["coordinator"].Command, "--world-size"); got != fmt.Sprint(n) {
			t.Errorf("--gpus %d: coordinator --world-size %q", n, got)
		}
		seen := map[string]bool{}
		for r := range n {
			s, ok := f.Services[fmt.Sprintf("worker%d", r)]
			if !ok {
				t.Fatalf("--gpus %d: no worker%d", n, r)
			}
			if flagValue(s.Command, "--rank") != fmt.Sprint(r) || flagValue(s.Command, "--device") != "cuda" ||
				flagValue(s.Command, "--advertise") != fmt.Sprintf("worker%d:29600", r) {
				t.Errorf("--gpus %d: worker%d: %v", n, r, s.Command)
			}
			d := s.Deploy.Resources.Reservations.Devices
			if len(d) != 1 || d[0].Driver != "nvidia" || len(d[0].DeviceIDs) != 1 || len(d[0].Capabilities) != 1 || d[0].Capabilities[0] != "gpu" {
				t.Fatalf("--gpus %d: worker%d's devices: %+v", n, r, d)
			}
			if seen[d[0].DeviceIDs[0]] {
				t.Errorf("--gpus %d: GPU %s given twice", n, d[0].DeviceIDs[0])
			}
			seen[d[0].DeviceIDs[0]] = true
		}
		if _, err := exec.LookPath("docker-compose"); err == nil {
			path := filepath.Join(t.TempDir(), "compose.gpu.yaml")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("docker-compose", "-f", path, "config", "-q")
			cmd.Env = append(os.Environ(), "HJEPA_JOB_TOKEN=x")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("--gpus %d: docker-compose config: %v\n%s", n, err, out)
			}
		}
	}
	if _, err := ComposeGPU(0); err == nil || !strings.Contains(err.Error(), "--gpus 0") {
		t.Errorf("--gpus 0: %v", err)
	}
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestGPUImage builds deploy/Dockerfile.gpu as `make image-gpu` does, on a
// base made here (no image can be pulled): the dynamic loader and the C
// libraries the binary links, copied from this machine into a scratch
// image, standing in for the CUDA runtime image. In the container `hjepa
// devices` must say that no GPU is visible and what to do, and a CPU
// training run must complete.
func TestGPUImage(t *testing.T) {
	composeCommand(t) // skips without Docker
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id := randomHex(t)

	dir := t.TempDir()
	bin := filepath.Join(dir, "hjepa")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/hjepa")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The base: every library ldd names, at the same paths.
	base := filepath.Join(t.TempDir(), "base")
	ldd, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		t.Skipf("ldd %s: %v: %s (a fully static binary needs no base; this test is about one that does)", bin, err, ldd)
	}
	libs := regexp.MustCompile(`(/\S+\.so[.\d]*)`).FindAllString(string(ldd), -1)
	if len(libs) == 0 {
		t.Fatalf("ldd names no library:\n%s", ldd)
	}
	dockerfile := "FROM scratch\n"
	for _, lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(base, strings.TrimPrefix(lib, "/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, raw, 0o755); err != nil {
			t.Fatal(err)
		}
		dockerfile += fmt.Sprintf("COPY %s %s\n", strings.TrimPrefix(lib, "/"), lib)
	}
	if err := os.WriteFile(filepath.Join(base, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	baseImage := "hjepa-test-cuda-base:" + id
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", baseImage, base).CombinedOutput(); err != nil {
		t.Fatalf("docker build the base: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", baseImage).Run() })

	if out, err := exec.CommandContext(ctx, "cp", "-r", "../configs", filepath.Join(dir, "configs")).CombinedOutput(); err != nil {
		t.Fatalf("copy configs: %v\n%s", err, out)
	}
	image := "hjepa-test-gpu:" + id
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-f", "Dockerfile.gpu", "--build-arg", "CUDA_BASE="+baseImage, "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build -f Dockerfile.gpu: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", image, "devices").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no NVIDIA driver") || !strings.Contains(string(out), "--gpus") {
		t.Fatalf("docker run %s devices: %v; want it to explain that no GPU is visible and how to give one:\n%s", image, err, out)
	}
	t.Logf("hjepa devices in the GPU image without a GPU:\n%s", out)
	out, err = exec.CommandContext(ctx, "docker", "run", "--rm", image, "train", "--config", "/configs/synthetic-test.yaml",
		"--device", "cpu", "--out", "/tmp/out", "--set", "training.max_steps=5", "--set", "logging.progress=false").CombinedOutput()
	if err != nil {
		t.Fatalf("a CPU run in the GPU image: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "final loss") || !strings.Contains(string(out), "/tmp/out/checkpoints/checkpoint_latest") {
		t.Fatalf("a CPU run in the GPU image printed no summary:\n%s", out)
	}
}
