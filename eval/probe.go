package eval

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hjepa-go/hjepa/tensor/parallel"
	"github.com/hjepa-go/hjepa/tensor/sgemm"
)

// DefaultL2Grid is the grid searched when ProbeOptions.L2 < 0.
var DefaultL2Grid = []float64{1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6}

// ProbeOptions configures FitProbe. The zero value fits an unregularised
// probe with the defaults below; set L2 < 0 to select the penalty.
type ProbeOptions struct {
	// L2 is lambda in loss = mean_i CE_i + lambda/2 * ||W||_F^2 (the bias is
	// not penalised). L2 < 0 selects lambda from L2Grid (DefaultL2Grid when
	// nil) by the accuracy on a held-out ValFraction of the training set
	// (ties go to the larger lambda), then refits on the whole training set.
	L2          float64
	L2Grid      []float64
	ValFraction float64 // default 0.1
	Seed        uint64  // shuffles the validation split
	MaxIter     int     // L-BFGS iterations of the final fit (default 1000)
	// SelectMaxIter caps the iterations of each L2-selection fit (default
	// 300): the fits along the grid warm-start from each other, and the
	// final fit on the whole training set continues from the chosen one.
	SelectMaxIter int
	Tol           float64 // gradient tolerance: max|g| <= Tol*max(1, loss) (default 1e-6)
	FTol          float64 // relative loss change tolerance (default 1e-12; < 0 disables)
	Memory        int     // L-BFGS memory (default 15)
	Threads       int     // workers (default GOMAXPROCS)
	// Exact computes the logits and the gradient with float64 products on
	// the standardised features. The default uses float32 products through
	// sgemm (the weights split into float32 high and low parts, so only the
	// products round in float32), accumulated in float64: ~1e-7 relative
	// error, several times faster; and it fits on whitened features (see
	// whitening), which changes the conditioning, not the optimum.
	Exact bool
}

// L2Trial is one point of the L2 selection.
type L2Trial struct {
	L2          float64
	ValAccuracy float64
	Iters       int
}

// ProbeReport says how the final fit ended.
type ProbeReport struct {
	Iters, Evals int
	Loss         float64 // final objective, penalty included
	GradNorm     float64 // max |gradient| at the end
	Converged    bool
	Reason       string
	L2           float64   // the penalty used
	Trials       []L2Trial // the selection, when L2 < 0 was asked for
}

// Probe is a fitted linear classifier on standardised features:
// logits = W ((x - Mean) / Std) + B.
type Probe struct {
	D, C      int
	Mean, Std []float64 // [D], from the training features
	W         []float64 // [C, D]
	B         []float64 // [C]
}

