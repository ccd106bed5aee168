package cpu

import "github.com/hjepa-go/hjepa/tensor"

const (
	invSqrt2   = 0.70710678118654752440
	invSqrt2Pi = 0.39894228040143267794
)

// GELUForward sets out = x * Phi(x), Phi(x) = (1 + erf(x/sqrt2)) / 2.
func (b *Backend) GELUForward(out, x *tensor.Tensor) {
	mustSameNumel("GELUForward", "out", out, "x", x)
	os, xs := out.F32(), x.F32()
	b.forElems(len(xs), func(lo, hi int) { geluForward(os[lo:hi], xs[lo:hi]) })
}

// GELUBackward sets dx = dout * (Phi(x) + x*phi(x)), phi the standard normal
// density.
func (b *Backend) GELUBackward(dx, dout, x *tensor.Tensor) {
	mustSameNumel("GELUBackward", "dx", dx, "x", x)
	mustSameNumel("GELUBackward", "dout", dout, "x", x)
	ds, gs, xs := dx.F32(), dout.F32(), x.F32()
	b.forElems(len(xs), func(lo, hi int) { geluBackward(ds[lo:hi], gs[lo:hi], xs[lo:hi]) })
}

func geluForward(out, x []float32) {
	out = out[:len(x)]
	if n := len(x) &^ 7; useAVX2 && n > 0 {
		geluFwdAVX2(&out[0], &x[0], n)
		out, x = out[n:], x[n:]
	}
	for i, v := range x {
		out[i] = 0.5 * v * (1 + erff(v*invSqrt2))
	}
}

func geluBackward(dx, dout, x []float32) {
	dx, dout = dx[:len(x)], dout[:len(x)]
	if n := len(x) &^ 7; useAVX2 && n > 0 {
		geluBwdAVX2(&dx[0], &dout[0], &x[0], n)
		dx, dout, x = dx[n:], dout[n:], x[n:]
	}
	for i, v := range x {
		cdf := 0.5 * (1 + erff(v*invSqrt2))
		pdf := invSqrt2Pi * expf(-0.5*v*v)
		dx[i] = dout[i] * (cdf + v*pdf)
	}
}
