package sgemm

import "unsafe"

// genericKernel is the portable fallback: a 4x4 register tile in plain Go.
var genericKernel = microKernel{
	name: Generic, mr: 4, nr: 4,
	kc: 256, mc: 128, nc: 2048,
	run: kernelGeneric4x4,
}

func kernelGeneric4x4(k int, a, b, c *float32, ldc int, alpha, beta float32, bias *float32) {
	as := unsafe.Slice(a, 4*k)
	bs := unsafe.Slice(b, 4*k)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for len(as) >= 4 && len(bs) >= 4 {
		b0, b1, b2, b3 := bs[0], bs[1], bs[2], bs[3]
		a0, a1, a2, a3 := as[0], as[1], as[2], as[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
		as, bs = as[4:], bs[4:]
	}
	var bv [4]float32
	if bias != nil {
		bv = *(*[4]float32)(unsafe.Pointer(bias))
	}
	cs := unsafe.Slice(c, 3*ldc+4)
	storeRow4(cs[0:4:4], c00, c01, c02, c03, alpha, beta, &bv)
	storeRow4(cs[ldc:ldc+4:ldc+4], c10, c11, c12, c13, alpha, beta, &bv)
	storeRow4(cs[2*ldc:2*ldc+4:2*ldc+4], c20, c21, c22, c23, alpha, beta, &bv)
	storeRow4(cs[3*ldc:3*ldc+4:3*ldc+4], c30, c31, c32, c33, alpha, beta, &bv)
}

// storeRow4 writes (alpha*x + bias) + beta*row into row, not reading row when
// beta == 0.
func storeRow4(row []float32, x0, x1, x2, x3, alpha, beta float32, bias *[4]float32) {
	row = row[:4]
	y0, y1, y2, y3 := alpha*x0+bias[0], alpha*x1+bias[1], alpha*x2+bias[2], alpha*x3+bias[3]
	if beta == 0 {
		row[0], row[1], row[2], row[3] = y0, y1, y2, y3
		return
	}
	row[0] = y0 + beta*row[0]
	row[1] = y1 + beta*row[1]
	row[2] = y2 + beta*row[2]
	row[3] = y3 + beta*row[3]
}
