package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// testLosses checks SmoothL1Loss and MSELoss values and gradients against
// float64 references, for several betas (the quadratic and linear branches
// both exercised), with and without a gradient output.
func testLosses(t *testing.T, b tensor.Backend) {
	r := newRand(31)
	for _, n := range []int{1, 7, 1000, 20011} {
		p := randn(r, n, 1.5)
		q := randn(r, n, 1.0)
		pt, qt := upload(b, p, n), upload(b, q, n)
		g := b.New(tensor.Float32, n)
		for _, beta := range []float32{1, 0.5, 2} {
			scale := float32(0.75) / float32(n)
			got := b.SmoothL1Loss(g, pt, qt, beta, scale)
			var want float64
			wg := make([]float64, n)
			for i := range p {
				d := float64(p[i]) - float64(q[i])
				if math.Abs(d) < float64(beta) {
					want += 0.5 * d * d / float64(beta)
					wg[i] = float64(scale) * d / float64(beta)
				} else {
					want += math.Abs(d) - 0.5*float64(beta)
					wg[i] = float64(scale) * math.Copysign(1, d)
				}
			}
			if math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Errorf("SmoothL1Loss n=%d beta=%v: %v, want %v", n, beta, got, want)
			}
			checkClose(t, "SmoothL1Loss grad", download(b, g), wg, 1e-6)
			if again := b.SmoothL1Loss(nil, pt, qt, beta, scale); again != got {
				t.Errorf("SmoothL1Loss without grad: %v, with grad %v", again, got)
			}
		}
		got := b.MSELoss(g, pt, qt, 2)
		var want float64
		wg := make([]float64, n)
		for i := range p {
			d := float64(p[i]) - float64(q[i])
			want += d * d
			wg[i] = 2 * 2 * d
		}
		if math.Abs(got-want) > 1e-5*math.Max(1, want) {
			t.Errorf("MSELoss n=%d: %v, want %v", n, got, want)
		}
		checkClose(t, "MSELoss grad", download(b, g), wg, 1e-6)
	}
}
