package eval

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFitProbe60k: one full probe fit on 60k x 192 features, 10 classes
// (the Fashion-MNIST probe of the demo), fixed L2.
func BenchmarkFitProbe60k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n, d, c = 60000, 192, 10
	x, y := blobs(rng, n, d, c, randomMeans(rng, d, c, 0.15))
	for _, exact := range []bool{false, true} {
		b.Run(fmt.Sprintf("exact=%v", exact), func(b *testing.B) {
			var rep ProbeReport
			var r0, r1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
			start := time.Now()
			for b.Loop() {
				var err error
				if _, rep, err = FitProbe(x, y, d, c, ProbeOptions{L2: 1e-4, Exact: exact}); err != nil {
					b.Fatal(err)
				}
			}
			sec := time.Since(start).Seconds() / float64(b.N)
			syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
			cpu := time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
			// CPU seconds of all threads: a load-independent cost on shared machines.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(rep.Iters), "iters")
			b.ReportMetric(float64(rep.Evals), "evals")
			b.ReportMetric(sec/float64(rep.Evals)*1e3, "ms/eval")
			b.Logf("%+v", rep)
		})
	}
}

// BenchmarkKNN60k: kNN (k=20) of 10k test against 60k train rows, D=192.
func BenchmarkKNN60k(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	const n, m, d, c = 60000, 10000, 192, 10
	means := randomMeans(rng, d, c, 0.15)
	x, y := blobs(rng, n, d, c, means)
	xt, _ := blobs(rng, m, d, c, means)
	for b.Loop() {
		if _, err := KNN(x, y, xt, d, c, KNNOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRankMe: RankMe of a 70k x D feature matrix, D up to ViT-H's 1280.
func BenchmarkRankMe(b *testing.B) {
	for _, d := range []int{192, 1280} {
		b.Run(fmt.Sprintf("D=%d", d), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 3))
			const n = 70000
			x := make([]float32, n*d)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			for b.Loop() {
				if _, err := RankMe(x, n, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSymEig1280: eigenvalues only of a 1280 x 1280 symmetric matrix.
func BenchmarkSymEig1280(b *testing.B) {
	rng := rand.New(rand.NewPCG(4, 4))
	const n = 1280
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			v := rng.NormFloat64()
			a[i*n+j], a[j*n+i] = v, v
		}
	}
	for b.Loop() {
		if _, _, err := SymEig(a, n, false); err != nil {
			b.Fatal(err)
		}
	}
}
