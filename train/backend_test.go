package train

import (
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// Device selection on a machine without a usable GPU (the CI machines):
// auto falls back to the CPU and says why in one line; cuda is an error that
// names the device and the way out. On a GPU machine auto must pick the GPU.
func TestNewBackendDevice(t *testing.T) {
	c := config.Default()
	c.Threads = 1
	_, gpuErr := openGPU(0, false)

	c.Device = "auto"
	b, fallback, err := NewBackend(c)
	if err != nil {
		t.Fatal(err)
	}
	if gpuErr == nil {
		if b.Device().Type != tensor.CUDA || fallback != "" {
			t.Errorf("auto with a GPU: %s, fallback %q", b.Name(), fallback)
		}
		return
	}
	if b.Device().Type != tensor.CPU || !strings.HasPrefix(fallback, "device auto: ") || !strings.HasSuffix(fallback, "using the CPU") || strings.Contains(fallback, "\n") {
		t.Errorf("auto without a GPU: backend %s, fallback %q", b.Name(), fallback)
	}
	t.Logf("fallback line: %s", fallback)

	for _, dev := range []string{"cuda", "cuda:1"} {
		c.Device = dev
		_, _, err := NewBackend(c)
		if err == nil || !strings.Contains(err.Error(), "device "+dev+": ") || !strings.Contains(err.Error(), "--device cpu") {
			t.Errorf("%s without a GPU: err = %v", dev, err)
		}
	}
	c.Device = "cuda:x"
	if _, _, err := NewBackend(c); err == nil || !strings.Contains(err.Error(), "cuda:K") {
		t.Errorf("cuda:x: err = %v", err)
	}
}

// smallGPU is a backend whose device reports 1 MiB free.
type smallGPU struct{ tensor.Backend }

func (smallGPU) Device() tensor.Device { return tensor.Device{Type: tensor.CUDA} }
func (smallGPU) DeviceMemory() (free, total uint64, err error) {
	return 1 << 20, 80 << 30, nil
}

// The memory check compares against the device's free memory when the
// backend has memory of its own.
func TestPreflightDeviceMemory(t *testing.T) {
	c := config.Default()
	ref := cpu.New(1)
	defer ref.Close()
	tr := &trainer{cfg: c, opts: Options{Out: t.TempDir()}, b: smallGPU{ref}}
	mc, err := ModelConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.preflight(mc)
	if err == nil || !strings.Contains(err.Error(), "of cuda:0 memory but 1.0 MiB is free") || !strings.Contains(err.Error(), "data.batch_size") {
		t.Fatalf("preflight = %v", err)
	}
}
