package jepa

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// LossConfig is the hierarchical loss.
type LossConfig struct {
	// Type is "smoothl1" (I-JEPA, beta 1) or "mse".
	Type string
	// Weights w_l per level; len == Levels.
	Weights []float64
	// VICRegWeight scales the VICReg term (0: off); VarianceCoeff and
	// CovarianceCoeff weigh its parts.
	VICRegWeight, VarianceCoeff, CovarianceCoeff float64
	// StdTarget is the variance hinge's target std (VICReg's gamma; 0: 1).
	StdTarget float64
	// VICRegTokens picks VICReg's samples: 0, one per image, the mean of its
	// context embeddings; K > 0, K context token embeddings per image (evenly
	// spaced along its context list), B*K samples in all.
	VICRegTokens int
	// InvarianceCoeff (with VICRegTokens 0) adds VICReg's invariance term:
	// the mean squared difference between each image's mean context
	// embedding and the target encoder's mean embedding of the whole image,
	// or of its second view (StepOptions.View2); no gradient to the target
	// side.
	InvarianceCoeff float64
	// RawTargets (loss.normalize_embeddings false) compares the predictions
	// with the target encoder's output as it is: no LayerNorm of the target
	// tokens, and at levels > 0 no LayerNorm of the window means on either
	// side. The default, false, is I-JEPA's F.layer_norm targets.
	RawTargets bool
}

// StepStats are the losses of one forward pass.
type StepStats struct {
	// Loss = JEPA + VICReg, the objective the gradients are of.
	Loss float64
	// JEPA = sum_l w_l * Levels[l], the predictive loss.
	JEPA float64
	// Levels[l] is level l's mean loss; 0 when Windows[l] == 0.
	Levels []float64
	// Windows[l] is the number of pooling windows per target block at level l
	// in this batch (0: the level had no window and contributed nothing).
	Windows []int
	// VICReg is the weighted VICReg term (0 when off).
	VICReg float64
}

// StepOptions are what one ForwardBackward call needs besides the batch.
type StepOptions struct {
	// Backward runs the backward pass too, accumulating every gradient of
	// the trained arena (the caller zeroes them).
	Backward bool
	// Replicas, in data-parallel training, gathers VICReg's samples from
	// every replica so that its batch statistics cover the global batch, as
	// the official VICReg's FullGatherLayer; nil: this batch alone.
	Replicas BatchGather
	// View2, when set, is a second augmented view of the same images
	// [B, C, H, W]: VICReg's invariance term compares each image's mean
	// context embedding with the target encoder's mean embedding of its
	// second view instead of the first (the one the JEPA loss sees).
	View2 *tensor.Tensor
	// GradsReady, when set with Backward, is called during the backward
	// with growing upTo as Params.Grads[:upTo] become final (heads and
	// predictor first, then the encoder block by block: NewModel lays the
	// parameters out in reverse declaration order), and with Params.Len()
	// at the end. Data-parallel training starts reducing buckets with it.
	GradsReady func(upTo int)
}

// BatchGather exchanges small per-replica matrices between data-parallel
// replicas.
type BatchGather interface {
	// Rank and WorldSize place this replica.
	Rank() int
	WorldSize() int
	// GatherRows returns every replica's local (same length everywhere),
	// indexed by rank.
	GatherRows(local []float32) ([][]float32, error)
}

// stepState holds the per-step buffers (grow-only).
type stepState struct {
	ctxIdx, tgtIdx, tgtRows intWorkspace
	members, windows        []intWorkspace
	tnorm, tmean, trstd     tensor.Workspace
	tsel                    tensor.Workspace
	dp                      tensor.Workspace
	dz                      tensor.Workspace
	levels                  []levelState
	ones                    tensor.Workspace
	pooled, dpooled         tensor.Workspace
	hostPooled              []float32
	vicRows                 intWorkspace // token mode: the sampled rows of z [B*Nc, D]
	vicSel, vicGrad         tensor.Workspace
	hostSel                 []float32
	hostTarget              []float32 // pooled target embeddings for the invariance term
	hostGlobal              []float32 // VICReg's samples of the global batch
	vicN                    int       // VICReg's samples on this replica
	projIn                  []float32 // the projector's input [x; target]

	// saved by forward for backward
	p    *tensor.Tensor // predictor output [T, D]
	used []bool
}