// FitProbe fits a multinomial logistic-regression probe to train: [n, d]
// with labels in [0, c), by L-BFGS on the standardised features.
func FitProbe(train []float32, labels []int, d, c int, opts ProbeOptions) (*Probe, ProbeReport, error) {
	n := len(labels)
	if d <= 0 || c < 2 || n == 0 || len(train) != n*d {
		return nil, ProbeReport{}, fmt.Errorf("probe: features have %d elements for %d labels, want [%d, %d] and at least 2 classes (got %d)", len(train), n, n, d, c)
	}
	if err := checkLabels(labels, c); err != nil {
		return nil, ProbeReport{}, fmt.Errorf("probe: %w", err)
	}
	pool := newPool(opts.Threads)
	defer pool.Close()
	eng := sgemm.New(pool, "")
	mean, std := columnMoments(pool, train, n, d)
	xs := standardise(pool, train, n, d, mean, std)
	// L-BFGS runs on whitened features z = xs A (the penalty mapped back,
	// so the optimum, and hence the probe, is the same as on xs): pooled
	// ViT features are strongly correlated, and on them the fits stopped at
	// the iteration cap far from convergence.
	// Exact keeps the standardised features as they are (whitening rounds
	// them to float32 once more).
	white := &whitening{}
	if !opts.Exact {
		var err error
		if white, err = newWhitening(eng, xs, n, d); err != nil {
			return nil, ProbeReport{}, fmt.Errorf("probe: %w", err)
		}
		xs = white.apply(eng, xs, n)
	}
	lopts := LBFGSOptions{Memory: opts.Memory, MaxIter: opts.MaxIter, GradTol: opts.Tol, FTol: opts.FTol}
	theta := make([]float64, c*d+c)
	var rep ProbeReport
	l2 := opts.L2
	if l2 < 0 {
		grid := opts.L2Grid
		if len(grid) == 0 {
			grid = DefaultL2Grid
		}
		frac := opts.ValFraction
		if frac <= 0 || frac >= 1 {
			frac = 0.1
		}
		nVal := int(math.Round(frac * float64(n)))
		if nVal < 1 || nVal >= n {
			return nil, rep, fmt.Errorf("probe: %d training rows are too few for a validation split of %g", n, frac)
		}
		perm := rand.New(rand.NewPCG(opts.Seed, 0x9e3779b97f4a7c15)).Perm(n)
		xv, yv := gatherRows(xs, labels, d, perm[:nVal])
		xt, yt := gatherRows(xs, labels, d, perm[nVal:])
		obj := newProbeObjective(pool, eng, xt, yt, d, c, opts.Exact)
		obj.pen = white.pen
		best, bestAcc := 0, -1.0
		var bestTheta []float64
		sopts := lopts
		sopts.MaxIter = opts.SelectMaxIter
		if sopts.MaxIter <= 0 {
			sopts.MaxIter = 300
		}
		for _, lam := range grid {
			if lam < 0 {
				return nil, rep, fmt.Errorf("probe: negative value %g in L2Grid", lam)
			}
			obj.l2 = lam
			r, err := MinimizeLBFGS(obj.eval, theta, sopts) // warm start from the previous lambda
			if err != nil {
				return nil, rep, fmt.Errorf("probe: fit with L2 %g: %w", lam, err)
			}
			p := &Probe{D: d, C: c, W: theta[:c*d], B: theta[c*d:]}
			acc := Accuracy(p.predictStandardised(pool, eng, xv, len(yv)), yv)
			rep.Trials = append(rep.Trials, L2Trial{L2: lam, ValAccuracy: acc, Iters: r.Iters})
			if acc > bestAcc {
				best, bestAcc = len(rep.Trials)-1, acc
				bestTheta = append(bestTheta[:0], theta...)
			}
		}
		l2 = rep.Trials[best].L2
		copy(theta, bestTheta)
	}
	obj := newProbeObjective(pool, eng, xs, labels, d, c, opts.Exact)
	obj.pen = white.pen
	obj.l2 = l2
	r, err := MinimizeLBFGS(obj.eval, theta, lopts)
	if err != nil {
		return nil, rep, fmt.Errorf("probe: %w", err)
	}
	rep.Iters, rep.Evals, rep.Loss, rep.GradNorm = r.Iters, r.Evals, r.F, r.GradNorm
	rep.Converged, rep.Reason, rep.L2 = r.Converged, r.Reason, l2
	return &Probe{D: d, C: c, Mean: mean, Std: std, W: white.unmap(theta[:c*d], c), B: theta[c*d:]}, rep, nil
}

// Predict returns the arg-max class of every row of x: [n, D] (ties go to
// the lower class).
func (p *Probe) Predict(x []float32) ([]int, error) {
	if len(x)%p.D != 0 {
		return nil, fmt.Errorf("probe predict: %d values are not rows of %d", len(x), p.D)
	}
	n := len(x) / p.D
	pool := newPool(0)
	defer pool.Close()
	xs := standardise(pool, x, n, p.D, p.Mean, p.Std)
	return p.predictStandardised(pool, sgemm.New(pool, ""), xs, n), nil
}

func (p *Probe) predictStandardised(pool *parallel.Pool, eng *sgemm.Engine, xs []float32, n int) []int {
	d, c := p.D, p.C
	w32 := splitWeights(p.W, c, d)
	pred := make([]int, n)
	zts := make([][]float32, pool.Size())
	pool.For((n+probeBlock-1)/probeBlock, 1, func(w, b0, b1 int) {
		if zts[w] == nil {
			zts[w] = make([]float32, 2*c*probeBlock)
		}
		zt := zts[w]
		for b := b0; b < b1; b++ {
			lo := b * probeBlock
			nb := min(probeBlock, n-lo)
			eng.SgemmSerial(w, false, true, 2*c, nb, d, 1, w32, d, xs[lo*d:(lo+nb)*d], d, 0, zt, nb)
			for i := 0; i < nb; i++ {
				best, bz := 0, math.Inf(-1)
				for k := 0; k < c; k++ {
					z := float64(zt[k*nb+i]) + float64(zt[(c+k)*nb+i]) + p.B[k]
					if z > bz {
						best, bz = k, z
					}
				}
				pred[lo+i] = best
			}
		}
	})
	return pred
}

