package sgemm

import (
	"fmt"
	"testing"
	"time"

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

// vitShapes are the GEMMs of one width-192 ViT block on 64 x 196 tokens
// (the vit_block_fwdbwd benchmark): its Linear layers forward (x W^T),
// weight gradients (dy^T x) and input gradients (dy W), and the per-head
// attention products (head dim 64, Q/K/V rows 576 floats apart).
var vitShapes = []struct {
	name                   string
	tA, tB                 bool
	m, n, k, lda, ldb, ldc int
}{
	{"qkv_fwd", false, true, 12544, 576, 192, 192, 192, 576},
	{"fc1_fwd", false, true, 12544, 768, 192, 192, 192, 768},
	{"fc2_fwd", false, true, 12544, 192, 768, 768, 768, 192},
	{"proj_fwd", false, true, 12544, 192, 192, 192, 192, 192},
	{"qkv_dw", true, false, 576, 192, 12544, 576, 192, 192},
	{"fc2_dw", true, false, 192, 768, 12544, 192, 768, 768},
	{"qkv_dx", false, false, 12544, 192, 576, 576, 192, 192},
	{"fc1_dx", false, false, 12544, 192, 768, 768, 192, 192},
	{"fc1_dw", true, false, 768, 192, 12544, 768, 192, 192},
	{"fc2_dx", false, false, 12544, 768, 192, 192, 768, 768},
	{"attn_qk", false, true, 196, 196, 64, 576, 576, 196},
	{"attn_pv", false, false, 196, 64, 196, 196, 576, 192},
	{"attn_dv", true, false, 196, 64, 196, 196, 192, 576},
	{"attn_dq", false, false, 196, 64, 196, 196, 576, 576},
}

// BenchmarkDirectA compares reading A in place with packing it, on the
// ViT block's shapes, one worker (pool.For runs the Linear GEMMs in rows
// across workers the same way). Each iteration runs the GEMM both ways,
// one after the other, and each way keeps its fastest run: on a machine
// whose speed drifts, the two see the same conditions. Reported: both
// rates and direct_x, packed time over direct time (> 1: in place is
// faster). go test ./tensor/sgemm -run - -bench DirectA -benchtime 15x
func BenchmarkDirectA(b *testing.B) {
	pool := parallel.New(1)
	defer pool.Close()
	for _, mk := range archKernels() {
		e := New(pool, mk.name)
		for _, s := range vitShapes {
			arows, brows := s.m, s.k
			if s.tA {
				arows = s.k
			}
			if s.tB {
				brows = s.n
			}
			a := make([]float32, arows*s.lda)
			bb := make([]float32, brows*s.ldb)
			c := make([]float32, s.m*s.ldc)
			b.Run(string(mk.name)+"/"+s.name, func(b *testing.B) {
				defer func() { noDirectA = false }()
				best := [2]time.Duration{time.Hour, time.Hour} // packed, direct
				for b.Loop() {
					for d := range best {
						noDirectA = d == 0
						start := time.Now()
						e.SgemmSerial(0, s.tA, s.tB, s.m, s.n, s.k, 1, a, s.lda, bb, s.ldb, 0, c, s.ldc)
						best[d] = min(best[d], time.Since(start))
					}
				}
				flop := 2 * float64(s.m*s.n*s.k)
				b.ReportMetric(flop/best[0].Seconds()/1e9, "packed_GFLOP/s")
				b.ReportMetric(flop/best[1].Seconds()/1e9, "direct_GFLOP/s")
				b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "direct_x")
			})
		}
	}
}
