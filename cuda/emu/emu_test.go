//go:build cgo

package emu

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/cuda/kernels"
)

// The emulator's own checks: its thread model on the self-test kernels of
// selftest.h, its launch-time argument checks, and its registry against
// kernels.Names.

func newDriver(t *testing.T) *Driver {
	t.Helper()
	d := New()
	t.Cleanup(func() { d.Close() })
	return d
}

func d3(x, y, z uint32) cuda.Dim3 { return cuda.Dim3{X: x, Y: y, Z: z} }

func alloc(t *testing.T, d *Driver, bytes int) cuda.DevicePtr {
	t.Helper()
	p, err := d.Alloc(bytes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func download[T any](t *testing.T, d *Driver, p cuda.DevicePtr, n int) []T {
	t.Helper()
	out := make([]T, n)
	var z T
	if err := d.CopyDtoH(unsafe.Pointer(&out[0]), p, n*int(unsafe.Sizeof(z))); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegistry(t *testing.T) {
	var got []string
	for _, k := range Kernels() {
		if !strings.HasPrefix(k, "emutest_") {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(kernels.Names))
	if !slices.Equal(got, want) {
		t.Errorf("emulator kernels %v\ndiffer from kernels.Names %v", got, want)
	}
}

func TestShuffles(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		d := newDriver(t)
		d.SetReverseThreadOrder(reverse)
		const n = 64
		out, sums := alloc(t, d, 4*4*n), alloc(t, d, 8*2)
		if err := d.Launch("emutest_shuffle", d3(1, 1, 1), d3(n, 1, 1), 0, out, sums); err != nil {
			t.Fatal(err)
		}
		got := download[float32](t, d, out, 4*n)
		for tid := 0; tid < n; tid++ {
			l := tid % 32
			v := func(lane int) float32 { return float32(lane) + 0.5 }
			down, up := l+3, l-2
			if down > 31 {
				down = l
			}
			if up < 0 {
				up = l
			}
			want := []float32{v(l ^ 1), v(down), v(up), v(7)}
			if !slices.Equal(got[4*tid:4*tid+4], want) {
				t.Errorf("reverse=%v thread %d: shuffles %v, want %v", reverse, tid, got[4*tid:4*tid+4], want)
			}
		}
		if s := download[float64](t, d, sums, 2); s[0] != 496 || s[1] != 496 {
			t.Errorf("warp sums %v, want 496", s)
		}
	}
}

func TestBarrierAndIndices(t *testing.T) {
	d := newDriver(t)
	const n = 256
	out := alloc(t, d, 4*n)
	for _, reverse := range []bool{false, true} {
		d.SetReverseThreadOrder(reverse)
		if err := d.Launch("emutest_barrier", d3(2, 1, 1), d3(n, 1, 1), 0, out); err != nil {
			t.Fatal(err)
		}
		for i, v := range download[int32](t, d, out, n) {
			if j := (i + 1) % n; v != int32(j*j) {
				t.Fatalf("reverse=%v: out[%d] = %d, want %d", reverse, i, v, j*j)
			}
		}
	}

	grid, block := d3(3, 2, 2), d3(4, 3, 2)
	total := 12 * 24
	idx := alloc(t, d, 4*6*total)
	if err := d.Launch("emutest_index", grid, block, 0, idx, int32(100)); err != nil {
		t.Fatal(err)
	}
	got := download[int32](t, d, idx, 6*total)
	k := 0
	for bz := 0; bz < 2; bz++ {
		for by := 0; by < 2; by++ {
			for bx := 0; bx < 3; bx++ {
				for tz := 0; tz < 2; tz++ {
					for ty := 0; ty < 3; ty++ {
						for tx := 0; tx < 4; tx++ {
							want := []int32{int32(bx), int32(by), int32(bz), int32(tx), int32(ty), int32(tz)}
							for i := range want {
								want[i] += 100
							}
							if !slices.Equal(got[6*k:6*k+6], want) {
								t.Fatalf("thread %d: indices %v, want %v", k, got[6*k:6*k+6], want)
							}
							k++
						}
					}
				}
			}
		}
	}
}

// A kernel that reads another thread's shared-memory write without a
// barrier gives different results in the two thread orders.
func TestRaceShowsInThreadOrder(t *testing.T) {
	d := newDriver(t)
	const n = 64
	out := alloc(t, d, 4*n)
	run := func(reverse bool) []int32 {
		d.SetReverseThreadOrder(reverse)
		if err := d.Launch("emutest_shared_race", d3(1, 1, 1), d3(n, 1, 1), 0, out); err != nil {
			t.Fatal(err)
		}
		return download[int32](t, d, out, n)
	}
	if fwd, rev := run(false), run(true); slices.Equal(fwd, rev) {
		t.Errorf("racy kernel gave %v in both orders", fwd)
	}
}

func TestThreadModelErrors(t *testing.T) {
	d := newDriver(t)
	out := alloc(t, d, 4*1024)
	if err := d.Launch("emutest_early_exit_barrier", d3(1, 1, 1), d3(64, 1, 1), 0, out); err != nil {
		t.Errorf("threads exiting before a barrier: %v", err)
	} else if got := download[int32](t, d, out, 16); got[0] != 15 || got[15] != 0 {
		t.Errorf("early exit barrier: %v", got)
	}
	for _, c := range []struct {
		kernel string
		block  uint32
		want   string
	}{
		{"emutest_divergent_barrier", 64, "divergent __syncthreads"},
		{"emutest_partial_warp", 48, "partial warp"},
		{"emutest_warp_deadlock", 64, "deadlock"},
	} {
		err := d.Launch(c.kernel, d3(1, 1, 1), d3(c.block, 1, 1), 0, out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.kernel, err, c.want)
		}
	}
	// The emulator recovers: a correct kernel runs after the failures.
	if err := d.Launch("emutest_barrier", d3(1, 1, 1), d3(32, 1, 1), 0, out); err != nil {
		t.Errorf("after failed launches: %v", err)
	}
}

func TestLaunchChecks(t *testing.T) {
	d := newDriver(t)
	x := alloc(t, d, 64)
	one := d3(1, 1, 1)
	for _, c := range []struct {
		name   string
		kernel string
		grid   cuda.Dim3
		block  cuda.Dim3
		args   []any
		want   string
	}{
		{"unknown kernel", "hjepa_nope", one, one, nil, "no kernel named hjepa_nope"},
		{"argument count", "hjepa_scale", one, one, []any{x, float32(2)}, "2 arguments, kernel takes 3"},
		{"argument type", "hjepa_scale", one, one, []any{x, float32(2), int32(3)}, "argument 2 has type 'i', kernel wants 'l'"},
		{"Go type", "hjepa_scale", one, one, []any{x, 2.0, 3}, "argument 2 has type int"},
		{"stray pointer", "hjepa_scale", one, one, []any{x + 1<<20, float32(2), int64(1)}, "not inside a live allocation"},
		{"block too large", "hjepa_scale", one, d3(2048, 1, 1), []any{x, float32(2), int64(1)}, "invalid block"},
		{"grid y too large", "hjepa_scale", d3(1, 70000, 1), one, []any{x, float32(2), int64(1)}, "invalid grid"},
	} {
		err := d.Launch(c.kernel, c.grid, c.block, 0, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if err := d.CopyDtoD(x, x+32, 64); err == nil {
		t.Error("CopyDtoD past the end of an allocation: no error")
	}
	if err := d.Free(x + 4); err == nil {
		t.Error("Free of an interior pointer: no error")
	}
}

func TestAllocIsPoisoned(t *testing.T) {
	d := newDriver(t)
	p := alloc(t, d, 40)
	for _, v := range download[float32](t, d, p, 10) {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("fresh allocation holds %v, want NaN", v)
		}
	}
}

// TestSgemm checks the column-major semantics against a direct loop,
// including that beta == 0 ignores NaNs in C, and cuBLAS's argument checks.
func TestSgemm(t *testing.T) {
	d := newDriver(t)
	const m, n, k, batch = 5, 4, 3, 2
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			lda, ldb, ldc := m+1, k+2, m+3
			if ta {
				lda = k + 1
			}
			if tb {
				ldb = n + 2
			}
			sa, sb, sc := lda*8, ldb*8, ldc*n+1
			av, bv := make([]float32, batch*sa), make([]float32, batch*sb)
			for i := range av {
				av[i] = float32(i%7) - 3
			}
			for i := range bv {
				bv[i] = float32(i%5) - 2
			}
			cv := make([]float32, batch*sc)
			for i := range cv {
				cv[i] = float32(math.NaN())
			}
			up := func(v []float32) cuda.DevicePtr {
				p := alloc(t, d, 4*len(v))
				if err := d.CopyHtoD(p, unsafe.Pointer(&v[0]), 4*len(v)); err != nil {
					t.Fatal(err)
				}
				return p
			}
			A, B, C := up(av), up(bv), up(cv)
			err := d.Sgemm(cuda.SgemmParams{TransA: ta, TransB: tb, M: m, N: n, K: k, Alpha: 2, Beta: 0,
				A: A, Lda: lda, StrideA: int64(sa), B: B, Ldb: ldb, StrideB: int64(sb), C: C, Ldc: ldc, StrideC: int64(sc), Batch: batch})
			if err != nil {
				t.Fatal(err)
			}
			got := download[float32](t, d, C, len(cv))
			for bt := 0; bt < batch; bt++ {
				for j := 0; j < n; j++ {
					for i := 0; i < m; i++ {
						var s float32
						for p := 0; p < k; p++ {
							x := av[bt*sa+i+p*lda]
							if ta {
								x = av[bt*sa+p+i*lda]
							}
							y := bv[bt*sb+p+j*ldb]
							if tb {
								y = bv[bt*sb+j+p*ldb]
							}
							s += x * y
						}
						if g := got[bt*sc+i+j*ldc]; g != 2*s {
							t.Fatalf("transA=%v transB=%v C[%d](%d,%d) = %v, want %v", ta, tb, bt, i, j, g, 2*s)
						}
					}
				}
			}
		}
	}
	p := alloc(t, d, 4*64)
	err := d.Sgemm(cuda.SgemmParams{M: 4, N: 4, K: 4, A: p, Lda: 3, B: p, Ldb: 4, C: p, Ldc: 4, Batch: 1})
	if err == nil || !strings.Contains(err.Error(), "lda 3 < 4") {
		t.Errorf("lda too small: %v", err)
	}
	err = d.Sgemm(cuda.SgemmParams{M: 4, N: 4, K: 4, A: p, Lda: 4, B: p, Ldb: 4, C: p, Ldc: 4, StrideC: 16, Batch: 5})
	if err == nil || !strings.Contains(err.Error(), "Sgemm C") {
		t.Errorf("C past its allocation: %v", err)
	}
}