// Accuracy is the fraction of pred equal to labels (0 for empty input).
func Accuracy(pred, labels []int) float64 {
	if len(pred) == 0 || len(pred) != len(labels) {
		return 0
	}
	hit := 0
	for i, p := range pred {
		if p == labels[i] {
			hit++
		}
	}
	return float64(hit) / float64(len(pred))
}

func checkLabels(labels []int, c int) error {
	for i, y := range labels {
		if y < 0 || y >= c {
			return fmt.Errorf("label %d of row %d is outside [0, %d)", y, i, c)
		}
	}
	return nil
}

// columnMoments returns the per-column mean and population std of x: [n, d]
// in float64 (two passes over row chunks, summed in chunk order); a constant
// column gets std 1 (it standardises to 0).
func columnMoments(pool *parallel.Pool, x []float32, n, d int) (mean, std []float64) {
	const rows = 4096
	chunks := (n + rows - 1) / rows
	part := make([]float64, chunks*d)
	colSums := func(shift []float64) []float64 {
		pool.For(chunks, 1, func(_, c0, c1 int) {
			for ch := c0; ch < c1; ch++ {
				acc := part[ch*d : (ch+1)*d]
				clear(acc)
				for i := ch * rows; i < min(n, (ch+1)*rows); i++ {
					row := x[i*d : (i+1)*d]
					if shift == nil {
						for j, v := range row {
							acc[j] += float64(v)
						}
						continue
					}
					for j, v := range row {
						t := float64(v) - shift[j]
						acc[j] += t * t
					}
				}
			}
		})
		out := make([]float64, d)
		for ch := 0; ch < chunks; ch++ {
			axpy(1, part[ch*d:(ch+1)*d], out)
		}
		return out
	}
	mean = colSums(nil)
	scal(1/float64(n), mean)
	std = colSums(mean)
	for j, ss := range std {
		std[j] = math.Sqrt(ss / float64(n))
		if !(std[j] > 1e-12*math.Max(1, math.Abs(mean[j]))) {
			std[j] = 1
		}
	}
	return mean, std
}

func standardise(pool *parallel.Pool, x []float32, n, d int, mean, std []float64) []float32 {
	inv := make([]float64, d)
	for j, s := range std {
		inv[j] = 1 / s
	}
	out := make([]float32, n*d)
	pool.For(n, 1024, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row, o := x[i*d:(i+1)*d], out[i*d:(i+1)*d]
			for j, v := range row {
				o[j] = float32((float64(v) - mean[j]) * inv[j])
			}
		}
	})
	return out
}

func gatherRows(x []float32, y []int, d int, idx []int) ([]float32, []int) {
	xo := make([]float32, len(idx)*d)
	yo := make([]int, len(idx))
	for k, i := range idx {
		copy(xo[k*d:(k+1)*d], x[i*d:(i+1)*d])
		yo[k] = y[i]
	}
	return xo, yo
}

// splitWeights returns [2c, d] float32: rows 0..c-1 the float32 rounding of
// w: [c, d], rows c..2c-1 the remainder, so hi + lo = w to ~1e-14.
func splitWeights(w []float64, c, d int) []float32 {
	out := make([]float32, 2*c*d)
	for i, v := range w {
		hi := float32(v)
		out[i] = hi
		out[c*d+i] = float32(v - float64(hi))
	}
	return out
}

// probeBlock is the row block of one sgemm pair in the probe objective.
const probeBlock = 512

// probeObjective is the probe's loss over standardised features x: [n, d]
// and its gradient, for L-BFGS. theta = [W (c x d, row-major), b (c)].
// The rows are cut into a fixed number of chunks (independent of the worker
// count) whose partial sums are added in chunk order, so the result is the
// same for any number of threads.
type probeObjective struct {
	pool     *parallel.Pool
	eng      *sgemm.Engine
	x        []float32
	y        []int
	n, d, c  int
	l2       float64
	pen      []float64 // per-column weights of the L2 penalty (nil: all 1)
	exact    bool
	chunk    int         // rows per chunk
	partW    [][]float64 // per chunk [c*d]
	partB    [][]float64 // per chunk [c]
	partLoss []float64
	work     []probeScratch // per worker
}

