package cuda

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// Typed wrappers of the kernels in cuda/kernels/hjepa.cu. Each chooses the
// launch shape; its comment gives the kernel's contract in shapes. Sizes are
// element counts. A launch error is the backend's device failure (see
// Backend.Err), named after the kernel; errors of the kernel itself surface
// from the next Sync, download or reduction. On a failed backend (a scratch
// buffer that did not fit, or an earlier failure) nothing is launched.

// Launch shapes.
const (
	elemThreads   = 256  // elementwise kernels: grid-stride loops
	maxElemBlocks = 1024 // ~1 wave of 256-thread blocks on a 132-SM H100
	rowThreads    = 256  // one warp per row, 8 rows per block
	colThreads    = 256  // column-parallel kernels: threads across columns
	maxGridY      = 65535
	sumBlock      = 4096 // SUM_BLOCK: elements per float64 partial
	sumThreads    = 256  // SUM_THREADS
	maxGridZ      = 65535
	maxColBlocks  = 512 // row blocks of the column sums
)

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func dim(x int) Dim3        { return Dim3{uint32(x), 1, 1} }
func dim2(x, y int) Dim3    { return Dim3{uint32(x), uint32(y), 1} }
func elemGrid(n int) Dim3   { return dim(min(ceilDiv(n, elemThreads), maxElemBlocks)) }
func rowGrid(rows int) Dim3 { return dim(ceilDiv(rows, rowThreads/32)) }

// colShape is the launch shape of a kernel with one thread per column
// (block x) that strides over rows (grid y): narrow rows get narrow blocks.
func colShape(cols, rows int) (grid, block Dim3) {
	bx := min(colThreads, ceilDiv(cols, 32)*32)
	return dim2(ceilDiv(cols, bx), min(max(rows, 1), maxGridY)), dim(bx)
}

// launch queues kernel; a refusal of the driver is the backend's failure.
func (b *Backend) launch(kernel string, grid, block Dim3, args ...any) {
	if b.err != nil {
		return
	}
	if err := b.d.Launch(kernel, grid, block, 0, args...); err != nil {
		b.fail(fmt.Sprintf("launch %s (grid %v, block %v)", kernel, grid, block), 0, err, false)
	}
}

// x [n] *= alpha
func (b *Backend) kScale(x DevicePtr, alpha float32, n int) {
	b.launch("hjepa_scale", elemGrid(n), dim(elemThreads), x, alpha, int64(n))
}

// y [n] += alpha * x [n]
func (b *Backend) kAxpy(y DevicePtr, alpha float32, x DevicePtr, n int) {
	b.launch("hjepa_axpy", elemGrid(n), dim(elemThreads), y, alpha, x, int64(n))
}

// dst [n] = a [n] + c [n]
func (b *Backend) kAdd(dst, a, c DevicePtr, n int) {
	b.launch("hjepa_add", elemGrid(n), dim(elemThreads), dst, a, c, int64(n))
}

// t [n] = m*t + om*s
func (b *Backend) kEMA(t, s DevicePtr, n int, m, om float32) {
	b.launch("hjepa_ema", elemGrid(n), dim(elemThreads), t, s, int64(n), m, om)
}

// p, g, m, v [n]: one AdamW step.
func (b *Backend) kAdamW(p, g, m, v DevicePtr, n int, f tensor.AdamWFactors) {
	b.launch("hjepa_adamw", elemGrid(n), dim(elemThreads), p, g, m, v, int64(n),
		f.Decay, f.Beta1, f.Beta2, f.OneMinusBeta1, f.OneMinusBeta2, f.StepSize, f.BC2Sqrt, f.Eps)
}

// x [rows, cols] += v [cols]
func (b *Backend) kAddRowVector(x, v DevicePtr, rows, cols int) {
	grid, block := colShape(cols, rows)
	b.launch("hjepa_add_row_vector", grid, block, x, v, int64(rows), int32(cols))
}

// batchedColShape is colShape over m rows of batch matrices (grid z).
func batchedColShape(cols, m, batch int) (grid, block Dim3) {
	grid, block = colShape(cols, m)
	grid.Z = uint32(min(max(batch, 1), maxGridZ))
	return grid, block
}

// C_b [m, n] (row stride ldc, batch stride strideC) += bias [n]
func (b *Backend) kBiasAdd(c, bias DevicePtr, m, n, ldc, strideC, batch int) {
	grid, block := batchedColShape(n, m, batch)
	b.launch("hjepa_bias_add", grid, block, c, bias, int32(m), int32(n), int32(ldc), int64(strideC), int32(batch))
}

// C_b = beta*C_b (+ bias), C not read when beta == 0: the GEMM with K == 0.
func (b *Backend) kGemmK0(c, bias DevicePtr, beta float32, m, n, ldc, strideC, batch int) {
	grid, block := batchedColShape(n, m, batch)
	b.launch("hjepa_gemm_k0", grid, block, c, bias, beta, int32(m), int32(n), int32(ldc), int64(strideC), int32(batch))
}

