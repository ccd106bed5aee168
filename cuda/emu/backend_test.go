//go:build cgo

package emu_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/cuda/cudatest"
	"github.com/hjepa-go/hjepa/cuda/emu"
	"github.com/hjepa-go/hjepa/cuda/kernels"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/backendtest"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// newBackend is the CUDA backend on an emulated device; reverse runs the
// threads of each block in reverse order (see emu.Driver).
func newBackend(t *testing.T, reverse bool) *cuda.Backend {
	t.Helper()
	d := emu.New()
	d.SetReverseThreadOrder(reverse)
	b, err := cuda.NewBackend(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// TestCompliance runs the backend suite on the emulated device, in both
// thread orders.
func TestCompliance(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reverse=%v", reverse), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) tensor.Backend { return newBackend(t, reverse) })
		})
	}
}

// TestStepParity trains the small H-JEPA model of cudatest for three steps on
// the emulated device and on the CPU backend.
func TestStepParity(t *testing.T) {
	if testing.Short() {
		t.Skip("three training steps on the emulator")
	}
	cudatest.StepParity(t, newBackend(t, false), 1e-4)
}

func TestNameAndDevice(t *testing.T) {
	b := newBackend(t, false)
	if got := b.Name(); got != "cuda:0 (host emulator (cuda/emu))" {
		t.Errorf("Name() = %q", got)
	}
	if got := b.Device(); got != (tensor.Device{Type: tensor.CUDA, Index: 0}) {
		t.Errorf("Device() = %v", got)
	}
	x := b.New(tensor.Float32, 2, 3)
	if x.Device().String() != "cuda:0" || x.Storage().Len() != 6 {
		t.Errorf("tensor %v on %v", x, x.Device())
	}
	mustPanic(t, "not a tensor of this backend", func() { b.Scale(tensor.NewHost(3), 2) })
	mustPanic(t, "want float32", func() { b.Scale(b.New(tensor.Int32, 3), 2) })
	mustPanic(t, "head dimension 130", func() {
		b.AttentionForward(b.New(tensor.Float32, 1, 2, 130), b.New(tensor.Float32, 1, 1, 2), b.New(tensor.Float32, 1, 2, 390), 1, 1)
	})
	mustPanic(t, "idx[1] = 5 outside [0, 4)", func() {
		idx := b.New(tensor.Int32, 2)
		b.UploadInt32(idx, []int32{0, 5})
		b.Gather(b.New(tensor.Float32, 2, 3), b.New(tensor.Float32, 4, 3), idx)
	})
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), want) {
			t.Errorf("panic %v, want one containing %q", r, want)
		}
	}()
	f()
}

// ---- parity with tensor/cpu ----

// TestParity runs cudatest's parity cases on the CPU backend and on the
// emulated device in both thread orders, twice each: the device results must
// not depend on the thread order or the run, and must match the CPU's within
// each case's tolerance (relative L2 per output), or bit for bit.

func TestParity(t *testing.T) {
	ref := cpu.New(1)
	defer ref.Close()
	rec := &recordingDriver{Driver: emu.New(), launched: map[string]bool{}}
	fwd, err := cuda.NewBackend(rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	rev := newBackend(t, true)
	cases, ran := cudatest.ParityCases(), 0
	defer func() {
		if ran < len(cases) {
			return // -run selected some cases
		}
		// Every kernel ran at least once (the random fills are compared
		// with the CPU's in TestRandomMatchesCPU).
		x := fwd.New(tensor.Float32, 10)
		rng := tensor.NewRNG(1)
		fwd.RandUniform(x, rng, 0, 1)
		fwd.RandNormal(x, rng, 0, 1)
		fwd.TruncNormal(x, rng, 0, 1, -2, 2)
		for _, k := range kernels.Names {
			if !rec.launched[k] {
				t.Errorf("no parity case launches %s", k)
			}
		}
	}()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			ran++
			seed := uint64(len(c.Name))*7919 + 1
			runOn := func(b tensor.Backend) [][]float64 { return c.Run(b, rand.New(rand.NewPCG(seed, 3))) }
			want := runOn(ref)
			got := runOn(fwd)
			for _, other := range []struct {
				what string
				out  [][]float64
			}{{"a second run", runOn(fwd)}, {"reversed thread order", runOn(rev)}} {
				for k := range got {
					if i := cudatest.FirstDiff(got[k], other.out[k]); i >= 0 {
						t.Errorf("output %d: element %d is %v, but %v in %s", k, i, got[k][i], other.out[k][i], other.what)
					}
				}
			}
			for k := range want {
				if c.Bitwise {
					if i := cudatest.FirstDiff(got[k], want[k]); i >= 0 {
						t.Errorf("output %d: element %d is %v, CPU %v (want bitwise equal)", k, i, got[k][i], want[k][i])
					}
					continue
				}
				if e := cudatest.RelL2F64(got[k], want[k]); !(e <= c.Tol) {
					t.Errorf("output %d: relative L2 %.3g from the CPU's > %.3g", k, e, c.Tol)
				}
			}
		})
	}
}

