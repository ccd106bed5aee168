// Package sgemm is the CPU backend's single-precision GEMM: packed, cache-blocked
// and multi-threaded over a parallel.Pool, with micro-kernels in Go assembly
// (AVX-512, AVX2+FMA) and a portable Go fallback, chosen at run time from CPUID.
//
// All matrices are row-major. C = alpha*op(A)@op(B) + beta*C, op(A) is [m, k]
// (A stored [m, k] with row stride lda, or [k, m] when transA), op(B) is [k, n]
// (B stored [k, n] with row stride ldb, or [n, k] when transB), C is [m, n]
// with row stride ldc. With beta == 0, C is not read.
package sgemm

import "github.com/hjepa-go/hjepa/tensor/parallel"

// Kernel names a micro-kernel family.
type Kernel string

const (
	AVX512  Kernel = "avx512"
	AVX2    Kernel = "avx2"
	Generic Kernel = "generic"
)

// Available lists the kernels this CPU can run, best first.
func Available() []Kernel { return []Kernel{Generic} }

// Engine runs GEMMs on a pool with one set of packing buffers per worker.
type Engine struct {
	pool   *parallel.Pool
	kernel Kernel
}

// New makes an engine on pool using kernel k ("" picks the best available).
func New(pool *parallel.Pool, k Kernel) *Engine {
	if k == "" {
		k = Available()[0]
	}
	return &Engine{pool: pool, kernel: k}
}

// Kernel reports the micro-kernel family in use.
func (e *Engine) Kernel() Kernel { return e.kernel }

// Sgemm computes one GEMM using every worker of the pool.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	e.SgemmBatched(transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1)
}

// SgemmBatched computes batch GEMMs whose matrices start stride elements apart,
// using every worker of the pool.
func (e *Engine) SgemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	e.pool.For(batch, 1, func(w, lo, hi int) {
		for i := lo; i < hi; i++ {
			e.SgemmSerial(w, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc)
		}
	})
}

// SgemmSerial computes one GEMM on the calling goroutine using worker w's
// packing buffers. Kernels that are already inside a pool.For loop (attention,
// one head per worker) call it with their worker number.
func (e *Engine) SgemmSerial(w int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// Placeholder reference implementation; replaced by the packed kernels.
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}