// levelState holds one level's buffers: pooled inputs, their LayerNorm
// (no affine) on both sides, the loss gradient and the backward scratch.
type levelState struct {
	gather, pred, tgt    tensor.Workspace
	tgtN, tgtMu, tgtRstd tensor.Workspace
	prdN, prdMu, prdRstd tensor.Workspace
	predIn               *tensor.Tensor // pooled predictions (LayerNorm input)
	grad, tmp            tensor.Workspace
	scratch, dIn         tensor.Workspace
	wtot, s              int
}

// TargetNormEps is the epsilon of the parameter-free LayerNorms of the
// targets (and of the pooled predictions at levels l > 0): I-JEPA normalises
// its targets with F.layer_norm's default, 1e-5, not the encoder's 1e-6.
const TargetNormEps = 1e-5

// ForwardBackward runs one H-JEPA step on img [B, C, H, W] with masks drawn
// for B images: the target encoder on the whole image (LayerNorm'd, no
// affine), the context encoder on the context patches and the predictor at
// the target positions. Level 0 is I-JEPA's loss between the predictions and
// the normalised targets at the target patches; level l > 0 compares
// LayerNorm (no affine) of the 2^l x 2^l window means of the normalised
// targets with the same windows' mean predictions, LayerNorm'd without affine
// or through the level's prediction head. With opts.Backward it accumulates
// every gradient of the trained arena (the caller zeroes them).
func (m *Model) ForwardBackward(b tensor.Backend, img *tensor.Tensor, masks *Masks, lc LossConfig, opts StepOptions) (StepStats, error) {
	cfg := m.Cfg
	if len(lc.Weights) != cfg.Levels || len(masks.Levels) != cfg.Levels {
		return StepStats{}, fmt.Errorf("jepa: %d loss weights and %d mask levels for %d levels", len(lc.Weights), len(masks.Levels), cfg.Levels)
	}
	if lc.Type != "smoothl1" && lc.Type != "mse" {
		return StepStats{}, fmt.Errorf("jepa: loss type %q (want smoothl1 or mse)", lc.Type)
	}
	st := &m.step
	bs := img.Dim(0)
	if masks.B != bs {
		return StepStats{}, fmt.Errorf("jepa: masks for %d images, batch of %d", masks.B, bs)
	}
	d := cfg.Encoder.Dim
	const eps = TargetNormEps
	np := cfg.Encoder.NumPatches()
	nt := masks.Nt
	bt := len(masks.Targets) / nt // NumTargets * B
	tRows := bt * nt

	ctxIdx := st.ctxIdx.upload(b, masks.Context, bs, masks.Nc)
	tgtIdx := st.tgtIdx.upload(b, masks.Targets, bt, nt)
	rows := st.tgtRows.host(tRows)
	for q := 0; q < bt; q++ {
		for j := 0; j < nt; j++ {
			rows[q*nt+j] = int32((q%bs)*np) + masks.Targets[q*nt+j]
		}
	}
	tgtRows := st.tgtRows.upload(b, rows, tRows)

	// Targets: LayerNorm(target_encoder(img)) at the target patches.
	h := m.TargetEncoder.Forward(b, img, nil) // [B, Np, D]
	tn := h.Reshape(bs*np, d)
	if !lc.RawTargets {
		tn = st.tnorm.Get(b, bs*np, d)
		b.LayerNormForward(tn, st.tmean.Get(b, bs*np), st.trstd.Get(b, bs*np), h.Reshape(bs*np, d), nil, nil, eps)
	}
	tsel := st.tsel.Get(b, tRows, d)
	b.Gather(tsel, tn, tgtRows)

	// Predictions.
	z := m.Encoder.Forward(b, img, ctxIdx)         // [B, Nc, D]
	p := m.Predictor.Forward(b, z, ctxIdx, tgtIdx) // [bt, Nt, D]
	st.p = p.Reshape(tRows, d)

	stats := StepStats{Levels: make([]float64, cfg.Levels), Windows: make([]int, cfg.Levels)}
	for len(st.levels) < cfg.Levels {
		st.levels = append(st.levels, levelState{})
		st.members = append(st.members, intWorkspace{})
		st.windows = append(st.windows, intWorkspace{})
	}
	st.used = st.used[:0]
	for l := 0; l < cfg.Levels; l++ {
		lw := masks.Levels[l]
		ls := &st.levels[l]
		stats.Windows[l] = lw.Windows
		st.used = append(st.used, lw.Windows > 0)
		if lw.Windows == 0 {
			continue
		}
		ls.s = lw.S
		ls.wtot = bt * lw.Windows
		pred, tgt := st.p, tsel
		if lw.S > 1 {
			mem := st.members[l].upload(b, lw.Members, len(lw.Members))
			win := st.windows[l].upload(b, lw.Window, len(lw.Window))
			ls.predIn = poolWindows(b, &ls.gather, &ls.pred, st.p, mem, win, ls.wtot, lw.S)
			tgtIn := poolWindows(b, &ls.gather, &ls.tgt, tsel, mem, win, ls.wtot, lw.S)
			tgt = tgtIn
			if !lc.RawTargets {
				tgt = ls.tgtN.Get(b, ls.wtot, d)
				b.LayerNormForward(tgt, ls.tgtMu.Get(b, ls.wtot), ls.tgtRstd.Get(b, ls.wtot), tgtIn, nil, nil, eps)
			}
			switch hd := m.Heads[l]; {
			case hd != nil:
				pred = hd.Forward(b, ls.predIn)
			case lc.RawTargets:
				pred = ls.predIn
			default:
				pred = ls.prdN.Get(b, ls.wtot, d)
				b.LayerNormForward(pred, ls.prdMu.Get(b, ls.wtot), ls.prdRstd.Get(b, ls.wtot), ls.predIn, nil, nil, eps)
			}
		}
		n := ls.wtot * d
		scale := float32(lc.Weights[l] / float64(n))
		var g *tensor.Tensor
		if opts.Backward {
			g = ls.grad.Get(b, ls.wtot, d)
		}
		var sum float64
		if lc.Type == "smoothl1" {
			sum = b.SmoothL1Loss(g, pred, tgt, 1, scale)
		} else {
			sum = b.MSELoss(g, pred, tgt, scale)
		}
		stats.Levels[l] = sum / float64(n)
		stats.JEPA += lc.Weights[l] * stats.Levels[l]
	}
	stats.Loss = stats.JEPA

	var vicGrad []float32
	if lc.VICRegWeight > 0 {
		var err error
		if vicGrad, err = m.vicreg(b, h, z, lc, opts, &stats); err != nil {
			return stats, err
		}
	}
	if math.IsNaN(stats.Loss) || math.IsInf(stats.Loss, 0) {
		return stats, fmt.Errorf("jepa: loss is %v (levels %v, vicreg %v)", stats.Loss, stats.Levels, stats.VICReg)
	}
	if !opts.Backward {
		return stats, nil
	}

	m.backward(b, masks, lc, opts, vicGrad)
	return stats, nil
}

