package tensor

import (
	"math"
	"testing"
)

// TestAddIntoLanes: AddInto gives exactly the scalar sums for every length
// around its 32-lane and 8-element loops, and leaves dst past len(dst) alone.
func TestAddIntoLanes(t *testing.T) {
	for n := 0; n <= 35; n++ {
		x := make([]float32, n+3)
		y := make([]float32, n+3)
		for i := range x {
			x[i] = float32(i)*0.37 - 3.1
			y[i] = 1 / (float32(i) + 0.7)
		}
		want := append([]float32(nil), y...)
		for i := 0; i < n; i++ {
			want[i] += x[i]
		}
		got := append([]float32(nil), y...)
		AddInto(got[:n], x)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: AddInto element %d = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}
