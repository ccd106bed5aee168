package train

import (
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

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
	mc, err := jepa.NewModelConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.preflight(mc)
	if err == nil || !strings.Contains(err.Error(), "of cuda:0 memory but 1.0 MiB is free") || !strings.Contains(err.Error(), "data.batch_size") {
		t.Fatalf("preflight = %v", err)
	}
}
