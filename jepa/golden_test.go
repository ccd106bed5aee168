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

// stepFixture is the loaded ijepa_step fixture.
type stepFixture struct {
	f32    map[string][]float32
	i32    map[string][]int32
	shapes map[string][]int
	cfg    map[string]float64
	params []struct {
		Name          string
		Shape         []int
		Scale, Offset float64
	}
}

func loadStepFixture(t *testing.T) *stepFixture {
	t.Helper()
	path := filepath.Join("testdata", "golden", "ijepa_step.safetensors")
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
	fx.cfg = map[string]float64{}
	for k, v := range raw {
		if x, ok := v.(float64); ok {
			fx.cfg[k] = x
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

func TestGoldenIJEPAStep(t *testing.T) {
	fx := loadStepFixture(t)
	b := cpu.New(1)
	defer b.Close()
	m := fx.model(t, b)
	masks := fx.masks(t)
	imgShape := fx.shapes["img"]
	img := b.New(tensor.Float32, imgShape...)
	b.Upload(img, fx.f32["img"])
	lc := LossConfig{Type: "smoothl1", Weights: []float64{1, 0, 0}}

	errs := map[string]float64{}
	check := func(key string, got []float32, tol float64) {
		t.Helper()
		want, ok := fx.f32[key]
		if !ok {
			t.Fatalf("fixture has no tensor %q", key)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d values, PyTorch %d %v", key, len(got), len(want), fx.shapes[key])
			return
		}
		e := goldenRelL2(got, want)
		errs[key] = e
		if e > tol {
			t.Errorf("%s: relative L2 error %.3g > %.0e", key, e, tol)
		}
	}

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

	var gradKeys []string
	for _, p := range m.Params.Params() {
		key := "grad." + p.Name
		gradKeys = append(gradKeys, key)
		check(key, goldenDownload(b, p.G), stepGoldenTol)
	}
	nGrad := 0
	for key := range fx.f32 {
		if strings.HasPrefix(key, "grad.") {
			nGrad++
		}
	}
	if nGrad != len(gradKeys) {
		t.Errorf("fixture has %d gradients, the trained arena %d parameters", nGrad, len(gradKeys))
	}

	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return errs[keys[i]] > errs[keys[j]] })
	for _, k := range keys {
		t.Logf("%-52s rel L2 %.2e", k, errs[k])
	}
	t.Logf("loss %.6f (PyTorch %.6f); %d gradients; worst %s %.2e", st.Loss, fx.f32["loss"][0], len(gradKeys), keys[0], errs[keys[0]])
}
