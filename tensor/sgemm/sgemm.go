// Package sgemm is the CPU backend's single-precision GEMM: packed, cache-blocked
// and multi-threaded over a parallel.Pool, with micro-kernels in Go assembly
// (AVX-512, AVX2+FMA) and a portable Go fallback, chosen at run time from CPUID.
//
// All matrices are row-major. C = alpha*op(A)@op(B) + beta*C, op(A) is [m, k]
// (A stored [m, k] with row stride lda, or [k, m] when transA), op(B) is [k, n]
// (B stored [k, n] with row stride ldb, or [n, k] when transB), C is [m, n]
// with row stride ldc. With beta == 0, C is not read. SgemmBatchedBias also
// adds a bias row to every row of C: C = (alpha*op(A)@op(B) + bias) + beta*C,
// in the micro-kernel's epilogue, so a Linear layer's bias costs no pass of
// its own over C.
//
// The structure is GotoBLAS/BLIS's: for each NC-column block of C and each
// KC-deep slice of the product, op(B) is packed into NR-column panels (shared
// by all workers), then each worker packs MC-row blocks of op(A) into MR-row
// panels and runs the MR x NR micro-kernel over them. Where packing A costs
// more than it saves (narrow C: attention's per-head products, the Linear
// layers' input gradients), the assembly kernels read A in place instead
// (directA). The summation order of
// every C element depends only on the kernel family and k, never on the
// number of workers or on which call (Sgemm, SgemmBatched, SgemmSerial) ran it.
package sgemm

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/hjepa-go/hjepa/tensor/parallel"
)

// Kernel names a micro-kernel family.
type Kernel string

const (
	AVX512  Kernel = "avx512"
	AVX2    Kernel = "avx2"
	Generic Kernel = "generic"
)

// Available lists the kernels this CPU can run, best first.
func Available() []Kernel {
	var ks []Kernel
	for _, mk := range archKernels() {
		ks = append(ks, mk.name)
	}
	return append(ks, Generic)
}

// microKernel computes one MR x NR tile of C from packed panels:
// C[0:mr, 0:nr] (row stride ldc) = (alpha * Apanel^T @ Bpanel + bias) + beta * C,
// where Apanel is k groups of mr floats, Bpanel k groups of nr floats and
// bias nil or nr floats. With beta == 0 the kernel must not read C.
type microKernel struct {
	name       Kernel
	mr, nr     int
	kc, mc, nc int // cache blocking: kc deep, mc rows (multiple of mr), nc columns (multiple of nr)
	run        func(k int, a, b, c *float32, ldc int, alpha, beta float32, bias *float32)
	// runStrided is run reading A where it lies: element (i, p) at
	// a + i*rsA + p*csA bytes (nil: the kernel family has none).
	runStrided func(k int, a *float32, rsA, csA int, b, c *float32, ldc int, alpha, beta float32, bias *float32)
}

// aBlock is the mc x kc block of op(A) a macro-kernel reads: MR-row panels
// packed into a worker buffer, or (direct) A itself, in place, for the full
// MR-row panels, and one packed panel for the rows past the last of them.
type aBlock struct {
	packed []float32 // packed panels; direct: the last, partial panel only
	direct []float32 // nil, or A from op(A)[ic, pc] on
	rs, cs int       // direct: op(A)(i, p) is direct[i*rs + p*cs]
}

// workerBufs is one worker's packing buffers, grown on first use and reused.
type workerBufs struct {
	packA []float32 // mc x kc, MR-row panels
	packB []float32 // kc x nc, NR-column panels (SgemmSerial only)
	tile  []float32 // mr x nr, for edge tiles
	_     [64]byte  // keep neighbouring workers' headers on separate cache lines
}

// Engine runs GEMMs on a pool with one set of packing buffers per worker.
// Sgemm and SgemmBatched must not be called concurrently with each other on
// one Engine; SgemmSerial may run concurrently on distinct workers.
type Engine struct {
	pool   *parallel.Pool
	kernel Kernel
	mk     microKernel
	bufs   []workerBufs
	packB  []float32      // shared packed op(B), k x nc, for parallel GEMMs
	ready  []atomic.Int32 // per packB panel: 0 free, 1 packing, 2 packed
}

