package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// testGatherScatter: Gather exactly; ScatterAdd with repeated indices into a
// non-zero dst against float64 sums (relative L2 1e-6).
func testGatherScatter(t *testing.T, b tensor.Backend) {
	r := newRand(11)
	for _, c := range []struct{ rows, m, cols int }{{1, 1, 1}, {5, 17, 3}, {13, 40, 192}, {50, 300, 37}} {
		sv := randn(r, c.rows*c.cols, 1)
		idx := make([]int32, c.m)
		for i := range idx {
			idx[i] = int32(r.IntN(c.rows))
		}
		if c.m > 2 {
			idx[1] = idx[0] // at least one repeat
		}
		it := uploadInt(b, idx, c.m)
		dst := b.New(tensor.Float32, c.m, c.cols)
		b.Gather(dst, upload(b, sv, c.rows, c.cols), it)
		want := make([]float32, c.m*c.cols)
		for i, k := range idx {
			copy(want[i*c.cols:(i+1)*c.cols], sv[int(k)*c.cols:])
		}
		checkEqual(t, name("Gather %+v", c), download(b, dst), want)

		gv := randn(r, c.m*c.cols, 1)
		d0 := randn(r, c.rows*c.cols, 1)
		acc := upload(b, d0, c.rows, c.cols)
		b.ScatterAdd(acc, upload(b, gv, c.m, c.cols), it)
		ws := to64(d0)
		for i, k := range idx {
			for j := 0; j < c.cols; j++ {
				ws[int(k)*c.cols+j] += float64(gv[i*c.cols+j])
			}
		}
		checkClose(t, name("ScatterAdd %+v", c), download(b, acc), ws, 1e-6)
	}
}

// testReductions: Sum and SumSquares against float64 sums (relative 1e-9:
// float64 accumulation of float32 values).
func testReductions(t *testing.T, b tensor.Backend) {
	r := newRand(12)
	for _, n := range []int{0, 1, 7, 8193, short(100003, 1000003)} {
		xv := randn(r, n, 1)
		for i := range xv {
			xv[i] += 0.25
		}
		x := upload(b, xv, n)
		var s, ss float64
		for _, v := range xv {
			s += float64(v)
			ss += float64(v) * float64(v)
		}
		if got := b.Sum(x); math.Abs(got-s) > 1e-9*math.Max(1, math.Abs(s))*math.Sqrt(float64(n+1)) {
			t.Errorf("Sum n=%d = %v, want %v", n, got, s)
		}
		if got := b.SumSquares(x); math.Abs(got-ss) > 1e-9*math.Max(1, ss) {
			t.Errorf("SumSquares n=%d = %v, want %v", n, got, ss)
		}
	}
}

// testAdamW runs six steps (weight decay on, then off) against a float64
// implementation of torch.optim.AdamW; relative L2 1e-6 on p, m and v.
func testAdamW(t *testing.T, b tensor.Backend) {
	r := newRand(13)
	for _, n := range []int{1, 7, short(10007, 100003)} {
		pv := randn(r, n, 0.5)
		p64, m64, v64 := to64(pv), make([]float64, n), make([]float64, n)
		p := upload(b, pv, n)
		m, v := b.New(tensor.Float32, n), b.New(tensor.Float32, n)
		for step := 1; step <= 6; step++ {
			h := tensor.AdamWStep{LR: 1e-3 * float32(step), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Step: step}
			if step > 3 {
				h.WeightDecay, h.Beta2 = 0, 0.95
			}
			gv := randn(r, n, 0.1)
			if step == 2 && n > 1 {
				gv[0] = 0 // zero gradient: update only by momentum
			}
			b.AdamW(p, upload(b, gv, n), m, v, h)
			lr, b1, b2 := float64(h.LR), float64(h.Beta1), float64(h.Beta2)
			bc1 := 1 - math.Pow(b1, float64(step))
			bc2 := 1 - math.Pow(b2, float64(step))
			for i := range p64 {
				g := float64(gv[i])
				p64[i] *= 1 - lr*float64(h.WeightDecay)
				m64[i] = b1*m64[i] + (1-b1)*g
				v64[i] = b2*v64[i] + (1-b2)*g*g
				p64[i] -= lr / bc1 * m64[i] / (math.Sqrt(v64[i])/math.Sqrt(bc2) + float64(h.Eps))
			}
			checkClose(t, name("AdamW p n=%d step=%d", n, step), download(b, p), p64, 1e-6)
			checkClose(t, name("AdamW m n=%d step=%d", n, step), download(b, m), m64, 1e-6)
			checkClose(t, name("AdamW v n=%d step=%d", n, step), download(b, v), v64, 1e-6)
		}
	}
}

