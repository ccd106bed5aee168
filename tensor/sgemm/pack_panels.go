package sgemm

// Unrolled packing loops for the common panel shapes; see packA and packB.

// packAPanel4 packs one full 4-row panel of non-transposed A: rows i.. of A,
// columns p0..p0+kc, into panel as kc groups of 4.
func packAPanel4(a []float32, lda, i, p0, kc int, panel []float32) {
	r0 := a[(i+0)*lda+p0:][:kc]
	r1 := a[(i+1)*lda+p0:][:kc]
	r2 := a[(i+2)*lda+p0:][:kc]
	r3 := a[(i+3)*lda+p0:][:kc]
	panel = panel[:kc*4]
	for p := 0; p < kc; p++ {
		d := panel[p*4 : p*4+4 : p*4+4]
		d[0] = r0[p]
		d[1] = r1[p]
		d[2] = r2[p]
		d[3] = r3[p]
	}
}

// packBTCols8 packs 8 columns of op(B) (rows j.. of a transposed B, columns
// p0..p0+kc) into panel columns c0..c0+8 of an nr-wide panel.
func packBTCols8(b []float32, ldb, j, p0, kc, nr, c0 int, panel []float32) {
	done := packBTRows8(b, ldb, j, p0, kc, nr, c0, panel)
	p0, kc, panel = p0+done, kc-done, panel[done*nr:]
	r0 := b[(j+0)*ldb+p0:][:kc]
	r1 := b[(j+1)*ldb+p0:][:kc]
	r2 := b[(j+2)*ldb+p0:][:kc]
	r3 := b[(j+3)*ldb+p0:][:kc]
	r4 := b[(j+4)*ldb+p0:][:kc]
	r5 := b[(j+5)*ldb+p0:][:kc]
	r6 := b[(j+6)*ldb+p0:][:kc]
	r7 := b[(j+7)*ldb+p0:][:kc]
	for p := 0; p < kc; p++ {
		d := panel[p*nr+c0 : p*nr+c0+8 : p*nr+c0+8]
		d[0] = r0[p]
		d[1] = r1[p]
		d[2] = r2[p]
		d[3] = r3[p]
		d[4] = r4[p]
		d[5] = r5[p]
		d[6] = r6[p]
		d[7] = r7[p]
	}
}
