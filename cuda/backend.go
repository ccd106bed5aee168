package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hjepa-go/hjepa/tensor"
)

var _ tensor.Backend = (*Backend)(nil)

// Backend is tensor.Backend on one CUDA device, through a Driver: the kernels
// of cuda/kernels/hjepa.cu, cuBLAS for GEMMs, and a caching allocator.
// Kernels are queued on the driver's stream in call order; Download, Sync and
// the reductions that return host values wait for them. Like the driver, a
// Backend is used by one goroutine at a time.
//
// Results match tensor/cpu: Scale, Axpy, Add, AddRowVector, EMA, AdamW,
// Gather, ScatterAdd, Patchify, Fill, Copy and RandUniform bit for bit;
// RandNormal and TruncNormal too but for the rare float32 rounding that a
// last-bit difference between Go's and the device's float64 log or cos can
// flip; the rest (GEMM, LayerNorm, GELU, attention, the reductions and
// losses) within the rounding of float32 arithmetic done in another order.
// Every reduction (Sum, the losses, SumRows, LayerNorm's dw and db,
// attention) has a fixed partition and no floating-point atomics, so results
// do not change from run to run.
//
// Device failures are errors, not panics (tensor.Faulter): the first out of
// memory (*OutOfMemoryError) or failed driver call (*FaultError) is kept,
// every later operation returns at its start (New returns tensors without
// device memory, Sum and the losses NaN, Download fills NaN), and Err and
// Sync return it. Wrong arguments (shapes, dtypes, foreign tensors) are
// programming errors and panic.
type Backend struct {
	d       Driver
	ordinal int
	mem     *memCache
	closed  bool
	err     error // the sticky device failure; nil while healthy

	// Grow-only device scratch and host buffers of the kernels that need them.
	scratch  [numScratch]scratchBuf
	partials []float64 // reduction partials copied to the host
	plan     []int32   // ScatterAdd's inverse index, built on the host
	counts   []int32
}

// Device scratch slots.
const (
	scratchColumns = iota // column-sum partials (SumRows, LayerNorm dw/db)
	scratchSum            // float64 partials of Sum, SumSquares and the losses
	scratchPlan           // ScatterAdd's inverse index
	scratchDelta          // attention backward's rowsum(dO*O)
	numScratch
)

type scratchBuf struct {
	ptr   DevicePtr
	class int
}

// NewBackend makes a backend on d, which has loaded the kernels; ordinal is
// the device's CUDA ordinal. The backend owns d: Close closes it.
func NewBackend(d Driver, ordinal int) (*Backend, error) {
	if d == nil {
		return nil, fmt.Errorf("cuda: NewBackend: nil driver")
	}
	if ordinal < 0 {
		return nil, fmt.Errorf("cuda: NewBackend: negative device ordinal %d", ordinal)
	}
	return &Backend{d: d, ordinal: ordinal, mem: newMemCache()}, nil
}

// Close frees the cached device memory and closes the driver; the backend
// and its tensors must not be used afterwards.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.mem.close()
	ferr := b.releaseCache()
	for i := range b.scratch {
		if s := &b.scratch[i]; s.ptr != 0 {
			if err := b.d.Free(s.ptr); err != nil && ferr == nil {
				ferr = err
			}
			*s = scratchBuf{}
		}
	}
	if err := b.d.Close(); err != nil {
		return err
	}
	return ferr
}

// DeviceMemory reports the device's free and total bytes (tensor.DeviceMemory)
// when the driver can tell (the real one can; the emulator when it was given
// a memory limit).
func (b *Backend) DeviceMemory() (free, total uint64, err error) {
	mi, ok := b.d.(interface {
		MemInfo() (free, total uint64, err error)
	})
	if !ok {
		return 0, 0, fmt.Errorf("cuda: %s does not report its memory", b.d.Name())
	}
	return mi.MemInfo()
}

func (b *Backend) Name() string { return fmt.Sprintf("cuda:%d (%s)", b.ordinal, b.d.Name()) }

func (b *Backend) Device() tensor.Device { return tensor.Device{Type: tensor.CUDA, Index: b.ordinal} }

// Sync waits for the queued work and returns the backend's device failure:
// an error of that work, or one recorded before (see Err).
func (b *Backend) Sync() error {
	if b.err == nil {
		b.check("Sync", b.d.Sync())
	}
	return b.err
}

// ---- device failures ----

var _ tensor.Faulter = (*Backend)(nil)

// Err returns the backend's first device failure (an *OutOfMemoryError or a
// *FaultError), nil while there is none. Once it is set every operation is a
// no-op, as after a sticky CUDA error; an error of queued kernels surfaces at
// the next Sync, Download or reduction. Like the backend, Err is for the
// goroutine that uses it.
func (b *Backend) Err() error { return b.err }

// OutOfMemoryError is the sticky error of a backend whose device had no
// room for an allocation after its cache was freed and dropped tensors were
// collected: the same batch size runs out of memory again.
// errors.Is(err, tensor.ErrOutOfMemory) holds.
type OutOfMemoryError struct {
	Device tensor.Device
	// Op is the operation that failed; Bytes the allocation (rounded up to
	// its size class), 0 when the driver ran out of memory inside Op.
	Op    string
	Bytes int64
	// Held is what this backend's live tensors and scratch buffers hold.
	Held int64
	// Free and Total are the device's memory right after the failure
	// (Total 0: the driver could not tell).
	Free, Total uint64
	Err         error // the driver's error
}

