package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// lnRef is the float64 LayerNorm forward of rows of length d; w, b may be nil.
func lnRef(x, w, b []float64, d int, eps float64) (out, mean, rstd []float64) {
	rows := len(x) / d
	out, mean, rstd = make([]float64, len(x)), make([]float64, rows), make([]float64, rows)
	for r := 0; r < rows; r++ {
		row := x[r*d : (r+1)*d]
		var mu, v float64
		for _, a := range row {
			mu += a
		}
		mu /= float64(d)
		for _, a := range row {
			v += (a - mu) * (a - mu)
		}
		v /= float64(d)
		rs := 1 / math.Sqrt(v+eps)
		mean[r], rstd[r] = mu, rs
		for j, a := range row {
			o := (a - mu) * rs
			if w != nil {
				o *= w[j]
			}
			if b != nil {
				o += b[j]
			}
			out[r*d+j] = o
		}
	}
	return out, mean, rstd
}

type lnCase struct {
	rows, d int
	affine  bool
	offset  float64 // added to x: checks the variance is not computed as E[x^2]-E[x]^2
}

var lnCases = []lnCase{
	{1, 1, true, 0}, {1, 7, false, 0}, {7, 13, true, 0}, {5, 192, true, 0},
	{3, 192, false, 0}, {11, 768, true, 300}, {2, 31, true, 1000},
}

// testLayerNormForward: out, mean and rstd against float64 (relative L2 2e-6;
// mean 1e-6; rstd 2e-6), eps 1e-6 as in I-JEPA.
func testLayerNormForward(t *testing.T, b tensor.Backend) {
	r := newRand(6)
	const eps = 1e-6
	for _, c := range lnCases {
		xv := randn(r, c.rows*c.d, 1.5)
		for i := range xv {
			xv[i] += float32(c.offset)
		}
		var w64, b64 []float64
		var wt, bt *tensor.Tensor
		if c.affine {
			wv, bv := randn(r, c.d, 1), randn(r, c.d, 1)
			w64, b64 = to64(wv), to64(bv)
			wt, bt = upload(b, wv, c.d), upload(b, bv, c.d)
		}
		x := upload(b, xv, c.rows, c.d)
		out := b.New(tensor.Float32, c.rows, c.d)
		mean := b.New(tensor.Float32, c.rows)
		rstd := b.New(tensor.Float32, c.rows)
		b.LayerNormForward(out, mean, rstd, x, wt, bt, eps)
		wo, wm, wr := lnRef(to64(xv), w64, b64, c.d, eps)
		checkClose(t, name("LayerNormForward out %+v", c), download(b, out), wo, 2e-6)
		checkClose(t, name("LayerNormForward mean %+v", c), download(b, mean), wm, 1e-6)
		checkClose(t, name("LayerNormForward rstd %+v", c), download(b, rstd), wr, 2e-6)
	}
}

// testLayerNormBackward compares dx, dw, db for L = sum(G * LN(x)) with
// central finite differences of the float64 forward (h = 1e-5), starting from
// non-zero gradients to check that they accumulate. Relative L2 2e-5 (the FD
// error is ~1e-9; the rest is float32 rounding).
func testLayerNormBackward(t *testing.T, b tensor.Backend) {
	r := newRand(7)
	const eps = 1e-6
	for _, c := range lnCases {
		if c.rows*c.d > 2000 {
			c.rows = max(1, 2000/c.d)
		}
		xv := randn(r, c.rows*c.d, 1)
		for i := range xv {
			xv[i] += float32(c.offset)
		}
		gv := randn(r, c.rows*c.d, 1)
		x64, g64 := to64(xv), to64(gv)
		var wv, bv []float32
		var w64, b64 []float64
		if c.affine {
			wv, bv = randn(r, c.d, 1), randn(r, c.d, 1)
			w64, b64 = to64(wv), to64(bv)
		}
		loss := func(x, w, bb []float64) float64 {
			o, _, _ := lnRef(x, w, bb, c.d, eps)
			return dot64(o, g64)
		}
		fd := memo(name("layernorm %+v", c), func() [][]float64 {
			res := [][]float64{fdGrad(x64, func(x []float64) float64 { return loss(x, w64, b64) })}
			if c.affine {
				res = append(res,
					fdGrad(w64, func(w []float64) float64 { return loss(x64, w, b64) }),
					fdGrad(b64, func(bb []float64) float64 { return loss(x64, w64, bb) }))
			}
			return res
		})
		wantDx := fd[0]

		x := upload(b, xv, c.rows, c.d)
		out := b.New(tensor.Float32, c.rows, c.d)
		mean := b.New(tensor.Float32, c.rows)
		rstd := b.New(tensor.Float32, c.rows)
		var wt, bt, dwt, dbt *tensor.Tensor
		var dw0, db0 []float32
		if c.affine {
			wt, bt = upload(b, wv, c.d), upload(b, bv, c.d)
			dw0, db0 = randn(r, c.d, 1), randn(r, c.d, 1)
			dwt, dbt = upload(b, dw0, c.d), upload(b, db0, c.d)
		}
		b.LayerNormForward(out, mean, rstd, x, wt, bt, eps)
		dx0 := randn(r, c.rows*c.d, 1)
		dx := upload(b, dx0, c.rows, c.d)
		b.LayerNormBackward(dx, dwt, dbt, upload(b, gv, c.rows, c.d), x, mean, rstd, wt)
		got := download(b, dx)
		for i := range got {
			got[i] -= dx0[i]
		}
		// With a large offset, x carries few significant bits of x - mean and
		// float32 dx is correspondingly less accurate.
		tol := 2e-5
		if c.offset != 0 {
			tol = 2e-4
		}
		checkClose(t, name("LayerNormBackward dx %+v", c), got, wantDx, tol)
		if c.affine {
			wantDw, wantDb := fd[1], fd[2]
			gw, gb := download(b, dwt), download(b, dbt)
			for i := range gw {
				gw[i] -= dw0[i]
				gb[i] -= db0[i]
			}
			checkClose(t, name("LayerNormBackward dw %+v", c), gw, wantDw, tol)
			checkClose(t, name("LayerNormBackward db %+v", c), gb, wantDb, tol)
		}
	}
}