// backward accumulates the gradients of the loss ForwardBackward just
// computed (its per-level output gradients are in the level states):
// level normalisation or heads -> unpooling -> predictor -> VICReg's
// gradient on the context embeddings -> context encoder, with
// opts.GradsReady told as the arena's prefixes become final.
func (m *Model) backward(b tensor.Backend, masks *Masks, lc LossConfig, opts StepOptions, vicGrad []float32) {
	st := &m.step
	d := m.Cfg.Encoder.Dim
	bs, nt := masks.B, masks.Nt
	bt := len(masks.Targets) / nt
	dp := st.dp.Get(b, bt*nt, d)
	b.Fill(dp, 0)
	for l := 0; l < m.Cfg.Levels; l++ {
		if !st.used[l] {
			continue
		}
		ls := &st.levels[l]
		g := ls.grad.Get(b, ls.wtot, d)
		if ls.s == 1 {
			b.Axpy(dp, 1, g)
			continue
		}
		dIn := ls.dIn.Get(b, ls.wtot, d)
		switch hd := m.Heads[l]; {
		case hd != nil:
			hd.Backward(b, dIn, g, ls.scratch.Get(b, ls.wtot, d))
		case lc.RawTargets:
			dIn = g
		default:
			b.Fill(dIn, 0)
			b.LayerNormBackward(dIn, nil, nil, g, ls.predIn, ls.prdMu.Get(b, ls.wtot), ls.prdRstd.Get(b, ls.wtot), nil)
		}
		// Pooling's adjoint: every member row receives its window's
		// gradient divided by the window size.
		tmp := ls.tmp.Get(b, ls.wtot*ls.s*ls.s, d)
		b.Gather(tmp, dIn, st.windows[l].t)
		b.Scale(tmp, 1/float32(ls.s*ls.s))
		b.ScatterAdd(dp, tmp, st.members[l].t)
	}
	dz := st.dz.Get(b, bs, masks.Nc, d)
	m.Predictor.Backward(b, dz, dp.Reshape(bt, nt, d))
	if vicGrad != nil {
		if pr := m.Projector; pr != nil {
			// The rows after the first vicN are the target side's: the
			// projector learns from them, the target encoder does not.
			vicGrad = pr.Backward(b, vicGrad, len(vicGrad)/pr.FC2.Out)[:st.vicN*m.Cfg.Encoder.Dim]
		}
		if lc.VICRegTokens > 0 {
			g := st.vicGrad.Get(b, len(vicGrad)/d, d)
			b.Upload(g, vicGrad)
			b.ScatterAdd(dz.Reshape(bs*masks.Nc, d), g, st.vicRows.t)
		} else {
			m.addTokenBroadcast(b, dz, vicGrad)
		}
	}
	var afterBlock func(i int)
	if ready := opts.GradsReady; ready != nil {
		enc, blockEnds := m.gradBoundaries()
		ready(enc) // heads and predictor
		afterBlock = func(i int) { ready(blockEnds[i]) }
	}
	m.Encoder.Backward(b, dz, afterBlock)
	if opts.GradsReady != nil {
		opts.GradsReady(m.Params.Len())
	}
}

