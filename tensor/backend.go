package tensor

import (
	"errors"
	"fmt"
	"math"
)

// Backend is the set of kernels the H-JEPA model needs, implemented once per
// device (tensor/cpu, cuda). Every kernel takes tensors that live on the
// backend's device. A backend is used by one goroutine at a time (like a
// CUDA stream): kernels are ordered by the order of the calls. Shapes are checked and a mismatch panics: a wrong shape is
// a programming error, not an input error.
//
// Conventions:
//   - Row-major everywhere; "rows" of a tensor are all dims but the last.
//   - Kernels named ...Backward accumulate parameter gradients (dW += ...).
//     Whether an input gradient is overwritten or accumulated is stated per
//     kernel.
//   - Kernels may run asynchronously on devices with queues; Download, the
//     reductions that return host values, and Sync wait for queued work.
type Backend interface {
	// Name is a short description, e.g. "cpu (avx512, 2 threads)".
	Name() string
	Device() Device

	// New allocates a zeroed tensor on the device.
	New(dt DType, shape ...int) *Tensor
	// Upload copies host values into t (len(src) == t.Numel()).
	Upload(t *Tensor, src []float32)
	// UploadInt32 copies host indices into an int32 tensor.
	UploadInt32(t *Tensor, src []int32)
	// Download copies t's values to dst (len(dst) == t.Numel()).
	Download(dst []float32, t *Tensor)
	// Sync waits until all queued work has finished.
	Sync() error

	// Gemm computes, for each batch b,
	//   C_b = Alpha * op(A_b) @ op(B_b) + Beta * C_b
	// with op(A_b) of shape [M, K] and op(B_b) of shape [K, N]; see GemmArgs.
	Gemm(g GemmArgs)

	// Fill sets every element of t to v.
	Fill(t *Tensor, v float32)
	// Copy sets dst = src (same element count).
	Copy(dst, src *Tensor)
	// Scale sets x *= alpha.
	Scale(x *Tensor, alpha float32)
	// Axpy sets y += alpha * x (same element count).
	Axpy(y *Tensor, alpha float32, x *Tensor)
	// Add sets dst = a + b elementwise; dst may alias a or b.
	Add(dst, a, b *Tensor)
	// AddRowVector adds v to every row of x: x [R, C] += v [C] (broadcast over
	// rows; any leading shape whose last dimension is C). With x viewed as
	// [B, N*D] and v as [N*D] it adds a position table to every image.
	AddRowVector(x, v *Tensor)
	// SumRows accumulates the column sums of x into dst: dst [C] += sum_r x[r, :].
	SumRows(dst, x *Tensor)

	// Patchify cuts images into flattened patches, the layout of a stride-p
	// Conv2d weight reshaped to [D, C*p*p]:
	//   img [B, C, H, W] -> dst [B, (H/p)*(W/p), C*p*p],
	// patches numbered row-major over the (H/p, W/p) grid, each vector ordered
	// (c, i, j).
	Patchify(dst, img *Tensor, p int)

	// LayerNormForward normalises each row of x [R, D]:
	//   out = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps) (biased var),
	// and saves mean [R] and rstd [R] for the backward. w and b may be nil
	// (no affine transform, as for I-JEPA's target normalisation).
	LayerNormForward(out, mean, rstd, x, w, b *Tensor, eps float32)
	// LayerNormBackward accumulates dx [R, D] += dL/dx and, when w is non-nil,
	// dw [D] += dL/dw and db [D] += dL/db.
	LayerNormBackward(dx, dw, db, dout, x, mean, rstd, w *Tensor)

	// GELUForward sets out = x * Phi(x) (the erf form, as torch.nn.GELU()).
	// out may alias x only if the backward does not need x.
	GELUForward(out, x *Tensor)
	// GELUBackward overwrites dx = dout * GELU'(x); dx may alias dout.
	GELUBackward(dx, dout, x *Tensor)

	// AttentionForward is multi-head scaled-dot-product attention without a
	// mask, on timm's packed qkv layout:
	//   qkv [B, N, 3*H*Dh] viewed as [B, N, 3, H, Dh] -> out [B, N, H*Dh],
	//   out_h = softmax(Q_h K_h^T * scale) V_h,
	// and saves lse [B, H, N], the log-sum-exp of each softmax row, so the
	// backward recomputes probabilities without storing them.
	AttentionForward(out, lse, qkv *Tensor, heads int, scale float32)
	// AttentionBackward overwrites dqkv [B, N, 3*H*Dh] from dout [B, N, H*Dh]
	// and the forward's qkv, out and lse.
	AttentionBackward(dqkv, dout, qkv, out, lse *Tensor, heads int, scale float32)

	// Gather copies rows: dst [M, C] row i = src [R, C] row idx[i]; idx is an
	// int32 tensor of M entries in [0, R).
	Gather(dst, src, idx *Tensor)
	// ScatterAdd is Gather's adjoint: dst [R, C] row idx[i] += src [M, C] row i.
	// Repeated indices accumulate; the result does not depend on thread count.
	ScatterAdd(dst, src, idx *Tensor)

	// Sum returns the sum of x's elements, accumulated in blocks in float64.
	Sum(x *Tensor) float64
	// SumSquares returns the sum of squares of x's elements (for global
	// gradient norms), accumulated like Sum.
	SumSquares(x *Tensor) float64

	// SmoothL1Loss returns sum_i l(pred_i - target_i) with torch's smooth L1
	//   l(d) = 0.5*d*d/beta if |d| < beta, else |d| - 0.5*beta  (beta > 0),
	// accumulated like Sum, and overwrites grad = gradScale * dl/dpred (grad
	// may be nil). With gradScale = w/numel the gradient is that of
	// w * F.smooth_l1_loss(pred, target, reduction="mean").
	SmoothL1Loss(grad, pred, target *Tensor, beta, gradScale float32) float64
	// MSELoss is SmoothL1Loss for l(d) = d*d.
	MSELoss(grad, pred, target *Tensor, gradScale float32) float64

	// AdamW takes one decoupled-weight-decay Adam step over flat buffers of
	// equal length, exactly as torch.optim.AdamW:
	//   p *= 1 - lr*wd
	//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
	//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
	AdamW(p, g, m, v *Tensor, h AdamWStep)
	// EMA sets target = momentum*target + (1-momentum)*src.
	EMA(target, src *Tensor, momentum float32)

	// RandUniform, RandNormal and TruncNormal fill t from rng's counter-based
	// stream and advance it by t.Numel(): element i depends only on the seed
	// and the counter, so every backend and thread count gives the same values.
	RandUniform(t *Tensor, rng *RNG, lo, hi float32)
	RandNormal(t *Tensor, rng *RNG, mean, std float32)
	// TruncNormal draws from N(mean, std^2) truncated to [lo, hi] by inverse
	// CDF, as torch.nn.init.trunc_normal_.
	TruncNormal(t *Tensor, rng *RNG, mean, std, lo, hi float32)
}

