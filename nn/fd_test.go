package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// Finite-difference gradient checks. The analytic gradients come from the
// float32 modules on the CPU backend; the reference derivative is the central
// difference of L = sum(y * dy) with y evaluated by the float64 reference
// forward (ref_test.go), so the check is limited only by float32 rounding in
// the analytic path.

const (
	fdStep     = 1e-5
	fdTol      = 1e-3 // relative L2 error of every gradient
	fwdTol     = 1e-4 // relative L2 error of the float32 forward vs float64
	fdMaxElems = 400  // elements per tensor checked (random subset beyond)
)

func forEachBackend(t *testing.T, f func(t *testing.T, b tensor.Backend)) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) { f(t, cpu.New(threads)) })
	}
}

func randNormal(rng *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func upload(b tensor.Backend, v []float32, shape ...int) *tensor.Tensor {
	t := b.New(tensor.Float32, shape...)
	b.Upload(t, v)
	return t
}

func uploadIdx(b tensor.Backend, idx [][]int) *tensor.Tensor {
	flat := make([]int32, 0)
	for _, row := range idx {
		for _, v := range row {
			flat = append(flat, int32(v))
		}
	}
	t := b.New(tensor.Int32, len(idx), len(idx[0]))
	b.UploadInt32(t, flat)
	return t
}

func download(b tensor.Backend, t *tensor.Tensor) []float32 {
	v := make([]float32, t.Numel())
	b.Download(v, t)
	return v
}

// randomizeParams fills the arena with values that exercise every term:
// weights ~ N(0, (0.5/sqrt(fan_in))^2), biases and the mask token ~ N(0, 0.2^2),
// LayerNorm weights ~ 1 + N(0, 0.2^2).
func randomizeParams(b tensor.Backend, a *Arena, rng *rand.Rand) {
	vals := make([]float32, a.Len())
	for _, p := range a.Params() {
		v := vals[p.Offset : p.Offset+p.Numel()]
		isNorm := strings.Contains(p.Name, "norm")
		for i := range v {
			switch {
			case len(p.Shape) == 2:
				v[i] = float32(rng.NormFloat64() * 0.5 / math.Sqrt(float64(p.Shape[1])))
			case isNorm && strings.HasSuffix(p.Name, ".weight"):
				v[i] = float32(1 + 0.2*rng.NormFloat64())
			default:
				v[i] = float32(0.2 * rng.NormFloat64())
			}
		}
	}
	b.Upload(a.Values, vals)
}

func arenaParams64(b tensor.Backend, a *Arena) params64 {
	vals := download(b, a.Values)
	p := params64{}
	for _, q := range a.Params() {
		p[q.Name] = to64(vals[q.Offset : q.Offset+q.Numel()])
	}
	return p
}

func relL2(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func dot64(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// fdCheck compares analytic[idx] with central differences of loss() with
// respect to v[idx] (v is perturbed in place and restored).
func fdCheck(v []float64, analytic []float32, loss func() float64, rng *rand.Rand) float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	if len(idx) > fdMaxElems {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:fdMaxElems]
	}
	got := make([]float32, len(idx))
	want := make([]float64, len(idx))
	for k, i := range idx {
		old := v[i]
		v[i] = old + fdStep
		lp := loss()
		v[i] = old - fdStep
		lm := loss()
		v[i] = old
		want[k] = (lp - lm) / (2 * fdStep)
		got[k] = analytic[i]
	}
	return relL2(got, want)
}

// gradReport collects the maximum relative errors of a check for logging.
type gradReport struct {
	t       *testing.T
	fwd     float64
	input   float64
	params  map[string]float64
	maxName string
	max     float64
}

func (r *gradReport) param(name string, e float64) {
	if r.params == nil {
		r.params = map[string]float64{}
	}
	r.params[name] = e
	if e > r.max {
		r.max, r.maxName = e, name
	}
	if e > fdTol || math.IsNaN(e) {
		r.t.Errorf("gradient of %s: relative L2 error %.3g > %g", name, e, fdTol)
	}
}

func (r *gradReport) log() {
	names := make([]string, 0, len(r.params))
	for n := range r.params {
		names = append(names, n)
	}
	sort.Strings(names)
	r.t.Logf("forward rel err %.2e; input grad rel err %.2e; max param grad rel err %.2e (%s) over %d params",
		r.fwd, r.input, r.max, r.maxName, len(names))
	if testing.Verbose() {
		for _, n := range names {
			r.t.Logf("  %-40s %.2e", n, r.params[n])
		}
	}
}

// checkAll runs the forward check, the input-gradient check (when x64 and
// dx are non-nil) and every parameter-gradient check of arena a.
func checkAll(t *testing.T, b tensor.Backend, a *Arena, ref func(p params64, x []float64) []float64,
	x64 []float64, dx []float32, y []float32, dy []float64, rng *rand.Rand) *gradReport {
	t.Helper()
	r := &gradReport{t: t}
	p := arenaParams64(b, a)
	yRef := ref(p, x64)
	if len(yRef) != len(y) {
		t.Fatalf("reference output has %d values, module %d", len(yRef), len(y))
	}
	r.fwd = relL2(y, yRef)
	if r.fwd > fwdTol {
		t.Errorf("forward: relative L2 error %.3g vs float64 reference", r.fwd)
	}
	loss := func() float64 { return dot64(ref(p, x64), dy) }
	if dx != nil {
		r.input = fdCheck(x64, dx, loss, rng)
		if r.input > fdTol || math.IsNaN(r.input) {
			t.Errorf("input gradient: relative L2 error %.3g > %g", r.input, fdTol)
		}
	}
	grads := download(b, a.Grads)
	for _, q := range a.Params() {
		r.param(q.Name, fdCheck(p[q.Name], grads[q.Offset:q.Offset+q.Numel()], loss, rng))
	}
	r.log()
	return r
}

// moduleCase is a module whose input gradient is checked too.
type moduleCase struct {
	name    string
	inShape []int
	// build declares the module and returns its forward, backward and float64
	// reference.
	build func(pb *Builder) (fwd func(tensor.Backend, *tensor.Tensor) *tensor.Tensor,
		bwd func(b tensor.Backend, dx, dy *tensor.Tensor), ref func(params64, []float64) []float64)
	// accumulates: Backward adds into dx instead of overwriting it.
	accumulates bool
}

func TestModuleGradients(t *testing.T) {
	const bs, n, d, heads, hidden = 2, 7, 12, 2, 20
	const eps = 1e-6
	cases := []moduleCase{
		{name: "Linear", inShape: []int{bs, n, d},
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				l := NewLinear(pb, "fc", d, 9, true)
				return l.Forward, l.Backward, func(p params64, x []float64) []float64 { return p.linear("fc", x, bs*n, d, 9) }
			}},
		{name: "LinearNoBias", inShape: []int{bs * n, d},
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				l := NewLinear(pb, "fc", d, 5, false)
				return l.Forward, l.Backward, func(p params64, x []float64) []float64 { return p.linear("fc", x, bs*n, d, 5) }
			}},
		{name: "LayerNorm", inShape: []int{bs, n, d}, accumulates: true,
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				l := NewLayerNorm(pb, "norm", d, eps)
				return l.Forward, l.Backward, func(p params64, x []float64) []float64 { return p.layerNorm("norm", x, bs*n, d, eps) }
			}},
		{name: "MLP", inShape: []int{bs, n, d},
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				m := NewMLP(pb.Scope("mlp."), d, hidden)
				return m.Forward, m.Backward, func(p params64, x []float64) []float64 { return p.mlp("mlp.", x, bs*n, d, hidden) }
			}},
		{name: "Attention", inShape: []int{bs, n, d},
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				a := NewAttention(pb.Scope("attn."), d, heads)
				return a.Forward, a.Backward, func(p params64, x []float64) []float64 { return p.attention("attn.", x, bs, n, d, heads) }
			}},
		{name: "Block", inShape: []int{bs, n, d},
			build: func(pb *Builder) (func(tensor.Backend, *tensor.Tensor) *tensor.Tensor, func(tensor.Backend, *tensor.Tensor, *tensor.Tensor), func(params64, []float64) []float64) {
				k := NewBlock(pb.Scope("blocks.0."), d, heads, hidden, eps)
				return k.Forward, k.Backward, func(p params64, x []float64) []float64 {
					return p.block("blocks.0.", x, bs, n, d, heads, hidden, eps)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b tensor.Backend) {
				rng := rand.New(rand.NewPCG(1, uint64(len(c.name))))
				pb := NewBuilder()
				fwd, bwd, ref := c.build(pb)
				a, err := pb.Build(b)
				if err != nil {
					t.Fatal(err)
				}
				randomizeParams(b, a, rng)
				xn := 1
				for _, s := range c.inShape {
					xn *= s
				}
				x32 := randNormal(rng, xn, 1)
				x := upload(b, x32, c.inShape...)
				y := fwd(b, x)
				y32 := download(b, y)
				dy64 := to64(randNormal(rng, len(y32), 1))
				dyT := b.New(tensor.Float32, y.Shape()...)
				b.Upload(dyT, f32(dy64))
				dx := b.New(tensor.Float32, c.inShape...)
				const junk = 7
				b.Fill(dx, junk) // overwritten unless the module accumulates
				bwd(b, dx, dyT)
				dx32 := download(b, dx)
				if c.accumulates {
					for i := range dx32 {
						dx32[i] -= junk
					}
				}
				checkAll(t, b, a, ref, to64(x32), dx32, y32, dy64, rng)
			})
		})
	}
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// TestBlockBackwardInPlace checks that Block.Backward with dx == dy gives the
// same gradients as with separate buffers (the encoder relies on it).
func TestBlockBackwardInPlace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b tensor.Backend) {
		const bs, n, d = 2, 5, 8
		rng := rand.New(rand.NewPCG(3, 4))
		pb := NewBuilder()
		k := NewBlock(pb, d, 2, 16, 1e-6)
		a, err := pb.Build(b)
		if err != nil {
			t.Fatal(err)
		}
		randomizeParams(b, a, rng)
		x := upload(b, randNormal(rng, bs*n*d, 1), bs, n, d)
		dyv := randNormal(rng, bs*n*d, 1)
		k.Forward(b, x)
		dy := upload(b, dyv, bs, n, d)
		dx := b.New(tensor.Float32, bs, n, d)
		k.Backward(b, dx, dy)
		g1 := download(b, a.Grads)
		want := download(b, dx)
		a.ZeroGrad(b)
		k.Backward(b, dy, dy)
		g2 := download(b, a.Grads)
		got := download(b, dy)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("dx[%d] = %v in place, %v separate", i, got[i], want[i])
			}
		}
		for i := range g1 {
			if g1[i] != g2[i] {
				t.Fatalf("grad[%d] = %v in place, %v separate", i, g2[i], g1[i])
			}
		}
	})
}

