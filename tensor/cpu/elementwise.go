package cpu

import (
	"fmt"

	"github.com/hjepa-go/hjepa/tensor"
)

// forElems splits [0, n) into chunks of elemGrain elements over the pool.
func (b *Backend) forElems(n int, body func(lo, hi int)) {
	b.pool.For(n, elemGrain, func(_, lo, hi int) { body(lo, hi) })
}

func (b *Backend) Fill(t *tensor.Tensor, v float32) {
	if t.DType() == tensor.Int32 {
		x := t.I32()
		iv := int32(v)
		b.forElems(len(x), func(lo, hi int) {
			s := x[lo:hi]
			for i := range s {
				s[i] = iv
			}
		})
		return
	}
	x := t.F32()
	b.forElems(len(x), func(lo, hi int) {
		s := x[lo:hi]
		if v == 0 {
			clear(s)
			return
		}
		for i := range s {
			s[i] = v
		}
	})
}

func (b *Backend) Copy(dst, src *tensor.Tensor) {
	mustSameNumel("Copy", "dst", dst, "src", src)
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("cpu: Copy: dst %s and src %s differ in dtype", dst, src))
	}
	if dst.DType() == tensor.Int32 {
		d, s := dst.I32(), src.I32()
		b.forElems(len(d), func(lo, hi int) { copy(d[lo:hi], s[lo:hi]) })
		return
	}
	d, s := dst.F32(), src.F32()
	b.forElems(len(d), func(lo, hi int) { copy(d[lo:hi], s[lo:hi]) })
}

func (b *Backend) Scale(x *tensor.Tensor, alpha float32) {
	xs := x.F32()
	b.forElems(len(xs), func(lo, hi int) {
		s := xs[lo:hi]
		for i := range s {
			s[i] *= alpha
		}
	})
}

func (b *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	mustSameNumel("Axpy", "y", y, "x", x)
	ys, xs := y.F32(), x.F32()
	b.forElems(len(ys), func(lo, hi int) {
		yy, xx := ys[lo:hi], xs[lo:hi]
		for i := range yy {
			yy[i] += alpha * xx[i]
		}
	})
}

func (b *Backend) Add(dst, a, c *tensor.Tensor) {
	mustSameNumel("Add", "dst", dst, "a", a)
	mustSameNumel("Add", "dst", dst, "b", c)
	ds, as, cs := dst.F32(), a.F32(), c.F32()
	b.forElems(len(ds), func(lo, hi int) {
		d, x, y := ds[lo:hi], as[lo:hi], cs[lo:hi]
		if n := len(d) &^ 7; useAVX2 && n > 0 {
			vadd3AVX2(&d[0], &x[0], &y[0], n)
			d, x, y = d[n:], x[n:], y[n:]
		}
		for i := range d {
			d[i] = x[i] + y[i]
		}
	})
}

func (b *Backend) AddRowVector(x, v *tensor.Tensor) {
	cols := v.Numel()
	if x.Cols() != cols {
		panic(fmt.Sprintf("cpu: AddRowVector: x %s is not rows of v %s", tensor.ShapeString(x.Shape()), tensor.ShapeString(v.Shape())))
	}
	xs, vs := x.F32(), v.F32()
	rows := len(xs) / cols
	b.pool.For(rows, rowGrain(cols), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			tensor.AddInto(xs[r*cols:(r+1)*cols], vs)
		}
	})
}

// EMA sets target = momentum*target + (1-momentum)*src, in the order of
// I-JEPA's param_k.mul_(m).add_((1-m)*param_q).
func (b *Backend) EMA(target, src *tensor.Tensor, momentum float32) {
	mustSameNumel("EMA", "target", target, "src", src)
	ts, ss := target.F32(), src.F32()
	om := float32(1 - float64(momentum))
	b.forElems(len(ts), func(lo, hi int) {
		t, s := ts[lo:hi], ss[lo:hi]
		for i := range t {
			t[i] = t[i]*momentum + om*s[i]
		}
	})
}