// vicreg adds the weighted VICReg term to stats and returns its gradient
// with respect to this replica's samples (on the host, [n, D], or [n, P]
// after the projector, whose backward the caller runs). With
// replicas the variance and covariance are those of the global batch: every
// replica gathers all samples (in the global batch's image order, so the
// sums run in the same order as in one process), computes the same loss and
// keeps its own rows' gradient, multiplied by the world size because the
// gradient all-reduce then averages over replicas.
func (m *Model) vicreg(b tensor.Backend, h, z *tensor.Tensor, lc LossConfig, opts StepOptions, stats *StepStats) ([]float32, error) {
	st := &m.step
	d := m.Cfg.Encoder.Dim
	replicas := opts.Replicas
	var tgt []float32
	if lc.InvarianceCoeff > 0 && lc.VICRegTokens == 0 {
		if opts.View2 != nil {
			// h (the first view's target features) is not needed any more:
			// the normalised targets were copied out of it.
			h = m.TargetEncoder.Forward(b, opts.View2, nil)
		}
		// A copy: meanTokens reuses its host buffer for the samples below.
		st.hostTarget = append(st.hostTarget[:0], m.meanTokens(b, h)...)
		tgt = st.hostTarget
	}
	x, n := m.vicregSamples(b, z, lc.VICRegTokens)
	if pr := m.Projector; pr != nil {
		// One pass over both sides, [x; tgt]: the invariance term's
		// gradient reaches the projector through both (it is a trained
		// parameter on both), and the encoder through x only.
		in := x
		if tgt != nil {
			in = append(append(st.projIn[:0], x...), tgt...)
			st.projIn = in
		}
		y := pr.Forward(b, in, len(in)/d)
		d = pr.FC2.Out
		x = y[:n*d]
		if tgt != nil {
			tgt = y[n*d:]
		}
	}
	world, rank := 1, 0
	all, nAll := x, n
	if replicas != nil && replicas.WorldSize() > 1 {
		world, rank = replicas.WorldSize(), replicas.Rank()
		blocks, err := replicas.GatherRows(x)
		if err != nil {
			return nil, fmt.Errorf("jepa: gathering VICReg samples: %w", err)
		}
		nAll = n * world
		if st.hostGlobal, err = interleaveRows(st.hostGlobal, blocks, n, d); err != nil {
			return nil, fmt.Errorf("jepa: gathering VICReg samples: %w", err)
		}
		all = st.hostGlobal
	}
	gamma := lc.StdTarget
	if gamma == 0 {
		gamma = 1
	}
	v, gAll := VICReg(all, nAll, d, gamma, lc.VarianceCoeff, lc.CovarianceCoeff)
	grad := gAll
	if world > 1 {
		grad = make([]float32, n*d)
		for j := 0; j < n; j++ {
			src := gAll[(j*world+rank)*d:][:d]
			dst := grad[j*d:][:d]
			for k := range dst {
				dst[k] = src[k] * float32(world)
			}
		}
	}
	if tgt != nil {
		// The invariance term is a mean over this replica's samples; the
		// gradient all-reduce averages it into the global mean. Through a
		// projector, its gradient with respect to the target side's
		// projection follows the context side's rows.
		var tgrad []float32
		if m.Projector != nil {
			grad = append(grad, make([]float32, n*d)...)
			tgrad = grad[n*d:]
		}
		var inv float64
		g := 2 * lc.InvarianceCoeff / float64(n*d)
		for i, xi := range x {
			diff := float64(xi) - float64(tgt[i])
			inv += diff * diff
			grad[i] += float32(g * diff)
			if tgrad != nil {
				tgrad[i] = float32(-g * diff)
			}
		}
		v += lc.InvarianceCoeff * inv / float64(n*d)
	}
	stats.VICReg = lc.VICRegWeight * v
	stats.Loss += stats.VICReg
	for i := range grad {
		grad[i] *= float32(lc.VICRegWeight)
	}
	st.vicN = n
	return grad, nil
}