// TestGradientsAccumulate checks dW += ...: two backward passes give twice
// the gradient of one.
func TestGradientsAccumulate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b tensor.Backend) {
		rng := rand.New(rand.NewPCG(5, 6))
		pb := NewBuilder()
		k := NewBlock(pb, 8, 2, 16, 1e-6)
		a, _ := pb.Build(b)
		randomizeParams(b, a, rng)
		x := upload(b, randNormal(rng, 2*5*8, 1), 2, 5, 8)
		dy := upload(b, randNormal(rng, 2*5*8, 1), 2, 5, 8)
		dx := b.New(tensor.Float32, 2, 5, 8)
		k.Forward(b, x)
		k.Backward(b, dx, dy)
		g1 := download(b, a.Grads)
		k.Backward(b, dx, dy)
		g2 := download(b, a.Grads)
		for i := range g1 {
			if d := math.Abs(float64(g2[i] - 2*g1[i])); d > 1e-5*(1+math.Abs(float64(g1[i]))) {
				t.Fatalf("grad[%d]: %v after two passes, %v after one", i, g2[i], g1[i])
			}
		}
	})
}

func testEncoderConfig() ViTConfig {
	return ViTConfig{ImgSize: 12, PatchSize: 4, InChans: 3, Dim: 16, Depth: 2, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
}

func TestPatchEmbedGradients(t *testing.T) {
	for _, withKeep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", withKeep), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b tensor.Backend) {
				const bs, c, hw3, p, d = 2, 3, 12, 4, 8 // 3x3 patches of 4x4
				rng := rand.New(rand.NewPCG(7, 8))
				pb := NewBuilder()
				pe := NewPatchEmbed(pb.Scope("patch_embed."), c, p, d)
				a, err := pb.Build(b)
				if err != nil {
					t.Fatal(err)
				}
				randomizeParams(b, a, rng)
				img32 := randNormal(rng, bs*c*hw3*hw3, 1)
				img := upload(b, img32, bs, c, hw3, hw3)
				var keep [][]int
				var keepT *tensor.Tensor
				if withKeep {
					keep = [][]int{{4, 0, 8, 2, 5}, {1, 7, 3, 6, 0}}
					keepT = uploadIdx(b, keep)
				}
				y := pe.Forward(b, img, keepT)
				y32 := download(b, y)
				dy64 := to64(randNormal(rng, len(y32), 1))
				pe.Backward(b, upload(b, f32(dy64), y.Shape()...))
				ref := func(pp params64, x []float64) []float64 {
					full := refPatchEmbedConv(x, bs, c, hw3, p, pp["patch_embed.proj.weight"], pp["patch_embed.proj.bias"], d)
					if keep == nil {
						return full
					}
					var out []float64
					for i, row := range keep {
						for _, k := range row {
							out = append(out, full[(i*9+k)*d:(i*9+k+1)*d]...)
						}
					}
					return out
				}
				checkAll(t, b, a, ref, to64(img32), nil, y32, dy64, rng)
			})
		})
	}
}

