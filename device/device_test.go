package device

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// Device selection on a machine without a usable GPU (the CI machines):
// auto falls back to the CPU and says why in one line; cuda is an error that
// names the device and the way out. On a GPU machine auto must pick the GPU.
func TestOpenDevice(t *testing.T) {
	c := config.Default()
	c.Threads = 1
	_, gpuErr := openGPU(0, false)

	c.Device = "auto"
	b, fallback, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if gpuErr == nil {
		if b.Device().Type != tensor.CUDA || fallback != "" {
			t.Errorf("auto with a GPU: %s, fallback %q", b.Name(), fallback)
		}
		return
	}
	if b.Device().Type != tensor.CPU || !strings.HasPrefix(fallback, "device auto: ") || !strings.Contains(fallback, "using the CPU") || strings.Contains(fallback, "\n") || strings.Contains(fallback, "tried") {
		t.Errorf("auto without a GPU: backend %s, fallback %q", b.Name(), fallback)
	}
	t.Logf("fallback line: %s", fallback)
	if _, again, _ := Open(c); again != "" {
		t.Errorf("the fallback line came twice in one process: %q", again)
	}

	for _, dev := range []string{"cuda", "cuda:1"} {
		c.Device = dev
		_, _, err := Open(c)
		if err == nil || !strings.Contains(err.Error(), "device "+dev+": ") || !strings.Contains(err.Error(), "--device cpu") {
			t.Errorf("%s without a GPU: err = %v", dev, err)
		}
	}
	c.Device = "cuda:x"
	if _, _, err := Open(c); err == nil || !strings.Contains(err.Error(), "cuda:K") {
		t.Errorf("cuda:x: err = %v", err)
	}
}

// List always says something: the GPUs, or why training runs on the CPU.
func TestListSaysWhy(t *testing.T) {
	var out bytes.Buffer
	if err := List(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if _, err := Discover(); err == nil {
		if !strings.Contains(s, "GPU") {
			t.Errorf("List with a driver: %q", s)
		}
		return
	}
	if !strings.Contains(s, "training runs on the CPU") {
		t.Errorf("List without a GPU: %q", s)
	}
}

// failingBackend is a backend whose device has failed (tensor.Faulter).
type failingBackend struct {
	tensor.Backend
	err error
}

func (f failingBackend) Err() error { return f.err }

// Err is the backend's sticky device failure, nil for backends that cannot
// fail (the CPU) and for healthy ones.
func TestErr(t *testing.T) {
	c := cpu.New(1)
	defer c.Close()
	if err := Err(c); err != nil {
		t.Errorf("Err(cpu) = %v", err)
	}
	if err := Err(failingBackend{Backend: c}); err != nil {
		t.Errorf("Err(healthy) = %v", err)
	}
	oom := fmt.Errorf("cuda: out of memory on cuda:0: %w", tensor.ErrOutOfMemory)
	if err := Err(failingBackend{Backend: c, err: oom}); err != oom || !errors.Is(err, tensor.ErrOutOfMemory) {
		t.Errorf("Err(failed) = %v, want %v", err, oom)
	}
}

// Device cuda-emu is the CUDA backend on the host emulator in builds with
// -tags cudaemu (its memory from HJEPA_EMU_MEMORY_BYTES, an allocation
// beyond it the backend's sticky out of memory), and an error that says so
// in every other build.
func TestOpenEmulator(t *testing.T) {
	t.Setenv(EmuMemoryEnv, "1048576")
	c := config.Default()
	c.Device = "cuda-emu"
	b, _, err := Open(c)
	if err != nil {
		if !strings.Contains(err.Error(), "device cuda-emu: ") || !strings.Contains(err.Error(), "-tags cudaemu") {
			t.Errorf("cuda-emu in a build without it: %v", err)
		}
		return
	}
	defer Close(b)
	if b.Device().Type != tensor.CUDA {
		t.Fatalf("cuda-emu opened %s", b.Name())
	}
	if _, total, err := b.(tensor.DeviceMemory).DeviceMemory(); err != nil || total != 1<<20 {
		t.Errorf("DeviceMemory: total %d, %v; want 1 MiB", total, err)
	}
	b.New(tensor.Float32, 1<<20) // 4 MiB
	if err := Err(b); !errors.Is(err, tensor.ErrOutOfMemory) {
		t.Errorf("Err after 4 MiB on a 1 MiB device = %v", err)
	}
	t.Setenv(EmuMemoryEnv, "lots")
	if _, _, err := Open(c); err == nil || !strings.Contains(err.Error(), EmuMemoryEnv) {
		t.Errorf("%s=lots: %v", EmuMemoryEnv, err)
	}
}

// The configuration loader leaves EmuMemoryEnv to this package.
func TestEmuMemoryEnvIsProgramEnv(t *testing.T) {
	if !slices.Contains(config.ProgramEnv, EmuMemoryEnv) {
		t.Errorf("config.ProgramEnv %v lacks %s", config.ProgramEnv, EmuMemoryEnv)
	}
}
