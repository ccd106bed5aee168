package sgemm

import (
	"fmt"
	"testing"
)

// TestPackA compares packA's fast paths (the 12-row assembly transpose, the
// 12-wide transposed copy) with the definition dst[q*kc*mr + p*mr + r] =
// op(A)[i0+q*mr+r, p0+p], zero past mc, over kc values that exercise the
// four-column steps and their tails.
func TestPackA(t *testing.T) {
	for _, transA := range []bool{false, true} {
		for _, mr := range []int{12, 6} {
			for _, mc := range []int{1, 11, 12, 25} {
				for kc := 0; kc <= 11; kc++ {
					name := fmt.Sprintf("transA=%v mr=%d mc=%d kc=%d", transA, mr, mc, kc)
					const i0, p0, extra = 3, 2, 5
					rows, cols := i0+mc+extra, p0+kc+extra // op(A) is rows x cols
					lda := cols + 1
					if transA {
						lda = rows + 2
					}
					var a []float32
					at := func(i, p int) int { return i*lda + p }
					if transA {
						a = make([]float32, cols*lda)
						at = func(i, p int) int { return p*lda + i }
					} else {
						a = make([]float32, rows*lda)
					}
					for i := 0; i < rows; i++ {
						for p := 0; p < cols; p++ {
							a[at(i, p)] = float32(1000*i + p + 1)
						}
					}
					panels := ceilDiv(mc, mr)
					dst := make([]float32, panels*kc*mr)
					for i := range dst {
						dst[i] = -1 // packA must overwrite every element
					}
					packA(transA, a, lda, i0, mc, p0, kc, mr, dst)
					for q := 0; q < panels; q++ {
						for p := 0; p < kc; p++ {
							for r := 0; r < mr; r++ {
								var want float32
								if i := q*mr + r; i < mc {
									want = a[at(i0+i, p0+p)]
								}
								if got := dst[q*kc*mr+p*mr+r]; got != want {
									t.Fatalf("%s: panel %d column %d row %d = %v, want %v", name, q, p, r, got, want)
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestPackB compares packB (the row copies, the 8 x 8 assembly transpose of
// a transposed B and its Go tail) with the definition dst[q*kc*nr + p*nr + c]
// = op(B)[p0+p, j0+q*nr+c], zero past nc, over kc values around the 8-step
// blocks and nc values with partial 8-column groups and panels.
func TestPackB(t *testing.T) {
	for _, transB := range []bool{false, true} {
		for _, nr := range []int{32, 16, 4} {
			for _, nc := range []int{1, 7, 8, 13, 16, 33, 40} {
				for _, kc := range []int{0, 1, 7, 8, 9, 16, 23, 37} {
					const j0, p0, extra = 3, 2, 5
					rows, cols := p0+kc+extra, j0+nc+extra // op(B) is rows x cols
					ldb := cols + 1
					at := func(p, j int) int { return p*ldb + j }
					n := rows * ldb
					if transB {
						ldb = rows + 2
						at = func(p, j int) int { return j*ldb + p }
						n = cols * ldb
					}
					b := make([]float32, n)
					for p := 0; p < rows; p++ {
						for j := 0; j < cols; j++ {
							b[at(p, j)] = float32(1000*p + j + 1)
						}
					}
					panels := ceilDiv(nc, nr)
					dst := make([]float32, panels*kc*nr)
					for i := range dst {
						dst[i] = -1 // packB must overwrite every element
					}
					packB(transB, b, ldb, p0, kc, j0, nc, nr, dst)
					for q := 0; q < panels; q++ {
						for p := 0; p < kc; p++ {
							for c := 0; c < nr; c++ {
								var want float32
								if j := q*nr + c; j < nc {
									want = b[at(p0+p, j0+j)]
								}
								if got := dst[q*kc*nr+p*nr+c]; got != want {
									t.Fatalf("transB=%v nr=%d nc=%d kc=%d: panel %d step %d column %d = %v, want %v", transB, nr, nc, kc, q, p, c, got, want)
								}
							}
						}
					}
				}
			}
		}
	}
}
