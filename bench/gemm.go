package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/cpu"

	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// gemm_f32_<size>_<threads>: square row-major NN SGEMM in GFLOP/s (2*n^3 per
// call), tensor/sgemm against OpenBLAS's cblas_sgemm with the same thread count.

var (
	gemmSizes   = []int{256, 512, 1024}
	gemmThreads = []int{1, 2}
)

func init() {
	var names []string
	for _, n := range gemmSizes {
		for _, t := range gemmThreads {
			names = append(names, gemmName(n, t))
		}
	}
	register(Bench{Names: names, Run: runGemm})
}

func gemmName(n, threads int) string { return fmt.Sprintf("gemm_f32_%d_%dt", n, threads) }

func runGemm(want func(string) bool, report func(Result)) error {
	blas, err := loadOpenBLAS()
	if err != nil {
		return err
	}
	for _, threads := range gemmThreads {
		pool := parallel.New(threads)
		eng := sgemm.New(pool, sgemm.Kernel(sgemmKernel))
		blas.setNumThreads(int32(threads))
		for _, n := range gemmSizes {
			name := gemmName(n, threads)
			if !want(name) {
				continue
			}
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			a, b, c := randMatrix(rng, n*n), randMatrix(rng, n*n), make([]float32, n*n)
			flop := 2 * float64(n) * float64(n) * float64(n)
			rates := bestRates(flop, func() {
				eng.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
			}, func() {
				blas.sgemm(cblasRowMajor, cblasNoTrans, cblasNoTrans, int32(n), int32(n), int32(n), 1, &a[0], int32(n), &b[0], int32(n), 0, &c[0], int32(n))
			})
			ours, base := rates[0], rates[1]
			report(Result{Name: name, Value: ours / 1e9, Unit: "GFLOP/s", Baseline: base / 1e9})
		}
		pool.Close()
	}
	return nil
}

func randMatrix(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// bestRates returns each function's best rate (flop per second) over timed
// samples. A sample runs a function enough times to last about 2 ms. The
// functions take turns (rateTurns each), so ours and the baseline see the
// same machine: on a shared VM whose speed moves within seconds, timing one
// for a second and then the other made the ratio swing by 30%. A turn
// starts with rateSettle of untimed runs: OpenBLAS's idle threads spin for
// about 2^28 cycles (its THREAD_TIMEOUT, ~0.1 s) after a call and would
// take a core from whatever is timed next. The best sample is the least
// disturbed one.
func bestRates(flop float64, fns ...func()) []float64 {
	const (
		rateTurns  = 4
		rateSettle = 150 * time.Millisecond
		rateTimed  = 250 * time.Millisecond
	)
	iters := make([]int, len(fns))
	for i, fn := range fns {
		start := time.Now()
		fn()
		iters[i] = max(1, int(2*time.Millisecond/max(time.Since(start), time.Microsecond)))
	}
	best := make([]float64, len(fns))
	for range rateTurns {
		for i, fn := range fns {
			for settle := time.Now().Add(rateSettle); time.Now().Before(settle); {
				fn()
			}
			deadline := time.Now().Add(rateTimed)
			for samples := 0; samples < 3 || time.Now().Before(deadline); samples++ {
				start := time.Now()
				for range iters[i] {
					fn()
				}
				best[i] = max(best[i], flop*float64(iters[i])/time.Since(start).Seconds())
			}
		}
	}
	return best
}

const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
)

// openBLAS is Debian's libopenblas0, loaded at run time so that nothing but
// this benchmark depends on it. OPENBLAS_CORETYPE is left as the environment
// sets it.
type openBLAS struct {
	sgemm         func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	setNumThreads func(n int32)
	coreName      func() string
}

var openBLASPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
	"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
	"/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
	"/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
}

// loadOpenBLAS loads the library once per process and says which kernel it
// runs.
var loadOpenBLAS = sync.OnceValues(openOpenBLAS)

func openOpenBLAS() (*openBLAS, error) {
	var errs []string
	for _, p := range openBLASPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		lib, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		var o openBLAS
		purego.RegisterLibFunc(&o.sgemm, lib, "cblas_sgemm")
		purego.RegisterLibFunc(&o.setNumThreads, lib, "openblas_set_num_threads")
		purego.RegisterLibFunc(&o.coreName, lib, "openblas_get_corename")
		core := o.coreName()
		fmt.Printf("bench openblas: %s kernel (OPENBLAS_CORETYPE=%q)\n", core, os.Getenv("OPENBLAS_CORETYPE"))
		return &o, nil
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load OpenBLAS: %v", errs)
	}
	return nil, fmt.Errorf("load OpenBLAS: none of %v exists; install Debian's libopenblas0 (apt-get install -y libopenblas0)", openBLASPaths)
}

// fixOpenBLASCore makes sure the baselines run OpenBLAS's kernel for this
// CPU. OpenBLAS picks it from CPUID, and a CPU newer than the library gets
// its generic x86-64 one: Debian's 0.3.21 runs an Emerald Rapids Xeon
// (family 6 model 207) on "Prescott", a fifth of its SkylakeX kernel's
// speed there, and PyTorch's baseline (Debian builds it on the same
// library) with it; ratios against that would be meaningless. When
// OPENBLAS_CORETYPE is unset and OpenBLAS chose a pre-AVX2 kernel on a CPU
// with AVX2, the benchmark runs itself again with the variable set (the
// library reads it when it is loaded); a value the user set is kept, with a
// warning.
func fixOpenBLASCore() {
	o, err := loadOpenBLAS()
	if err != nil {
		return
	}
	core := o.coreName()
	if !slowOpenBLASCore(core) {
		return
	}
	want := "Haswell"
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL {
		want = "SkylakeX"
	}
	if _, set := os.LookupEnv("OPENBLAS_CORETYPE"); set {
		fmt.Fprintf(os.Stderr, "bench: WARNING: OpenBLAS runs its generic %s kernel on this CPU: the OpenBLAS and PyTorch baselines are slower than they should be; OPENBLAS_CORETYPE=%s would fix it\n", core, want)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: WARNING: OpenBLAS runs its generic %s kernel on this CPU; run again with OPENBLAS_CORETYPE=%s\n", core, want)
		return
	}
	fmt.Printf("bench openblas: this CPU is unknown to OpenBLAS; running again with OPENBLAS_CORETYPE=%s\n", want)
	err = syscall.Exec(exe, os.Args, append(os.Environ(), "OPENBLAS_CORETYPE="+want))
	fmt.Fprintf(os.Stderr, "bench: WARNING: could not run again with OPENBLAS_CORETYPE=%s: %v\n", want, err)
}

// slowOpenBLASCore reports whether OpenBLAS's kernel name is one of its
// pre-AVX2 x86 kernels on a CPU that has AVX2 and FMA.
func slowOpenBLASCore(core string) bool {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		return false
	}
	switch strings.ToLower(core) {
	case "prescott", "core2", "penryn", "dunnington", "nehalem", "sandybridge", "barcelona", "bobcat", "bulldozer", "piledriver", "steamroller", "excavator", "katmai", "coppermine", "northwood", "banias", "atom", "nano", "opteron", "opteron_sse3", "athlon":
		return true
	}
	return false
}