func (e *OutOfMemoryError) Error() string {
	what := "in " + e.Op
	if e.Bytes > 0 {
		what = fmt.Sprintf("allocating %s (%d bytes)", formatBytes(e.Bytes), e.Bytes)
	}
	dev := ""
	if e.Total > 0 {
		dev = fmt.Sprintf("; the device has %s free of %s", formatBytes(int64(e.Free)), formatBytes(int64(e.Total)))
	}
	return fmt.Sprintf("cuda: out of memory on %s: %s with %s held by this backend in live tensors (its cache released)%s: %v; "+
		"reduce data.batch_size (or the model or image size), or stop other processes using the GPU",
		e.Device, what, formatBytes(e.Held), dev, e.Err)
}

func (e *OutOfMemoryError) Unwrap() []error { return []error{tensor.ErrOutOfMemory, e.Err} }

// FaultError is the sticky error of a backend whose driver call failed (a
// kernel fault, a lost context, a launch the driver refused).
// errors.Is(err, tensor.ErrDeviceFault) holds.
type FaultError struct {
	Device tensor.Device
	Op     string // the backend operation, e.g. "Upload" or "launch hjepa_axpy (grid ..., block ...)"
	Err    error  // the driver's error
}

func (e *FaultError) Error() string { return fmt.Sprintf("cuda: %s on %s: %v", e.Op, e.Device, e.Err) }

func (e *FaultError) Unwrap() []error { return []error{tensor.ErrDeviceFault, e.Err} }

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY.
const cudaErrorOutOfMemory = 2

// driverOutOfMemory reports whether a failed driver call ran out of device
// memory. libcuda says so with its error code; a Driver that is not libcuda
// (the emulator) fails Alloc only when it is full.
func driverOutOfMemory(err error, alloc bool) bool {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Code == cudaErrorOutOfMemory && !strings.HasPrefix(ce.Call, "cublas")
	}
	return alloc
}

// check records a failed driver call of op as the backend's device failure
// (the first one stays) and reports whether the call succeeded.
func (b *Backend) check(op string, err error) bool {
	if err == nil {
		return true
	}
	b.fail(op, 0, err, false)
	return false
}

// fail records the backend's device failure unless one is recorded: an
// out of memory (bytes, when an allocation of that size failed) or a fault.
func (b *Backend) fail(op string, bytes int, err error, alloc bool) {
	if b.err != nil {
		return
	}
	if !driverOutOfMemory(err, alloc) {
		b.err = &FaultError{Device: b.Device(), Op: op, Err: err}
		return
	}
	e := &OutOfMemoryError{Device: b.Device(), Op: op, Bytes: int64(bytes), Held: b.MemoryStats().InUse, Err: err}
	if mi, ok := b.d.(interface {
		MemInfo() (free, total uint64, err error)
	}); ok {
		if free, total, merr := mi.MemInfo(); merr == nil {
			e.Free, e.Total = free, total
		}
	}
	b.err = e
}

// ---- storage and the caching allocator ----

// Storage is device memory holding a tensor's elements: a block of the
// backend's caching allocator, returned to the cache when the Storage
// becomes unreachable. An Int32 storage also keeps a host copy of its
// values (index lists are written only by UploadInt32, Fill and Copy, which
// keep it current), so Gather and ScatterAdd check indices and build
// ScatterAdd's inverse index without a device round trip.
type Storage struct {
	ptr   DevicePtr
	n     int
	dtype tensor.DType
	dev   tensor.Device
	owner *memCache
	host  []int32
}

func (s *Storage) Device() tensor.Device { return s.dev }
func (s *Storage) DType() tensor.DType   { return s.dtype }
func (s *Storage) Len() int              { return s.n }

// Ptr is the device address of element 0 (0 for an empty storage).
func (s *Storage) Ptr() DevicePtr { return s.ptr }

// memCache holds freed device blocks in free lists per size class. Tensors
// release their blocks from runtime cleanups, on another goroutine, so the
// lists are guarded by mu; cleanups never call the driver.
type memCache struct {
	mu     sync.Mutex
	free   map[int][]DevicePtr
	inUse  int64 // bytes in blocks handed out (by size class)
	cached int64 // bytes in free lists
	allocs int   // driver Allocs
	frees  int   // driver Frees
	closed bool
}

func newMemCache() *memCache { return &memCache{free: map[int][]DevicePtr{}} }

// cachedBlock is a block handed out by the cache.
type cachedBlock struct {
	ptr   DevicePtr
	class int
}

// put returns a block to its free list (from a cleanup or a scratch buffer
// that grew). The stream orders every later use of the block after the
// kernels queued with it, so it can be reused at once.
func (m *memCache) put(blk cachedBlock) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return // the context, and with it the block, is gone
	}
	m.free[blk.class] = append(m.free[blk.class], blk.ptr)
	m.inUse -= int64(blk.class)
	m.cached += int64(blk.class)
}

func (m *memCache) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}

// sizeClass rounds a request up to eight classes per power of two (at most
// 12.5% waste) of at least 512 bytes, so blocks are reused across the small
// shape changes between steps.
func sizeClass(bytes int) int {
	if bytes <= 512 {
		return 512
	}
	p := 1
	for p*2 < bytes {
		p *= 2
	}
	step := max(p/8, 512)
	return ceilDiv(bytes, step) * step
}

// MemoryStats is the state of the caching allocator.
type MemoryStats struct {
	InUse  int64 // bytes in live tensors and scratch buffers (by size class)
	Cached int64 // bytes held in free lists for reuse
	Allocs int   // device allocations so far
	Frees  int   // device frees so far
}

func (b *Backend) MemoryStats() MemoryStats {
	m := b.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{InUse: m.inUse, Cached: m.cached, Allocs: m.allocs, Frees: m.frees}
}