type probeScratch struct {
	zt, gt, gw []float32 // [2c, block], [c, block], [c, d]
	z          []float64 // [c]
}

func newProbeObjective(pool *parallel.Pool, eng *sgemm.Engine, x []float32, y []int, d, c int, exact bool) *probeObjective {
	n := len(y)
	// At most 64 chunks, and their partial gradients within 256 MiB.
	chunks := min((n+probeBlock-1)/probeBlock, 64, max(1, (256<<20)/(8*(c*d+c))))
	o := &probeObjective{pool: pool, eng: eng, x: x, y: y, n: n, d: d, c: c, exact: exact}
	o.chunk = (n + chunks - 1) / chunks
	chunks = (n + o.chunk - 1) / o.chunk
	o.partW = make([][]float64, chunks)
	o.partB = make([][]float64, chunks)
	o.partLoss = make([]float64, chunks)
	for i := range o.partW {
		o.partW[i] = make([]float64, c*d)
		o.partB[i] = make([]float64, c)
	}
	o.work = make([]probeScratch, pool.Size())
	return o
}

func (o *probeObjective) eval(theta, grad []float64) float64 {
	d, c := o.d, o.c
	w, b := theta[:c*d], theta[c*d:]
	var w32 []float32
	if !o.exact {
		w32 = splitWeights(w, c, d)
	}
	o.pool.For(len(o.partW), 1, func(wk, c0, c1 int) {
		s := &o.work[wk]
		if s.z == nil {
			s.z = make([]float64, c)
			if !o.exact {
				s.zt = make([]float32, 2*c*probeBlock)
				s.gt = make([]float32, c*probeBlock)
				s.gw = make([]float32, c*d)
			}
		}
		for ch := c0; ch < c1; ch++ {
			pw, pb := o.partW[ch], o.partB[ch]
			clear(pw)
			clear(pb)
			loss := 0.0
			end := min(o.n, (ch+1)*o.chunk)
			for lo := ch * o.chunk; lo < end; lo += probeBlock {
				nb := min(probeBlock, end-lo)
				if o.exact {
					loss += o.blockExact(s, w, b, lo, nb, pw, pb)
				} else {
					loss += o.blockFast(wk, s, w32, b, lo, nb, pw, pb)
				}
			}
			o.partLoss[ch] = loss
		}
	})
	clear(grad)
	loss := 0.0
	gw, gb := grad[:c*d], grad[c*d:]
	for ch := range o.partW {
		loss += o.partLoss[ch]
		axpy(1, o.partW[ch], gw)
		axpy(1, o.partB[ch], gb)
	}
	inv := 1 / float64(o.n)
	scal(inv, grad)
	loss *= inv
	if o.l2 != 0 {
		if o.pen == nil {
			loss += 0.5 * o.l2 * dot(w, w)
			axpy(o.l2, w, gw)
		} else {
			for k := 0; k < c; k++ {
				for j, p := range o.pen {
					u := w[k*d+j]
					loss += 0.5 * o.l2 * p * u * u
					gw[k*d+j] += o.l2 * p * u
				}
			}
		}
	}
	return loss
}

// softmaxGrad turns the logits z (overwritten) of a row with label y into
// p - onehot(y) and returns the row's cross-entropy.
func softmaxGrad(z []float64, y int) float64 {
	zy := z[y]
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	sum := 0.0
	for k, v := range z {
		e := math.Exp(v - mx)
		z[k] = e
		sum += e
	}
	inv := 1 / sum
	for k := range z {
		z[k] *= inv
	}
	z[y]--
	return math.Log(sum) + mx - zy // logsumexp(z) - z_y
}

// blockFast: rows lo..lo+nb with float32 products. zt[2c, nb] = [Whi; Wlo] @
// X^T, then G^T[c, nb] (float32), then gw[c, d] = G^T @ X.
func (o *probeObjective) blockFast(wk int, s *probeScratch, w32 []float32, b []float64, lo, nb int, pw, pb []float64) float64 {
	d, c := o.d, o.c
	xb := o.x[lo*d : (lo+nb)*d]
	o.eng.SgemmSerial(wk, false, true, 2*c, nb, d, 1, w32, d, xb, d, 0, s.zt, nb)
	loss := 0.0
	for i := 0; i < nb; i++ {
		for k := 0; k < c; k++ {
			s.z[k] = float64(s.zt[k*nb+i]) + float64(s.zt[(c+k)*nb+i]) + b[k]
		}
		loss += softmaxGrad(s.z, o.y[lo+i])
		for k, g := range s.z {
			s.gt[k*nb+i] = float32(g)
			pb[k] += g
		}
	}
	o.eng.SgemmSerial(wk, false, false, c, d, nb, 1, s.gt, nb, xb, d, 0, s.gw, d)
	for i, v := range s.gw {
		pw[i] += float64(v)
	}
	return loss
}

