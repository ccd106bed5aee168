package jepa

// The golden test of the training objective: with VICReg off and level
// weights [1, 0, 0], H-JEPA's step is I-JEPA's, so its loss and every
// parameter gradient must equal those of the official train_step in PyTorch
// 1.13 (its ViT and predictor, apply_masks / repeat_interleave_batch,
// F.layer_norm targets, smooth-L1) on the same weights, images and masks.
// The fixture testdata/golden/ijepa_step.safetensors comes from
// tools/golden/make_step_fixture.py (`make golden`); it holds the images,
// masks, loss, the predictor output and masked targets (diagnostics) and
// grad.<arena name> of every trained parameter, but not the weights: both
// sides compute them from the formula of nn/golden_test.go,
//
//	seed     = FNV-1a 32-bit hash of the UTF-8 parameter name
//	u(i)     = ((i*2654435761 + seed*40503) mod 2^32) / 2^32 - 0.5
//	value(i) = float32(offset + scale*u(i)),  i = 0 .. numel-1 row-major,
//
// keyed by encoder.<key>, predictor.<key> and target_encoder.<key> (<key>
// I-JEPA's state_dict key), so the target encoder differs from the context
// encoder.
//
// The second golden test covers the hierarchy levels l > 0: the same script
// writes testdata/golden/hjepa_levels.safetensors, the same step with 4x5
// target blocks (level 1 has 2x2 windows per block, level 2 one) and level
// weights [1, 0.5, 0.25], the pooled objective written in PyTorch on its own
// (reshape and mean over the 2^l x 2^l windows tiling each block from its
// top-left corner, F.layer_norm without affine, eps 1e-5, on both sides;
// smooth-L1 per level), with each level's loss and its normalised pooled
// predictions and targets besides the total loss and the gradients.

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// stepGoldenTol bounds the relative L2 error of the loss and every gradient:
// the issue asks 1e-4; the step measures below 1e-6 (float32 against
// PyTorch's float32), so 1e-5 also catches the target LayerNorm's eps (1e-5
// in I-JEPA's F.layer_norm) being taken from the encoder (1e-6), which moves
// the loss by ~7e-6.
const stepGoldenTol = 1e-5

// stepGoldenFormula is the fixture weight formula (see the file comment).
func stepGoldenFormula(name string, n int, scale, offset float64) []float32 {
	h := uint32(2166136261)
	for _, c := range []byte(name) {
		h ^= uint32(c)
		h *= 16777619
	}
	seed := uint64(h)
	out := make([]float32, n)
	for i := range out {
		k := (uint64(i)*2654435761 + seed*40503) % (1 << 32)
		u := float64(k)/(1<<32) - 0.5
		// float64() forbids fusing into an FMA, which would round
		// differently from numpy.
		out[i] = float32(float64(scale*u) + offset)
	}
	return out
}

// stepFixture is a loaded step fixture (ijepa_step or hjepa_levels).
type stepFixture struct {
	f32    map[string][]float32
	i32    map[string][]int32
	shapes map[string][]int
	cfg    map[string]float64   // the config's numbers
	lists  map[string][]float64 // the config's lists of numbers
	params []struct {
		Name          string
		Shape         []int
		Scale, Offset float64
	}
}