// recordingDriver records the names of the kernels launched.
type recordingDriver struct {
	cuda.Driver
	launched map[string]bool
}

func (d *recordingDriver) Launch(kernel string, grid, block cuda.Dim3, shared int, args ...any) error {
	d.launched[kernel] = true
	return d.Driver.Launch(kernel, grid, block, shared, args...)
}

// ---- random numbers ----

// TestRandomMatchesCPU compares the random fills with the CPU backend's.
// Uniform draws are exact. Normal and truncated-normal draws go through
// float64 log, cos and erfinv: hjepa.cu carries Go's erfinv, but log and cos
// are the C library's (the GPU's libdevice on a device) and Go's own, which
// may differ in the last bit of a float64 and, rarely, move a float32 result
// by one ulp; the test allows that for one draw in 10^4.
func TestRandomMatchesCPU(t *testing.T) {
	ref := cpu.New(1)
	defer ref.Close()
	b := newBackend(t, false)
	const n = 200003
	fills := []struct {
		name string
		fill func(b tensor.Backend, x *tensor.Tensor, rng *tensor.RNG)
	}{
		{"RandUniform", func(b tensor.Backend, x *tensor.Tensor, rng *tensor.RNG) { b.RandUniform(x, rng, -0.3, 1.7) }},
		{"RandNormal", func(b tensor.Backend, x *tensor.Tensor, rng *tensor.RNG) { b.RandNormal(x, rng, 0.5, 2) }},
		{"TruncNormal", func(b tensor.Backend, x *tensor.Tensor, rng *tensor.RNG) { b.TruncNormal(x, rng, 0, 1, -2, 2) }},
		{"TruncNormal narrow", func(b tensor.Backend, x *tensor.Tensor, rng *tensor.RNG) {
			b.TruncNormal(x, rng, 0.1, 0.02, -0.04, 0.04)
		}},
	}
	for _, f := range fills {
		draw := func(b tensor.Backend) ([]float32, uint64) {
			x := b.New(tensor.Float32, n)
			rng := &tensor.RNG{Seed: 0xfeedface12345, Offset: 1<<32 - 1000} // the counter's high word changes
			f.fill(b, x, rng)
			v := make([]float32, n)
			b.Download(v, x)
			return v, rng.Offset
		}
		got, goff := draw(b)
		want, woff := draw(ref)
		if goff != woff {
			t.Errorf("%s: stream advanced to %d, CPU %d", f.name, goff, woff)
		}
		diff, worst := 0, 0
		for i := range got {
			if got[i] != want[i] {
				diff++
				worst = max(worst, ulps(got[i], want[i]))
			}
		}
		allowed := 0
		if f.name != "RandUniform" {
			allowed = n / 10000
		}
		if diff > allowed || worst > 1 {
			t.Errorf("%s: %d of %d values differ from the CPU's (at most %d ulp), want at most %d by 1 ulp", f.name, diff, n, worst, allowed)
		} else {
			t.Logf("%s: %d of %d values differ from the CPU's by 1 ulp", f.name, diff, n)
		}
	}
}

func ulps(a, b float32) int {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	if (ia < 0) != (ib < 0) {
		return math.MaxInt32
	}
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return int(d)
}

// ---- the caching allocator ----

// countingDriver counts Allocs and fails them beyond limit bytes in use
// (limit 0: no limit).
type countingDriver struct {
	cuda.Driver
	allocs, frees int
	limit, used   int
	sizes         map[cuda.DevicePtr]int
}