// colBlocks is the fixed row partition of the column sums: blocks of at
// least 32 rows, at most maxColBlocks of them.
func colBlocks(rows int) (blockRows, nb int) {
	blockRows = max(32, ceilDiv(rows, maxColBlocks))
	return blockRows, ceilDiv(rows, blockRows)
}

// dst [cols] += column sums of x [rows, cols]; part holds nb*cols floats.
func (b *Backend) kSumRows(dst, x, part DevicePtr, rows, cols int) {
	blockRows, nb := colBlocks(rows)
	grid, block := colShape(cols, nb)
	b.launch("hjepa_colsum_partial", grid, block, part, x, int64(rows), int32(cols), int32(blockRows))
	b.kColsumFinish(dst, part, nb, cols, cols)
}

// dst [cols] += sum over blk of part [blk*ldp + j].
func (b *Backend) kColsumFinish(dst, part DevicePtr, nb, cols, ldp int) {
	b.launch("hjepa_colsum_finish", dim(ceilDiv(cols, 32)), dim2(32, 8), dst, part, int32(nb), int32(cols), int64(ldp))
}

// img [bs, c, h, w] -> dst [bs, (h/p)*(w/p), c*p*p]
func (b *Backend) kPatchify(dst, img DevicePtr, bs, c, h, w, p int) {
	n := bs * c * h * w
	b.launch("hjepa_patchify", elemGrid(n), dim(elemThreads), dst, img, int32(bs), int32(c), int32(h), int32(w), int32(p))
}

// x, out [rows, d]; mean, rstd [rows]; w, bias [d] or 0.
func (b *Backend) kLayerNormForward(out, mean, rstd, x, w, bias DevicePtr, rows, d int, eps float32) {
	b.launch("hjepa_ln_fwd", rowGrid(rows), dim(rowThreads), out, mean, rstd, x, w, bias, int64(rows), int32(d), eps)
}

// dx [rows, d] += dL/dx; w [d] or 0.
func (b *Backend) kLayerNormBackwardDx(dx, dout, x, mean, rstd, w DevicePtr, rows, d int) {
	b.launch("hjepa_ln_bwd_dx", rowGrid(rows), dim(rowThreads), dx, dout, x, mean, rstd, w, int64(rows), int32(d))
}

// dw, db [d] (either may be 0) += column sums of dout*xhat and dout; part
// holds 2*nb*d floats.
func (b *Backend) kLayerNormBackwardParams(dw, db, dout, x, mean, rstd, part DevicePtr, rows, d int) {
	blockRows, nb := colBlocks(rows)
	grid, block := colShape(d, nb)
	b.launch("hjepa_ln_bwd_dwdb_partial", grid, block, part, dout, x, mean, rstd, int64(rows), int32(d), int32(blockRows))
	if dw != 0 {
		b.kColsumFinish(dw, part, nb, d, 2*d)
	}
	if db != 0 {
		b.kColsumFinish(db, part.Add(4*d), nb, d, 2*d)
	}
}

// out [n] = GELU(x)
func (b *Backend) kGELUForward(out, x DevicePtr, n int) {
	b.launch("hjepa_gelu_fwd", elemGrid(n), dim(elemThreads), out, x, int64(n))
}

// dx [n] = dout * GELU'(x)
func (b *Backend) kGELUBackward(dx, dout, x DevicePtr, n int) {
	b.launch("hjepa_gelu_bwd", elemGrid(n), dim(elemThreads), dx, dout, x, int64(n))
}

// dst [m, cols] row i = src row idx[i]
func (b *Backend) kGather(dst, src, idx DevicePtr, m, cols int) {
	grid, block := colShape(cols, m)
	b.launch("hjepa_gather", grid, block, dst, src, idx, int32(m), int32(cols))
}

// dst row dstRows[u] += src rows srcRows[start[u] : start[u+1]], u < nrows.
func (b *Backend) kScatterAdd(dst, src, start, srcRows, dstRows DevicePtr, nrows, cols int) {
	grid, block := colShape(cols, nrows)
	b.launch("hjepa_scatter_add", grid, block, dst, src, start, srcRows, dstRows, int32(nrows), int32(cols))
}

// sumBlocks is the number of float64 partials of an n-element reduction.
func sumBlocks(n int) int { return ceilDiv(n, sumBlock) }

// part [sumBlocks(n)] = block sums of x [n] (of squares when squares).
func (b *Backend) kSumPartial(part, x DevicePtr, n int, squares bool) {
	sq := int32(0)
	if squares {
		sq = 1
	}
	b.launch("hjepa_sum_partial", dim(sumBlocks(n)), dim(sumThreads), part, x, int64(n), sq)
}

// part [sumBlocks(n)] = block sums of smooth-L1(pred - target); grad [n] or 0.
func (b *Backend) kSmoothL1(part, grad, pred, target DevicePtr, n int, beta, gradScale float32) {
	b.launch("hjepa_smooth_l1", dim(sumBlocks(n)), dim(sumThreads), part, grad, pred, target, int64(n), beta, gradScale)
}

