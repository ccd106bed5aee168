package cudatest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// Parity runs every ParityCase on b and on a 1-thread CPU backend. Each
// output must be within the case's relative L2 tolerance of the CPU's; a
// bitwise case must equal the CPU's bit for bit when exact (the emulator),
// or within relative L2 1e-7 otherwise (a GPU, where libdevice and the
// hardware's FMA contraction may move the last bit). A second run on b must
// give the same bits (determinism).
func Parity(t *testing.T, b tensor.Backend, exact bool) {
	ref := cpu.New(1)
	defer ref.Close()
	for _, c := range ParityCases() {
		t.Run(c.Name, func(t *testing.T) {
			seed := uint64(len(c.Name))*7919 + 1
			runOn := func(be tensor.Backend) [][]float64 { return c.Run(be, rand.New(rand.NewPCG(seed, 3))) }
			want, got, again := runOn(ref), runOn(b), runOn(b)
			for k := range got {
				if i := FirstDiff(got[k], again[k]); i >= 0 {
					t.Errorf("output %d: element %d is %v, but %v in a second run", k, i, got[k][i], again[k][i])
				}
			}
			for k := range want {
				tol := c.Tol
				if c.Bitwise {
					if exact {
						if i := FirstDiff(got[k], want[k]); i >= 0 {
							t.Errorf("output %d: element %d is %v, CPU %v (want bitwise equal)", k, i, got[k][i], want[k][i])
						}
						continue
					}
					tol = 1e-7
				}
				if e := RelL2F64(got[k], want[k]); !(e <= tol) {
					t.Errorf("output %d: relative L2 %.3g from the CPU's > %.3g", k, e, tol)
				}
			}
		})
	}
}

// A ParityCase runs kernels on a backend from inputs drawn from r and
// returns their outputs. It runs on the CPU backend and on the emulated
// device in both thread orders, twice each: the device results must not
// depend on the thread order or the run, and must match the CPU's within
// tol (relative L2 per output), or bit for bit when bitwise.
type ParityCase struct {
	Name    string
	Bitwise bool
	Tol     float64
	Run     func(b tensor.Backend, r *rand.Rand) [][]float64
}

// FirstDiff is the first index where a and b differ (NaNs equal), -1 if none.
func FirstDiff(a, b []float64) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return i
		}
	}
	return -1
}

// RelL2F64 is RelL2 on float64 slices.
func RelL2F64(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func randn(r *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * scale)
	}
	return s
}

func up(b tensor.Backend, r *rand.Rand, scale float64, shape ...int) *tensor.Tensor {
	t := b.New(tensor.Float32, shape...)
	b.Upload(t, randn(r, t.Numel(), scale))
	return t
}

func down(b tensor.Backend, ts ...*tensor.Tensor) [][]float64 {
	var out [][]float64
	for _, t := range ts {
		v := make([]float32, t.Numel())
		b.Download(v, t)
		d := make([]float64, len(v))
		for i, x := range v {
			d[i] = float64(x)
		}
		out = append(out, d)
	}
	return out
}