func TestEncoderGradients(t *testing.T) {
	for _, withKeep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", withKeep), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b tensor.Backend) {
				cfg := testEncoderConfig()
				const bs = 2
				rng := rand.New(rand.NewPCG(9, 10))
				pb := NewBuilder()
				enc, err := NewEncoder(pb.Scope("encoder."), cfg)
				if err != nil {
					t.Fatal(err)
				}
				a, err := pb.Build(b)
				if err != nil {
					t.Fatal(err)
				}
				randomizeParams(b, a, rng)
				img32 := randNormal(rng, bs*cfg.InChans*cfg.ImgSize*cfg.ImgSize, 1)
				img := upload(b, img32, bs, cfg.InChans, cfg.ImgSize, cfg.ImgSize)
				var keep [][]int
				var keepT *tensor.Tensor
				if withKeep {
					keep = [][]int{{8, 1, 3, 4, 6, 0}, {2, 5, 7, 0, 1, 4}}
					keepT = uploadIdx(b, keep)
				}
				y := enc.Forward(b, img, keepT)
				y32 := download(b, y)
				dy64 := to64(randNormal(rng, len(y32), 1))
				enc.Backward(b, upload(b, f32(dy64), y.Shape()...), nil)
				ref := func(pp params64, x []float64) []float64 {
					return scoped(pp, "encoder.").encoder(cfg, x, bs, keep)
				}
				checkAll(t, b, a, ref, to64(img32), nil, y32, dy64, rng)
			})
		})
	}
}