// New makes an engine on pool using kernel k ("" picks the best available).
// It panics if k is not one of Available().
func New(pool *parallel.Pool, k Kernel) *Engine {
	if k == "" {
		k = Available()[0]
	}
	var mk microKernel
	found := false
	for _, c := range append(archKernels(), genericKernel) {
		if c.name == k {
			mk, found = c, true
			break
		}
	}
	if !found {
		panic(fmt.Sprintf("sgemm: kernel %q is not available on this CPU (available: %v)", k, Available()))
	}
	e := &Engine{pool: pool, kernel: k, mk: mk, bufs: make([]workerBufs, pool.Size())}
	for w := range e.bufs {
		e.bufs[w].packA = alignedFloats(mk.mc * mk.kc)
		e.bufs[w].tile = alignedFloats(mk.mr * mk.nr)
	}
	return e
}

// Kernel reports the micro-kernel family in use.
func (e *Engine) Kernel() Kernel { return e.kernel }

// Sgemm computes one GEMM using every worker of the pool.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	e.SgemmBatched(transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1)
}

// parallelFlops is the GEMM size (2*m*n*k) below which splitting one GEMM over
// workers costs more in wake-ups than it saves.
const parallelFlops = 1 << 21

// SgemmBatched computes batch GEMMs whose matrices start stride elements apart,
// using every worker of the pool.
func (e *Engine) SgemmBatched(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int) {
	e.SgemmBatchedBias(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batch, nil)
}

// SgemmBatchedBias is SgemmBatched that also adds bias (nil, or n floats) to
// every row of every C.
func (e *Engine) SgemmBatchedBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int, batch int, bias []float32) {
	if batch <= 0 || m <= 0 || n <= 0 {
		return
	}
	if bias != nil && len(bias) < n {
		panic(fmt.Sprintf("sgemm: bias has %d elements, needs %d", len(bias), n))
	}
	p := e.pool.Size()
	flops := 2 * float64(m) * float64(n) * float64(k)
	// Whole GEMMs per worker when the batch alone balances the workers (or the
	// GEMMs are too small to split); otherwise split each GEMM.
	if p == 1 || flops < parallelFlops || batch >= 4*p || batch%p == 0 {
		e.pool.For(batch, 1, func(w, lo, hi int) {
			for i := lo; i < hi; i++ {
				e.serial(w, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc, bias)
			}
		})
		return
	}
	for i := 0; i < batch; i++ {
		e.parallelGemm(transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, c[i*strideC:], ldc, bias)
	}
}

// SgemmSerial computes one GEMM on the calling goroutine using worker w's
// packing buffers. Kernels that are already inside a pool.For loop (attention,
// one head per worker) call it with their worker number. It never uses the pool.
func (e *Engine) SgemmSerial(w int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	e.serial(w, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// serial is SgemmSerial with an optional bias row (n floats).
func (e *Engine) serial(w int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, bias []float32) {
	if m <= 0 || n <= 0 {
		return
	}
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if k <= 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc, bias)
		return
	}
	mk := &e.mk
	wb := &e.bufs[w]
	for jc := 0; jc < n; jc += mk.nc {
		nc := min(mk.nc, n-jc)
		if k > mk.kc && k*roundUp(nc, mk.nr) <= serialBudget && !noKInner {
			e.serialKInner(wb, transA, transB, m, nc, k, alpha, a, lda, b, ldb, jc, beta, c, ldc, bias)
			continue
		}
		for pc := 0; pc < k; pc += mk.kc {
			kc := min(mk.kc, k-pc)
			bet, bs := kBlockEpilogue(pc, beta, biasAt(bias, jc))
			pb := growAligned(&wb.packB, kc*roundUp(nc, mk.nr))
			packB(transB, b, ldb, pc, kc, jc, nc, mk.nr, pb)
			for ic := 0; ic < m; ic += mk.mc {
				mc := min(mk.mc, m-ic)
				ab := e.blockA(wb, transA, a, lda, ic, mc, pc, kc, nc)
				e.macroKernel(wb, mc, nc, kc, alpha, bet, ab, pb, c[ic*ldc+jc:], ldc, bs)
			}
		}
	}
}

// serialBudget caps the packed op(B) of serialKInner (all of k for one
// column block) at 256K floats (1 MiB): it stays in a 2 MiB L2 beside the C
// block.
const serialBudget = 1 << 18

// noKInner turns serialKInner off (tests compare both ways).
var noKInner = false

