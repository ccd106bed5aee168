package cudatest

import (
	"testing"

	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// The harness itself: a 2-thread CPU backend against the 1-thread reference
// (GEMM blocking differs with the thread count, so not bitwise).
func TestStepParityCPUThreads(t *testing.T) {
	b := cpu.New(2)
	defer b.Close()
	StepParity(t, b, 1e-5)
}

// The parity cases themselves, on a 2-thread CPU backend.
func TestParityCPUThreads(t *testing.T) {
	b := cpu.New(2)
	defer b.Close()
	Parity(t, b, true)
}
