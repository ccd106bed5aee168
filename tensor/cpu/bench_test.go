package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

func benchRand(b *Backend, shape ...int) *tensor.Tensor {
	x := b.New(tensor.Float32, shape...)
	r := rand.New(rand.NewPCG(3, 4))
	xs := x.F32()
	for i := range xs {
		xs[i] = float32(r.NormFloat64())
	}
	return x
}

// Attention at ViT-Tiny scale: B=64 images of N=196 tokens, H=3 heads of 64.
const abB, abN, abH, abDh = 64, 196, 3, 64

func BenchmarkAttentionForward(b *testing.B) {
	be := New(0)
	defer be.Close()
	qkv := benchRand(be, abB, abN, 3*abH*abDh)
	out, lse := be.New(tensor.Float32, abB, abN, abH*abDh), be.New(tensor.Float32, abB, abH, abN)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.AttentionForward(out, lse, qkv, abH, 0.125)
	}
}

func BenchmarkAttentionBackward(b *testing.B) {
	be := New(0)
	defer be.Close()
	qkv := benchRand(be, abB, abN, 3*abH*abDh)
	out, lse := be.New(tensor.Float32, abB, abN, abH*abDh), be.New(tensor.Float32, abB, abH, abN)
	be.AttentionForward(out, lse, qkv, abH, 0.125)
	dout, dqkv := benchRand(be, abB, abN, abH*abDh), be.New(tensor.Float32, abB, abN, 3*abH*abDh)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.AttentionBackward(dqkv, dout, qkv, out, lse, abH, 0.125)
	}
}

const lnRows, lnD, mlpD = 12544, 192, 768

func BenchmarkLayerNormForward(b *testing.B) {
	be := New(0)
	defer be.Close()
	x, w, bias := benchRand(be, lnRows, lnD), benchRand(be, lnD), benchRand(be, lnD)
	out, mean, rstd := be.New(tensor.Float32, lnRows, lnD), be.New(tensor.Float32, lnRows), be.New(tensor.Float32, lnRows)
	b.SetBytes(int64(lnRows * lnD * 8))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.LayerNormForward(out, mean, rstd, x, w, bias, 1e-6)
	}
}

func BenchmarkLayerNormBackward(b *testing.B) {
	be := New(0)
	defer be.Close()
	x, w, bias := benchRand(be, lnRows, lnD), benchRand(be, lnD), benchRand(be, lnD)
	out, mean, rstd := be.New(tensor.Float32, lnRows, lnD), be.New(tensor.Float32, lnRows), be.New(tensor.Float32, lnRows)
	be.LayerNormForward(out, mean, rstd, x, w, bias, 1e-6)
	dout, dx, dw, db := benchRand(be, lnRows, lnD), be.New(tensor.Float32, lnRows, lnD), be.New(tensor.Float32, lnD), be.New(tensor.Float32, lnD)
	b.SetBytes(int64(lnRows * lnD * 12))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.LayerNormBackward(dx, dw, db, dout, x, mean, rstd, w)
	}
}

func BenchmarkGELUForward(b *testing.B) {
	be := New(0)
	defer be.Close()
	x, out := benchRand(be, lnRows, mlpD), be.New(tensor.Float32, lnRows, mlpD)
	b.SetBytes(int64(lnRows * mlpD * 8))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.GELUForward(out, x)
	}
}

func BenchmarkGELUBackward(b *testing.B) {
	be := New(0)
	defer be.Close()
	x, dout, dx := benchRand(be, lnRows, mlpD), benchRand(be, lnRows, mlpD), be.New(tensor.Float32, lnRows, mlpD)
	b.SetBytes(int64(lnRows * mlpD * 12))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.GELUBackward(dx, dout, x)
	}
}

// BenchmarkSumRows: a Linear layer's bias gradient at ViT-Tiny scale (the
// MLP's hidden width).
func BenchmarkSumRows(b *testing.B) {
	be := New(0)
	defer be.Close()
	x, dst := benchRand(be, lnRows, mlpD), be.New(tensor.Float32, mlpD)
	b.SetBytes(int64(lnRows * mlpD * 4))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.SumRows(dst, x)
	}
}
