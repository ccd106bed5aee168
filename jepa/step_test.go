package jepa

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

func tinyModel(t *testing.T, b tensor.Backend, levels int) *Model {
	return tinyModelWith(t, b, levels, false, 0)
}

// tinyModelWith is tinyModel with or without prediction heads and with a
// VICReg projector of width proj (0: none).
func tinyModelWith(t *testing.T, b tensor.Backend, levels int, heads bool, proj int) *Model {
	t.Helper()
	enc := nn.ViTConfig{ImgSize: 16, PatchSize: 2, InChans: 1, Dim: 16, Depth: 2, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
	pred := nn.PredictorConfig{GridSize: 8, EmbedDim: 16, Dim: 8, Depth: 1, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
	m, err := NewModel(b, ModelConfig{Encoder: enc, Predictor: pred, Levels: levels, PredictionHeads: heads, ProjectorDim: proj})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(b, tensor.NewRNG(1))
	// Make the target side differ from the context side, as after training,
	// and give weights a larger scale so the loss is far from its floor.
	vals := make([]float32, m.Params.Len())
	b.Download(vals, m.Params.Values)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range vals {
		vals[i] += float32(r.NormFloat64() * 0.2)
	}
	b.Upload(m.Params.Values, vals)
	m.UpdateTarget(b, 0.5)
	return m
}

func randImages(b tensor.Backend, n int, seed uint64) *tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	img := make([]float32, n*16*16)
	for i := range img {
		img[i] = float32(r.NormFloat64())
	}
	t := b.New(tensor.Float32, n, 1, 16, 16)
	b.Upload(t, img)
	return t
}

// The whole step's gradient against central differences of its loss along
// random directions in parameter space (float32 forward, so the directions
// are large enough to rise above rounding, and the check is on g.v).
func TestStepGradientDirectional(t *testing.T) {
	for _, lossType := range []string{"mse", "smoothl1"} {
		for _, vc := range []struct {
			w      float64
			tokens int
			inv    float64
			heads  bool
			view2  bool
			proj   int
			raw    bool
		}{{0, 0, 0, false, false, 0, false}, {0, 0, 0, true, false, 0, false}, {0.5, 0, 0, false, false, 0, false}, {0.5, 5, 0, true, false, 0, false},
			{0.5, 0, 3, false, false, 0, false}, {0.5, 0, 3, false, true, 0, false}, {0.5, 0, 3, false, true, 24, false}, {0.5, 4, 0, false, false, 24, false},
			{0, 0, 0, false, false, 0, true}, {0, 0, 0, true, false, 0, true}} {
			vic := vc.w
			b := cpu.New(2)
			m := tinyModelWith(t, b, 3, vc.heads, vc.proj)
			masker, err := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
				TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
				ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 3}, 5)
			if err != nil {
				t.Fatal(err)
			}
			const bs = 3
			img := randImages(b, bs, 9)
			var view2 *tensor.Tensor
			if vc.view2 {
				view2 = randImages(b, bs, 19)
			}
			masks := masker.Sample(0, bs)
			lc := LossConfig{Type: lossType, Weights: []float64{1, 0.5, 0.25}, VICRegWeight: vic, VarianceCoeff: 25, CovarianceCoeff: 1, VICRegTokens: vc.tokens, InvarianceCoeff: vc.inv, RawTargets: vc.raw}
			m.Params.ZeroGrad(b)
			st, err := m.ForwardBackward(b, img, masks, lc, StepOptions{Backward: true, View2: view2})
			if err != nil {
				t.Fatal(err)
			}
			if st.Windows[1] == 0 {
				t.Fatalf("test masks have no level-1 window: %+v", st.Windows)
			}
			n := m.Params.Len()
			theta := make([]float32, n)
			grad := make([]float32, n)
			b.Download(theta, m.Params.Values)
			b.Download(grad, m.Params.Grads)
			r := rand.New(rand.NewPCG(11, 12))
			for trial := 0; trial < 3; trial++ {
				v := make([]float64, n)
				var gv float64
				for i := range v {
					v[i] = r.NormFloat64()
					gv += v[i] * float64(grad[i])
				}
				eps := 1e-3 / math.Sqrt(float64(n)) * 30
				loss := func(sign float64) float64 {
					p := make([]float32, n)
					for i := range p {
						p[i] = float32(float64(theta[i]) + sign*eps*v[i])
					}
					b.Upload(m.Params.Values, p)
					s, err := m.ForwardBackward(b, img, masks, lc, StepOptions{View2: view2})
					if err != nil {
						t.Fatal(err)
					}
					return s.Loss
				}
				fd := (loss(1) - loss(-1)) / (2 * eps)
				b.Upload(m.Params.Values, theta)
				if rel := math.Abs(fd-gv) / math.Max(math.Abs(gv), 1e-3); rel > 2e-2 {
					t.Errorf("%s vicreg=%v tokens=%d heads=%v proj=%d raw=%v trial %d: directional derivative %.6g, analytic %.6g (rel %.2g)", lossType, vic, vc.tokens, vc.heads, vc.proj, vc.raw, trial, fd, gv, rel)
				}
			}
		}
	}
}