// loadStepFixture reads testdata/golden/<file>.
func loadStepFixture(t *testing.T, file string) *stepFixture {
	t.Helper()
	path := filepath.Join("testdata", "golden", file)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatalf("%v (regenerate with `make golden`)", err)
	}
	defer f.Close()
	fx := &stepFixture{f32: map[string][]float32{}, i32: map[string][]int32{}, shapes: map[string][]int{}}
	for _, info := range f.Tensors() {
		fx.shapes[info.Name] = info.Shape
		if info.DType == "I32" {
			if fx.i32[info.Name], _, err = f.Int32(info.Name); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if fx.f32[info.Name], _, err = f.Float32(info.Name); err != nil {
			t.Fatal(err)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(f.Metadata["config"]), &raw); err != nil {
		t.Fatalf("%s: config metadata: %v", path, err)
	}
	fx.cfg, fx.lists = map[string]float64{}, map[string][]float64{}
	for k, v := range raw {
		switch x := v.(type) {
		case float64:
			fx.cfg[k] = x
		case []any:
			var l []float64
			for _, e := range x {
				if f, ok := e.(float64); ok {
					l = append(l, f)
				}
			}
			if len(l) == len(x) {
				fx.lists[k] = l
			}
		}
	}
	if err := json.Unmarshal([]byte(f.Metadata["params"]), &fx.params); err != nil {
		t.Fatalf("%s: params metadata: %v", path, err)
	}
	return fx
}

func (fx *stepFixture) cfgInt(key string) int { return int(fx.cfg[key]) }

// model builds the fixture's model with I-JEPA's three levels and uploads
// the formula weights into both arenas: encoder.* and predictor.* into
// Params, target_encoder.<key> into TargetParams' encoder.<key>.
func (fx *stepFixture) model(t *testing.T, b tensor.Backend) *Model {
	t.Helper()
	c := fx.cfg
	enc := nn.ViTConfig{ImgSize: fx.cfgInt("img_size"), PatchSize: fx.cfgInt("patch"), InChans: fx.cfgInt("in_chans"),
		Dim: fx.cfgInt("dim"), Depth: fx.cfgInt("depth"), Heads: fx.cfgInt("heads"), MLPRatio: c["mlp_ratio"],
		Eps: float32(c["eps"]), InitStd: 0.02}
	pred := nn.PredictorConfig{GridSize: enc.GridSize(), EmbedDim: enc.Dim, Dim: fx.cfgInt("predictor_dim"),
		Depth: fx.cfgInt("predictor_depth"), Heads: fx.cfgInt("predictor_heads"), MLPRatio: c["predictor_mlp_ratio"],
		Eps: float32(c["eps"]), InitStd: 0.02}
	m, err := NewModel(b, ModelConfig{Encoder: enc, Predictor: pred, Levels: 3})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*nn.Param]bool{}
	for _, gp := range fx.params {
		var p *nn.Param
		if key, ok := strings.CutPrefix(gp.Name, "target_encoder."); ok {
			p = m.TargetParams.Lookup(EncoderScope + key)
		} else {
			p = m.Params.Lookup(gp.Name)
		}
		if p == nil {
			t.Fatalf("fixture parameter %s has no counterpart in the model", gp.Name)
		}
		n := 1
		for _, d := range gp.Shape {
			n *= d
		}
		// The patch embedding keeps the Conv2d kernel [D, C, p, p] as
		// [D, C*p*p]; the row-major order is the same.
		if p.Numel() != n || p.Shape[0] != gp.Shape[0] {
			t.Fatalf("%s has shape %v, PyTorch's %s %v", p.Name, p.Shape, gp.Name, gp.Shape)
		}
		b.Upload(p.W, stepGoldenFormula(gp.Name, n, gp.Scale, gp.Offset))
		seen[p] = true
	}
	for _, a := range []struct {
		name  string
		arena *nn.Arena
	}{{"trained", m.Params}, {"target", m.TargetParams}} {
		for _, p := range a.arena.Params() {
			if !seen[p] {
				t.Fatalf("%s parameter %s is not in the PyTorch model", a.name, p.Name)
			}
		}
	}
	return m
}

// masks lays the fixture's index lists out as Masks: the context lists,
// target block k of image i at row k*B+i (apply_masks' concatenation on the
// batch dimension), and the level windows SampleShard would attach.
func (fx *stepFixture) masks(t *testing.T) *Masks {
	t.Helper()
	bs, nTgt := fx.cfgInt("batch"), fx.cfgInt("targets")
	bh, bw := fx.cfgInt("block_h"), fx.cfgInt("block_w")
	ms := &Masks{B: bs, Nc: fx.shapes["masks_enc.0"][1], Nt: bh * bw, BlockH: bh, BlockW: bw,
		Context: fx.i32["masks_enc.0"]}
	for k := 0; k < nTgt; k++ {
		key := fmt.Sprintf("masks_pred.%d", k)
		if s := fx.shapes[key]; len(s) != 2 || s[0] != bs || s[1] != ms.Nt {
			t.Fatalf("%s has shape %v, want [%d %d]", key, s, bs, ms.Nt)
		}
		ms.Targets = append(ms.Targets, fx.i32[key]...)
	}
	if len(ms.Context) != bs*ms.Nc {
		t.Fatalf("masks_enc.0: %d indices for %d x %d", len(ms.Context), bs, ms.Nc)
	}
	for l := 0; l < 3; l++ {
		ms.Levels = append(ms.Levels, levelWindows(1<<l, bh, bw, nTgt*bs))
	}
	return ms
}