// interleaveRows lays out blocks[r] (n rows of d each, replica r's samples)
// in the global batch's order: replica r's row j is global row j*world + r,
// the image DistributedSampler gave it (see SampleShard).
func interleaveRows(dst []float32, blocks [][]float32, n, d int) ([]float32, error) {
	world := len(blocks)
	dst = append(dst[:0], make([]float32, n*world*d)...)
	for r, blk := range blocks {
		if len(blk) != n*d {
			return nil, fmt.Errorf("replica %d sent %d values, this replica has %d (batch sizes differ)", r, len(blk), n*d)
		}
		for j := 0; j < n; j++ {
			copy(dst[(j*world+r)*d:][:d], blk[j*d:][:d])
		}
	}
	return dst, nil
}

// gradBoundaries returns the arena offset where the encoder's parameters
// start and, per encoder block, where its parameters end (computed once).
func (m *Model) gradBoundaries() (encoder int, blockEnds []int) {
	if m.blockEnds == nil {
		m.encoderStart, _, _ = m.Params.Range(EncoderScope)
		for i := range m.Encoder.Blocks {
			off, n, _ := m.Params.Range(fmt.Sprintf("%sblocks.%d.", EncoderScope, i))
			m.blockEnds = append(m.blockEnds, off+n)
		}
	}
	return m.encoderStart, m.blockEnds
}

// TargetFeatures returns the target encoder's outputs on img [B, C, H, W]
// mean-pooled over all patches, [B, D] on the host (valid until the next call):
// the features the linear probe, kNN and collapse monitors read.
func (m *Model) TargetFeatures(b tensor.Backend, img *tensor.Tensor) []float32 {
	return m.meanTokens(b, m.TargetEncoder.Forward(b, img, nil))
}

// ContextFeatures is TargetFeatures for the context encoder (on the whole
// image, as it is evaluated), separating what the encoder learned from what
// the EMA has passed on to the target encoder yet.
func (m *Model) ContextFeatures(b tensor.Backend, img *tensor.Tensor) []float32 {
	return m.meanTokens(b, m.Encoder.Forward(b, img, nil))
}

// poolWindows averages the rows of src [T, D] over windows: dst[w] =
// mean of src[members[k]] over the k with window[k] == w.
func poolWindows(b tensor.Backend, gather, out *tensor.Workspace, src, members, window *tensor.Tensor, wtot, s int) *tensor.Tensor {
	d := src.Cols()
	tmp := gather.Get(b, members.Numel(), d)
	b.Gather(tmp, src, members)
	dst := out.Get(b, wtot, d)
	b.Fill(dst, 0)
	b.ScatterAdd(dst, tmp, window)
	b.Scale(dst, 1/float32(s*s))
	return dst
}

