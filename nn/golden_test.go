package nn_test

// Golden tests: every nn module against PyTorch 1.13 (I-JEPA's model code) on
// the same weights, inputs and upstream gradient. The fixtures in
// testdata/golden come from tools/golden/make_fixtures.py (`make golden`); they
// hold inputs, index lists, the upstream gradient dout, the outputs and the
// gradients of the input and of every parameter (grad.<state_dict key>), but
// not the weights: both sides compute those from one integer formula,
//
//	seed     = FNV-1a 32-bit hash of the UTF-8 parameter name (state_dict key)
//	u(i)     = ((i*2654435761 + seed*40503) mod 2^32) / 2^32 - 0.5
//	value(i) = float32(offset + scale*u(i)),  i = 0 .. numel-1 row-major,
//
// evaluated in float64 (u is exact) and rounded once, with (scale, offset) per
// parameter from the fixture's "params" metadata. PyTorch is not needed here.

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// goldenTol bounds the relative L2 error of every output and gradient.
const goldenTol = 1e-4

// goldenParam is one entry of a fixture's "params" metadata.
type goldenParam struct {
	Name   string  `json:"name"`
	Shape  []int   `json:"shape"`
	Scale  float64 `json:"scale"`
	Offset float64 `json:"offset"`
}

// goldenFixture is one fixture, merged over its part files.
type goldenFixture struct {
	name   string
	f32    map[string][]float32
	i32    map[string][]int32
	shapes map[string][]int
	meta   map[string]string
	params []goldenParam
}

func loadGolden(t *testing.T, name string) *goldenFixture {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", name+".part*.safetensors"))
	if len(paths) == 0 {
		paths = []string{filepath.Join("testdata", "golden", name+".safetensors")}
	}
	fx := &goldenFixture{name: name, f32: map[string][]float32{}, i32: map[string][]int32{}, shapes: map[string][]int{}}
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatalf("%v (regenerate with `make golden`)", err)
		}
		fx.meta = f.Metadata
		for _, info := range f.Tensors() {
			fx.shapes[info.Name] = info.Shape
			if info.DType == "I32" || info.DType == "I64" {
				v, _, err := f.Int32(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				fx.i32[info.Name] = v
				continue
			}
			v, _, err := f.Float32(info.Name)
			if err != nil {
				t.Fatal(err)
			}
			fx.f32[info.Name] = v
		}
		f.Close()
	}
	if err := json.Unmarshal([]byte(fx.meta["params"]), &fx.params); err != nil {
		t.Fatalf("%s: params metadata: %v", name, err)
	}
	return fx
}

func (fx *goldenFixture) floats(t *testing.T, key string) []float32 {
	t.Helper()
	v, ok := fx.f32[key]
	if !ok {
		t.Fatalf("fixture %s has no float tensor %q", fx.name, key)
	}
	return v
}

func (fx *goldenFixture) upload(t *testing.T, b tensor.Backend, key string) *tensor.Tensor {
	t.Helper()
	v := fx.floats(t, key)
	x := b.New(tensor.Float32, fx.shapes[key]...)
	b.Upload(x, v)
	return x
}

func (fx *goldenFixture) uploadIdx(t *testing.T, b tensor.Backend, keys ...string) *tensor.Tensor {
	t.Helper()
	var all []int32
	rows, cols := 0, 0
	for _, k := range keys {
		v, ok := fx.i32[k]
		if !ok {
			t.Fatalf("fixture %s has no index tensor %q", fx.name, k)
		}
		all = append(all, v...)
		rows += fx.shapes[k][0]
		cols = fx.shapes[k][1]
	}
	x := b.New(tensor.Int32, rows, cols)
	b.UploadInt32(x, all)
	return x
}

// formulaWeights is the fixture weight formula (see the file comment).
func formulaWeights(name string, n int, scale, offset float64) []float32 {
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
		// The float64() conversion forbids fusing into an FMA, which would
		// round differently from numpy.
		out[i] = float32(float64(scale*u) + offset)
	}
	return out
}