// alloc returns a block of at least bytes, from the cache when it can. When
// the device is full it frees the cache and retries, then collects dropped
// tensors and retries, then records an *OutOfMemoryError (what was asked,
// what is held, what to change) and returns false.
func (b *Backend) alloc(op string, bytes int) (cachedBlock, bool) {
	m := b.mem
	class := sizeClass(bytes)
	m.mu.Lock()
	if list := m.free[class]; len(list) > 0 {
		p := list[len(list)-1]
		m.free[class] = list[:len(list)-1]
		m.cached -= int64(class)
		m.inUse += int64(class)
		m.mu.Unlock()
		return cachedBlock{p, class}, true
	}
	m.mu.Unlock()
	p, err := b.d.Alloc(class)
	if err != nil && driverOutOfMemory(err, true) {
		_ = b.releaseCache()
		p, err = b.d.Alloc(class)
	}
	if err != nil && driverOutOfMemory(err, true) {
		b.collect()
		_ = b.releaseCache()
		p, err = b.d.Alloc(class)
	}
	if err != nil {
		b.fail(op, class, err, true)
		return cachedBlock{}, false
	}
	m.mu.Lock()
	m.allocs++
	m.inUse += int64(class)
	m.mu.Unlock()
	return cachedBlock{p, class}, true
}

