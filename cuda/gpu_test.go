package cuda_test

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/cuda/cudatest"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/backendtest"
)

// These tests need an NVIDIA GPU (compute capability 8.0+, driver R520+,
// cuBLAS 12 or 13) and skip, saying why, without one. The same kernels run
// in CI on the host emulator (cuda/emu).

var (
	gpuOnce sync.Once
	gpu     *cuda.Backend
	gpuErr  error
)

func openGPU(t *testing.T) *cuda.Backend {
	t.Helper()
	gpuOnce.Do(func() { gpu, gpuErr = cuda.Open(0, cuda.Options{}) })
	if gpuErr != nil {
		t.Skipf("skipped: the CUDA backend tests need a GPU: %v", gpuErr)
	}
	return gpu
}

func TestGPUCompliance(t *testing.T) {
	b := openGPU(t)
	t.Logf("device: %s", b.Name())
	backendtest.Run(t, func(t *testing.T) tensor.Backend { return b })
}

// One whole H-JEPA training step (three, with AdamW and EMA between them)
// on the GPU against the CPU backend, in FP32.
func TestGPUStepParity(t *testing.T) {
	cudatest.StepParity(t, openGPU(t), 1e-4)
}

// The same with TF32 GEMMs: inputs rounded to 10 mantissa bits.
func TestGPUStepParityTF32(t *testing.T) {
	openGPU(t)
	b, err := cuda.Open(0, cuda.Options{TF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cudatest.StepParity(t, b, 3e-3)
}

// Every kernel against the CPU backend on the parity cases (FP32).
func TestGPUParity(t *testing.T) {
	cudatest.Parity(t, openGPU(t), false)
}

// A tensor larger than the device is the backend's sticky out of memory,
// not a panic: its error names the device's memory, and the backend's
// later operations do nothing (a fresh backend: the shared one stays
// usable).
func TestGPUOutOfMemory(t *testing.T) {
	openGPU(t)
	b, err := cuda.Open(0, cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, total, err := b.DeviceMemory()
	if err != nil {
		t.Fatal(err)
	}
	b.New(tensor.Float32, int(total/4)+1<<20) // 4 MiB more than the device has
	err = b.Err()
	var oom *cuda.OutOfMemoryError
	if !errors.Is(err, tensor.ErrOutOfMemory) || !errors.As(err, &oom) {
		t.Fatalf("Err() = %v, want an *OutOfMemoryError", err)
	}
	if oom.Total != total || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") || !strings.Contains(err.Error(), "data.batch_size") {
		t.Errorf("Err() = %v (total %d, want %d)", err, oom.Total, total)
	}
	x := b.New(tensor.Float32, 16)
	if s := b.Sum(x); !math.IsNaN(s) || b.Sync() != err {
		t.Errorf("after the failure: Sum = %v, Sync = %v", s, b.Sync())
	}
	t.Logf("%v", err)
}
