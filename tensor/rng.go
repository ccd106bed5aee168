package tensor

import "math"

// RNG is a counter-based random stream (Philox4x32-10, the generator PyTorch
// uses on CUDA). Element i of a fill draws from counter Offset+i only, so the
// values are the same on every backend and for every thread count, and a
// checkpoint restores the stream exactly from (Seed, Offset).
type RNG struct {
	Seed   uint64
	Offset uint64
}

// NewRNG starts a stream at counter 0.
func NewRNG(seed uint64) *RNG { return &RNG{Seed: seed} }

// Advance moves the stream past n draws; backends call it after a fill.
func (r *RNG) Advance(n int) { r.Offset += uint64(n) }

// Bits returns the four 32-bit words of Philox4x32-10 at counter c.
func (r *RNG) Bits(c uint64) [4]uint32 {
	return Philox4x32(uint32(c), uint32(c>>32), 0, 0, uint32(r.Seed), uint32(r.Seed>>32))
}

// UniformAt is the i-th uniform draw in [0, 1) after Offset, with 24 random bits.
func (r *RNG) UniformAt(i int) float32 {
	w := r.Bits(r.Offset + uint64(i))
	return float32(w[0]>>8) * (1.0 / (1 << 24))
}

// NormalAt is the i-th standard normal draw after Offset (Box-Muller on two
// words of the same counter).
func (r *RNG) NormalAt(i int) float64 {
	w := r.Bits(r.Offset + uint64(i))
	u1 := (float64(w[0]>>8) + 1) * (1.0 / (1 << 24)) // (0, 1]
	u2 := float64(w[1]>>8) * (1.0 / (1 << 24))       // [0, 1)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// TruncNormalAt is the i-th draw of N(mean, std^2) truncated to [lo, hi],
// computed as torch.nn.init.trunc_normal_ does: a uniform draw between the
// bounds' CDF values mapped back through the inverse error function.
func (r *RNG) TruncNormalAt(i int, mean, std, lo, hi float64) float64 {
	cdf := func(x float64) float64 { return (1 + math.Erf(x/math.Sqrt2)) / 2 }
	l, u := cdf((lo-mean)/std), cdf((hi-mean)/std)
	x := float64(r.UniformAt(i))*(2*u-2*l) + (2*l - 1)
	// Keep erfinv finite at the ends of (-1, 1).
	x = math.Max(-1+1e-7, math.Min(1-1e-7, x))
	v := math.Erfinv(x)*std*math.Sqrt2 + mean
	return math.Max(lo, math.Min(hi, v))
}

// Philox4x32 is the Philox4x32-10 block function (Salmon et al., SC'11).
func Philox4x32(c0, c1, c2, c3, k0, k1 uint32) [4]uint32 {
	const (
		m0 = 0xD2511F53
		m1 = 0xCD9E8D57
		w0 = 0x9E3779B9
		w1 = 0xBB67AE85
	)
	for round := 0; round < 10; round++ {
		p0 := uint64(m0) * uint64(c0)
		p1 := uint64(m1) * uint64(c2)
		c0, c1, c2, c3 = uint32(p1>>32)^c1^k0, uint32(p1), uint32(p0>>32)^c3^k1, uint32(p0)
		k0 += w0
		k1 += w1
	}
	return [4]uint32{c0, c1, c2, c3}
}
