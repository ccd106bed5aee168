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
