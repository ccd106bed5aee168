//go:build !amd64 || purego

package sgemm

// packAPanel12 packs one full 12-row panel of non-transposed A: rows i.. of A,
// columns p0..p0+kc, into panel as kc groups of 12.
func packAPanel12(a []float32, lda, i, p0, kc int, panel []float32) {
	r0 := a[(i+0)*lda+p0:][:kc]
	r1 := a[(i+1)*lda+p0:][:kc]
	r2 := a[(i+2)*lda+p0:][:kc]
	r3 := a[(i+3)*lda+p0:][:kc]
	r4 := a[(i+4)*lda+p0:][:kc]
	r5 := a[(i+5)*lda+p0:][:kc]
	r6 := a[(i+6)*lda+p0:][:kc]
	r7 := a[(i+7)*lda+p0:][:kc]
	r8 := a[(i+8)*lda+p0:][:kc]
	r9 := a[(i+9)*lda+p0:][:kc]
	r10 := a[(i+10)*lda+p0:][:kc]
	r11 := a[(i+11)*lda+p0:][:kc]
	panel = panel[:kc*12]
	for p := 0; p < kc; p++ {
		d := panel[p*12 : p*12+12 : p*12+12]
		d[0] = r0[p]
		d[1] = r1[p]
		d[2] = r2[p]
		d[3] = r3[p]
		d[4] = r4[p]
		d[5] = r5[p]
		d[6] = r6[p]
		d[7] = r7[p]
		d[8] = r8[p]
		d[9] = r9[p]
		d[10] = r10[p]
		d[11] = r11[p]
	}
}

// packATPanel12 packs one full 12-row panel of transposed A (stored [k, m]):
// columns i..i+11 of rows p0..p0+kc, each a contiguous run of 12 floats.
func packATPanel12(a []float32, lda, i, p0, kc int, panel []float32) {
	for p := 0; p < kc; p++ {
		copy(panel[p*12:p*12+12], a[(p0+p)*lda+i:(p0+p)*lda+i+12])
	}
}

// packBRows copies kc rows of nr floats, ldb apart from b[off:], into panel
// with the assembly loop where there is one; here there is none.
func packBRows(b []float32, off, ldb, kc, nr int, panel []float32) bool { return false }

func packBTRows8(b []float32, ldb, j, p0, kc, nr, c0 int, panel []float32) int { return 0 }

// packAPanel6 packs one full 6-row panel of non-transposed A: rows i.. of A,
// columns p0..p0+kc, into panel as kc groups of 6.
func packAPanel6(a []float32, lda, i, p0, kc int, panel []float32) {
	r0 := a[(i+0)*lda+p0:][:kc]
	r1 := a[(i+1)*lda+p0:][:kc]
	r2 := a[(i+2)*lda+p0:][:kc]
	r3 := a[(i+3)*lda+p0:][:kc]
	r4 := a[(i+4)*lda+p0:][:kc]
	r5 := a[(i+5)*lda+p0:][:kc]
	panel = panel[:kc*6]
	for p := 0; p < kc; p++ {
		d := panel[p*6 : p*6+6 : p*6+6]
		d[0] = r0[p]
		d[1] = r1[p]
		d[2] = r2[p]
		d[3] = r3[p]
		d[4] = r4[p]
		d[5] = r5[p]
	}
}

// packATPanel6 packs one full 6-row panel of transposed A (stored [k, m]):
// columns i..i+5 of rows p0..p0+kc, each a contiguous run of 6 floats.
func packATPanel6(a []float32, lda, i, p0, kc int, panel []float32) {
	for p := 0; p < kc; p++ {
		copy(panel[p*6:p*6+6], a[(p0+p)*lda+i:(p0+p)*lda+i+6])
	}
}