// scoped returns a view of p with prefix stripped from the names (values
// shared, so finite differences on p reach the reference).
func scoped(p params64, prefix string) params64 {
	q := params64{}
	for k, v := range p {
		if strings.HasPrefix(k, prefix) {
			q[k[len(prefix):]] = v
		}
	}
	return q
}

func testPredictorConfig() PredictorConfig {
	return PredictorConfig{GridSize: 3, EmbedDim: 12, Dim: 16, Depth: 2, Heads: 2, MLPRatio: 2, Eps: 1e-6, InitStd: 0.02}
}

func TestPredictorGradients(t *testing.T) {
	ctxIdx := [][]int{{0, 4, 8, 2}, {1, 3, 5, 7}}
	tgts := map[string][][]int{
		"masks=1": {{5, 1, 6}, {0, 8, 2}},
		"masks=2": {{5, 1, 6}, {0, 8, 2}, {3, 7, 2}, {6, 4, 5}},
	}
	for name, tgtIdx := range tgts {
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b tensor.Backend) {
				cfg := testPredictorConfig()
				const bs, nc = 2, 4
				rng := rand.New(rand.NewPCG(11, 12))
				pb := NewBuilder()
				pred, err := NewPredictor(pb.Scope("predictor."), cfg)
				if err != nil {
					t.Fatal(err)
				}
				a, err := pb.Build(b)
				if err != nil {
					t.Fatal(err)
				}
				randomizeParams(b, a, rng)
				ctx32 := randNormal(rng, bs*nc*cfg.EmbedDim, 1)
				ctx := upload(b, ctx32, bs, nc, cfg.EmbedDim)
				y := pred.Forward(b, ctx, uploadIdx(b, ctxIdx), uploadIdx(b, tgtIdx))
				if want := []int{len(tgtIdx), 3, cfg.EmbedDim}; !slices.Equal(y.Shape(), want) {
					t.Fatalf("output shape %v, want %v", y.Shape(), want)
				}
				y32 := download(b, y)
				dy64 := to64(randNormal(rng, len(y32), 1))
				dctx := b.New(tensor.Float32, bs, nc, cfg.EmbedDim)
				b.Fill(dctx, 7) // must be overwritten
				pred.Backward(b, dctx, upload(b, f32(dy64), y.Shape()...))
				ref := func(pp params64, x []float64) []float64 {
					return scoped(pp, "predictor.").predictor(cfg, x, bs, ctxIdx, tgtIdx)
				}
				r := checkAll(t, b, a, ref, to64(ctx32), download(b, dctx), y32, dy64, rng)
				if _, ok := r.params["predictor.mask_token"]; !ok {
					t.Error("mask_token gradient not checked")
				}
			})
		})
	}
}