// blockExact is blockFast with float64 products.
func (o *probeObjective) blockExact(s *probeScratch, w, b []float64, lo, nb int, pw, pb []float64) float64 {
	d, c := o.d, o.c
	loss := 0.0
	for i := lo; i < lo+nb; i++ {
		row := o.x[i*d : (i+1)*d]
		for k := 0; k < c; k++ {
			wk := w[k*d : (k+1)*d]
			z := b[k]
			for j, v := range row {
				z += float64(v) * wk[j]
			}
			s.z[k] = z
		}
		loss += softmaxGrad(s.z, o.y[i])
		for k, g := range s.z {
			pb[k] += g
			acc := pw[k*d : (k+1)*d]
			for j, v := range row {
				acc[j] += g * float64(v)
			}
		}
	}
	return loss
}

// whitening is the probe's change of coordinates: z = x A with A = V D,
// V the eigenvectors of the standardised features' covariance C and D =
// (eigenvalue + eps)^(-1/2), so z has (nearly) identity covariance. Logits
// U z equal W x for W = U A^T, and ||W||^2 = sum_kj U_kj^2 D_j^2, so the
// penalty weights pen_j = D_j^2 make the whitened objective the same
// function of W: only the conditioning L-BFGS sees changes.
type whitening struct {
	d   int
	a   []float32 // [d, d] row-major: z_j = sum_i x_i a[i*d+j]
	a64 []float64
	pen []float64 // [d]
}

// whiteningEps is the eigenvalue floor, relative to the mean eigenvalue (1
// for standardised features): directions with less variance than that are
// not stretched further.
const whiteningEps = 1e-4

func newWhitening(eng *sgemm.Engine, xs []float32, n, d int) (*whitening, error) {
	// C = xs^T xs / n in float32 (the whitening only preconditions: any
	// invertible A gives the same probe).
	cov32 := make([]float32, d*d)
	eng.Sgemm(true, false, d, d, n, 1/float32(n), xs, d, xs, d, 0, cov32, d)
	cov := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j <= i; j++ {
			v := 0.5 * (float64(cov32[i*d+j]) + float64(cov32[j*d+i]))
			cov[i*d+j], cov[j*d+i] = v, v
		}
	}
	vals, vecs, err := SymEig(cov, d, true)
	if err != nil {
		return nil, fmt.Errorf("whitening: %w", err)
	}
	mean := 0.0
	for _, v := range vals {
		mean += math.Max(v, 0)
	}
	mean /= float64(d)
	eps := whiteningEps * math.Max(mean, 1e-12)
	w := &whitening{d: d, a: make([]float32, d*d), a64: make([]float64, d*d), pen: make([]float64, d)}
	for j, v := range vals {
		s := 1 / (math.Max(v, 0) + eps)
		w.pen[j] = s
		dj := math.Sqrt(s)
		for i := 0; i < d; i++ {
			a := vecs[j*d+i] * dj
			w.a64[i*d+j] = a
			w.a[i*d+j] = float32(a)
		}
	}
	return w, nil
}

// apply returns z = x A for x: [n, d].
func (w *whitening) apply(eng *sgemm.Engine, x []float32, n int) []float32 {
	z := make([]float32, n*w.d)
	eng.Sgemm(false, false, n, w.d, w.d, 1, x, w.d, w.a, w.d, 0, z, w.d)
	return z
}

// unmap returns W = U A^T ([c, d]) for the whitened weights u: [c, d] (u
// itself without a whitening).
func (w *whitening) unmap(u []float64, c int) []float64 {
	d := w.d
	if w.a64 == nil {
		return u
	}
	out := make([]float64, c*d)
	for k := 0; k < c; k++ {
		for i := 0; i < d; i++ {
			s := 0.0
			for j := 0; j < d; j++ {
				s += u[k*d+j] * w.a64[i*d+j]
			}
			out[k*d+i] = s
		}
	}
	return out
}