func (d *countingDriver) Alloc(bytes int) (cuda.DevicePtr, error) {
	if d.limit > 0 && d.used+bytes > d.limit {
		return 0, fmt.Errorf("CUDA_ERROR_OUT_OF_MEMORY (fake: %d of %d bytes in use)", d.used, d.limit)
	}
	p, err := d.Driver.Alloc(bytes)
	if err == nil {
		d.allocs++
		d.used += bytes
		d.sizes[p] = bytes
	}
	return p, err
}

func (d *countingDriver) Free(p cuda.DevicePtr) error {
	d.frees++
	d.used -= d.sizes[p]
	delete(d.sizes, p)
	return d.Driver.Free(p)
}

func newCounting(t *testing.T, limit int) (*cuda.Backend, *countingDriver) {
	t.Helper()
	d := &countingDriver{Driver: emu.New(), limit: limit, sizes: map[cuda.DevicePtr]int{}}
	b, err := cuda.NewBackend(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, d
}

// waitReleased runs the GC until the backend's live tensors hold at most
// inUse bytes (cleanups run on another goroutine after a GC).
func waitReleased(t *testing.T, b *cuda.Backend, inUse int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.MemoryStats().InUse > inUse {
		if time.Now().After(deadline) {
			t.Fatalf("unreachable tensors not returned to the cache: %+v", b.MemoryStats())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestAllocatorReuse: a second step that allocates the same shapes after the
// first step's tensors became unreachable allocates nothing on the device.
func TestAllocatorReuse(t *testing.T) {
	b, d := newCounting(t, 0)
	step := func(extra int) float64 {
		var ts []*tensor.Tensor
		for _, n := range []int{1, 100, 1000, 4096, 5000 + extra, 1 << 20, 3<<20 + 7} {
			x := b.New(tensor.Float32, n)
			b.Fill(x, 1)
			ts = append(ts, x)
		}
		return b.Sum(ts[4])
	}
	step(0)
	first := d.allocs
	waitReleased(t, b, 512)          // Sum's partials (one 512-byte block) stay allocated
	if got := step(3); got != 5003 { // same size classes, slightly different sizes
		t.Fatalf("Sum = %v", got)
	}
	if d.allocs != first {
		t.Errorf("second step made %d device allocations, want 0 (stats %+v)", d.allocs-first, b.MemoryStats())
	}
	st := b.MemoryStats()
	if st.Allocs != d.allocs || st.Frees != 0 {
		t.Errorf("stats %+v, driver allocs %d", st, d.allocs)
	}
}

// TestOutOfMemory: when the device is full the backend collects dropped
// tensors, frees its cache and retries; when that fails too the backend's
// sticky error says what to change.
func TestOutOfMemory(t *testing.T) {
	b, d := newCounting(t, 6<<20)
	func() { b.New(tensor.Float32, 1<<20) }() // 4 MiB, then unreachable
	waitReleased(t, b, 0)
	if b.MemoryStats().Cached != 4<<20 {
		t.Fatalf("stats %+v, want 4 MiB cached", b.MemoryStats())
	}
	func() {
		b.New(tensor.Float32, 700_000) // 2.7 MiB: fits only once the cache is freed
		if d.frees != 1 || b.MemoryStats().Cached != 0 {
			t.Errorf("after the retry: %d frees, stats %+v; want the cached block freed", d.frees, b.MemoryStats())
		}
	}() // dropped without a GC: 2.8 MiB held by garbage, 3.2 MiB free
	y := b.New(tensor.Float32, 1<<20) // 4 MiB: needs the garbage collected
	if d.frees != 2 {
		t.Errorf("after collecting: %d frees, want 2 (stats %+v)", d.frees, b.MemoryStats())
	}
	if err := b.Err(); err != nil {
		t.Fatalf("Err() = %v before the device was full", err)
	}
	z := b.New(tensor.Float32, 2<<20) // 8 MiB: does not fit
	err := b.Err()
	msg := fmt.Sprint(err)
	for _, want := range []string{"out of memory", "cuda:0", "allocating 8.0 MiB", "4.0 MiB held", "data.batch_size", "CUDA_ERROR_OUT_OF_MEMORY"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Err() = %q does not say %q", msg, want)
		}
	}
	var oom *cuda.OutOfMemoryError
	if !errors.Is(err, tensor.ErrOutOfMemory) || errors.Is(err, tensor.ErrDeviceFault) || !errors.As(err, &oom) {
		t.Fatalf("Err() = %#v: want an *OutOfMemoryError wrapping tensor.ErrOutOfMemory", err)
	}
	if oom.Bytes != 8<<20 || oom.Held != 4<<20 || oom.Op != "New" {
		t.Errorf("OutOfMemoryError %+v: want New of 8 MiB with 4 MiB held", oom)
	}
	if got := z.Shape(); len(got) != 1 || got[0] != 2<<20 || z.Storage().(*cuda.Storage).Ptr() != 0 {
		t.Errorf("New on a full device: %v at %#x, want the shape without device memory", got, z.Storage().(*cuda.Storage).Ptr())
	}
	if serr := b.Sync(); serr != err {
		t.Errorf("Sync() = %v, want the sticky error", serr)
	}
	runtime.KeepAlive(y)
}

// callCounter is an emulated device that counts the calls that do work and
// fails the first Launch of failLaunch, or every Alloc with allocErr.
type callCounter struct {
	*emu.Driver
	calls      int
	failLaunch string
	allocErr   error
}

func (d *callCounter) Alloc(n int) (cuda.DevicePtr, error) {
	d.calls++
	if d.allocErr != nil {
		return 0, d.allocErr
	}
	return d.Driver.Alloc(n)
}
func (d *callCounter) Memset32(p cuda.DevicePtr, v uint32, n int) error {
	d.calls++
	return d.Driver.Memset32(p, v, n)
}
func (d *callCounter) CopyHtoD(dst cuda.DevicePtr, src unsafe.Pointer, n int) error {
	d.calls++
	return d.Driver.CopyHtoD(dst, src, n)
}
func (d *callCounter) CopyDtoH(dst unsafe.Pointer, src cuda.DevicePtr, n int) error {
	d.calls++
	return d.Driver.CopyDtoH(dst, src, n)
}
func (d *callCounter) CopyDtoD(dst, src cuda.DevicePtr, n int) error {
	d.calls++
	return d.Driver.CopyDtoD(dst, src, n)
}
func (d *callCounter) Sgemm(p cuda.SgemmParams) error {
	d.calls++
	return d.Driver.Sgemm(p)
}
func (d *callCounter) Launch(kernel string, grid, block cuda.Dim3, shared int, args ...any) error {
	d.calls++
	if kernel == d.failLaunch {
		return fmt.Errorf("CUDA_ERROR_ILLEGAL_ADDRESS (fake, in %s)", kernel)
	}
	return d.Driver.Launch(kernel, grid, block, shared, args...)
}

// TestDeviceFailuresAreSticky: the first out of memory or driver error is
// the backend's error (Err, Sync), classified by its sentinel, and every
// later operation returns at once without calling the driver: New gives
// tensors without device memory, reductions NaN, Download NaNs.
func TestDeviceFailuresAreSticky(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int64 // emulated device memory
		fail     string
		allocErr error
		oom      bool
		says     []string
	}{
		{name: "out of memory", limit: 1 << 20, oom: true,
			says: []string{"out of memory on cuda:0", "allocating 4.0 MiB", "free of 1.0 MiB", "reduce data.batch_size"}},
		{name: "launch fault", fail: "hjepa_scale", says: []string{"launch hjepa_scale", "CUDA_ERROR_ILLEGAL_ADDRESS"}},
		{name: "driver out of memory", oom: true, allocErr: &cuda.Error{Call: "cuMemAlloc(4194304 bytes)", Code: 2, Text: "CUDA_ERROR_OUT_OF_MEMORY"},
			says: []string{"out of memory on cuda:0", "allocating 4.0 MiB"}},
		{name: "driver fault in Alloc", allocErr: &cuda.Error{Call: "cuMemAlloc(4194304 bytes)", Code: 700, Text: "CUDA_ERROR_ILLEGAL_ADDRESS"},
			says: []string{"cuda: New on cuda:0", "CUDA_ERROR_ILLEGAL_ADDRESS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ed := emu.New()
			ed.SetMemoryLimit(tc.limit)
			d := &callCounter{Driver: ed, failLaunch: tc.fail}
			b, err := cuda.NewBackend(d, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			x := b.New(tensor.Float32, 1000)
			b.Fill(x, 1)
			if got := b.Sum(x); got != 1000 || b.Err() != nil {
				t.Fatalf("healthy: Sum = %v, Err = %v", got, b.Err())
			}
			d.allocErr = tc.allocErr
			if tc.fail != "" {
				b.Scale(x, 2)
			} else {
				b.New(tensor.Float32, 1<<20) // 4 MiB
			}
			err = b.Err()
			if err == nil {
				t.Fatal("no error after the failure")
			}
			for _, want := range tc.says {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Err() = %q does not say %q", err, want)
				}
			}
			if errors.Is(err, tensor.ErrOutOfMemory) != tc.oom || errors.Is(err, tensor.ErrDeviceFault) == tc.oom {
				t.Errorf("Err() = %v: out of memory %v, device fault %v; want out of memory %v",
					err, errors.Is(err, tensor.ErrOutOfMemory), errors.Is(err, tensor.ErrDeviceFault), tc.oom)
			}
			var f tensor.Faulter = b
			if f.Err() != err || b.Sync() != err {
				t.Errorf("Err and Sync must keep the first failure: %v, %v", f.Err(), b.Sync())
			}

			// Everything after it is a no-op that does not reach the driver.
			calls := d.calls
			y := b.New(tensor.Float32, 10, 100)
			idx := b.New(tensor.Int32, 10)
			b.UploadInt32(idx, make([]int32, 10))
			b.Upload(y, make([]float32, 1000))
			b.Fill(y, 3)
			b.Scale(x, 2)
			b.Gemm(tensor.GemmArgs{TransB: true, M: 10, N: 10, K: 100, A: y, B: y, C: b.New(tensor.Float32, 10, 10), Alpha: 1})
			b.LayerNormForward(y, b.New(tensor.Float32, 10), b.New(tensor.Float32, 10), y, nil, nil, 1e-6)
			b.Gather(b.New(tensor.Float32, 10, 100), y, idx)
			b.ScatterAdd(y, b.New(tensor.Float32, 10, 100), idx)
			b.SumRows(b.New(tensor.Float32, 100), y)
			b.RandNormal(y, tensor.NewRNG(1), 0, 1)
			got := make([]float32, 1000)
			b.Download(got, x)
			if sum, sq, l := b.Sum(x), b.SumSquares(x), b.MSELoss(nil, x, x, 1); !math.IsNaN(sum) || !math.IsNaN(sq) || !math.IsNaN(l) {
				t.Errorf("Sum, SumSquares, MSELoss on a failed backend = %v, %v, %v; want NaN", sum, sq, l)
			}
			if !math.IsNaN(float64(got[0])) || !math.IsNaN(float64(got[999])) {
				t.Errorf("Download on a failed backend = %v ... %v, want NaN", got[0], got[999])
			}
			if d.calls != calls {
				t.Errorf("%d driver calls after the failure, want 0", d.calls-calls)
			}
			if b.Err() != err {
				t.Errorf("Err() changed to %v", b.Err())
			}
		})
	}
}

// TestMemoryLimit: the emulated device's size bounds its allocations and
// is what it reports.
func TestMemoryLimit(t *testing.T) {
	d := emu.New()
	defer d.Close()
	if _, _, err := d.MemInfo(); err == nil {
		t.Error("MemInfo without a limit: no error")
	}
	d.SetMemoryLimit(4096)
	p, err := d.Alloc(1000) // 1024 on the device
	if err != nil {
		t.Fatal(err)
	}
	if free, total, err := d.MemInfo(); err != nil || free != 3072 || total != 4096 {
		t.Errorf("MemInfo = %d, %d, %v; want 3072 of 4096", free, total, err)
	}
	if _, err := d.Alloc(3073); err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") {
		t.Errorf("Alloc beyond the limit: %v", err)
	}
	if err := d.Free(p); err != nil {
		t.Fatal(err)
	}
	if free, _, _ := d.MemInfo(); free != 4096 {
		t.Errorf("free after Free = %d, want 4096", free)
	}
	if _, err := d.Alloc(4096); err != nil {
		t.Errorf("Alloc of the whole device: %v", err)
	}
}