// goldenRelL2 is ||got - want|| / ||want||.
func goldenRelL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	e := math.Sqrt(num / math.Max(den, 1e-30))
	if math.IsNaN(e) {
		return math.Inf(1)
	}
	return e
}

func goldenDownload(b tensor.Backend, x *tensor.Tensor) []float32 {
	v := make([]float32, x.Numel())
	b.Download(v, x)
	return v
}

// stepGolden compares a step's tensors with a fixture's and keeps the errors.
type stepGolden struct {
	t    *testing.T
	fx   *stepFixture
	errs map[string]float64
}

func newStepGolden(t *testing.T, fx *stepFixture) *stepGolden {
	return &stepGolden{t: t, fx: fx, errs: map[string]float64{}}
}

// check compares got with the fixture tensor key (relative L2 error <= tol).
func (g *stepGolden) check(key string, got []float32, tol float64) {
	t := g.t
	t.Helper()
	want, ok := g.fx.f32[key]
	if !ok {
		t.Fatalf("fixture has no tensor %q", key)
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d values, PyTorch %d %v", key, len(got), len(want), g.fx.shapes[key])
		return
	}
	e := goldenRelL2(got, want)
	g.errs[key] = e
	if e > tol {
		t.Errorf("%s: relative L2 error %.3g > %.0e", key, e, tol)
	}
}

// grads checks the gradient of every trained parameter, and that the
// fixture has no other; it returns their number.
func (g *stepGolden) grads(b tensor.Backend, m *Model) int {
	g.t.Helper()
	n := 0
	for _, p := range m.Params.Params() {
		g.check("grad."+p.Name, goldenDownload(b, p.G), stepGoldenTol)
		n++
	}
	nGrad := 0
	for key := range g.fx.f32 {
		if strings.HasPrefix(key, "grad.") {
			nGrad++
		}
	}
	if nGrad != n {
		g.t.Errorf("fixture has %d gradients, the trained arena %d parameters", nGrad, n)
	}
	return n
}

// report logs every error, worst first, and returns the worst.
func (g *stepGolden) report() (string, float64) {
	keys := make([]string, 0, len(g.errs))
	for k := range g.errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return g.errs[keys[i]] > g.errs[keys[j]] })
	for _, k := range keys {
		g.t.Logf("%-52s rel L2 %.2e", k, g.errs[k])
	}
	if len(keys) == 0 {
		return "", 0
	}
	return keys[0], g.errs[keys[0]]
}