// collect returns to the cache the blocks of tensors dropped since the last
// GC: device memory is invisible to Go's collector, so they may be many.
// Their cleanups run on another goroutine after the GC; wait (up to a
// second, on the way to an out-of-memory error) until they have.
func (b *Backend) collect() {
	before := b.MemoryStats().InUse
	runtime.GC()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if b.MemoryStats().InUse < before {
			time.Sleep(5 * time.Millisecond) // let the rest of the queued cleanups run
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// releaseCache frees every cached block on the device.
func (b *Backend) releaseCache() error {
	m := b.mem
	m.mu.Lock()
	var blocks []DevicePtr
	for class, list := range m.free {
		blocks = append(blocks, list...)
		m.cached -= int64(class) * int64(len(list))
		delete(m.free, class)
	}
	m.frees += len(blocks)
	m.mu.Unlock()
	var first error
	for _, p := range blocks {
		if err := b.d.Free(p); err != nil && first == nil {
			first = fmt.Errorf("cuda: free cached block: %w", err)
		}
	}
	return first
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// newStorage allocates n uninitialised elements; runtime.AddCleanup returns
// the block to the cache once the storage is unreachable. On a failed
// backend the storage has no device memory (Ptr 0): no operation touches it.
func (b *Backend) newStorage(dt tensor.DType, n int) *Storage {
	s := &Storage{n: n, dtype: dt, dev: b.Device(), owner: b.mem}
	if dt == tensor.Int32 {
		s.host = make([]int32, n)
	}
	if n == 0 || b.err != nil {
		return s
	}
	blk, ok := b.alloc("New", 4*n)
	if !ok {
		return s
	}
	s.ptr = blk.ptr
	runtime.AddCleanup(s, b.mem.put, blk)
	return s
}

// scratchPtr returns scratch slot i with at least bytes, growing it (the old
// block goes back to the cache) when needed; 0 when the device is full (the
// backend has failed, and the kernels that would use it do nothing).
func (b *Backend) scratchPtr(i, bytes int) DevicePtr {
	s := &b.scratch[i]
	if b.err != nil {
		return 0
	}
	if s.class < bytes {
		if s.ptr != 0 {
			b.mem.put(cachedBlock{s.ptr, s.class})
			*s = scratchBuf{}
		}
		blk, ok := b.alloc("scratch", bytes)
		if !ok {
			return 0
		}
		s.ptr, s.class = blk.ptr, blk.class
	}
	return s.ptr
}

// New allocates a zeroed tensor.
func (b *Backend) New(dt tensor.DType, shape ...int) *tensor.Tensor {
	if dt != tensor.Float32 && dt != tensor.Int32 {
		panic(fmt.Sprintf("cuda: New: unsupported dtype %s", dt))
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cuda: New: negative dimension in %v", shape))
		}
		n *= d
	}
	s := b.newStorage(dt, n)
	if s.ptr != 0 {
		b.check("New", b.d.Memset32(s.ptr, 0, n))
	}
	return tensor.NewView(s, 0, shape...)
}

// storage returns t's storage, which must be of this backend and of dtype dt.
func (b *Backend) storage(op, name string, t *tensor.Tensor, dt tensor.DType) *Storage {
	if t == nil {
		panic(fmt.Sprintf("cuda: %s: %s is nil", op, name))
	}
	s, ok := t.Storage().(*Storage)
	if !ok || s.owner != b.mem {
		panic(fmt.Sprintf("cuda: %s: %s is %s, not a tensor of this backend (%s)", op, name, t, b.Device()))
	}
	if s.dtype != dt {
		panic(fmt.Sprintf("cuda: %s: %s is %s, want %s", op, name, t, dt))
	}
	return s
}

// ptr is the device address of t's first element (see storage).
func (b *Backend) ptr(op, name string, t *tensor.Tensor, dt tensor.DType) DevicePtr {
	return b.storage(op, name, t, dt).ptr.Add(4 * t.Offset())
}

// f32 is ptr for a float32 tensor.
func (b *Backend) f32(op, name string, t *tensor.Tensor) DevicePtr {
	return b.ptr(op, name, t, tensor.Float32)
}

// optF32 is f32 with nil meaning absent (the null pointer).
func (b *Backend) optF32(op, name string, t *tensor.Tensor) DevicePtr {
	if t == nil {
		return 0
	}
	return b.f32(op, name, t)
}

// hostIndex returns the host copy of an int32 tensor's values.
func (b *Backend) hostIndex(op, name string, t *tensor.Tensor) []int32 {
	s := b.storage(op, name, t, tensor.Int32)
	return s.host[t.Offset() : t.Offset()+t.Numel()]
}

// mustNumel panics unless t holds n elements.
func mustNumel(op, name string, t *tensor.Tensor, n int) {
	if t == nil {
		panic(fmt.Sprintf("cuda: %s: %s is nil", op, name))
	}
	if t.Numel() != n {
		panic(fmt.Sprintf("cuda: %s: %s has shape %s (%d elements), want %d elements", op, name, tensor.ShapeString(t.Shape()), t.Numel(), n))
	}
}

// mustSameNumel panics unless a and c hold the same number of elements.
func mustSameNumel(op, an string, a *tensor.Tensor, cn string, c *tensor.Tensor) {
	if a == nil || c == nil {
		panic(fmt.Sprintf("cuda: %s: %s or %s is nil", op, an, cn))
	}
	if a.Numel() != c.Numel() {
		panic(fmt.Sprintf("cuda: %s: %s %s and %s %s differ in element count", op, an, tensor.ShapeString(a.Shape()), cn, tensor.ShapeString(c.Shape())))
	}
}

// ---- host transfers ----

func (b *Backend) Upload(t *tensor.Tensor, src []float32) {
	if b.err != nil {
		return
	}
	p := b.f32("Upload", "t", t)
	if len(src) != t.Numel() {
		panic(fmt.Sprintf("cuda: Upload of %d values into %s", len(src), t))
	}
	if len(src) > 0 {
		b.check("Upload", b.d.CopyHtoD(p, unsafe.Pointer(&src[0]), 4*len(src)))
	}
}

func (b *Backend) UploadInt32(t *tensor.Tensor, src []int32) {
	if b.err != nil {
		return
	}
	p := b.ptr("UploadInt32", "t", t, tensor.Int32)
	if len(src) != t.Numel() {
		panic(fmt.Sprintf("cuda: UploadInt32 of %d values into %s", len(src), t))
	}
	if len(src) > 0 {
		b.check("UploadInt32", b.d.CopyHtoD(p, unsafe.Pointer(&src[0]), 4*len(src)))
		copy(b.hostIndex("UploadInt32", "t", t), src)
	}
}

// Download waits for the queued work and copies t to dst. When that work
// failed, or the backend had failed before, dst is filled with NaN (see Err).
func (b *Backend) Download(dst []float32, t *tensor.Tensor) {
	if b.err != nil {
		fillNaN(dst)
		return
	}
	p := b.f32("Download", "t", t)
	if len(dst) != t.Numel() {
		panic(fmt.Sprintf("cuda: Download of %s into %d values", t, len(dst)))
	}
	if len(dst) > 0 && !b.check("Download", b.d.CopyDtoH(unsafe.Pointer(&dst[0]), p, 4*len(dst))) {
		fillNaN(dst)
	}
}

// fillNaN is what a failed backend downloads.
func fillNaN(dst []float32) {
	nan := float32(math.NaN())
	for i := range dst {
		dst[i] = nan
	}
}

// ---- GEMM ----

// Gemm maps the row-major GemmArgs onto cuBLAS's column-major SGEMM: a
// row-major [M, N] matrix with row stride ldc is the column-major [N, M]
// matrix C^T with leading dimension ldc, and C^T = op(B)^T op(A)^T, so A and
// B, M and N, and their transposes trade places. The bias, which cuBLAS's
// classic API cannot add, is one more pass over every row of every C_b.
func (b *Backend) Gemm(g tensor.GemmArgs) {
	if b.err != nil {
		return
	}
	g, err := g.Normalize()
	if err != nil {
		panic("cuda: " + err.Error())
	}
	c := b.f32("Gemm", "C", g.C)
	bias := b.optF32("Gemm", "Bias", g.Bias)
	if g.M == 0 || g.N == 0 || g.Batch == 0 {
		return
	}
	checkInt32("Gemm", g.M, g.N, g.K, g.Lda, g.Ldb, g.Ldc, g.Batch)
	if g.K == 0 {
		// op(A) op(B) is zero: only Bias + Beta*C remains.
		b.kGemmK0(c, bias, g.Beta, g.M, g.N, g.Ldc, g.StrideC, g.Batch)
		return
	}
	p := SgemmParams{
		TransA: g.TransB, TransB: g.TransA,
		M: g.N, N: g.M, K: g.K,
		Alpha: g.Alpha, Beta: g.Beta,
		A: b.f32("Gemm", "B", g.B), Lda: g.Ldb, StrideA: int64(g.StrideB),
		B: b.f32("Gemm", "A", g.A), Ldb: g.Lda, StrideB: int64(g.StrideA),
		C: c, Ldc: g.Ldc, StrideC: int64(g.StrideC),
		Batch: g.Batch,
	}
	b.check("Gemm: sgemm", b.d.Sgemm(p))
	if bias != 0 {
		b.kBiasAdd(c, bias, g.M, g.N, g.Ldc, g.StrideC, g.Batch)
	}
}

// ---- elementwise ----

func (b *Backend) Fill(t *tensor.Tensor, v float32) {
	if b.err != nil {
		return
	}
	if t == nil {
		panic("cuda: Fill: t is nil")
	}
	if t.DType() == tensor.Int32 {
		p := b.ptr("Fill", "t", t, tensor.Int32)
		if n := t.Numel(); n > 0 {
			iv := int32(v)
			b.check("Fill", b.d.Memset32(p, uint32(iv), n))
			h := b.hostIndex("Fill", "t", t)
			for i := range h {
				h[i] = iv
			}
		}
		return
	}
	p := b.f32("Fill", "t", t)
	if n := t.Numel(); n > 0 {
		b.check("Fill", b.d.Memset32(p, math.Float32bits(v), n))
	}
}

func (b *Backend) Copy(dst, src *tensor.Tensor) {
	if b.err != nil {
		return
	}
	mustSameNumel("Copy", "dst", dst, "src", src)
	if dst.DType() != src.DType() {
		panic(fmt.Sprintf("cuda: Copy: dst %s and src %s differ in dtype", dst, src))
	}
	dt := dst.DType()
	d, s := b.ptr("Copy", "dst", dst, dt), b.ptr("Copy", "src", src, dt)
	n := dst.Numel()
	if n == 0 {
		return
	}
	b.check("Copy", b.d.CopyDtoD(d, s, 4*n))
	if dt == tensor.Int32 {
		copy(b.hostIndex("Copy", "dst", dst), b.hostIndex("Copy", "src", src))
	}
}

func (b *Backend) Scale(x *tensor.Tensor, alpha float32) {
	if b.err != nil {
		return
	}
	p := b.f32("Scale", "x", x)
	if n := x.Numel(); n > 0 {
		b.kScale(p, alpha, n)
	}
}

func (b *Backend) Axpy(y *tensor.Tensor, alpha float32, x *tensor.Tensor) {
	if b.err != nil {
		return
	}
	mustSameNumel("Axpy", "y", y, "x", x)
	yp, xp := b.f32("Axpy", "y", y), b.f32("Axpy", "x", x)
	if n := y.Numel(); n > 0 {
		b.kAxpy(yp, alpha, xp, n)
	}
}

func (b *Backend) Add(dst, a, c *tensor.Tensor) {
	if b.err != nil {
		return
	}
	mustSameNumel("Add", "dst", dst, "a", a)
	mustSameNumel("Add", "dst", dst, "b", c)
	dp, ap, cp := b.f32("Add", "dst", dst), b.f32("Add", "a", a), b.f32("Add", "b", c)
	if n := dst.Numel(); n > 0 {
		b.kAdd(dp, ap, cp, n)
	}
}

func (b *Backend) AddRowVector(x, v *tensor.Tensor) {
	if b.err != nil {
		return
	}
	if x == nil || v == nil {
		panic("cuda: AddRowVector: nil tensor")
	}
	cols := v.Numel()
	if x.Cols() != cols {
		panic(fmt.Sprintf("cuda: AddRowVector: x %s is not rows of v %s", tensor.ShapeString(x.Shape()), tensor.ShapeString(v.Shape())))
	}
	xp, vp := b.f32("AddRowVector", "x", x), b.f32("AddRowVector", "v", v)
	if cols == 0 || x.Numel() == 0 {
		return
	}
	checkInt32("AddRowVector", cols)
	b.kAddRowVector(xp, vp, x.Numel()/cols, cols)
}

// SumRows accumulates dst [C] += column sums of x [R, C] over a fixed row
// partition (see kSumRows).
func (b *Backend) SumRows(dst, x *tensor.Tensor) {
	if b.err != nil {
		return
	}
	if x == nil {
		panic("cuda: SumRows: x is nil")
	}
	cols, rows := x.Cols(), x.Rows()
	mustNumel("SumRows", "dst", dst, cols)
	dp, xp := b.f32("SumRows", "dst", dst), b.f32("SumRows", "x", x)
	if cols == 0 || rows == 0 {
		return
	}
	checkInt32("SumRows", cols)
	_, nb := colBlocks(rows)
	b.kSumRows(dp, xp, b.scratchPtr(scratchColumns, 4*nb*cols), rows, cols)
}

// EMA sets target = momentum*target + (1-momentum)*src, with 1-momentum
// formed in float64 as the CPU backend does.
func (b *Backend) EMA(target, src *tensor.Tensor, momentum float32) {
	if b.err != nil {
		return
	}
	mustSameNumel("EMA", "target", target, "src", src)
	tp, sp := b.f32("EMA", "target", target), b.f32("EMA", "src", src)
	if n := target.Numel(); n > 0 {
		b.kEMA(tp, sp, n, momentum, float32(1-float64(momentum)))
	}
}

// AdamW forms the step's scalar factors in float64 as torch (and tensor/cpu)
// do, then applies them in float32 on the device.
func (b *Backend) AdamW(p, g, m, v *tensor.Tensor, h tensor.AdamWStep) {
	if b.err != nil {
		return
	}
	if p == nil {
		panic("cuda: AdamW: p is nil")
	}
	n := p.Numel()
	mustNumel("AdamW", "g", g, n)
	mustNumel("AdamW", "m", m, n)
	mustNumel("AdamW", "v", v, n)
	if h.Step < 1 {
		panic("cuda: AdamW: Step is 1-based")
	}
	pp, gp, mp, vp := b.f32("AdamW", "p", p), b.f32("AdamW", "g", g), b.f32("AdamW", "m", m), b.f32("AdamW", "v", v)
	if n == 0 {
		return
	}
	b.kAdamW(pp, gp, mp, vp, n, h.Factors())
}

// ---- Patchify, LayerNorm, GELU ----

func (b *Backend) Patchify(dst, img *tensor.Tensor, p int) {
	if b.err != nil {
		return
	}
	if img == nil || img.Rank() != 4 || p <= 0 || img.Dim(2)%p != 0 || img.Dim(3)%p != 0 {
		shape := "nil"
		if img != nil {
			shape = tensor.ShapeString(img.Shape())
		}
		panic(fmt.Sprintf("cuda: Patchify: img has shape %s, want [B, C, H, W] with H and W multiples of p=%d", shape, p))
	}
	bs, c, hh, ww := img.Dim(0), img.Dim(1), img.Dim(2), img.Dim(3)
	mustNumel("Patchify", "dst", dst, bs*(hh/p)*(ww/p)*c*p*p)
	dp, ip := b.f32("Patchify", "dst", dst), b.f32("Patchify", "img", img)
	if dst.Numel() == 0 {
		return
	}
	checkInt32("Patchify", c*p*p, hh, ww)
	b.kPatchify(dp, ip, bs, c, hh, ww, p)
}

func (b *Backend) LayerNormForward(out, mean, rstd, x, w, bias *tensor.Tensor, eps float32) {
	if b.err != nil {
		return
	}
	if x == nil {
		panic("cuda: LayerNormForward: x is nil")
	}
	const op = "LayerNormForward"
	rows, d := x.Rows(), x.Cols()
	mustNumel(op, "out", out, rows*d)
	if out.Cols() != d {
		panic("cuda: LayerNormForward: out " + tensor.ShapeString(out.Shape()) + " and x " + tensor.ShapeString(x.Shape()) + " differ in row length")
	}
	mustNumel(op, "mean", mean, rows)
	mustNumel(op, "rstd", rstd, rows)
	if w != nil {
		mustNumel(op, "w", w, d)
	}
	if bias != nil {
		mustNumel(op, "b", bias, d)
	}
	outp, mp, rp, xp := b.f32(op, "out", out), b.f32(op, "mean", mean), b.f32(op, "rstd", rstd), b.f32(op, "x", x)
	wp, bp := b.optF32(op, "w", w), b.optF32(op, "b", bias)
	if d == 0 || rows == 0 {
		return
	}
	checkInt32(op, d)
	b.kLayerNormForward(outp, mp, rp, xp, wp, bp, rows, d, eps)
}

// LayerNormBackward: dx by one warp per row; dw and db (when w is given) as
// column sums over the fixed row partition of SumRows.
func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, mean, rstd, w *tensor.Tensor) {
	if b.err != nil {
		return
	}
	if x == nil {
		panic("cuda: LayerNormBackward: x is nil")
	}
	rows, d := x.Rows(), x.Cols()
	mustNumel("LayerNormBackward", "dx", dx, rows*d)
	mustNumel("LayerNormBackward", "dout", dout, rows*d)
	mustNumel("LayerNormBackward", "mean", mean, rows)
	mustNumel("LayerNormBackward", "rstd", rstd, rows)
	const op = "LayerNormBackward"
	dxp, dop, xp, mp, rp := b.f32(op, "dx", dx), b.f32(op, "dout", dout), b.f32(op, "x", x), b.f32(op, "mean", mean), b.f32(op, "rstd", rstd)
	var wp, dwp, dbp DevicePtr
	if w != nil {
		mustNumel(op, "w", w, d)
		wp = b.f32(op, "w", w)
		if dw != nil {
			mustNumel(op, "dw", dw, d)
			dwp = b.f32(op, "dw", dw)
		}
		if db != nil {
			mustNumel(op, "db", db, d)
			dbp = b.f32(op, "db", db)
		}
	}
	if d == 0 || rows == 0 {
		return
	}
	checkInt32(op, d)
	b.kLayerNormBackwardDx(dxp, dop, xp, mp, rp, wp, rows, d)
	if dwp != 0 || dbp != 0 {
		_, nb := colBlocks(rows)
		b.kLayerNormBackwardParams(dwp, dbp, dop, xp, mp, rp, b.scratchPtr(scratchColumns, 8*nb*d), rows, d)
	}
}

func (b *Backend) GELUForward(out, x *tensor.Tensor) {
	if b.err != nil {
		return
	}
	mustSameNumel("GELUForward", "out", out, "x", x)
	op, xp := b.f32("GELUForward", "out", out), b.f32("GELUForward", "x", x)
	if n := x.Numel(); n > 0 {
		b.kGELUForward(op, xp, n)
	}
}

func (b *Backend) GELUBackward(dx, dout, x *tensor.Tensor) {
	if b.err != nil {
		return
	}
	mustSameNumel("GELUBackward", "dx", dx, "x", x)
	mustSameNumel("GELUBackward", "dout", dout, "x", x)
	dp, gp, xp := b.f32("GELUBackward", "dx", dx), b.f32("GELUBackward", "dout", dout), b.f32("GELUBackward", "x", x)
	if n := x.Numel(); n > 0 {
		b.kGELUBackward(dp, gp, xp, n)
	}
}

// ---- attention ----

// attnShape checks qkv [B, N, 3*H*Dh] and returns B, N, Dh.
func attnShape(op string, qkv *tensor.Tensor, heads int) (bs, n, dh int) {
	if qkv == nil || qkv.Rank() != 3 || heads <= 0 || qkv.Dim(2)%(3*heads) != 0 {
		shape := "nil"
		if qkv != nil {
			shape = tensor.ShapeString(qkv.Shape())
		}
		panic(fmt.Sprintf("cuda: %s: qkv has shape %s, want [B, N, 3*H*Dh] with H=%d", op, shape, heads))
	}
	bs, n, dh = qkv.Dim(0), qkv.Dim(1), qkv.Dim(2)/(3*heads)
	if dh > maxHeadDim {
		panic(fmt.Sprintf("cuda: %s: head dimension %d (qkv %s, %d heads) exceeds the kernels' maximum %d", op, dh, tensor.ShapeString(qkv.Shape()), heads, maxHeadDim))
	}
	if bs*heads > math.MaxInt32 || ceilDiv(n, 16) > maxGridY {
		panic(fmt.Sprintf("cuda: %s: qkv %s with %d heads exceeds the launch grid", op, tensor.ShapeString(qkv.Shape()), heads))
	}
	return bs, n, dh
}

// AttentionForward is flash attention (hjepa.cu's attn_fwd): one block per
// (batch, head, query tile), K/V tiles through shared memory, online softmax.
func (b *Backend) AttentionForward(out, lse, qkv *tensor.Tensor, heads int, scale float32) {
	if b.err != nil {
		return
	}
	const op = "AttentionForward"
	bs, n, dh := attnShape(op, qkv, heads)
	mustNumel(op, "out", out, bs*n*heads*dh)
	mustNumel(op, "lse", lse, bs*heads*n)
	outp, lp, qp := b.f32(op, "out", out), b.f32(op, "lse", lse), b.f32(op, "qkv", qkv)
	if bs == 0 || n == 0 || dh == 0 {
		return
	}
	b.kAttentionForward(outp, lp, qp, bs, n, heads, dh, scale)
}

// AttentionBackward recomputes the probabilities from lse: delta =
// rowsum(dO*O), then dQ by looping over key tiles per query tile and dK, dV
// by looping over query tiles per key tile (no atomics).
func (b *Backend) AttentionBackward(dqkv, dout, qkv, out, lse *tensor.Tensor, heads int, scale float32) {
	if b.err != nil {
		return
	}
	const op = "AttentionBackward"
	bs, n, dh := attnShape(op, qkv, heads)
	hd := heads * dh
	mustNumel(op, "dqkv", dqkv, bs*n*3*hd)
	mustNumel(op, "dout", dout, bs*n*hd)
	mustNumel(op, "out", out, bs*n*hd)
	mustNumel(op, "lse", lse, bs*heads*n)
	dqp, dop, qp, outp, lp := b.f32(op, "dqkv", dqkv), b.f32(op, "dout", dout), b.f32(op, "qkv", qkv), b.f32(op, "out", out), b.f32(op, "lse", lse)
	if bs == 0 || n == 0 || dh == 0 {
		return
	}
	delta := b.scratchPtr(scratchDelta, 4*bs*heads*n)
	b.kAttentionBackward(dqp, dop, qp, outp, lp, delta, bs, n, heads, dh, scale)
}

// ---- Gather / ScatterAdd ----

// gatherArgs checks dst/src/idx for Gather (rows = dst) or ScatterAdd
// (rows = src) against the host copy of idx and returns the row length and
// the indices.
func (b *Backend) gatherArgs(op string, many, few *tensor.Tensor, manyName, fewName string, idx *tensor.Tensor) (int, []int32) {
	if many == nil || few == nil || idx == nil {
		panic(fmt.Sprintf("cuda: %s: nil tensor", op))
	}
	c := few.Cols()
	if many.Cols() != c {
		panic(fmt.Sprintf("cuda: %s: %s %s and %s %s differ in row length", op, manyName, tensor.ShapeString(many.Shape()), fewName, tensor.ShapeString(few.Shape())))
	}
	if idx.DType() != tensor.Int32 {
		panic(fmt.Sprintf("cuda: %s: idx is %s, want int32", op, idx))
	}
	mustNumel(op, "idx", idx, many.Rows())
	ids := b.hostIndex(op, "idx", idx)
	r := few.Rows()
	for i, v := range ids {
		if v < 0 || int(v) >= r {
			panic(fmt.Sprintf("cuda: %s: idx[%d] = %d outside [0, %d)", op, i, v, r))
		}
	}
	checkInt32(op, c, many.Rows())
	return c, ids
}

// Gather sets dst [M, C] row i = src [R, C] row idx[i].
func (b *Backend) Gather(dst, src, idx *tensor.Tensor) {
	if b.err != nil {
		return
	}
	c, ids := b.gatherArgs("Gather", dst, src, "dst", "src", idx)
	dp, sp, ip := b.f32("Gather", "dst", dst), b.f32("Gather", "src", src), b.ptr("Gather", "idx", idx, tensor.Int32)
	if len(ids) == 0 || c == 0 {
		return
	}
	b.kGather(dp, sp, ip, len(ids), c)
}

// ScatterAdd sets dst [R, C] row idx[i] += src [M, C] row i. The inverse
// index (for each distinct destination row, its source rows in ascending
// order) is built on the host from idx's host copy and uploaded; one thread
// per (destination row, column) adds the sources in that order, so the
// result is bitwise the CPU backend's and the same on every run.
func (b *Backend) ScatterAdd(dst, src, idx *tensor.Tensor) {
	if b.err != nil {
		return
	}
	c, ids := b.gatherArgs("ScatterAdd", src, dst, "src", "dst", idx)
	dp, sp := b.f32("ScatterAdd", "dst", dst), b.f32("ScatterAdd", "src", src)
	m := len(ids)
	if m == 0 || c == 0 {
		return
	}
	// plan = start [u+1] | srcRows [m] | dstRows [u], u distinct rows.
	r := dst.Rows()
	if cap(b.counts) < r {
		b.counts = make([]int32, r)
	}
	counts := b.counts[:r]
	clear(counts)
	u := 0
	for _, v := range ids {
		if counts[v] == 0 {
			u++
		}
		counts[v]++
	}
	if cap(b.plan) < 2*u+1+m {
		b.plan = make([]int32, 2*u+1+m)
	}
	plan := b.plan[:2*u+1+m]
	start, srcRows, dstRows := plan[:u+1], plan[u+1:u+1+m], plan[u+1+m:]
	// Distinct rows in ascending order; counts becomes each row's cursor.
	k, pos := 0, int32(0)
	for row, n := range counts {
		if n == 0 {
			continue
		}
		start[k], dstRows[k] = pos, int32(row)
		counts[row] = pos
		pos += n
		k++
	}
	start[u] = pos
	for i, v := range ids {
		srcRows[counts[v]] = int32(i)
		counts[v]++
	}
	dev := b.scratchPtr(scratchPlan, 4*len(plan))
	if b.err != nil || !b.check("ScatterAdd", b.d.CopyHtoD(dev, unsafe.Pointer(&plan[0]), 4*len(plan))) {
		return
	}
	b.kScatterAdd(dp, sp, dev, dev.Add(4*(u+1)), dev.Add(4*(u+1+m)), u, c)
}

// ---- reductions ----

// reduce runs launch, which writes sumBlocks(n) float64 partials into part,
// and adds them on the host in block order.
func (b *Backend) reduce(op string, n int, launch func(part DevicePtr)) float64 {
	nb := sumBlocks(n)
	if nb == 0 {
		return 0
	}
	part := b.scratchPtr(scratchSum, 8*nb)
	launch(part)
	if b.err != nil {
		return math.NaN()
	}
	if cap(b.partials) < nb {
		b.partials = make([]float64, nb)
	}
	host := b.partials[:nb]
	if !b.check(op, b.d.CopyDtoH(unsafe.Pointer(&host[0]), part, 8*nb)) {
		return math.NaN()
	}
	var total float64
	for _, v := range host {
		total += v
	}
	return total
}

func (b *Backend) Sum(x *tensor.Tensor) float64 {
	if b.err != nil {
		return math.NaN()
	}
	p := b.f32("Sum", "x", x)
	return b.reduce("Sum", x.Numel(), func(part DevicePtr) { b.kSumPartial(part, p, x.Numel(), false) })
}

func (b *Backend) SumSquares(x *tensor.Tensor) float64 {
	if b.err != nil {
		return math.NaN()
	}
	p := b.f32("SumSquares", "x", x)
	return b.reduce("SumSquares", x.Numel(), func(part DevicePtr) { b.kSumPartial(part, p, x.Numel(), true) })
}

// lossArgs checks a loss's tensors and returns their addresses (grad may be nil).
func (b *Backend) lossArgs(op string, grad, pred, target *tensor.Tensor) (g, p, t DevicePtr) {
	mustSameNumel(op, "pred", pred, "target", target)
	if grad != nil {
		mustSameNumel(op, "grad", grad, "pred", pred)
	}
	return b.optF32(op, "grad", grad), b.f32(op, "pred", pred), b.f32(op, "target", target)
}

func (b *Backend) SmoothL1Loss(grad, pred, target *tensor.Tensor, beta, gradScale float32) float64 {
	if b.err != nil {
		return math.NaN()
	}
	if !(beta > 0) {
		panic(fmt.Sprintf("cuda: SmoothL1Loss: beta %v must be positive", beta))
	}
	g, p, t := b.lossArgs("SmoothL1Loss", grad, pred, target)
	n := pred.Numel()
	return b.reduce("SmoothL1Loss", n, func(part DevicePtr) { b.kSmoothL1(part, g, p, t, n, beta, gradScale) })
}

func (b *Backend) MSELoss(grad, pred, target *tensor.Tensor, gradScale float32) float64 {
	if b.err != nil {
		return math.NaN()
	}
	g, p, t := b.lossArgs("MSELoss", grad, pred, target)
	n := pred.Numel()
	return b.reduce("MSELoss", n, func(part DevicePtr) { b.kMSE(part, g, p, t, n, gradScale) })
}

// ---- random fills ----

func (b *Backend) RandUniform(t *tensor.Tensor, rng *tensor.RNG, lo, hi float32) {
	if b.err != nil {
		rng.Advance(t.Numel())
		return
	}
	p := b.f32("RandUniform", "t", t)
	if n := t.Numel(); n > 0 {
		b.kRandUniform(p, n, rng.Seed, rng.Offset, lo, hi-lo)
	}
	rng.Advance(t.Numel())
}

func (b *Backend) RandNormal(t *tensor.Tensor, rng *tensor.RNG, mean, std float32) {
	if b.err != nil {
		rng.Advance(t.Numel())
		return
	}
	p := b.f32("RandNormal", "t", t)
	if n := t.Numel(); n > 0 {
		b.kRandNormal(p, n, rng.Seed, rng.Offset, mean, std)
	}
	rng.Advance(t.Numel())
}

// TruncNormal computes the bounds' CDF values on the host with math.Erf,
// exactly as tensor.RNG.TruncNormalAt, and the rest on the device.
func (b *Backend) TruncNormal(t *tensor.Tensor, rng *tensor.RNG, mean, std, lo, hi float32) {
	if b.err != nil {
		rng.Advance(t.Numel())
		return
	}
	p := b.f32("TruncNormal", "t", t)
	if n := t.Numel(); n > 0 {
		m, s, l, h := float64(mean), float64(std), float64(lo), float64(hi)
		cdf := func(x float64) float64 { return (1 + math.Erf(x/math.Sqrt2)) / 2 }
		cl, cu := cdf((l-m)/s), cdf((h-m)/s)
		b.kTruncNormal(p, n, rng.Seed, rng.Offset, 2*cu-2*cl, 2*cl-1, m, s, l, h)
	}
	rng.Advance(t.Numel())
}
