// Package cpu is the CPU implementation of tensor.Backend: float32 kernels
// over Go memory (tensor.HostStorage), split over one fixed worker pool, with
// GEMMs through tensor/sgemm. Results never depend on the thread count except
// through GEMM and Sum-like reductions, whose block partitions are fixed.
package cpu

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

var _ tensor.Backend = (*Backend)(nil)

// Grain sizes: a pool chunk should carry roughly this many element-operations
// so that scheduling costs stay small and tiny tensors run on one goroutine.
const (
	elemGrain = 1 << 14 // elements per chunk for elementwise ops
	rowWork   = 1 << 13 // elements per chunk for row-wise ops (rows*cols)
)

// Backend runs kernels on the host CPU. Kernels may be called from one
// goroutine at a time per backend (the pool serialises parallel loops; the
// reduction scratch is guarded by mu).
type Backend struct {
	pool    *parallel.Pool
	eng     *sgemm.Engine
	threads int
	scratch []workerScratch // indexed by pool worker

	mu          sync.Mutex // guards the shared reduction scratch below
	partials    []float64  // per-block partial sums of Sum / SumSquares
	colPartials []float32  // per-row-block column sums (SumRows, LayerNorm dw/db)
}

// workerScratch is one worker's grow-only buffers.
type workerScratch struct {
	a, b []float32
	_    [64]byte // keep neighbouring workers' headers on separate cache lines
}

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// New makes a backend with the given number of threads (<= 0: GOMAXPROCS)
// and the best GEMM kernel this CPU supports.
func New(threads int) *Backend { return NewWithKernel(threads, "") }

// NewWithKernel is New with a chosen GEMM micro-kernel ("" picks the best);
// tests use it to run every kernel family.
func NewWithKernel(threads int, k sgemm.Kernel) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	pool := parallel.New(threads)
	return &Backend{
		pool:    pool,
		eng:     sgemm.New(pool, k),
		threads: threads,
		scratch: make([]workerScratch, threads),
	}
}

// Threads is the number of worker goroutines, the caller included.
func (b *Backend) Threads() int { return b.threads }

// Close stops the worker pool; the backend must not be used afterwards.
func (b *Backend) Close() { b.pool.Close() }

func (b *Backend) Name() string {
	t := "threads"
	if b.threads == 1 {
		t = "thread"
	}
	return fmt.Sprintf("cpu (%s gemm, %d %s)", b.eng.Kernel(), b.threads, t)
}

func (b *Backend) Device() tensor.Device { return tensor.Device{Type: tensor.CPU} }

func (b *Backend) Sync() error { return nil }

func (b *Backend) New(dt tensor.DType, shape ...int) *tensor.Tensor {
	switch dt {
	case tensor.Float32:
		return tensor.NewHost(shape...)
	case tensor.Int32:
		n := 1
		for _, d := range shape {
			n *= d
		}
		return tensor.FromInt32s(make([]int32, n), shape...)
	}
	panic(fmt.Sprintf("cpu: New: unsupported dtype %s", dt))
}

func (b *Backend) Upload(t *tensor.Tensor, src []float32) {
	dst := t.F32()
	if len(src) != len(dst) {
		panic(fmt.Sprintf("cpu: Upload of %d values into %s", len(src), t))
	}
	copy(dst, src)
}

func (b *Backend) UploadInt32(t *tensor.Tensor, src []int32) {
	dst := t.I32()
	if len(src) != len(dst) {
		panic(fmt.Sprintf("cpu: UploadInt32 of %d values into %s", len(src), t))
	}
	copy(dst, src)
}

func (b *Backend) Download(dst []float32, t *tensor.Tensor) {
	src := t.F32()
	if len(src) != len(dst) {
		panic(fmt.Sprintf("cpu: Download of %s into %d values", t, len(dst)))
	}
	copy(dst, src)
}

// Gemm validates g with GemmArgs.Normalize and runs it on the sgemm engine.
func (b *Backend) Gemm(g tensor.GemmArgs) {
	g, err := g.Normalize()
	if err != nil {
		panic("cpu: " + err.Error())
	}
	if g.M == 0 || g.N == 0 || g.Batch == 0 {
		return
	}
	c := g.C.F32()
	var bias []float32
	if g.Bias != nil {
		bias = g.Bias.F32()
	}
	if g.K == 0 {
		// op(A) @ op(B) is zero; only Bias + Beta*C remains.
		for bt := 0; bt < g.Batch; bt++ {
			for i := 0; i < g.M; i++ {
				row := c[bt*g.StrideC+i*g.Ldc:][:g.N]
				for j := range row {
					if g.Beta == 0 {
						row[j] = 0
					} else {
						row[j] *= g.Beta
					}
					if bias != nil {
						row[j] += bias[j]
					}
				}
			}
		}
		return
	}
	b.eng.SgemmBatchedBias(g.TransA, g.TransB, g.M, g.N, g.K, g.Alpha,
		g.A.F32(), g.Lda, g.StrideA, g.B.F32(), g.Ldb, g.StrideB,
		g.Beta, c, g.Ldc, g.StrideC, g.Batch, bias)
}

// mustNumel panics unless t holds n elements.
func mustNumel(op, name string, t *tensor.Tensor, n int) {
	if t == nil {
		panic(fmt.Sprintf("cpu: %s: %s is nil", op, name))
	}
	if t.Numel() != n {
		panic(fmt.Sprintf("cpu: %s: %s has shape %s (%d elements), want %d elements", op, name, tensor.ShapeString(t.Shape()), t.Numel(), n))
	}
}

// mustSameNumel panics unless a and b hold the same number of elements.
func mustSameNumel(op, an string, a *tensor.Tensor, bn string, b *tensor.Tensor) {
	if a.Numel() != b.Numel() {
		panic(fmt.Sprintf("cpu: %s: %s %s and %s %s differ in element count", op, an, tensor.ShapeString(a.Shape()), bn, tensor.ShapeString(b.Shape())))
	}
}

// rowGrain is the number of rows of length cols per pool chunk.
func rowGrain(cols int) int { return max(1, rowWork/max(cols, 1)) }
