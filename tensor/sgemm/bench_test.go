package sgemm

import (
	"fmt"
	"testing"

	"github.com/hjepa-go/hjepa/tensor/parallel"
)

// BenchmarkMicroKernel times each micro-kernel alone on L1-resident panels.
func BenchmarkMicroKernel(b *testing.B) {
	for _, mk := range append(archKernels(), genericKernel) {
		b.Run(string(mk.name), func(b *testing.B) {
			const k = 256
			pa, pb := alignedFloats(mk.mr*k), alignedFloats(mk.nr*k)
			c := alignedFloats(mk.mr * mk.nr)
			for b.Loop() {
				mk.run(k, &pa[0], &pb[0], &c[0], mk.nr, 1, 1, nil)
			}
			b.ReportMetric(2*float64(mk.mr*mk.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemm times square NN GEMMs and the attention shapes.
func BenchmarkSgemm(b *testing.B) {
	type shape struct {
		name             string
		tA, tB           bool
		m, n, k, threads int
	}
	var shapes []shape
	for _, n := range []int{256, 1024} {
		for _, t := range []int{1, 2} {
			shapes = append(shapes, shape{fmt.Sprintf("%d_%dt", n, t), false, false, n, n, n, t})
		}
	}
	shapes = append(shapes, shape{"qk_196x196x64", false, true, 196, 196, 64, 1}, shape{"pv_196x64x196", false, false, 196, 64, 196, 1})
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			pool := parallel.New(s.threads)
			defer pool.Close()
			e := New(pool, "")
			a := make([]float32, s.m*s.k)
			bb := make([]float32, s.k*s.n)
			c := make([]float32, s.m*s.n)
			lda, ldb := s.k, s.n
			if s.tB {
				ldb = s.k
			}
			for b.Loop() {
				if s.threads == 1 {
					e.SgemmSerial(0, s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
				} else {
					e.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
				}
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