// ParityCases cover every kernel of the backend on odd shapes.
func ParityCases() []ParityCase {
	cases := []ParityCase{
		{"Gemm", false, 1e-5, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			var outs []*tensor.Tensor
			for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				const m, n, k, batch, pad = 67, 45, 130, 3, 5
				rowsA, colsA, rowsB, colsB := m, k, k, n
				if tr[0] {
					rowsA, colsA = k, m
				}
				if tr[1] {
					rowsB, colsB = n, k
				}
				lda, ldb, ldc := colsA+pad, colsB+pad, n+pad
				sa, sb, sc := rowsA*lda+pad, rowsB*ldb, m*ldc+2*pad
				c := up(b, r, 1, batch*sc)
				b.Gemm(tensor.GemmArgs{TransA: tr[0], TransB: tr[1], M: m, N: n, K: k, Alpha: 0.75, Beta: 0.5,
					A: up(b, r, 1, batch*sa), B: up(b, r, 1, batch*sb), C: c, Lda: lda, Ldb: ldb, Ldc: ldc,
					StrideA: sa, StrideB: sb, StrideC: sc, Batch: batch, Bias: up(b, r, 1, n)})
				outs = append(outs, c)
			}
			// A Linear layer's forward, and K == 0 with a NaN-filled C.
			y := b.New(tensor.Float32, 300, 96)
			b.Fill(y, float32(math.NaN()))
			b.Gemm(tensor.GemmArgs{TransB: true, M: 300, N: 96, K: 64, Alpha: 1, A: up(b, r, 1, 300, 64), B: up(b, r, 0.1, 96, 64), C: y, Bias: up(b, r, 1, 96)})
			z := b.New(tensor.Float32, 7, 5)
			b.Fill(z, float32(math.NaN()))
			b.Gemm(tensor.GemmArgs{M: 7, N: 5, K: 0, Alpha: 1, A: b.New(tensor.Float32, 0), B: b.New(tensor.Float32, 0), C: z, Bias: up(b, r, 1, 5)})
			return down(b, append(outs, y, z)...)
		}},
		{"Elementwise", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			const n = 300007
			x, y := up(b, r, 1, n), up(b, r, 2, n)
			f := b.New(tensor.Float32, n)
			b.Fill(f, -1.25)
			c := b.New(tensor.Float32, n)
			b.Copy(c, x)
			b.Scale(c, 0.3)
			b.Axpy(c, -0.7, y)
			d := b.New(tensor.Float32, n)
			b.Add(d, c, y)
			b.Add(d, d, x) // aliased
			b.EMA(d, x, 0.996)
			e := up(b, r, 1, 37, 1001)
			b.AddRowVector(e, up(b, r, 1, 1001))
			b.AddRowVector(e.Reshape(37*7, 143), up(b, r, 1, 143))
			return down(b, f, c, d, e)
		}},
		{"Int32FillCopy", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			src := up(b, r, 1, 5, 9)
			idx := b.New(tensor.Int32, 8)
			b.Fill(idx, 3)
			idx2 := b.New(tensor.Int32, 12)
			b.UploadInt32(idx2, []int32{4, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4})
			b.Copy(idx.View(2, 4), idx2.View(5, 4))
			g := b.New(tensor.Float32, 8, 9)
			b.Gather(g, src, idx)
			return down(b, g)
		}},
		{"AdamW", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			const n = 100003
			p, m, v := up(b, r, 0.5, n), b.New(tensor.Float32, n), b.New(tensor.Float32, n)
			for step := 1; step <= 4; step++ {
				h := tensor.AdamWStep{LR: 1e-3 * float32(step), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Step: step}
				b.AdamW(p, up(b, r, 0.1, n), m, v, h)
			}
			return down(b, p, m, v)
		}},
		{"Patchify", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			dst := b.New(tensor.Float32, 3, 8*6, 3*4*4)
			b.Patchify(dst, up(b, r, 1, 3, 3, 32, 24), 4)
			return down(b, dst)
		}},
		{"GatherScatterAdd", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			var outs []*tensor.Tensor
			for _, c := range []struct{ rows, m, cols int }{{1, 1, 1}, {50, 400, 37}, {300, 200, 300}, {7000, 70, 3}} {
				ids := make([]int32, c.m)
				for i := range ids {
					ids[i] = int32(r.IntN(c.rows))
				}
				if c.m > 3 {
					ids[2], ids[3] = ids[0], ids[0]
				}
				idx := b.New(tensor.Int32, c.m)
				b.UploadInt32(idx, ids)
				g := b.New(tensor.Float32, c.m, c.cols)
				src := up(b, r, 1, c.rows, c.cols)
				b.Gather(g, src, idx)
				b.ScatterAdd(src, up(b, r, 1, c.m, c.cols), idx)
				outs = append(outs, g, src)
			}
			return down(b, outs...)
		}},
		{"SumRows", false, 1e-6, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			var outs []*tensor.Tensor
			for _, s := range [][2]int{{1, 1}, {3, 1000}, {5000, 37}, {70000, 3}} {
				dst := up(b, r, 1, s[1])
				b.SumRows(dst, up(b, r, 1, s[0], s[1]))
				outs = append(outs, dst)
			}
			return down(b, outs...)
		}},
		{"LayerNorm", false, 1e-5, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			var outs []*tensor.Tensor
			for _, c := range []struct {
				rows, d     int
				w, bias, dw bool
			}{{300, 768, true, true, true}, {513, 37, false, false, false}, {64, 1280, true, false, false}, {2100, 64, true, true, true}, {1, 1, true, true, true}} {
				x := up(b, r, 1.5, c.rows, c.d)
				var w, bias, dw, db *tensor.Tensor
				if c.w {
					w = up(b, r, 1, c.d)
				}
				if c.bias {
					bias = up(b, r, 1, c.d)
				}
				out, mean, rstd := b.New(tensor.Float32, c.rows, c.d), b.New(tensor.Float32, c.rows), b.New(tensor.Float32, c.rows)
				b.LayerNormForward(out, mean, rstd, x, w, bias, 1e-6)
				dx := up(b, r, 1, c.rows, c.d)
				if c.dw {
					dw, db = up(b, r, 1, c.d), up(b, r, 1, c.d)
				} else if c.w {
					db = up(b, r, 1, c.d) // dw nil, db given
				}
				b.LayerNormBackward(dx, dw, db, up(b, r, 1, c.rows, c.d), x, mean, rstd, w)
				outs = append(outs, out, mean, rstd, dx)
				if dw != nil {
					outs = append(outs, dw)
				}
				if db != nil {
					outs = append(outs, db)
				}
			}
			return down(b, outs...)
		}},
		{"GELU", false, 1e-6, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			x := up(b, r, 3, 100003)
			out, dx := b.New(tensor.Float32, 100003), up(b, r, 1, 100003)
			b.GELUForward(out, x)
			b.GELUBackward(dx, dx, x)
			return down(b, out, dx)
		}},
		// More rows than a grid's y dimension (65535): the kernels stride.
		{"LargeGrids", true, 0, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			const rows = 70001
			x := up(b, r, 1, rows, 3)
			b.AddRowVector(x, up(b, r, 1, 3))
			ids := make([]int32, rows)
			for i := range ids {
				ids[i] = int32(rows - 1 - i)
			}
			idx := b.New(tensor.Int32, rows)
			b.UploadInt32(idx, ids)
			g := b.New(tensor.Float32, rows, 3)
			b.Gather(g, x, idx)
			b.ScatterAdd(x, g, idx)
			return down(b, x, g)
		}},
		{"LargeGridsGemm", false, 1e-6, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			c := up(b, r, 1, 70001, 2)
			b.Gemm(tensor.GemmArgs{M: 70001, N: 2, K: 1, Alpha: 1, Beta: 1, A: up(b, r, 1, 70001, 1), B: up(b, r, 1, 1, 2), C: c, Bias: up(b, r, 1, 2)})
			return down(b, c)
		}},
		{"Reductions", false, 1e-12, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			var res []float64
			for _, n := range []int{1, 4095, 4097, 1000003} {
				x := up(b, r, 1, n)
				res = append(res, b.Sum(x), b.SumSquares(x))
			}
			return [][]float64{res}
		}},
		{"Losses", false, 1e-6, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			const n = 50021
			p, q, g := up(b, r, 1.5, n), up(b, r, 1, n), b.New(tensor.Float32, n)
			l1 := b.SmoothL1Loss(g, p, q, 0.7, 0.5/n)
			l1n := b.SmoothL1Loss(nil, p, q, 0.7, 0.5/n)
			g2 := b.New(tensor.Float32, n)
			mse := b.MSELoss(g2, p, q, 2)
			return append([][]float64{{l1, l1n, mse}}, down(b, g, g2)...)
		}},
	}
	for _, c := range []struct{ bs, n, h, dh int }{
		{1, 1, 1, 1}, {2, 50, 2, 8}, {1, 130, 2, 16}, {2, 70, 3, 24}, {1, 100, 2, 32},
		{1, 130, 1, 48}, {2, 65, 2, 64}, {1, 97, 1, 80}, {1, 70, 2, 128},
	} {
		cases = append(cases, ParityCase{fmt.Sprintf("Attention/%+v", c), false, 1e-5, func(b tensor.Backend, r *rand.Rand) [][]float64 {
			hd := c.h * c.dh
			scale := float32(1 / math.Sqrt(float64(c.dh)))
			qkv := up(b, r, 1.5, c.bs, c.n, 3*hd)
			out, lse := b.New(tensor.Float32, c.bs, c.n, hd), b.New(tensor.Float32, c.bs, c.h, c.n)
			b.AttentionForward(out, lse, qkv, c.h, scale)
			dqkv := b.New(tensor.Float32, c.bs, c.n, 3*hd)
			b.Fill(dqkv, float32(math.NaN()))
			b.AttentionBackward(dqkv, up(b, r, 1, c.bs, c.n, hd), qkv, out, lse, c.h, scale)
			return down(b, out, lse, dqkv)
		}})
	}
	return cases
}
