package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/tensor/parallel"
)

// kernelsUnderTest is every kernel this CPU runs, the generic one included.
func kernelsUnderTest() []Kernel { return Available() }

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // extra leading-dimension elements beyond the row
}

func (g gemmCase) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_m%d_n%d_k%d_a%g_b%g_pad%d", t(g.transA), t(g.transB), g.m, g.n, g.k, g.alpha, g.beta, g.pad)
}

// operands makes A, B, C for the case with leading dimensions lda, ldb, ldc.
func (g gemmCase) operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = g.n, g.k
	}
	lda, ldb, ldc = ac+g.pad, bc+g.pad, g.n+g.pad
	a = randFloats(rng, max(0, ar*lda))
	b = randFloats(rng, max(0, br*ldb))
	c = randFloats(rng, g.m*ldc)
	if g.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

func randFloats(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// check compares got (C after the GEMM) with a float64 reference computed from
// a, b, c0 (C before) and bias (nil, or one value per column added to every
// row), elementwise within a tolerance scaled by |alpha|*sum|a||b| +
// |beta*c0| + |bias|. Padding columns of C must be untouched.
func check(t *testing.T, g gemmCase, a []float32, lda int, b []float32, ldb int, c0, got []float32, ldc int, bias []float32) {
	t.Helper()
	const eps = 1.0 / (1 << 23)
	tol := eps * (4*math.Sqrt(float64(g.k)) + 16)
	bad := 0
	for i := 0; i < g.m; i++ {
		for j := 0; j < ldc; j++ {
			idx := i*ldc + j
			if j >= g.n {
				if math.Float32bits(got[idx]) != math.Float32bits(c0[idx]) {
					t.Fatalf("%v: padding C[%d][%d] changed from %v to %v", g, i, j, c0[idx], got[idx])
				}
				continue
			}
			var s, mag float64
			for p := 0; p < g.k; p++ {
				var av, bv float64
				if g.transA {
					av = float64(a[p*lda+i])
				} else {
					av = float64(a[i*lda+p])
				}
				if g.transB {
					bv = float64(b[j*ldb+p])
				} else {
					bv = float64(b[p*ldb+j])
				}
				s += av * bv
				mag += math.Abs(av * bv)
			}
			want := float64(g.alpha) * s
			mag *= math.Abs(float64(g.alpha))
			if g.beta != 0 {
				want += float64(g.beta) * float64(c0[idx])
				mag += math.Abs(float64(g.beta) * float64(c0[idx]))
			}
			if bias != nil {
				want += float64(bias[j])
				mag += math.Abs(float64(bias[j]))
			}
			if d := math.Abs(float64(got[idx]) - want); !(d <= tol*mag+1e-30) {
				if bad++; bad <= 5 {
					t.Errorf("%v: C[%d][%d] = %v, want %v (|diff| %.3g > tol %.3g)", g, i, j, got[idx], want, d, tol*mag)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%v: %d wrong elements", g, bad)
	}
}

func testCases(short bool) []gemmCase {
	dims := []int{1, 2, 3, 5, 7, 11, 12, 13, 16, 17, 31, 32, 33, 48, 49, 97}
	big := [][3]int{
		{255, 257, 259}, {481, 65, 300}, {37, 700, 513}, {196, 196, 64}, {196, 64, 196}, {500, 33, 1}, {1, 200, 300},
		{5, 3100, 40},   // more than one NC column block
		{13, 600, 4100}, // deep k: the shared packed B splits into column blocks
	}
	if short {
		dims = []int{1, 3, 7, 12, 13, 17, 33, 49}
		big = [][3]int{{97, 130, 260}, {25, 700, 30}, {200, 40, 520}, {3, 3100, 9}}
	}
	var cases []gemmCase
	rng := rand.New(rand.NewPCG(1, 2))
	trans := [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}}
	betas := []float32{0, 1, 0.5}
	for i, m := range dims {
		for j, n := range dims {
			// A spread of k for each (m, n), cycling through the rest.
			k := dims[(i*3+j*5)%len(dims)]
			tr := trans[(i+j)%4]
			cases = append(cases, gemmCase{tr[0], tr[1], m, n, k, 1, betas[(i+2*j)%3], (i * j) % 3})
		}
	}
	for _, s := range big {
		for ti, tr := range trans {
			alpha := float32(1)
			if ti%2 == 1 {
				alpha = -1.5
			}
			cases = append(cases, gemmCase{tr[0], tr[1], s[0], s[1], s[2], alpha, betas[(ti+s[0])%3], rng.IntN(3)})
		}
	}
	// k = 0 scales C by beta; alpha = 0 likewise.
	cases = append(cases,
		gemmCase{false, false, 5, 7, 0, 1, 0, 1},
		gemmCase{false, true, 5, 7, 0, 1, 0.5, 0},
		gemmCase{true, false, 9, 33, 20, 0, 0.5, 2},
	)
	return cases
}

func TestSgemm(t *testing.T) {
	cases := testCases(testing.Short())
	for _, kern := range kernelsUnderTest() {
		// workers < 0: -workers workers with tiny cache blocks, so that small
		// shapes cross many KC, MC and NC block boundaries.
		for _, workers := range []int{1, 2, 3, -2} {
			name := fmt.Sprintf("%s/%dworkers", kern, workers)
			if workers < 0 {
				name = fmt.Sprintf("%s/%dworkers_smallblocks", kern, -workers)
			}
			t.Run(name, func(t *testing.T) {
				small := workers < 0
				workers = max(workers, -workers)
				pool := parallel.New(workers)
				defer pool.Close()
				e := New(pool, kern)
				if small {
					e.mk.kc, e.mk.mc, e.mk.nc = 5, 2*e.mk.mr, 2*e.mk.nr
				}
				rng := rand.New(rand.NewPCG(uint64(workers), 7))
				for ci, g := range cases {
					a, lda, b, ldb, c, ldc := g.operands(rng)
					c0 := append([]float32(nil), c...)
					// Every other case adds a bias row (cycling with the entry
					// points, so each path runs with and without one).
					var bias []float32
					if ci%2 == 1 {
						bias = randFloats(rng, g.n)
					}
					// Alternate the entry points: they must agree.
					switch ci % 3 {
					case 0:
						if bias == nil {
							e.Sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc)
						} else {
							e.SgemmBatchedBias(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, 0, b, ldb, 0, g.beta, c, ldc, 0, 1, bias)
						}
					case 1:
						e.parallelGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc, bias)
					default:
						e.serial(workers-1, g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc, bias)
					}
					check(t, g, a, lda, b, ldb, c0, c, ldc, bias)
				}
			})
		}
	}
}

// TestSgemmBatched runs strided batches, with gaps between the matrices, on
// the batch-parallel and the per-GEMM-parallel paths.
func TestSgemmBatched(t *testing.T) {
	shapes := []gemmCase{
		{false, true, 50, 45, 16, 0.125, 0, 1},
		{false, false, 130, 70, 130, 1, 1, 0},
		{true, false, 33, 129, 200, 2, 0.5, 3},
	}
	batches := []int{1, 3, 4, 7}
	if testing.Short() {
		batches = []int{1, 3}
		shapes[1].m, shapes[1].k = 70, 70
	}
	for _, kern := range kernelsUnderTest() {
		for _, workers := range []int{1, 2, 3} {
			for _, batch := range batches {
				t.Run(fmt.Sprintf("%s/%dworkers/batch%d", kern, workers, batch), func(t *testing.T) {
					pool := parallel.New(workers)
					defer pool.Close()
					e := New(pool, kern)
					rng := rand.New(rand.NewPCG(uint64(batch), 9))
					for _, g := range shapes {
						var as, bs, cs, c0s [][]float32
						var lda, ldb, ldc int
						for range batch {
							a, la, b, lb, c, lc := g.operands(rng)
							as, bs, cs = append(as, a), append(bs, b), append(cs, c)
							lda, ldb, ldc = la, lb, lc
						}
						// Lay the batch out with a gap of 5 elements between matrices.
						flat := func(ms [][]float32) ([]float32, int) {
							stride := len(ms[0]) + 5
							out := make([]float32, stride*len(ms))
							for i, x := range ms {
								copy(out[i*stride:], x)
							}
							return out, stride
						}
						fa, sa := flat(as)
						fb, sb := flat(bs)
						fc, sc := flat(cs)
						for _, c := range cs {
							c0s = append(c0s, append([]float32(nil), c...))
						}
						var bias []float32
						if batch%2 == 1 {
							bias = randFloats(rng, g.n)
						}
						e.SgemmBatchedBias(g.transA, g.transB, g.m, g.n, g.k, g.alpha, fa, lda, sa, fb, ldb, sb, g.beta, fc, ldc, sc, batch, bias)
						for i := range batch {
							check(t, g, as[i], lda, bs[i], ldb, c0s[i], fc[i*sc:i*sc+len(cs[i])], ldc, bias)
						}
					}
				})
			}
		}
	}
}

// TestThreadIndependence checks that results are bit-identical whatever the
// pool size and entry point.
func TestThreadIndependence(t *testing.T) {
	g := gemmCase{false, true, 301, 150, 530, 1, 0.5, 1}
	for _, kern := range kernelsUnderTest() {
		rng := rand.New(rand.NewPCG(3, 4))
		a, lda, b, ldb, c, ldc := g.operands(rng)
		var ref []float32
		for _, workers := range []int{1, 2, 3} {
			pool := parallel.New(workers)
			e := New(pool, kern)
			for _, path := range []int{0, 1} {
				got := append([]float32(nil), c...)
				if path == 0 {
					e.parallelGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, got, ldc, nil)
				} else {
					e.SgemmSerial(workers-1, g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, got, ldc)
				}
				if ref == nil {
					ref = got
					continue
				}
				for i := range ref {
					if math.Float32bits(ref[i]) != math.Float32bits(got[i]) {
						t.Fatalf("%s: %d workers path %d: C[%d] = %v, want %v (bit-identical)", kern, workers, path, i, got[i], ref[i])
					}
				}
			}
			pool.Close()
		}
	}
}

func TestNewUnknownKernelPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with an unknown kernel did not panic")
		}
	}()
	New(parallel.New(1), "nope")
}

func TestAvailable(t *testing.T) {
	ks := Available()
	if len(ks) == 0 || ks[len(ks)-1] != Generic {
		t.Fatalf("Available() = %v, want a list ending in %q", ks, Generic)
	}
	pool := parallel.New(1)
	defer pool.Close()
	if got := New(pool, "").Kernel(); got != ks[0] {
		t.Fatalf("New(pool, \"\").Kernel() = %q, want best %q", got, ks[0])
	}
}

// TestDirectAIsBitwisePacked checks that reading A in place (directA) and
// running the k blocks innermost (serialKInner) change no bit of C: the
// kernels run the same FMAs in the same order either way.
func TestDirectAIsBitwisePacked(t *testing.T) {
	cases := testCases(true)
	cases = append(cases, gemmCase{false, false, 97, 200, 700, 1, 0.5, 1}, gemmCase{true, false, 61, 48, 530, 1, 1, 0})
	for _, kern := range kernelsUnderTest() {
		for _, small := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/smallblocks=%v", kern, small), func(t *testing.T) {
				pool := parallel.New(2)
				defer pool.Close()
				e := New(pool, kern)
				if small {
					e.mk.kc, e.mk.mc, e.mk.nc = 5, 2*e.mk.mr, 2*e.mk.nr
				}
				rng := rand.New(rand.NewPCG(3, 9))
				for ci, g := range cases {
					a, lda, b, ldb, c, ldc := g.operands(rng)
					var bias []float32
					if ci%2 == 0 {
						bias = randFloats(rng, g.n)
					}
					run := func(plain bool) []float32 {
						noDirectA, noKInner = plain, plain
						defer func() { noDirectA, noKInner = false, false }()
						out := append([]float32(nil), c...)
						if ci%2 == 0 {
							e.serial(1, g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, out, ldc, bias)
						} else {
							e.parallelGemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, out, ldc, bias)
						}
						return out
					}
					want, got := run(true), run(false)
					for i := range want {
						if math.Float32bits(want[i]) != math.Float32bits(got[i]) && !(want[i] != want[i] && got[i] != got[i]) {
							t.Fatalf("%v: C[%d] = %v in place, %v packed", g, i, got[i], want[i])
						}
					}
				}
			})
		}
	}
}

// TestDirectASkipsAliasingStrides checks that A is packed, not read in
// place, when its row stride is a multiple of 2 KiB (its rows would share a
// fraction of the cache sets), and read in place otherwise.
func TestDirectASkipsAliasingStrides(t *testing.T) {
	pool := parallel.New(1)
	defer pool.Close()
	for _, kern := range kernelsUnderTest() {
		e := New(pool, kern)
		if e.mk.runStrided == nil {
			continue
		}
		for lda, want := range map[int]bool{192: true, 196: true, 256: true, 576: true, 768: true, 512: false, 1024: false, 1536: false, 4096: false} {
			if got := e.directA(false, lda, e.mk.mc, 192); got != want {
				t.Errorf("%s: directA with lda %d = %v, want %v", kern, lda, got, want)
			}
		}
	}
}