// serialKInner is serial's column block jc (nc wide) with the k blocks
// innermost: op(B) is packed for all of k first, then each mc-row block of
// C gets every k block in turn while it is still in cache. With the k
// blocks outermost, a C larger than the caches (12544 x 192 floats, 9.6 MB,
// in a ViT's input-gradient GEMMs) would come back from memory once per k
// block, and the micro-kernel's beta*C loads would wait for it (measured:
// those GEMMs 2-12% faster). The summation order of each element is the
// same (k blocks in order).
func (e *Engine) serialKInner(wb *workerBufs, transA, transB bool, m, nc, k int, alpha float32, a []float32, lda int, b []float32, ldb int, jc int, beta float32, c []float32, ldc int, bias []float32) {
	mk := &e.mk
	ncr := roundUp(nc, mk.nr)
	pbAll := growAligned(&wb.packB, k*ncr)
	for pc := 0; pc < k; pc += mk.kc {
		kc := min(mk.kc, k-pc)
		packB(transB, b, ldb, pc, kc, jc, nc, mk.nr, pbAll[pc*ncr:])
	}
	for ic := 0; ic < m; ic += mk.mc {
		mc := min(mk.mc, m-ic)
		for pc := 0; pc < k; pc += mk.kc {
			kc := min(mk.kc, k-pc)
			bet, bs := kBlockEpilogue(pc, beta, biasAt(bias, jc))
			ab := e.blockA(wb, transA, a, lda, ic, mc, pc, kc, nc)
			e.macroKernel(wb, mc, nc, kc, alpha, bet, ab, pbAll[pc*ncr:], c[ic*ldc+jc:], ldc, bs)
		}
	}
}

// parallelBudget caps the shared packed op(B) (all of k for one NC-column
// block) at 2M floats (8 MiB), which sets the column block width in parallel
// GEMMs with a deep k.
const parallelBudget = 1 << 21

// parallelGemm splits one GEMM over all workers with one pool loop per column
// block of C. The workers take row chunks of C (or row x column chunks when m
// is small), pack their own op(A) blocks, and share the packed op(B) of the
// whole column block: whoever first needs a B panel packs it, and the others
// wait for its ready flag, so no barrier is needed inside the loop.
func (e *Engine) parallelGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, bias []float32) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if k <= 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc, bias)
		return
	}
	mk := &e.mk
	p := e.pool.Size()
	mPanels := ceilDiv(m, mk.mr)
	// One row chunk per worker (at least 8 MR-panels, so a B panel brought
	// into L1 serves that many kernel calls). Measured on 1024^3 with two
	// workers: one chunk each gives 1.84x one worker, four chunks of at most
	// mc rows each (dynamic hand-out) 1.69x: every chunk re-streams the
	// packed B, and smaller row blocks reuse each B panel fewer times.
	chunkPanels := max(ceilDiv(mPanels, p), min(8, mPanels))
	mChunks := ceilDiv(mPanels, chunkPanels)
	kBlocks := ceilDiv(k, mk.kc)
	ncMax := min(mk.nc, max(mk.nr, parallelBudget/k/mk.nr*mk.nr))
	for jc := 0; jc < n; jc += ncMax {
		nc := min(ncMax, n-jc)
		nPanels := ceilDiv(nc, mk.nr)
		// Column chunks only when there are too few row chunks to go round.
		nChunks := 1
		if mChunks < 2*p {
			nChunks = min(nPanels, ceilDiv(2*p, mChunks))
		}
		nChunkPanels := ceilDiv(nPanels, nChunks)
		nChunks = ceilDiv(nPanels, nChunkPanels)
		// Packed op(B) for block pc starts at pc*nPanels*NR (each of its
		// panels is kc deep); ready[kb*nPanels+q] is 0 (free), 1 (being
		// packed) or 2 (packed).
		pbAll := growAligned(&e.packB, k*nPanels*mk.nr)
		if cap(e.ready) < kBlocks*nPanels {
			e.ready = make([]atomic.Int32, kBlocks*nPanels)
		}
		ready := e.ready[:kBlocks*nPanels]
		for i := range ready {
			ready[i].Store(0)
		}
		e.pool.For(mChunks*nChunks, 1, func(w, lo, hi int) {
			wb := &e.bufs[w]
			for it := lo; it < hi; it++ {
				mi, ni := it/nChunks, it%nChunks
				i0 := mi * chunkPanels * mk.mr
				i1 := min(i0+chunkPanels*mk.mr, m)
				jp0 := ni * nChunkPanels
				jp1 := min(jp0+nChunkPanels, nPanels)
				j0 := jp0 * mk.nr
				j1 := min(jp1*mk.nr, nc)
				// Equal row blocks of at most mc: no short tail block that
				// would reuse each B panel only a few times. Each row block
				// takes every k block in turn while its C is in cache (as
				// serialKInner).
				step := roundUp(ceilDiv(i1-i0, ceilDiv(i1-i0, mk.mc)), mk.mr)
				for ic := i0; ic < i1; ic += step {
					mc := min(step, i1-ic)
					for pc := 0; pc < k; pc += mk.kc {
						kc := min(mk.kc, k-pc)
						bet, bs := kBlockEpilogue(pc, beta, biasAt(bias, jc+j0))
						pb := pbAll[pc*nPanels*mk.nr:]
						panelLen := kc * mk.nr
						st := ready[pc/mk.kc*nPanels:]
						for q := jp0; q < jp1; q++ {
							// Load first: a failing CompareAndSwap still takes
							// the flag's cache line from the other workers.
							if st[q].Load() == 0 && st[q].CompareAndSwap(0, 1) {
								jq := q * mk.nr
								packB(transB, b, ldb, pc, kc, jc+jq, min(mk.nr, nc-jq), mk.nr, pb[q*panelLen:(q+1)*panelLen])
								st[q].Store(2)
							}
						}
						ab := e.blockA(wb, transA, a, lda, ic, mc, pc, kc, j1-j0)
						for q := jp0; q < jp1; q++ {
							for st[q].Load() != 2 {
								runtime.Gosched()
							}
						}
						e.macroKernel(wb, mc, j1-j0, kc, alpha, bet, ab, pb[jp0*panelLen:], c[ic*ldc+jc+j0:], ldc, bs)
					}
				}
			}
		})
	}
}

