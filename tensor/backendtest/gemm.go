package backendtest

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
)

// testGemm covers every transpose, beta in {0, 0.5}, batch in {1, 3},
// packed or padded leading dimensions, with and without a bias row. C
// elements outside the matrices must be left alone; with beta == 0 the old C
// (NaN here) must not propagate. Tolerance: relative L2 1e-5 per case
// (float32 accumulation over K <= 29).
func testGemm(t *testing.T, b tensor.Backend) {
	r := newRand(1)
	type mnk struct{ m, n, k int }
	sizes := []mnk{{1, 1, 1}, {7, 13, 5}, {17, 3, 29}, {2, 31, 1}}
	for _, sz := range sizes {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for _, beta := range []float32{0, 0.5} {
					for _, batch := range []int{1, 3} {
						for _, pad := range []int{0, 3} {
							for _, bias := range []bool{false, true} {
								gemmCase(t, b, r, sz.m, sz.n, sz.k, ta, tb, 1.25, beta, batch, pad, bias)
							}
						}
					}
				}
			}
		}
	}
}

func gemmCase(t *testing.T, b tensor.Backend, r interface{ NormFloat64() float64 }, m, n, k int, ta, tb bool, alpha, beta float32, batch, pad int, withBias bool) {
	t.Helper()
	rowsA, colsA := m, k
	if ta {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if tb {
		rowsB, colsB = n, k
	}
	lda, ldb, ldc := colsA+pad, colsB+pad, n+pad
	sA, sB, sC := rowsA*lda+pad, rowsB*ldb+2*pad, m*ldc+pad
	fill := func(size int) []float32 {
		s := make([]float32, size)
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		return s
	}
	av := fill((batch-1)*sA + (rowsA-1)*lda + colsA)
	bv := fill((batch-1)*sB + (rowsB-1)*ldb + colsB)
	cv := fill((batch-1)*sC + (m-1)*ldc + n)
	var biasv []float32
	if withBias {
		biasv = fill(n)
	}
	inC := make([]bool, len(cv))
	for bt := 0; bt < batch; bt++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				p := bt*sC + i*ldc + j
				inC[p] = true
				if beta == 0 {
					cv[p] = float32(math.NaN())
				}
			}
		}
	}
	want := to64(cv)
	for bt := 0; bt < batch; bt++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					var x, y float64
					if ta {
						x = float64(av[bt*sA+p*lda+i])
					} else {
						x = float64(av[bt*sA+i*lda+p])
					}
					if tb {
						y = float64(bv[bt*sB+j*ldb+p])
					} else {
						y = float64(bv[bt*sB+p*ldb+j])
					}
					s += x * y
				}
				c := bt*sC + i*ldc + j
				w := float64(alpha) * s
				if beta != 0 {
					w += float64(beta) * float64(cv[c])
				}
				if withBias {
					w += float64(biasv[j])
				}
				want[c] = w
			}
		}
	}
	A := upload(b, av, len(av))
	B := upload(b, bv, len(bv))
	C := upload(b, cv, len(cv))
	g := tensor.GemmArgs{TransA: ta, TransB: tb, M: m, N: n, K: k, Alpha: alpha, Beta: beta, A: A, B: B, C: C, Batch: batch}
	if pad != 0 || batch > 1 {
		g.Lda, g.Ldb, g.Ldc = lda, ldb, ldc
		g.StrideA, g.StrideB, g.StrideC = sA, sB, sC
	}
	if withBias {
		g.Bias = upload(b, biasv, n)
	}
	b.Gemm(g)
	got := download(b, C)
	what := name("gemm m=%d n=%d k=%d transA=%v transB=%v beta=%v batch=%d pad=%d bias=%v", m, n, k, ta, tb, beta, batch, pad, withBias)
	var gotIn []float32
	var wantIn []float64
	for i := range got {
		if inC[i] {
			gotIn = append(gotIn, got[i])
			wantIn = append(wantIn, want[i])
		} else if got[i] != cv[i] {
			t.Errorf("%s: C element %d outside the matrices changed from %v to %v", what, i, cv[i], got[i])
			return
		}
	}
	checkClose(t, what, gotIn, wantIn, 1e-5)
}