// part [sumBlocks(n)] = block sums of (pred - target)^2; grad [n] or 0.
func (b *Backend) kMSE(part, grad, pred, target DevicePtr, n int, gradScale float32) {
	b.launch("hjepa_mse", dim(sumBlocks(n)), dim(sumThreads), part, grad, pred, target, int64(n), gradScale)
}

// x [n] = lo + span*U[0,1) from Philox counters offset..offset+n-1.
func (b *Backend) kRandUniform(x DevicePtr, n int, seed, offset uint64, lo, span float32) {
	b.launch("hjepa_rand_uniform", elemGrid(n), dim(elemThreads), x, int64(n), seed, offset, lo, span)
}

// x [n] = mean + std*N(0,1).
func (b *Backend) kRandNormal(x DevicePtr, n int, seed, offset uint64, mean, std float32) {
	b.launch("hjepa_rand_normal", elemGrid(n), dim(elemThreads), x, int64(n), seed, offset, mean, std)
}

// x [n] = N(mean, std^2) truncated to [lo, hi] by inverse CDF; a and c are
// the uniform's affine map 2*cdf(hi')-2*cdf(lo') and 2*cdf(lo')-1.
func (b *Backend) kTruncNormal(x DevicePtr, n int, seed, offset uint64, a, c, mean, std, lo, hi float64) {
	b.launch("hjepa_trunc_normal", elemGrid(n), dim(elemThreads), x, int64(n), seed, offset, a, c, mean, std, lo, hi)
}

// attnTiles is one instance of the attention kernels: head dimensions up to
// dh, br rows per block, bc per streamed tile, nt threads (hjepa.cu's
// ATTN_FWD and ATTN_BWD lines).
type attnTiles struct {
	dh, br, bc, nt int
	kernel, dkv    string
}

var (
	attnFwdTiles = []attnTiles{
		{16, 64, 64, 128, "hjepa_attn_fwd_d16", ""},
		{32, 64, 64, 128, "hjepa_attn_fwd_d32", ""},
		{64, 64, 32, 128, "hjepa_attn_fwd_d64", ""},
		{128, 32, 32, 128, "hjepa_attn_fwd_d128", ""},
	}
	attnBwdTiles = []attnTiles{
		{16, 64, 32, 128, "hjepa_attn_bwd_dq_d16", "hjepa_attn_bwd_dkv_d16"},
		{32, 64, 32, 128, "hjepa_attn_bwd_dq_d32", "hjepa_attn_bwd_dkv_d32"},
		{64, 32, 32, 128, "hjepa_attn_bwd_dq_d64", "hjepa_attn_bwd_dkv_d64"},
		{128, 16, 16, 64, "hjepa_attn_bwd_dq_d128", "hjepa_attn_bwd_dkv_d128"},
	}
)

// maxHeadDim is the largest head dimension the attention kernels take.
const maxHeadDim = 128

func pickTiles(tiles []attnTiles, dh int) attnTiles {
	for _, t := range tiles {
		if dh <= t.dh {
			return t
		}
	}
	panic("unreachable: head dim checked by the caller")
}

// qkv [bs, n, 3*h*dh] -> out [bs, n, h*dh], lse [bs, h, n]
func (b *Backend) kAttentionForward(out, lse, qkv DevicePtr, bs, n, h, dh int, scale float32) {
	t := pickTiles(attnFwdTiles, dh)
	b.launch(t.kernel, dim2(bs*h, ceilDiv(n, t.br)), dim(t.nt), out, lse, qkv, int32(n), int32(h), int32(dh), scale)
}

// dqkv [bs, n, 3*h*dh] from dout, out [bs, n, h*dh], qkv and lse; delta
// [bs, h, n] is scratch.
func (b *Backend) kAttentionBackward(dqkv, dout, qkv, out, lse, delta DevicePtr, bs, n, h, dh int, scale float32) {
	rows := bs * n * h
	b.launch("hjepa_attn_bwd_delta", rowGrid(rows), dim(rowThreads), delta, dout, out, int32(bs), int32(n), int32(h), int32(dh))
	t := pickTiles(attnBwdTiles, dh)
	b.launch(t.kernel, dim2(bs*h, ceilDiv(n, t.br)), dim(t.nt), dqkv, dout, qkv, lse, delta, int32(n), int32(h), int32(dh), scale)
	b.launch(t.dkv, dim2(bs*h, ceilDiv(n, t.br)), dim(t.nt), dqkv, dout, qkv, lse, delta, int32(n), int32(h), int32(dh), scale)
}

// checkInt32 panics when a size does not fit a kernel's int parameter.
func checkInt32(op string, sizes ...int) {
	for _, s := range sizes {
		if s > math.MaxInt32 {
			panic(fmt.Sprintf("cuda: %s: size %d does not fit the kernel's 32-bit int", op, s))
		}
	}
}