// DeviceMemory is implemented by backends whose device has memory of its own
// (CUDA): the free and total bytes, for resource checks before training.
type DeviceMemory interface {
	DeviceMemory() (free, total uint64, err error)
}

// Faulter is implemented by backends whose device can fail at run time
// (CUDA: out of memory, a driver error). A device failure is not a panic:
// like CUDA's own sticky errors, the first one is recorded, every later
// kernel of that backend does nothing (those that return values return NaN,
// Download fills its destination with NaN), and Err returns the failure from
// then on. Callers check Err (device.Err) where results leave the device
// and at step boundaries. The error wraps ErrOutOfMemory or ErrDeviceFault.
// Backends without it (the CPU) do not fail this way.
type Faulter interface {
	// Err returns the backend's first device failure, nil while there is none.
	Err() error
}

// ErrOutOfMemory is wrapped by a Faulter's error when an allocation failed
// with the device full: the same configuration fails the same way again.
var ErrOutOfMemory = errors.New("out of device memory")

// ErrDeviceFault is wrapped by a Faulter's error for every other device
// failure (a driver error, a kernel fault): the device or its context is
// unusable, and a fresh one may work.
var ErrDeviceFault = errors.New("device fault")

// GemmArgs describes a (strided-batched) row-major GEMM
//
//	C_b = Alpha * op(A_b) @ op(B_b) + Bias + Beta * C_b,  b in [0, Batch)
//
// op(A_b) is [M, K]: A_b is stored [M, K] with row stride Lda, or [K, M] when
// TransA. op(B_b) is [K, N]: B_b is [K, N], or [N, K] when TransB. C_b is
// [M, N] with row stride Ldc. A_b starts StrideA elements after A_{b-1}, etc.
// A zero Lda/Ldb/Ldc means densely packed; a zero Batch means 1. A Linear
// layer's forward (y = x W^T) is Gemm{TransB: true, M: rows, N: out, K: in}.
// With Beta == 0, C is not read (NaNs in C do not propagate). Bias, when not
// nil, holds N values added to every row of every C_b: a Linear layer's bias,
// which a backend adds as the tile of C is written (the CPU micro-kernel's
// epilogue, cuBLASLt's bias epilogue) instead of in a pass of its own.
type GemmArgs struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	A, B, C        *Tensor
	Lda, Ldb, Ldc  int
	StrideA        int
	StrideB        int
	StrideC        int
	Batch          int
	Bias           *Tensor
}

