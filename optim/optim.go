// Package optim is the optimiser side of a training step: AdamW over a flat
// parameter arena with I-JEPA's two parameter groups, gradient-norm
// clipping, and the learning-rate / weight-decay / EMA-momentum schedules as
// pure functions of the step (so a resumed run continues them exactly).
package optim

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
)

// AdamW is torch.optim.AdamW over a flat arena with two parameter groups,
// as I-JEPA builds them: weights with weight decay, and biases / 1-D
// parameters without. The moments M and V have the arena's layout, so each
// group is a handful of contiguous runs and a step is one fused pass per run.
type AdamW struct {
	M, V              *tensor.Tensor
	Beta1, Beta2, Eps float32
	// Steps is the number of steps taken (torch's state["step"]).
	Steps int
	runs  []run
}

// run is a contiguous range of arena elements sharing a decay flag.
type run struct {
	off, n int
	decay  bool
}

// NewAdamW allocates zeroed moments for arena a.
func NewAdamW(b tensor.Backend, a *nn.Arena, beta1, beta2, eps float32) *AdamW {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps,
		M: b.New(tensor.Float32, a.Len()), V: b.New(tensor.Float32, a.Len())}
	for _, p := range a.Params() {
		n := len(o.runs)
		if n > 0 && o.runs[n-1].decay == p.Decay && o.runs[n-1].off+o.runs[n-1].n == p.Offset {
			o.runs[n-1].n += p.Numel()
			continue
		}
		o.runs = append(o.runs, run{off: p.Offset, n: p.Numel(), decay: p.Decay})
	}
	return o
}

// Step applies one AdamW step with learning rate lr to every parameter and
// weight decay wd to the decayed group.
func (o *AdamW) Step(b tensor.Backend, a *nn.Arena, lr, wd float64) {
	o.Steps++
	for _, r := range o.runs {
		h := tensor.AdamWStep{LR: float32(lr), Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, Step: o.Steps}
		if r.decay {
			h.WeightDecay = float32(wd)
		}
		b.AdamW(a.Values.View(r.off, r.n), a.Grads.View(r.off, r.n), o.M.View(r.off, r.n), o.V.View(r.off, r.n), h)
	}
}

// ClipGradNorm scales the gradients so their global L2 norm is at most
// maxNorm, as torch.nn.utils.clip_grad_norm_ (coefficient
// maxNorm/(norm+1e-6) when below 1), and returns the norm before clipping.
// maxNorm <= 0 only measures.
func ClipGradNorm(b tensor.Backend, grads *tensor.Tensor, maxNorm float64) float64 {
	norm := math.Sqrt(b.SumSquares(grads))
	if maxNorm > 0 {
		if c := maxNorm / (norm + 1e-6); c < 1 {
			b.Scale(grads, float32(c))
		}
	}
	return norm
}

// Schedules are I-JEPA's per-iteration schedules, pure functions of the step
// so a resumed run continues them exactly.
type Schedules struct {
	Total, Warmup        int
	StartLR, LR, FinalLR float64
	WD, FinalWD          float64
	EMAStart, EMAEnd     float64
	Constant             bool // lr_schedule constant: LR after warmup
}

// LRAt is the learning rate of iteration i (0-based). I-JEPA's
// WarmupCosineSchedule is stepped before each iteration, so iteration i uses
// its value after i+1 steps: linear warmup from StartLR to LR over Warmup
// steps, then cosine from LR to FinalLR over the rest.
func (s Schedules) LRAt(i int) float64 {
	k := i + 1
	if k < s.Warmup {
		return s.StartLR + float64(k)/float64(max(1, s.Warmup))*(s.LR-s.StartLR)
	}
	if s.Constant {
		return s.LR
	}
	tmax := max(1, s.Total-s.Warmup)
	p := float64(k-s.Warmup) / float64(tmax)
	return math.Max(s.FinalLR, s.FinalLR+(s.LR-s.FinalLR)*0.5*(1+math.Cos(math.Pi*p)))
}

// WDAt is I-JEPA's CosineWDSchedule at iteration i: cosine from WD to
// FinalWD over the whole run, clamped at FinalWD.
func (s Schedules) WDAt(i int) float64 {
	p := float64(i+1) / float64(max(1, s.Total))
	w := s.FinalWD + (s.WD-s.FinalWD)*0.5*(1+math.Cos(math.Pi*p))
	if s.FinalWD <= s.WD {
		return math.Max(s.FinalWD, w)
	}
	return math.Min(s.FinalWD, w)
}

// EMAAt is the target-encoder momentum used after iteration i: linear from
// EMAStart to EMAEnd over the run (I-JEPA's momentum_scheduler, whose i-th
// value follows the i-th optimizer step).
func (s Schedules) EMAAt(i int) float64 {
	return s.EMAStart + float64(i)*(s.EMAEnd-s.EMAStart)/float64(max(1, s.Total))
}

// Validate checks the schedule's shape.
func (s Schedules) Validate() error {
	if s.Total < 1 || s.Warmup < 0 || s.Warmup >= s.Total && s.Total > 1 {
		return fmt.Errorf("optim: schedule of %d steps with %d warmup steps", s.Total, s.Warmup)
	}
	return nil
}