// setGoldenWeights uploads every fixture parameter into the arena parameter
// prefix+name and checks that the arena holds exactly those parameters.
func setGoldenWeights(t *testing.T, b tensor.Backend, a *nn.Arena, prefix string, fx *goldenFixture) {
	t.Helper()
	seen := map[string]bool{}
	for _, gp := range fx.params {
		p := a.Lookup(prefix + gp.Name)
		if p == nil {
			t.Fatalf("%s: arena has no parameter %q (has %v)", fx.name, prefix+gp.Name, a.Names())
		}
		n := 1
		for _, d := range gp.Shape {
			n *= d
		}
		// Shapes may differ in rank (the patch embedding keeps the Conv2d
		// kernel [D, C, p, p] as [D, C*p*p]); the row-major order is the same.
		if p.Numel() != n || p.Shape[0] != gp.Shape[0] {
			t.Fatalf("%s: %s has shape %v, PyTorch %v", fx.name, p.Name, p.Shape, gp.Shape)
		}
		b.Upload(p.W, formulaWeights(gp.Name, n, gp.Scale, gp.Offset))
		seen[p.Name] = true
	}
	for _, p := range a.Params() {
		if !seen[p.Name] {
			t.Errorf("%s: parameter %s is not in the PyTorch module", fx.name, p.Name)
		}
	}
}

// goldenCheck accumulates comparisons and reports the worst at the end.
type goldenCheck struct {
	t         *testing.T
	fx        *goldenFixture
	worst     float64
	worstName string
	n         int
}

func newGoldenCheck(t *testing.T, fx *goldenFixture) *goldenCheck {
	c := &goldenCheck{t: t, fx: fx}
	t.Cleanup(func() {
		t.Logf("golden %s: %d tensors, worst rel L2 %.2e (%s)", fx.name, c.n, c.worst, c.worstName)
	})
	return c
}

// compare checks got against the fixture tensor key.
func (c *goldenCheck) compare(b tensor.Backend, key string, got *tensor.Tensor) {
	c.t.Helper()
	want := c.fx.floats(c.t, key)
	if got.Numel() != len(want) {
		c.t.Errorf("%s %s: %d elements %v, PyTorch %d %v", c.fx.name, key, got.Numel(), got.Shape(), len(want), c.fx.shapes[key])
		return
	}
	g := make([]float32, got.Numel())
	b.Download(g, got)
	c.compareHost(key, g, want, goldenTol)
}

func (c *goldenCheck) compareHost(key string, got, want []float32, tol float64) {
	c.t.Helper()
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	e := math.Sqrt(num / math.Max(den, 1e-30))
	if math.IsNaN(e) {
		e = math.Inf(1)
	}
	c.n++
	if e > c.worst || c.worstName == "" {
		c.worst, c.worstName = e, key
	}
	if e > tol {
		c.t.Errorf("%s %s: relative L2 error %.3g > %.0e", c.fx.name, key, e, tol)
	}
}

// compareGrads checks the gradient of every fixture parameter (grad.<name>)
// against the arena's prefix+name, and that the fixture has no other
// parameter gradients.
func (c *goldenCheck) compareGrads(b tensor.Backend, a *nn.Arena, prefix string) {
	c.t.Helper()
	names := map[string]bool{}
	for _, gp := range c.fx.params {
		c.compare(b, "grad."+gp.Name, a.Lookup(prefix+gp.Name).G)
		names["grad."+gp.Name] = true
	}
	for key := range c.fx.f32 {
		if strings.HasPrefix(key, "grad.") && !names[key] && key != "grad.x" && key != "grad.img" {
			c.t.Errorf("%s: fixture gradient %s has no parameter", c.fx.name, key)
		}
	}
}

// goldenConfig decodes the fixture's "config" metadata.
func goldenConfig(t *testing.T, fx *goldenFixture) map[string]float64 {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(fx.meta["config"]), &raw); err != nil {
		t.Fatalf("%s: config metadata: %v", fx.name, err)
	}
	cfg := map[string]float64{}
	for k, v := range raw {
		if f, ok := v.(float64); ok {
			cfg[k] = f
		}
	}
	return cfg
}

// goldenModule is a module with a single input x and output, as Linear, MLP,
// Attention and Block are.
type goldenModule interface {
	Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor
	Backward(b tensor.Backend, dx, dy *tensor.Tensor)
}