// blockA prepares op(A)[ic:ic+mc, pc:pc+kc] for a macro-kernel over nc
// columns of C: read in place when the kernel family can (directA), else
// packed into wb.packA.
func (e *Engine) blockA(wb *workerBufs, transA bool, a []float32, lda, ic, mc, pc, kc, nc int) aBlock {
	mr := e.mk.mr
	if !e.directA(transA, lda, mc, nc) {
		packA(transA, a, lda, ic, mc, pc, kc, mr, wb.packA)
		return aBlock{packed: wb.packA}
	}
	var ab aBlock
	if transA {
		ab.direct, ab.rs, ab.cs = a[pc*lda+ic:], 1, lda
	} else {
		ab.direct, ab.rs, ab.cs = a[ic*lda+pc:], lda, 1
	}
	if full := mc / mr * mr; full < mc {
		packA(transA, a, lda, ic+full, mc-full, pc, kc, mr, wb.packA)
		ab.packed = wb.packA
	}
	return ab
}

// directA reports whether a macro-kernel over an mc x nc block of C reads
// op(A) in place rather than packed. Row-major A is read in place: its
// rows are the panel's rows, each read front to back, and measured on the
// ViT block's GEMMs (BenchmarkDirectA) that is as fast as packing or up to
// 20% faster (attention's P V, where A is reused for 64 columns only) up to
// nc = 512.
// Transposed A puts every k step of a panel on its own cache line: 256
// lines per kernel call push the B panel out of L1, and the weight-gradient
// GEMMs (dy^T x, nc = 192..768) ran 10-15% slower; it is read in place only
// for narrow C (attention's dV, dK: nc = head dim), where packing is
// amortised over few kernel calls.
//
// Either way A must be spread over the cache sets where it lies. The sets
// of an address repeat every few KiB (a power of two), so rows whose stride
// is a multiple of a large power of two pile onto a fraction of the sets:
// with lda = 512 (2 KiB rows) the 360 x 256 A block an AVX2 macro-kernel
// reads uses half of the sets of Zen 3's 512 KiB L2 at 11 lines each, more
// than its 8 ways hold, and every sweep over the B panels fetches A again
// (measured: 512^3 at 58 GFLOP/s in place vs 86 packed, 1024^3 on two
// workers 64-72 vs 157-163). When the stride's power-of-two part is at
// most one kc-long row of A (directStrideLimit), consecutive rows cover all
// the sets evenly; packing is what removes the problem otherwise.
func (e *Engine) directA(transA bool, lda, mc, nc int) bool {
	if e.mk.runStrided == nil || mc < e.mk.mr || noDirectA {
		return false
	}
	if stride := lda * 4; stride&-stride > directStrideLimit {
		return false
	}
	if transA {
		return nc <= 64
	}
	// Past ~32 kernel calls per A panel (the MLP's fc1, nc = 768) packing
	// was as fast or up to 4% faster.
	return nc <= 512
}

// directStrideLimit is the largest power of two (bytes) that may divide
// the row stride of an A read in place: one kc = 256 float row of A, the
// kc of both assembly kernels.
const directStrideLimit = 256 * 4

// noDirectA turns reading A in place off (tests compare both ways).
var noDirectA = false