// Normalize fills in the defaults (packed leading dimensions, Batch 1) and
// checks that every matrix fits in its tensor.
func (g GemmArgs) Normalize() (GemmArgs, error) {
	if g.Batch == 0 {
		g.Batch = 1
	}
	rowsA, colsA := g.M, g.K
	if g.TransA {
		rowsA, colsA = g.K, g.M
	}
	rowsB, colsB := g.K, g.N
	if g.TransB {
		rowsB, colsB = g.N, g.K
	}
	if g.Lda == 0 {
		g.Lda = max(colsA, 1)
	}
	if g.Ldb == 0 {
		g.Ldb = max(colsB, 1)
	}
	if g.Ldc == 0 {
		g.Ldc = max(g.N, 1)
	}
	if g.M < 0 || g.N < 0 || g.K < 0 || g.Batch < 0 {
		return g, fmt.Errorf("gemm: negative size M=%d N=%d K=%d batch=%d", g.M, g.N, g.K, g.Batch)
	}
	if g.Lda < max(colsA, 1) || g.Ldb < max(colsB, 1) || g.Ldc < max(g.N, 1) {
		return g, fmt.Errorf("gemm: leading dimension too small (lda=%d ldb=%d ldc=%d for M=%d N=%d K=%d)", g.Lda, g.Ldb, g.Ldc, g.M, g.N, g.K)
	}
	check := func(name string, t *Tensor, rows, cols, ld, stride int) error {
		if rows == 0 || cols == 0 {
			return nil
		}
		need := (g.Batch-1)*stride + (rows-1)*ld + cols
		if t == nil || t.Numel() < need {
			return fmt.Errorf("gemm: %s needs %d elements (rows=%d cols=%d ld=%d stride=%d batch=%d), has %v", name, need, rows, cols, ld, stride, g.Batch, t)
		}
		return nil
	}
	if err := check("A", g.A, rowsA, colsA, g.Lda, g.StrideA); err != nil {
		return g, err
	}
	if err := check("B", g.B, rowsB, colsB, g.Ldb, g.StrideB); err != nil {
		return g, err
	}
	if err := check("C", g.C, g.M, g.N, g.Ldc, g.StrideC); err != nil {
		return g, err
	}
	if g.Bias != nil && g.Bias.Numel() != g.N {
		return g, fmt.Errorf("gemm: bias has %d elements, want N=%d", g.Bias.Numel(), g.N)
	}
	return g, nil
}

// AdamWStep holds the hyperparameters of one AdamW step. Step is 1-based.
type AdamWStep struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int
}

// AdamWFactors are one step's scalars, formed in float64 as Python forms
// them in torch.optim.AdamW and rounded to float32. Every backend applies
// them in float32, in this order, so backends agree bit for bit:
//
//	p = p*Decay;  m = m*Beta1 + OneMinusBeta1*g;  v = v*Beta2 + OneMinusBeta2*g*g
//	p = p - StepSize*(m / (float32(sqrt(v))/BC2Sqrt + Eps))
type AdamWFactors struct {
	Decay, Beta1, Beta2, OneMinusBeta1, OneMinusBeta2, StepSize, BC2Sqrt, Eps float32
}

// Factors computes the step's scalars.
func (h AdamWStep) Factors() AdamWFactors {
	lr, b1, b2 := float64(h.LR), float64(h.Beta1), float64(h.Beta2)
	return AdamWFactors{
		Decay:         float32(1 - lr*float64(h.WeightDecay)),
		Beta1:         h.Beta1,
		Beta2:         h.Beta2,
		OneMinusBeta1: float32(1 - b1),
		OneMinusBeta2: float32(1 - b2),
		StepSize:      float32(lr / (1 - math.Pow(b1, float64(h.Step)))),
		BC2Sqrt:       float32(math.Sqrt(1 - math.Pow(b2, float64(h.Step)))),
		Eps:           h.Eps,
	}
}