// runGoldenModule builds a module whose parameters are "m." + the PyTorch
// module's state_dict keys, sets the fixture
// weights, runs forward and backward and compares out, grad.x and every
// parameter gradient. accumulatesDx says Backward adds into dx (LayerNorm).
func runGoldenModule(t *testing.T, name string, build func(pb *nn.Builder, cfg map[string]float64) goldenModule, accumulatesDx bool) {
	fx := loadGolden(t, name)
	cfg := goldenConfig(t, fx)
	b := cpu.New(2)
	defer b.Close()
	pb := nn.NewBuilder()
	m := build(pb, cfg)
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	setGoldenWeights(t, b, a, "m.", fx)
	c := newGoldenCheck(t, fx)
	x := fx.upload(t, b, "x")
	c.compare(b, "out", m.Forward(b, x))
	dx := b.New(tensor.Float32, x.Shape()...)
	if !accumulatesDx {
		b.Fill(dx, float32(math.NaN())) // Backward must overwrite it
	}
	m.Backward(b, dx, fx.upload(t, b, "dout"))
	c.compare(b, "grad.x", dx)
	c.compareGrads(b, a, "m.")
}

func TestGoldenLinear(t *testing.T) {
	runGoldenModule(t, "linear", func(pb *nn.Builder, cfg map[string]float64) goldenModule {
		return nn.NewLinear(pb, "m", int(cfg["in"]), int(cfg["out"]), true)
	}, false)
}

func TestGoldenLayerNorm(t *testing.T) {
	runGoldenModule(t, "layernorm", func(pb *nn.Builder, cfg map[string]float64) goldenModule {
		return nn.NewLayerNorm(pb, "m", int(cfg["dim"]), float32(cfg["eps"]))
	}, true)
}

func TestGoldenMLP(t *testing.T) {
	runGoldenModule(t, "mlp", func(pb *nn.Builder, cfg map[string]float64) goldenModule {
		return nn.NewMLP(pb.Scope("m."), int(cfg["dim"]), int(cfg["hidden"]))
	}, false)
}

func TestGoldenAttention(t *testing.T) {
	runGoldenModule(t, "attention", func(pb *nn.Builder, cfg map[string]float64) goldenModule {
		return nn.NewAttention(pb.Scope("m."), int(cfg["dim"]), int(cfg["heads"]))
	}, false)
}

func TestGoldenBlock(t *testing.T) {
	runGoldenModule(t, "block", func(pb *nn.Builder, cfg map[string]float64) goldenModule {
		d := int(cfg["dim"])
		return nn.NewBlock(pb.Scope("m."), d, int(cfg["heads"]), int(float64(d)*cfg["mlp_ratio"]), float32(cfg["eps"]))
	}, false)
}

// TestGoldenLayerNormNoAffine checks the backend kernel without weight and
// bias, as the target encoder's output normalisation uses it.
func TestGoldenLayerNormNoAffine(t *testing.T) {
	fx := loadGolden(t, "layernorm_noaffine")
	cfg := goldenConfig(t, fx)
	b := cpu.New(2)
	defer b.Close()
	c := newGoldenCheck(t, fx)
	x := fx.upload(t, b, "x")
	d := int(cfg["dim"])
	r := x.Numel() / d
	out := b.New(tensor.Float32, x.Shape()...)
	mean, rstd := b.New(tensor.Float32, r), b.New(tensor.Float32, r)
	b.LayerNormForward(out.Reshape(r, d), mean, rstd, x.Reshape(r, d), nil, nil, float32(cfg["eps"]))
	c.compare(b, "out", out)
	dx := b.New(tensor.Float32, x.Shape()...)
	b.LayerNormBackward(dx.Reshape(r, d), nil, nil, fx.upload(t, b, "dout").Reshape(r, d), x.Reshape(r, d), mean, rstd, nil)
	c.compare(b, "grad.x", dx)
}

func TestGoldenGELU(t *testing.T) {
	fx := loadGolden(t, "gelu")
	b := cpu.New(2)
	defer b.Close()
	c := newGoldenCheck(t, fx)
	x := fx.upload(t, b, "x")
	out := b.New(tensor.Float32, x.Shape()...)
	b.GELUForward(out, x)
	c.compare(b, "out", out)
	dx := b.New(tensor.Float32, x.Shape()...)
	b.GELUBackward(dx, fx.upload(t, b, "dout"), x)
	c.compare(b, "grad.x", dx)
}