// macroKernel runs the micro-kernel over an mc x nc block of C from op(A)
// (mc rows, packed in MR panels or in place) and packed op(B) (nc columns in
// NR panels), both kc deep. The B panel stays in L1 while the A panels
// stream from L2. bias is nil or holds (at least) nc floats for the columns
// of this block.
func (e *Engine) macroKernel(wb *workerBufs, mc, nc, kc int, alpha, beta float32, ab aBlock, pb []float32, c []float32, ldc int, bias []float32) {
	mk := &e.mk
	mr, nr := mk.mr, mk.nr
	tile := wb.tile
	for jr := 0; jr < nc; jr += nr {
		nrr := min(nr, nc-jr)
		bp := &pb[(jr/nr)*kc*nr]
		var bv *float32
		if bias != nil && nrr == nr {
			bv = &bias[jr : jr+nr][0]
		}
		for ir := 0; ir < mc; ir += mr {
			mrr := min(mr, mc-ir)
			// ap: a packed panel; dp: A in place (rows ir.. of the block).
			var ap, dp *float32
			switch {
			case ab.direct == nil:
				ap = &ab.packed[(ir/mr)*kc*mr]
			case mrr == mr:
				dp = &ab.direct[ir*ab.rs]
			default:
				ap = &ab.packed[0]
			}
			cp, ldt, bt := &c[ir*ldc+jr], ldc, beta
			if mrr < mr || nrr < nr {
				// Edge tile: the kernel writes a full tile into the scratch
				// (the bias too when it has nr columns here; otherwise it is
				// added below, so the kernel never reads past its end).
				cp, ldt, bt = &tile[0], nr, 0
			}
			if dp != nil {
				mk.runStrided(kc, dp, 4*ab.rs, 4*ab.cs, bp, cp, ldt, alpha, bt, bv)
			} else {
				mk.run(kc, ap, bp, cp, ldt, alpha, bt, bv)
			}
			if cp != &tile[0] {
				continue
			}
			for i := 0; i < mrr; i++ {
				crow := c[(ir+i)*ldc+jr : (ir+i)*ldc+jr+nrr]
				trow := tile[i*nr : i*nr+nrr]
				if bias != nil && bv == nil {
					for j, bj := range bias[jr : jr+nrr] {
						trow[j] += bj
					}
				}
				if beta == 0 {
					copy(crow, trow)
				} else {
					for j, t := range trow {
						crow[j] = t + beta*crow[j]
					}
				}
			}
		}
	}
}

// kBlockEpilogue is the beta and bias of the k block starting at pc: the
// first block applies them, later ones add onto C.
func kBlockEpilogue(pc int, beta float32, bias []float32) (float32, []float32) {
	if pc > 0 {
		return 1, nil
	}
	return beta, bias
}

// biasAt is bias from column j on (nil stays nil).
func biasAt(bias []float32, j int) []float32 {
	if bias == nil {
		return nil
	}
	return bias[j:]
}

// scaleC sets C = bias + beta*C (C = bias when beta == 0, without reading C);
// bias may be nil.
func scaleC(m, n int, beta float32, c []float32, ldc int, bias []float32) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else if beta != 1 {
			for j := range row {
				row[j] *= beta
			}
		}
		if bias != nil {
			for j, bj := range bias[:n] {
				row[j] += bj
			}
		}
	}
}

// checkArgs panics unless every matrix fits its slice, so that the kernels
// may address them through pointers without bounds checks.
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	need := func(what string, rows, cols int, s []float32, ld int) {
		if rows <= 0 || cols <= 0 {
			return
		}
		if ld < cols {
			panic(fmt.Sprintf("sgemm: %s leading dimension %d < %d columns", what, ld, cols))
		}
		if len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("sgemm: %s has %d elements, needs %d for [%d, %d] with stride %d", what, len(s), (rows-1)*ld+cols, rows, cols, ld))
		}
	}
	if transA {
		need("A", k, m, a, lda)
	} else {
		need("A", m, k, a, lda)
	}
	if transB {
		need("B", n, k, b, ldb)
	} else {
		need("B", k, n, b, ldb)
	}
	need("C", m, n, c, ldc)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// alignedFloats returns n zeroed floats starting on a 64-byte boundary, so
// that packed panels never split cache lines.
func alignedFloats(n int) []float32 {
	buf := make([]float32, n+16)
	off := int((64 - uintptr(unsafe.Pointer(&buf[0]))%64) % 64 / 4)
	return buf[off : off+n : off+n]
}

// growAligned returns (*buf)[:n], reallocating (aligned) only when it is too small.
func growAligned(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = alignedFloats(n)
	}
	return (*buf)[:n]
}
