//go:build amd64 && !purego

package sgemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

// x/sys/cpu reports AVX/AVX-512 features only when the OS saves the wider
// register state, so these checks cover OS support too.

//go:noescape
func kernelAVX512(k int, a, b, c *float32, ldc int, alpha, beta float32, bias *float32)

//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32, bias *float32)

//go:noescape
func kernelAVX512Strided(k int, a *float32, rsA, csA int, b, c *float32, ldc int, alpha, beta float32, bias *float32)

//go:noescape
func kernelAVX2Strided(k int, a *float32, rsA, csA int, b, c *float32, ldc int, alpha, beta float32, bias *float32)

// avx512Kernel is a 12x32 tile: 24 zmm accumulators (12 rows x 2 vectors),
// two B vectors and rotating A broadcasts. The 32-wide B panel, kc deep, is
// 32 KiB at kc = 256 and stays in Zen 5's 48 KiB L1d; the 480 x 256 A block
// (480 KiB) stays in its 1 MiB L2.
var avx512Kernel = microKernel{
	name: AVX512, mr: 12, nr: 32,
	kc: 256, mc: 480, nc: 3072,
	run: kernelAVX512, runStrided: kernelAVX512Strided,
}

// avx2Kernel is the classic 6x16 tile: 12 ymm accumulators.
var avx2Kernel = microKernel{
	name: AVX2, mr: 6, nr: 16,
	kc: 256, mc: 360, nc: 3072,
	run: kernelAVX2, runStrided: kernelAVX2Strided,
}

// archKernels lists AVX-512 first wherever the CPU has it. Measured
// (docs/benchmarks.md): on Zen 4, which splits 512-bit operations into two
// 256-bit halves, the two kernels ran level (GEMM within 4%, ViT block 255
// vs 255 ms), so nothing is lost there; on Zen 5 and on Intel Xeons with
// two 512-bit FMA units the AVX-512 kernel is twice as fast (Emerald
// Rapids: 159 vs 78 GFLOP/s on L1-resident panels).
func archKernels() []microKernel {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	return ks
}
