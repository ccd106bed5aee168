package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

func geluRef(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func geluGradRef(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

// testGELU: forward over a dense grid in [-10, 10] and random data against
// math.Erf (max abs error 5e-7 relative to max(1, |x|), relative L2 2e-7);
// the backward against the analytic derivative (abs 5e-7 scaled likewise) and
// against central finite differences of the float64 forward (relative L2
// 1e-6), with dx aliasing dout once.
func testGELU(t *testing.T, b tensor.Backend) {
	r := newRand(8)
	n := short(20001, 200001)
	xv := make([]float32, 0, 2*n)
	for i := 0; i < n; i++ {
		xv = append(xv, float32(-10+20*float64(i)/float64(n-1)))
	}
	xv = append(xv, randn(r, n, 2)...)
	m := len(xv)
	x := upload(b, xv, m)
	out := b.New(tensor.Float32, m)
	b.GELUForward(out, x)
	got := download(b, out)
	want := make([]float64, m)
	for i, v := range xv {
		want[i] = geluRef(float64(v))
	}
	checkClose(t, "GELUForward", got, want, 2e-7)
	maxAbs(t, "GELUForward", xv, got, want, 5e-7)

	gv := randn(r, m, 1)
	dx := b.New(tensor.Float32, m)
	dout := upload(b, gv, m)
	b.GELUBackward(dx, dout, x)
	gotDx := download(b, dx)
	wantDx := make([]float64, m)
	for i, v := range xv {
		wantDx[i] = float64(gv[i]) * geluGradRef(float64(v))
	}
	checkClose(t, "GELUBackward", gotDx, wantDx, 2e-7)
	maxAbs(t, "GELUBackward", xv, gotDx, wantDx, 5e-7)

	// Finite differences on a small sample validate the reference derivative.
	k := 301
	fd := make([]float64, k)
	for i := range fd {
		v := float64(xv[i*(m/k)])
		const h = 1e-5
		fd[i] = float64(gv[i*(m/k)]) * (geluRef(v+h) - geluRef(v-h)) / (2 * h)
	}
	sub := make([]float32, k)
	for i := range sub {
		sub[i] = gotDx[i*(m/k)]
	}
	checkClose(t, "GELUBackward vs finite differences", sub, fd, 1e-6)

	b.GELUBackward(dout, dout, x) // dx aliases dout
	checkEqual(t, "GELUBackward aliased", download(b, dout), gotDx)
}

func maxAbs(t *testing.T, what string, xs, got []float32, want []float64, tol float64) {
	t.Helper()
	for i, g := range got {
		if d := math.Abs(float64(g) - want[i]); !(d <= tol*math.Max(1, math.Abs(float64(xs[i])))) {
			t.Errorf("%s(%v) = %v, want %v (error %.3g)", what, xs[i], g, want[i], d)
			return
		}
	}
}

var _ = tensor.Float32
