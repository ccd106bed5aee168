// Package cudatest holds checks that run unchanged on the host emulator of
// the CUDA device (cuda/emu, in CI) and on a real GPU (package cuda's tests,
// which skip without one): a whole H-JEPA training step against the CPU
// backend.
package cudatest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/optim"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// StepModel is a small H-JEPA model whose shapes touch every kernel path:
// two heads of width 16, an MLP, three levels, VICReg on.
func StepModel() jepa.ModelConfig {
	enc := nn.ViTConfig{ImgSize: 16, PatchSize: 2, InChans: 1, Dim: 32, Depth: 2, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
	pred := nn.PredictorConfig{GridSize: 8, EmbedDim: 32, Dim: 16, Depth: 1, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
	return jepa.ModelConfig{Encoder: enc, Predictor: pred, Levels: 3}
}

// StepResult is what one backend computed over the steps.
type StepResult struct {
	Losses  []float64
	Grads   [][]float32 // trained arena's gradients after each step
	Params  []float32   // trained arena after the last step
	Targets []float32   // target arena after the last step
}

// RunSteps trains cfg on b for steps steps of batch images from a fixed
// initialisation, images and masks: zero grads, ForwardBackward (smooth-L1
// over 3 levels + VICReg), gradient clipping, AdamW, EMA.
func RunSteps(t *testing.T, b tensor.Backend, cfg jepa.ModelConfig, batch, steps int) StepResult {
	t.Helper()
	m, err := jepa.NewModel(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(b, tensor.NewRNG(7))
	e := cfg.Encoder
	r := rand.New(rand.NewPCG(11, 12))
	host := make([]float32, batch*e.InChans*e.ImgSize*e.ImgSize)
	for i := range host {
		host[i] = float32(r.NormFloat64())
	}
	img := b.New(tensor.Float32, batch, e.InChans, e.ImgSize, e.ImgSize)
	b.Upload(img, host)
	g := e.GridSize()
	masker, err := jepa.NewMultiBlockMasker(jepa.MaskConfig{GridH: g, GridW: g, NumTargets: 4,
		TargetScale: [2]float64{0.15, 0.2}, TargetAspect: [2]float64{0.75, 1.5}, ContextScale: [2]float64{0.85, 1},
		MinKeep: 4, Levels: cfg.Levels}, 5)
	if err != nil {
		t.Fatal(err)
	}
	lc := jepa.LossConfig{Type: "smoothl1", Weights: []float64{1, 0.5, 0.25}, VICRegWeight: 1, VarianceCoeff: 1, CovarianceCoeff: 1}
	opt := optim.NewAdamW(b, m.Params, 0.9, 0.999, 1e-8)
	var res StepResult
	for s := range steps {
		m.Params.ZeroGrad(b)
		st, err := m.ForwardBackward(b, img, masker.Sample(int64(s), batch), lc, jepa.StepOptions{Backward: true})
		if err != nil {
			t.Fatal(err)
		}
		optim.ClipGradNorm(b, m.Params.Grads, 1)
		grads := make([]float32, m.Params.Len())
		b.Download(grads, m.Params.Grads)
		opt.Step(b, m.Params, 1e-3, 0.04)
		m.UpdateTarget(b, 0.99)
		res.Losses = append(res.Losses, st.Loss)
		res.Grads = append(res.Grads, grads)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	res.Params = make([]float32, m.Params.Len())
	b.Download(res.Params, m.Params.Values)
	res.Targets = make([]float32, m.TargetParams.Len())
	b.Download(res.Targets, m.TargetParams.Values)
	return res
}

// StepParity runs RunSteps on b and on a 1-thread CPU backend and fails t
// when a loss differs by more than tol relative, or the gradients, the
// trained parameters or the target parameters differ by more than tol in
// relative L2.
func StepParity(t *testing.T, b tensor.Backend, tol float64) {
	t.Helper()
	const batch, steps = 4, 3
	cfg := StepModel()
	ref := cpu.New(1)
	defer ref.Close()
	want := RunSteps(t, ref, cfg, batch, steps)
	got := RunSteps(t, b, cfg, batch, steps)
	for s := range steps {
		if d := math.Abs(got.Losses[s]-want.Losses[s]) / math.Abs(want.Losses[s]); !(d <= tol) {
			t.Errorf("step %d: loss %v on %s, %v on the CPU (relative difference %.3g > %.3g)", s, got.Losses[s], b.Name(), want.Losses[s], d, tol)
		}
		if e := RelL2(got.Grads[s], want.Grads[s]); !(e <= tol) {
			t.Errorf("step %d: gradients differ from the CPU's by relative L2 %.3g > %.3g", s, e, tol)
		}
	}
	if e := RelL2(got.Params, want.Params); !(e <= tol) {
		t.Errorf("parameters after %d steps differ from the CPU's by relative L2 %.3g > %.3g", steps, e, tol)
	}
	if e := RelL2(got.Targets, want.Targets); !(e <= tol) {
		t.Errorf("target parameters after %d steps differ from the CPU's by relative L2 %.3g > %.3g", steps, e, tol)
	}
	t.Logf("%s vs cpu over %d steps: losses %v vs %v, final params relative L2 %.3g", b.Name(), steps, got.Losses, want.Losses, RelL2(got.Params, want.Params))
}

// RelL2 is ||got - want|| / ||want|| (0 when both are zero).
func RelL2(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
