package cpu

import "math"

// Fast float32 exp and erf for the softmax and GELU inner loops, where
// math.Exp / math.Erf (float64, with branches for special cases) would
// dominate the run time. Both are branch-light polynomial schemes as used by
// SIMD math libraries (Cephes expf; Eigen's rational erf) and are tested
// against the float64 functions over dense grids.

// expf returns e^x with a relative error of a few ulp for x in [-87.3, 88.7];
// smaller x give 0 and larger x +Inf.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if x < -87.33654 {
		return 0
	}
	// n = round(x / ln2); r = x - n*ln2 in two steps for accuracy.
	fn := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - fn*c1
	r -= fn * c2
	z := r * r
	y := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	y = y*z + r + 1
	// 2^n by building the exponent bits; n is in [-126, 128].
	n := int32(fn)
	if n > 127 {
		return y * 2 * math.Float32frombits(uint32(n-1+127)<<23)
	}
	return y * math.Float32frombits(uint32(n+127)<<23)
}

// erff returns erf(x) with an absolute error below 1e-7: Eigen's rational
// approximation on [-4, 4] (beyond that erf is +-1 in float32), evaluated in
// float64, which costs the same as float32 in scalar code and removes the
// float32 rounding of the polynomials (3e-7 near |x| = 3).
func erff(xf float32) float32 {
	x := float64(xf)
	if x > 4 {
		x = 4
	} else if x < -4 {
		x = -4
	}
	x2 := x * x
	p := x2*-2.72614225801306e-10 + 2.77068142495902e-08
	p = p*x2 + -2.10102402082508e-06
	p = p*x2 + -5.69250639462346e-05
	p = p*x2 + -7.34990630326855e-04
	p = p*x2 + -2.95459980854025e-03
	p = p*x2 + -1.60960333262415e-02
	p *= x
	q := x2*-1.45660718464996e-05 + -2.13374055278905e-04
	q = q*x2 + -1.68282697438203e-03
	q = q*x2 + -7.37332916720468e-03
	q = q*x2 + -1.42647390514189e-02
	return float32(p / q)
}