// testRandom: bounds and first two moments (within 5 standard errors), the
// stream's advance, and identical values for identical (seed, offset)
// whether drawn in one fill or two.
func testRandom(t *testing.T, b tensor.Backend) {
	n := short(20000, 200000)
	x := b.New(tensor.Float32, n)
	moments := func(s []float32) (mean, std float64) {
		for _, v := range s {
			mean += float64(v)
		}
		mean /= float64(len(s))
		for _, v := range s {
			std += (float64(v) - mean) * (float64(v) - mean)
		}
		return mean, math.Sqrt(std / float64(len(s)))
	}
	near := func(what string, got, want, se float64) {
		if math.Abs(got-want) > 5*se {
			t.Errorf("%s = %v, want %v +- %v", what, got, want, 5*se)
		}
	}
	sn := math.Sqrt(float64(n))

	rng := tensor.NewRNG(42)
	b.RandUniform(x, rng, -2, 3)
	if rng.Offset != uint64(n) {
		t.Errorf("RandUniform advanced the stream to %d, want %d", rng.Offset, n)
	}
	u := download(b, x)
	for _, v := range u {
		if v < -2 || v >= 3 {
			t.Fatalf("RandUniform value %v outside [-2, 3)", v)
		}
	}
	m, s := moments(u)
	near("uniform mean", m, 0.5, 5/math.Sqrt(12)/sn)
	near("uniform std", s, 5/math.Sqrt(12), 5/math.Sqrt(12)/sn)

	b.RandNormal(x, rng, 1, 2)
	m, s = moments(download(b, x))
	near("normal mean", m, 1, 2/sn)
	near("normal std", s, 2, 2/sn)

	b.TruncNormal(x, rng, 0, 1, -2, 2)
	tv := download(b, x)
	for _, v := range tv {
		if v < -2 || v > 2 {
			t.Fatalf("TruncNormal value %v outside [-2, 2]", v)
		}
	}
	// N(0,1) truncated to [-2, 2]: mean 0, variance 1 - 2*2*phi(2)/(2*Phi(2)-1).
	phi2 := math.Exp(-2) / math.Sqrt(2*math.Pi)
	tstd := math.Sqrt(1 - 4*phi2/math.Erf(2/math.Sqrt2))
	m, s = moments(tv)
	near("trunc normal mean", m, 0, tstd/sn)
	near("trunc normal std", s, tstd, tstd/sn)
	b.TruncNormal(x, rng, 0.5, 0.02, 0.46, 0.54)
	m, _ = moments(download(b, x))
	near("trunc normal(0.5, 0.02) mean", m, 0.5, 0.02/sn)

	// Same (seed, offset): same values; two fills equal one of the total length.
	fills := []func(t *tensor.Tensor, r *tensor.RNG){
		func(t *tensor.Tensor, r *tensor.RNG) { b.RandUniform(t, r, 0, 1) },
		func(t *tensor.Tensor, r *tensor.RNG) { b.RandNormal(t, r, 0, 1) },
		func(t *tensor.Tensor, r *tensor.RNG) { b.TruncNormal(t, r, 0, 0.02, -0.04, 0.04) },
	}
	for k, fill := range fills {
		whole := b.New(tensor.Float32, 1001)
		fill(whole, &tensor.RNG{Seed: 7, Offset: 123})
		again := b.New(tensor.Float32, 1001)
		fill(again, &tensor.RNG{Seed: 7, Offset: 123})
		checkEqual(t, name("fill %d repeated", k), download(b, again), download(b, whole))
		split := &tensor.RNG{Seed: 7, Offset: 123}
		a, c := b.New(tensor.Float32, 400), b.New(tensor.Float32, 601)
		fill(a, split)
		fill(c, split)
		checkEqual(t, name("fill %d split", k), append(download(b, a), download(b, c)...), download(b, whole))
		other := b.New(tensor.Float32, 1001)
		fill(other, &tensor.RNG{Seed: 8, Offset: 123})
		if o, w := download(b, other), download(b, whole); o[0] == w[0] && o[1] == w[1] {
			t.Errorf("fill %d: seeds 7 and 8 gave the same values", k)
		}
		// Element i depends only on (seed, offset+i), as in tensor.RNG.
		if k == 0 {
			ref := &tensor.RNG{Seed: 7, Offset: 123}
			w := download(b, whole)
			for _, i := range []int{0, 1, 500, 1000} {
				if w[i] != ref.UniformAt(i) {
					t.Errorf("RandUniform element %d = %v, want UniformAt %v", i, w[i], ref.UniformAt(i))
				}
			}
		}
	}
}