func TestGoldenPatchEmbed(t *testing.T) {
	fx := loadGolden(t, "patch_embed")
	cfg := goldenConfig(t, fx)
	b := cpu.New(2)
	defer b.Close()
	pb := nn.NewBuilder()
	pe := nn.NewPatchEmbed(pb.Scope("m."), int(cfg["in_chans"]), int(cfg["patch"]), int(cfg["dim"]))
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	setGoldenWeights(t, b, a, "m.", fx)
	c := newGoldenCheck(t, fx)
	c.compare(b, "out", pe.Forward(b, fx.upload(t, b, "img"), nil))
	pe.Backward(b, fx.upload(t, b, "dout"))
	// grad.img is in the fixture but nn has no image gradient (nothing
	// upstream of the patch embedding trains).
	c.compareGrads(b, a, "m.")
}

func TestGoldenSinCos(t *testing.T) {
	fx := loadGolden(t, "sincos")
	c := newGoldenCheck(t, fx)
	keys := make([]string, 0, len(fx.f32))
	for k := range fx.f32 {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var dim, grid int
		if _, err := fmt.Sscanf(k, "pos_embed.%d.%d", &dim, &grid); err != nil {
			t.Fatalf("sincos: unexpected tensor %q", k)
		}
		got := nn.SinCos2D(dim, grid)
		if want := fx.shapes[k]; !slices.Equal(want, []int{grid * grid, dim}) || len(got) != grid*grid*dim {
			t.Fatalf("sincos %s: shape %v, Go table has %d values", k, want, len(got))
		}
		// Both sides compute in float64 and round once; only a last-bit
		// difference between libm's and Go's sin/cos may remain.
		c.compareHost(k, got, fx.f32[k], 1e-6)
	}
}

func goldenViTConfig(cfg map[string]float64) nn.ViTConfig {
	return nn.ViTConfig{
		ImgSize: int(cfg["img_size"]), PatchSize: int(cfg["patch"]), InChans: int(cfg["in_chans"]),
		Dim: int(cfg["dim"]), Depth: int(cfg["depth"]), Heads: int(cfg["heads"]),
		MLPRatio: cfg["mlp_ratio"], Eps: float32(cfg["eps"]), InitStd: 0.02,
	}
}

func TestGoldenEncoder(t *testing.T) {
	fx := loadGolden(t, "vit_encoder")
	cfg := goldenViTConfig(goldenConfig(t, fx))
	b := cpu.New(2)
	defer b.Close()
	pb := nn.NewBuilder()
	enc, err := nn.NewEncoder(pb.Scope("encoder."), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	setGoldenWeights(t, b, a, "encoder.", fx)
	c := newGoldenCheck(t, fx)
	img := fx.upload(t, b, "img")
	c.compare(b, "out_nomask", enc.Forward(b, img, nil))
	keep := fx.uploadIdx(t, b, "masks_x.0")
	c.compare(b, "out", enc.Forward(b, img, keep))
	enc.Backward(b, fx.upload(t, b, "dout"), nil)
	c.compareGrads(b, a, "encoder.")
}

func TestGoldenPredictor(t *testing.T) {
	fx := loadGolden(t, "vit_predictor")
	raw := goldenConfig(t, fx)
	cfg := nn.PredictorConfig{
		GridSize: int(math.Round(math.Sqrt(raw["num_patches"]))), EmbedDim: int(raw["embed_dim"]),
		Dim: int(raw["predictor_dim"]), Depth: int(raw["depth"]), Heads: int(raw["heads"]),
		MLPRatio: raw["mlp_ratio"], Eps: float32(raw["eps"]), InitStd: 0.02,
	}
	b := cpu.New(2)
	defer b.Close()
	pb := nn.NewBuilder()
	pred, err := nn.NewPredictor(pb.Scope("predictor."), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	setGoldenWeights(t, b, a, "predictor.", fx)
	c := newGoldenCheck(t, fx)
	x := fx.upload(t, b, "x")
	ctxIdx := fx.uploadIdx(t, b, "masks_x.0")
	// I-JEPA concatenates the target masks on the batch dimension.
	var tgtKeys []string
	for m := 0; m < int(raw["targets"]); m++ {
		tgtKeys = append(tgtKeys, fmt.Sprintf("masks.%d", m))
	}
	tgtIdx := fx.uploadIdx(t, b, tgtKeys...)
	c.compare(b, "out", pred.Forward(b, x, ctxIdx, tgtIdx))
	dx := b.New(tensor.Float32, x.Shape()...)
	b.Fill(dx, float32(math.NaN()))
	pred.Backward(b, dx, fx.upload(t, b, "dout"))
	c.compare(b, "grad.x", dx)
	c.compareGrads(b, a, "predictor.")
}