// meanTokens returns the per-image mean over tokens of x [B, N, D] on the
// host, computed on the device as ones[1, N] @ x_b / N.
func (m *Model) meanTokens(b tensor.Backend, x *tensor.Tensor) []float32 {
	st := &m.step
	bs, n, d := x.Dim(0), x.Dim(1), x.Dim(2)
	ones := st.onesVec(b, n)
	pooled := st.pooled.Get(b, bs, d)
	b.Gemm(tensor.GemmArgs{M: 1, N: d, K: n, Alpha: 1 / float32(n), A: ones, B: x, C: pooled,
		StrideB: n * d, StrideC: d, Batch: bs})
	if cap(st.hostPooled) < bs*d {
		st.hostPooled = make([]float32, bs*d)
	}
	host := st.hostPooled[:bs*d]
	b.Download(host, pooled)
	return host
}

// vicregSamples returns VICReg's samples from the context embeddings z
// [B, Nc, D] on the host, [n, D]: with k == 0 each image's mean embedding
// (n = B); with k > 0, min(k, Nc) tokens per image at context positions
// j*Nc/k (n = B*min(k, Nc)), whose rows of z it keeps for the backward.
func (m *Model) vicregSamples(b tensor.Backend, z *tensor.Tensor, k int) ([]float32, int) {
	if k <= 0 {
		return m.meanTokens(b, z), z.Dim(0)
	}
	st := &m.step
	bs, nc, d := z.Dim(0), z.Dim(1), z.Dim(2)
	k = min(k, nc)
	rows := st.vicRows.host(bs * k)
	for i := 0; i < bs; i++ {
		for j := 0; j < k; j++ {
			rows[i*k+j] = int32(i*nc + j*nc/k)
		}
	}
	idx := st.vicRows.upload(b, rows, bs*k)
	sel := st.vicSel.Get(b, bs*k, d)
	b.Gather(sel, z.Reshape(bs*nc, d), idx)
	if cap(st.hostSel) < bs*k*d {
		st.hostSel = make([]float32, bs*k*d)
	}
	host := st.hostSel[:bs*k*d]
	b.Download(host, sel)
	return host, bs * k
}

// addTokenBroadcast adds g_b / N to every token row of dx_b [B, N, D], the
// adjoint of meanTokens; g is [B, D] on the host.
func (m *Model) addTokenBroadcast(b tensor.Backend, dx *tensor.Tensor, g []float32) {
	st := &m.step
	bs, n, d := dx.Dim(0), dx.Dim(1), dx.Dim(2)
	dg := st.dpooled.Get(b, bs, d)
	b.Upload(dg, g)
	ones := st.onesVec(b, n)
	b.Gemm(tensor.GemmArgs{M: n, N: d, K: 1, Alpha: 1 / float32(n), Beta: 1, A: ones, B: dg, C: dx,
		StrideB: d, StrideC: n * d, Batch: bs})
}

func (st *stepState) onesVec(b tensor.Backend, n int) *tensor.Tensor {
	o := st.ones.Get(b, n)
	b.Fill(o, 1)
	return o
}

// intWorkspace is a grow-only int32 device buffer with a host staging copy.
type intWorkspace struct {
	storage *tensor.Tensor
	hostBuf []int32
	t       *tensor.Tensor
}

func (w *intWorkspace) host(n int) []int32 {
	if cap(w.hostBuf) < n {
		w.hostBuf = make([]int32, n)
	}
	return w.hostBuf[:n]
}

// upload copies data to the device as a tensor of the given shape.
func (w *intWorkspace) upload(b tensor.Backend, data []int32, shape ...int) *tensor.Tensor {
	n := len(data)
	if w.storage == nil || w.storage.Numel() < n {
		w.storage = b.New(tensor.Int32, max(n, 1))
	}
	w.t = w.storage.View(0, shape...)
	b.UploadInt32(w.t, data)
	return w.t
}