func TestGoldenIJEPAStep(t *testing.T) {
	fx := loadStepFixture(t, "ijepa_step.safetensors")
	b := cpu.New(1)
	defer b.Close()
	m := fx.model(t, b)
	masks := fx.masks(t)
	imgShape := fx.shapes["img"]
	img := b.New(tensor.Float32, imgShape...)
	b.Upload(img, fx.f32["img"])
	lc := LossConfig{Type: "smoothl1", Weights: []float64{1, 0, 0}}

	g := newStepGolden(t, fx)
	check := g.check

	// Diagnostics first (a forward alone): which side a loss mismatch is on.
	// The step keeps both in its buffers; the same bound as the gradients.
	if _, err := m.ForwardBackward(b, img, masks, lc, StepOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, d := len(masks.Targets), m.Cfg.Encoder.Dim
	check("pred", goldenDownload(b, m.step.p), stepGoldenTol)
	check("target", goldenDownload(b, m.step.tsel.Get(b, rows, d)), stepGoldenTol)

	m.Params.ZeroGrad(b)
	st, err := m.ForwardBackward(b, img, masks, lc, StepOptions{Backward: true})
	if err != nil {
		t.Fatal(err)
	}
	// The zero-weight levels ran (level 1 has a window per 2x3 block) and
	// must add nothing.
	if st.Windows[0] != masks.Nt || st.Windows[1] == 0 {
		t.Errorf("windows per level %v: the fixture should exercise levels 0 and 1", st.Windows)
	}
	check("loss", []float32{float32(st.Loss)}, stepGoldenTol)
	nGrads := g.grads(b, m)
	worst, e := g.report()
	t.Logf("loss %.6f (PyTorch %.6f); %d gradients; worst %s %.2e", st.Loss, fx.f32["loss"][0], nGrads, worst, e)
}

// TestGoldenHJEPALevels checks the hierarchy levels l > 0 against the
// pooled objective written in PyTorch (hjepa_levels, see the file comment):
// the normalised pooled predictions and targets, each level's loss, the
// weighted total and every gradient.
func TestGoldenHJEPALevels(t *testing.T) {
	fx := loadStepFixture(t, "hjepa_levels.safetensors")
	weights, wantWindows := fx.lists["level_weights"], fx.lists["windows_per_block"]
	if len(weights) != 3 || len(wantWindows) != 3 {
		t.Fatalf("config: level_weights %v, windows_per_block %v: want 3 levels", weights, wantWindows)
	}
	if eps := fx.cfg["target_norm_eps"]; eps != TargetNormEps {
		t.Fatalf("the fixture normalises with eps %g, the step with %g", eps, TargetNormEps)
	}
	b := cpu.New(1)
	defer b.Close()
	m := fx.model(t, b)
	masks := fx.masks(t)
	img := b.New(tensor.Float32, fx.shapes["img"]...)
	b.Upload(img, fx.f32["img"])
	lc := LossConfig{Type: "smoothl1", Weights: weights}
	for l, w := range wantWindows {
		if masks.Levels[l].Windows != int(w) || w == 0 {
			t.Fatalf("level %d: %d windows per block, PyTorch %v (every level must have one)", l, masks.Levels[l].Windows, w)
		}
	}

	g := newStepGolden(t, fx)
	// Diagnostics first (a forward alone): which level, and which side of
	// it, a loss mismatch is on.
	if _, err := m.ForwardBackward(b, img, masks, lc, StepOptions{}); err != nil {
		t.Fatal(err)
	}
	rows, d := len(masks.Targets), m.Cfg.Encoder.Dim
	g.check("pred", goldenDownload(b, m.step.p), stepGoldenTol)
	g.check("target", goldenDownload(b, m.step.tsel.Get(b, rows, d)), stepGoldenTol)
	for l := 1; l < len(weights); l++ {
		ls := &m.step.levels[l]
		g.check(fmt.Sprintf("pred.level.%d", l), goldenDownload(b, ls.prdN.Get(b, ls.wtot, d)), stepGoldenTol)
		g.check(fmt.Sprintf("target.level.%d", l), goldenDownload(b, ls.tgtN.Get(b, ls.wtot, d)), stepGoldenTol)
	}

	m.Params.ZeroGrad(b)
	st, err := m.ForwardBackward(b, img, masks, lc, StepOptions{Backward: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.JEPA != st.Loss || st.VICReg != 0 {
		t.Errorf("loss %v = JEPA %v + VICReg %v: VICReg is off", st.Loss, st.JEPA, st.VICReg)
	}
	g.check("loss", []float32{float32(st.Loss)}, stepGoldenTol)
	for l := range weights {
		g.check(fmt.Sprintf("loss.level.%d", l), []float32{float32(st.Levels[l])}, stepGoldenTol)
	}
	nGrads := g.grads(b, m)
	worst, e := g.report()
	t.Logf("loss %.6f (PyTorch %.6f), levels %.6f (PyTorch %.6f %.6f %.6f); %d gradients; worst %s %.2e",
		st.Loss, fx.f32["loss"][0], st.Levels, fx.f32["loss.level.0"][0], fx.f32["loss.level.1"][0],
		fx.f32["loss.level.2"][0], nGrads, worst, e)
}
