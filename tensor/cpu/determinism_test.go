package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// TestThreadCountInvariance checks that the reductions, ScatterAdd, the
// LayerNorm parameter gradients and attention give bitwise identical results
// on 1 and 3 threads.
func TestThreadCountInvariance(t *testing.T) {
	run := func(threads int) [][]float32 {
		b := New(threads)
		defer b.Close()
		r := rand.New(rand.NewPCG(1, 2))
		randT := func(shape ...int) *tensor.Tensor {
			x := b.New(tensor.Float32, shape...)
			for i := range x.F32() {
				x.F32()[i] = float32(r.NormFloat64())
			}
			return x
		}
		var res [][]float32
		x := randT(100003)
		res = append(res, []float32{float32(b.Sum(x)), float32(b.SumSquares(x))})

		rows, m, cols := 97, 3000, 67
		idx := b.New(tensor.Int32, m)
		for i := range idx.I32() {
			idx.I32()[i] = int32(r.IntN(rows))
		}
		dst := randT(rows, cols)
		b.ScatterAdd(dst, randT(m, cols), idx)
		res = append(res, dst.F32())

		sr := randT(cols)
		b.SumRows(sr, randT(5000, cols))
		res = append(res, sr.F32())

		lx, w, bias := randT(3001, 192), randT(192), randT(192)
		out, mean, rstd := randT(3001, 192), randT(3001), randT(3001)
		b.LayerNormForward(out, mean, rstd, lx, w, bias, 1e-6)
		dx, dw, db := randT(3001, 192), randT(192), randT(192)
		b.LayerNormBackward(dx, dw, db, randT(3001, 192), lx, mean, rstd, w)
		res = append(res, out.F32(), dx.F32(), dw.F32(), db.F32())

		bs, n, h, dh := 3, 50, 3, 16
		qkv := randT(bs, n, 3*h*dh)
		ao, lse := randT(bs, n, h*dh), randT(bs, h, n)
		b.AttentionForward(ao, lse, qkv, h, 0.25)
		dqkv := randT(bs, n, 3*h*dh)
		b.AttentionBackward(dqkv, randT(bs, n, h*dh), qkv, ao, lse, h, 0.25)
		res = append(res, ao.F32(), lse.F32(), dqkv.F32())
		return res
	}
	one, three := run(1), run(3)
	for k := range one {
		for i := range one[k] {
			if one[k][i] != three[k][i] {
				t.Fatalf("result %d element %d: %v on 1 thread, %v on 3", k, i, one[k][i], three[k][i])
			}
		}
	}
}
