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
