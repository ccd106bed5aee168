package cpu

import (
	"fmt"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/backendtest"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// TestCompliance runs the backend suite for several thread counts and every
// GEMM kernel this CPU supports.
func TestCompliance(t *testing.T) {
	for _, k := range sgemm.Available() {
		for _, threads := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/threads=%d", k, threads), func(t *testing.T) {
				backendtest.Run(t, func(t *testing.T) tensor.Backend {
					b := NewWithKernel(threads, k)
					t.Cleanup(b.Close)
					return b
				})
			})
		}
	}
	// The portable (non-AVX2) exp/erf loops, as on CPUs without AVX2.
	t.Run("scalar-math", func(t *testing.T) {
		saved := useAVX2
		useAVX2 = false
		defer func() { useAVX2 = saved }()
		backendtest.Run(t, func(t *testing.T) tensor.Backend {
			b := New(2)
			t.Cleanup(b.Close)
			return b
		})
	})
}