// testShapeChecks: mismatched arguments panic.
func testShapeChecks(t *testing.T, b tensor.Backend) {
	f := func(shape ...int) *tensor.Tensor { return b.New(tensor.Float32, shape...) }
	mustPanic(t, "Add", func() { b.Add(f(3), f(3), f(4)) })
	mustPanic(t, "Axpy", func() { b.Axpy(f(3), 1, f(4)) })
	mustPanic(t, "Copy", func() { b.Copy(f(3), f(2)) })
	mustPanic(t, "AddRowVector", func() { b.AddRowVector(f(2, 3), f(4)) })
	mustPanic(t, "SumRows", func() { b.SumRows(f(4), f(2, 3)) })
	mustPanic(t, "LayerNormForward", func() { b.LayerNormForward(f(2, 3), f(3), f(2), f(2, 3), nil, nil, 1e-6) })
	mustPanic(t, "LayerNormForward w", func() { b.LayerNormForward(f(2, 3), f(2), f(2), f(2, 3), f(4), f(3), 1e-6) })
	mustPanic(t, "GELUForward", func() { b.GELUForward(f(2, 3), f(2, 4)) })
	mustPanic(t, "AttentionForward heads", func() { b.AttentionForward(f(1, 2, 8), f(1, 4, 2), f(1, 2, 24), 3, 1) })
	mustPanic(t, "AttentionForward lse", func() { b.AttentionForward(f(1, 2, 8), f(1, 2, 3), f(1, 2, 24), 2, 1) })
	mustPanic(t, "Gather", func() { b.Gather(f(2, 3), f(4, 3), b.New(tensor.Int32, 3)) })
	mustPanic(t, "Gemm", func() { b.Gemm(tensor.GemmArgs{M: 2, N: 2, K: 2, A: f(3), B: f(4), C: f(4), Alpha: 1}) })
	mustPanic(t, "Gemm bias length", func() { b.Gemm(tensor.GemmArgs{M: 2, N: 2, K: 2, A: f(4), B: f(4), C: f(4), Alpha: 1, Bias: f(3)}) })
	mustPanic(t, "AdamW", func() { b.AdamW(f(3), f(3), f(2), f(3), tensor.AdamWStep{Step: 1}) })
	mustPanic(t, "Patchify", func() { b.Patchify(f(1, 4, 4), f(1, 1, 4, 5), 2) })
}
