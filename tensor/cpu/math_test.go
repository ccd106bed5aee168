package cpu

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// TestErff: max abs error <= 2e-7 over a dense grid of [-8, 8].
func TestErff(t *testing.T) {
	step := float32(1e-5)
	if testing.Short() {
		step = 1e-4
	}
	var worst float64
	var at float32
	for x := float32(-8); x <= 8; x += step {
		if d := math.Abs(float64(erff(x)) - math.Erf(float64(x))); d > worst {
			worst, at = d, x
		}
	}
	if worst > 2e-7 {
		t.Errorf("erff: max abs error %.3g at %v", worst, at)
	}
}

// TestExpf: max relative error <= 4 ulp (2^-22) on [-87, 88].
func TestExpf(t *testing.T) {
	for _, fast := range []bool{false, true} {
		if fast && !useAVX2 {
			continue
		}
		var worst float64
		var at float32
		buf := make([]float32, 0, 1<<20)
		for x := float32(-87); x <= 88; x += 1e-4 {
			buf = append(buf, x)
		}
		got := append([]float32(nil), buf...)
		if fast {
			expShift(got, 0)
		} else {
			for i, x := range got {
				got[i] = expf(x)
			}
		}
		for i, x := range buf {
			e := math.Exp(float64(x))
			if d := math.Abs(float64(got[i])-e) / e; d > worst {
				worst, at = d, x
			}
		}
		if worst > 0x1p-22 {
			t.Errorf("exp (avx2 %v): max relative error %.3g at %v", fast, worst, at)
		}
	}
	if expf(-100) != 0 || !math.IsInf(float64(expf(100)), 1) {
		t.Errorf("expf out of range: %v %v", expf(-100), expf(100))
	}
}

// TestGELUKernels compares the GELU loops, vectorised (where the CPU allows)
// and scalar, with float64 math on a dense grid: abs error <= 3e-7*max(1, |x|).
func TestGELUKernels(t *testing.T) {
	saved := useAVX2
	defer func() { useAVX2 = saved }()
	for _, v := range []bool{saved, false} {
		useAVX2 = v
		testGELUKernels(t)
	}
}

func testGELUKernels(t *testing.T) {
	var xs []float32
	for x := float32(-12); x <= 12; x += 3e-4 {
		xs = append(xs, x)
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30) // odd tail
	out, dx, dout := make([]float32, len(xs)), make([]float32, len(xs)), make([]float32, len(xs))
	for i := range dout {
		dout[i] = 1
	}
	geluForward(out, xs)
	geluBackward(dx, dout, xs)
	for i, x := range xs {
		v := float64(x)
		cdf := 0.5 * (1 + math.Erf(v/math.Sqrt2))
		want := v * cdf
		wantD := cdf + v*math.Exp(-v*v/2)/math.Sqrt(2*math.Pi)
		tol := 3e-7 * math.Max(1, math.Abs(v))
		if math.Abs(float64(out[i])-want) > tol || math.Abs(float64(dx[i])-wantD) > tol {
			t.Fatalf("avx2 %v, x=%v: gelu %v want %v, gelu' %v want %v", useAVX2, x, out[i], want, dx[i], wantD)
		}
	}
}

// TestAddMatchesScalar: Add (vadd3AVX2's 8-float lanes where the CPU has
// AVX2, then the scalar tail) gives exactly the scalar sums for every length
// around the 8-lane boundary.
func TestAddMatchesScalar(t *testing.T) {
	b := New(1)
	defer b.Close()
	for n := 1; n <= 35; n++ {
		x, y, d := b.New(tensor.Float32, n), b.New(tensor.Float32, n), b.New(tensor.Float32, n)
		xs, ys := x.F32(), y.F32()
		for i := range xs {
			xs[i] = float32(i)*0.37 - 3.1
			ys[i] = 1 / (float32(i) + 0.7)
		}
		b.Add(d, x, y)
		for i, v := range d.F32() {
			if want := xs[i] + ys[i]; math.Float32bits(v) != math.Float32bits(want) {
				t.Fatalf("Add n=%d: element %d = %v, want %v", n, i, v, want)
			}
		}
	}
}