// Per-parameter-group check: the gradient of each scope (encoder,
// predictor, each head) is checked on its own, so an error in one piece
// cannot hide behind a large gradient elsewhere.
func TestStepGradientPerScope(t *testing.T) {
	b := cpu.New(1)
	m := tinyModelWith(t, b, 2, true, 12)
	masker, _ := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
		TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 2}, 6)
	img := randImages(b, 3, 10)
	masks := masker.Sample(3, 3)
	lc := LossConfig{Type: "mse", Weights: []float64{1, 0.5}, VICRegWeight: 0.5, VarianceCoeff: 25, CovarianceCoeff: 1, InvarianceCoeff: 2}
	m.Params.ZeroGrad(b)
	if _, err := m.ForwardBackward(b, img, masks, lc, StepOptions{Backward: true}); err != nil {
		t.Fatal(err)
	}
	n := m.Params.Len()
	theta := make([]float32, n)
	grad := make([]float32, n)
	b.Download(theta, m.Params.Values)
	b.Download(grad, m.Params.Grads)
	r := rand.New(rand.NewPCG(1, 2))
	for _, scope := range []string{"encoder.", "predictor.", "heads.1.", "projector."} {
		off, cnt, err := m.Params.Range(scope)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float64, cnt)
		var gv, vn float64
		for i := range v {
			v[i] = r.NormFloat64()
			gv += v[i] * float64(grad[off+i])
			vn += v[i] * v[i]
		}
		eps := 3e-2 / math.Sqrt(vn)
		loss := func(sign float64) float64 {
			p := append([]float32(nil), theta...)
			for i := range v {
				p[off+i] = float32(float64(theta[off+i]) + sign*eps*v[i])
			}
			b.Upload(m.Params.Values, p)
			s, _ := m.ForwardBackward(b, img, masks, lc, StepOptions{})
			return s.Loss
		}
		fd := (loss(1) - loss(-1)) / (2 * eps)
		b.Upload(m.Params.Values, theta)
		if rel := math.Abs(fd-gv) / math.Max(math.Abs(gv), 1e-4); rel > 2e-2 {
			t.Errorf("scope %s: directional derivative %.6g, analytic %.6g (rel %.2g)", scope, fd, gv, rel)
		}
	}
}

func TestVICRegGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, d = 6, 5
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.3) // std < 1: the variance hinge is active
	}
	for _, gamma := range []float64{1, 0.3} { // 0.3: some dimensions above the target
		loss, g := VICReg(x, n, d, gamma, 25, 1)
		if loss <= 0 {
			t.Fatalf("gamma %v: loss %v", gamma, loss)
		}
		for i := range x {
			const eps = 1e-3
			xp := append([]float32(nil), x...)
			xp[i] += eps
			lp, _ := VICReg(xp, n, d, gamma, 25, 1)
			xp[i] -= 2 * eps
			lm, _ := VICReg(xp, n, d, gamma, 25, 1)
			fd := (lp - lm) / (2 * eps)
			if math.Abs(fd-float64(g[i])) > 2e-3*math.Max(1, math.Abs(fd)) {
				t.Errorf("gamma %v: d/dx[%d]: analytic %v, finite difference %v", gamma, i, g[i], fd)
			}
		}
	}
	// A collapsed batch (all rows equal) has the maximal variance loss of 1.
	same := make([]float32, n*d)
	if l, _ := VICReg(same, n, d, 1, 1, 0); math.Abs(l-(1-math.Sqrt(1e-4))) > 1e-9 {
		t.Errorf("collapsed variance loss %v", l)
	}
}

// EMA moves the target toward the context side by (1-m).
func TestUpdateTarget(t *testing.T) {
	b := cpu.New(1)
	m := tinyModel(t, b, 1)
	src, _ := m.Params.ValuesOf(EncoderScope)
	dst, _ := m.TargetParams.ValuesOf(EncoderScope)
	s := make([]float32, src.Numel())
	d0 := make([]float32, dst.Numel())
	b.Download(s, src)
	b.Download(d0, dst)
	m.UpdateTarget(b, 0.9)
	d1 := make([]float32, dst.Numel())
	b.Download(d1, dst)
	for i := range d1 {
		want := 0.9*d0[i] + 0.1*s[i]
		if math.Abs(float64(d1[i]-want)) > 1e-6 {
			t.Fatalf("element %d: %v, want %v", i, d1[i], want)
		}
	}
}

