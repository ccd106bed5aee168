package tensor

import (
	"math"
	"testing"
)

// TestAddIntoMatchesScalar: AddInto (the vector add where the machine has
// one, then the 8-element and scalar loops) gives the plain loop's bits for
// every length around its 32-lane and 8-element steps and any float
// alignment of src, including NaN, infinities and subnormals, and leaves
// dst past len(dst) alone.
func TestAddIntoMatchesScalar(t *testing.T) {
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-45, -1e-45, 0, float32(math.Copysign(0, -1)), 3.4e38}
	for n := 0; n <= 200; n++ {
		for shift := range 4 {
			y := make([]float32, n+3)
			srcBuf := make([]float32, shift+n+3)
			x := srcBuf[shift:]
			for i := range y {
				x[i] = float32(i)*0.37 - 3.1
				y[i] = 1 / (float32(i) + 0.7)
				if i%7 == 3 {
					x[i] = specials[i%len(specials)]
				}
			}
			want := append([]float32(nil), y...)
			for i := 0; i < n; i++ {
				want[i] += x[i]
			}
			got := append([]float32(nil), y...)
			AddInto(got[:n], x)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d shift=%d: AddInto element %d = %v, want %v", n, shift, i, got[i], want[i])
				}
			}
		}
	}
}
