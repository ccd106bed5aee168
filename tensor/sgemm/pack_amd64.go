//go:build amd64 && !purego

package sgemm

// Packing loops in assembly for the AVX2/AVX-512 panel shapes. The
// assembly kernels, and so these, only run on CPUs with AVX.

//go:noescape
func packA12Asm(kc int, src *float32, lda int, dst *float32)

//go:noescape
func packAT12Asm(kc int, src *float32, lda int, dst *float32)

//go:noescape
func packA6Asm(kc int, src *float32, lda int, dst *float32)

//go:noescape
func packAT6Asm(kc int, src *float32, lda int, dst *float32)

//go:noescape
func packB32Asm(kc int, src *float32, ldb int, dst *float32)

//go:noescape
func packB16Asm(kc int, src *float32, ldb int, dst *float32)

// packAPanel12 packs one full 12-row panel of non-transposed A: rows i.. of
// A, columns p0..p0+kc, into panel as kc groups of 12.
func packAPanel12(a []float32, lda, i, p0, kc int, panel []float32) {
	if kc == 0 {
		return
	}
	_ = a[(i+11)*lda+p0+kc-1] // the bounds the assembly relies on
	_ = panel[kc*12-1]
	packA12Asm(kc, &a[i*lda+p0], lda, &panel[0])
}

// packAPanel6 packs one full 6-row panel of non-transposed A (the AVX2
// kernel's): rows i.. of A, columns p0..p0+kc, into panel as kc groups of 6.
func packAPanel6(a []float32, lda, i, p0, kc int, panel []float32) {
	if kc == 0 {
		return
	}
	_ = a[(i+5)*lda+p0+kc-1] // the bounds the assembly relies on
	_ = panel[kc*6-1]
	packA6Asm(kc, &a[i*lda+p0], lda, &panel[0])
}

// packATPanel6 packs one full 6-row panel of transposed A (stored [k, m]):
// columns i..i+5 of rows p0..p0+kc, each a contiguous run of 6 floats.
func packATPanel6(a []float32, lda, i, p0, kc int, panel []float32) {
	if kc == 0 {
		return
	}
	_ = a[(p0+kc-1)*lda+i+5] // the bounds the assembly relies on
	_ = panel[kc*6-1]
	packAT6Asm(kc, &a[p0*lda+i], lda, &panel[0])
}

// packATPanel12 packs one full 12-row panel of transposed A (stored [k, m]):
// columns i..i+11 of rows p0..p0+kc, each a contiguous run of 12 floats.
func packATPanel12(a []float32, lda, i, p0, kc int, panel []float32) {
	if kc == 0 {
		return
	}
	_ = a[(p0+kc-1)*lda+i+11] // the bounds the assembly relies on
	_ = panel[kc*12-1]
	packAT12Asm(kc, &a[p0*lda+i], lda, &panel[0])
}

// packBRows copies kc rows of nr (32 or 16) floats, ldb apart from b[off:],
// into panel; it reports false for other widths.
func packBRows(b []float32, off, ldb, kc, nr int, panel []float32) bool {
	if nr != 32 && nr != 16 {
		return false
	}
	_ = b[off+(kc-1)*ldb+nr-1] // the bounds the assembly relies on
	_ = panel[kc*nr-1]
	if nr == 32 {
		packB32Asm(kc, &b[off], ldb, &panel[0])
	} else {
		packB16Asm(kc, &b[off], ldb, &panel[0])
	}
	return true
}

//go:noescape
func packBT8Asm(kc8 int, src *float32, ldb int, dst *float32, nr int)

// packBTRows8 packs the first kc&^7 steps of packBTCols8 (8 rows j.. of a
// transposed B, columns p0.., into panel columns c0..c0+8 of an nr-wide
// panel) with an 8 x 8 AVX transpose per 8 steps, and returns how many
// steps it packed. Only the AVX kernels' panels (nr 16 or 32) take it.
func packBTRows8(b []float32, ldb, j, p0, kc, nr, c0 int, panel []float32) int {
	kc8 := kc / 8
	if kc8 == 0 || nr != 16 && nr != 32 {
		return 0
	}
	_ = b[(j+7)*ldb+p0+kc8*8-1] // the bounds the assembly relies on
	_ = panel[(kc8*8-1)*nr+c0+7]
	packBT8Asm(kc8, &b[j*ldb+p0], ldb, &panel[c0], nr)
	return kc8 * 8
}