// TestGradsReadyPrefixesAreFinal: every GradsReady(upTo) call comes with a
// larger upTo, and Grads[:upTo] at that moment already hold their final
// values (a data-parallel trainer reduces them while backward goes on).
func TestGradsReadyPrefixesAreFinal(t *testing.T) {
	b := cpu.New(1)
	m := tinyModel(t, b, 2)
	masker, _ := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
		TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 2}, 6)
	img := randImages(b, 2, 10)
	lc := LossConfig{Type: "mse", Weights: []float64{1, 0.5}}
	type snap struct {
		upTo int
		g    []float32
	}
	var snaps []snap
	ready := func(upTo int) {
		g := make([]float32, m.Params.Len())
		b.Download(g, m.Params.Grads)
		snaps = append(snaps, snap{upTo, g[:upTo]})
	}
	m.Params.ZeroGrad(b)
	if _, err := m.ForwardBackward(b, img, masker.Sample(3, 2), lc, StepOptions{Backward: true, GradsReady: ready}); err != nil {
		t.Fatal(err)
	}
	final := make([]float32, m.Params.Len())
	b.Download(final, m.Params.Grads)
	if len(snaps) != 2+m.Cfg.Encoder.Depth || snaps[len(snaps)-1].upTo != m.Params.Len() {
		t.Fatalf("%d calls, last upTo %d; want %d calls ending at %d", len(snaps), snaps[len(snaps)-1].upTo, 2+m.Cfg.Encoder.Depth, m.Params.Len())
	}
	prev := 0
	for _, s := range snaps {
		if s.upTo <= prev {
			t.Fatalf("upTo %d after %d: not growing", s.upTo, prev)
		}
		prev = s.upTo
		for i, x := range s.g {
			if x != final[i] {
				t.Fatalf("GradsReady(%d): grad[%d] was %v, final %v", s.upTo, i, x, final[i])
			}
		}
	}
}

// TestView2IsTheInvarianceTarget: with a second view the invariance term
// compares with the target encoder's embedding of that view, so only the
// VICReg part of the loss changes; the same images as second view change
// nothing.
func TestView2IsTheInvarianceTarget(t *testing.T) {
	b := cpu.New(1)
	m := tinyModel(t, b, 2)
	masker, _ := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
		TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 2}, 6)
	img, other := randImages(b, 3, 10), randImages(b, 3, 11)
	masks := masker.Sample(1, 3)
	lc := LossConfig{Type: "smoothl1", Weights: []float64{1, 0.5}, VICRegWeight: 1, VarianceCoeff: 25, CovarianceCoeff: 1, InvarianceCoeff: 10}
	run := func(v2 *tensor.Tensor) StepStats {
		s, err := m.ForwardBackward(b, img, masks, lc, StepOptions{View2: v2})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	same, self, diff := run(nil), run(img), run(other)
	if self.Loss != same.Loss {
		t.Errorf("View2 = the images themselves: loss %v, without View2 %v", self.Loss, same.Loss)
	}
	if diff.JEPA != same.JEPA || diff.VICReg == same.VICReg {
		t.Errorf("another View2 changed JEPA %v -> %v and VICReg %v -> %v; want only VICReg to change", same.JEPA, diff.JEPA, same.VICReg, diff.VICReg)
	}
}

// loss.normalize_embeddings: the LayerNorm'd targets (I-JEPA) do not
// change when the target encoder's output is scaled (here through its final
// LayerNorm's affine), raw targets do.
func TestRawTargetsSkipTheLayerNorm(t *testing.T) {
	b := cpu.New(1)
	defer b.Close()
	m := tinyModel(t, b, 2)
	masker, err := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
		TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 2}, 5)
	if err != nil {
		t.Fatal(err)
	}
	img, masks := randImages(b, 3, 9), masker.Sample(0, 3)
	loss := func(raw bool) float64 {
		s, err := m.ForwardBackward(b, img, masks, LossConfig{Type: "mse", Weights: []float64{1, 0.5}, RawTargets: raw}, StepOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Windows[1] == 0 {
			t.Fatal("test masks have no level-1 window")
		}
		return s.Loss
	}
	norm0, raw0 := loss(false), loss(true)
	for _, np := range m.NamedParams() {
		if np.Name == TargetPrefix+"encoder.norm.weight" || np.Name == TargetPrefix+"encoder.norm.bias" {
			b.Scale(np.Param.W, 3)
		}
	}
	norm1, raw1 := loss(false), loss(true)
	if math.Abs(norm1-norm0) > 1e-5*math.Abs(norm0) {
		t.Errorf("normalised targets: loss %v -> %v when the target output is scaled", norm0, norm1)
	}
	if math.Abs(raw1-raw0) < 0.1*math.Abs(raw0) {
		t.Errorf("raw targets: loss %v -> %v, want a change when the target output is scaled", raw0, raw1)
	}
}
