package nn

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

func TestArenaLayoutReverseAndContiguous(t *testing.T) {
	b := cpu.New(1)
	pb := NewBuilder()
	w1 := pb.Param("a.weight", true, 3, 4)
	b1 := pb.Param("a.bias", true, 3) // rank 1: decay forced off
	w2 := pb.Param("b.weight", true, 2, 3)
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 12+3+6 || a.Values.Numel() != a.Len() || a.Grads.Numel() != a.Len() {
		t.Fatalf("arena of %d elements (values %d, grads %d), want 21", a.Len(), a.Values.Numel(), a.Grads.Numel())
	}
	// Reverse declaration order: b.weight first.
	wantOff := map[*Param]int{w2: 0, b1: 6, w1: 9}
	for p, off := range wantOff {
		if p.Offset != off {
			t.Errorf("%s at offset %d, want %d", p.Name, p.Offset, off)
		}
		if p.W.Offset() != a.Values.Offset()+off || p.G.Offset() != a.Grads.Offset()+off || !slices.Equal(p.W.Shape(), p.Shape) {
			t.Errorf("%s views at %d/%d shape %v", p.Name, p.W.Offset(), p.G.Offset(), p.W.Shape())
		}
		if p.W.Storage() != a.Values.Storage() || p.G.Storage() != a.Grads.Storage() {
			t.Errorf("%s is not a view of the arena", p.Name)
		}
	}
	ps := a.Params()
	if ps[0] != w2 || ps[1] != b1 || ps[2] != w1 {
		t.Errorf("Params() not in layout order")
	}
	if b1.Decay || !w1.Decay {
		t.Errorf("decay flags: bias %v weight %v", b1.Decay, w1.Decay)
	}
	if a.Lookup("a.bias") != b1 || a.Lookup("nope") != nil {
		t.Error("Lookup")
	}
	// Writing through a view lands in the flat buffer.
	b.Fill(w1.W, 2)
	b.Fill(w1.G, 3)
	vals, grads := download(b, a.Values), download(b, a.Grads)
	for i := range vals {
		inW1 := i >= 9
		if (vals[i] == 2) != inW1 || (grads[i] == 3) != inW1 {
			t.Fatalf("element %d: value %v grad %v", i, vals[i], grads[i])
		}
	}
	a.ZeroGrad(b)
	if s := b.SumSquares(a.Grads); s != 0 {
		t.Errorf("ZeroGrad left sum of squares %v", s)
	}
}

func TestArenaErrors(t *testing.T) {
	b := cpu.New(1)
	pb := NewBuilder()
	pb.Param("x", false, 2)
	pb.Param("x", false, 2)
	if _, err := pb.Build(b); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("duplicate name: err = %v", err)
	}
	pb = NewBuilder()
	pb.Param("z", false, 0)
	if _, err := pb.Build(b); err == nil {
		t.Error("zero dimension accepted")
	}
	pb = NewBuilder()
	pb.Param("ok", false, 1)
	if _, err := pb.Build(b); err != nil {
		t.Fatal(err)
	}
	pb.Param("late", false, 1)
	if _, err := pb.Build(b); err == nil {
		t.Error("second Build / late declaration accepted")
	}
	// A scope declared in two pieces is not a contiguous range.
	pb = NewBuilder()
	pb.Param("enc.a", false, 1)
	pb.Param("pred.a", false, 1)
	pb.Param("enc.b", false, 1)
	a, _ := pb.Build(b)
	if _, _, err := a.Range("enc."); err == nil {
		t.Error("non-contiguous scope accepted")
	}
	if _, _, err := a.Range("none."); err == nil {
		t.Error("empty scope accepted")
	}
}

// TestArenaScopes builds encoder + predictor in one arena as the trainer does
// and checks ranges, names, decay flags and the EMA layout match.
func TestArenaScopes(t *testing.T) {
	b := cpu.New(1)
	cfg := ViTConfig{ImgSize: 8, PatchSize: 4, InChans: 3, Dim: 8, Depth: 2, Heads: 2, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pcfg := PredictorConfig{GridSize: 2, EmbedDim: 8, Dim: 4, Depth: 1, Heads: 1, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pb := NewBuilder()
	if _, err := NewEncoder(pb.Scope("encoder."), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPredictor(pb.Scope("predictor."), pcfg); err != nil {
		t.Fatal(err)
	}
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	pOff, pN, err := a.Range("predictor.")
	if err != nil {
		t.Fatal(err)
	}
	eOff, eN, err := a.Range("encoder.")
	if err != nil {
		t.Fatal(err)
	}
	if pOff != 0 || eOff != pN || eOff+eN != a.Len() {
		t.Errorf("predictor [%d,+%d) encoder [%d,+%d) of %d: want predictor first, then encoder, covering the arena", pOff, pN, eOff, eN, a.Len())
	}
	// The last gradient backward produces (patch_embed.proj.weight, used
	// first in forward) is at the end; predictor_proj at the start.
	ps := a.Params()
	if ps[0].Name != "predictor.predictor_proj.bias" || ps[len(ps)-1].Name != "encoder.patch_embed.proj.weight" {
		t.Errorf("first %s, last %s", ps[0].Name, ps[len(ps)-1].Name)
	}
	// Offsets strictly increasing and gap-free.
	off := 0
	for _, p := range ps {
		if p.Offset != off {
			t.Fatalf("%s at %d, want %d", p.Name, p.Offset, off)
		}
		off += p.Numel()
	}
	wantNames := []string{
		"patch_embed.proj.weight", "patch_embed.proj.bias",
		"blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
		"blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.norm2.weight", "blocks.0.norm2.bias",
		"blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
		"blocks.1.norm1.weight", "blocks.1.norm1.bias", "blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias",
		"blocks.1.attn.proj.weight", "blocks.1.attn.proj.bias", "blocks.1.norm2.weight", "blocks.1.norm2.bias",
		"blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc1.bias", "blocks.1.mlp.fc2.weight", "blocks.1.mlp.fc2.bias",
		"norm.weight", "norm.bias",
	}
	shapes := map[string][]int{
		"patch_embed.proj.weight": {8, 48}, "blocks.0.attn.qkv.weight": {24, 8}, "blocks.1.mlp.fc1.weight": {32, 8},
		"blocks.1.mlp.fc2.weight": {8, 32}, "norm.bias": {8},
	}
	for i, n := range wantNames {
		p := ps[len(ps)-1-i]
		if p.Name != "encoder."+n {
			t.Fatalf("encoder parameter %d is %s, want encoder.%s", i, p.Name, n)
		}
		if s, ok := shapes[n]; ok && !slices.Equal(p.Shape, s) {
			t.Errorf("%s shape %v, want %v", p.Name, p.Shape, s)
		}
	}
	for _, n := range []string{"predictor_embed.weight", "predictor_embed.bias", "mask_token",
		"predictor_blocks.0.attn.qkv.weight", "predictor_norm.weight", "predictor_proj.weight", "predictor_proj.bias"} {
		if a.Lookup("predictor."+n) == nil {
			t.Errorf("missing predictor.%s", n)
		}
	}
	if s := a.Lookup("predictor.mask_token").Shape; !slices.Equal(s, []int{1, 1, 4}) {
		t.Errorf("mask_token shape %v", s)
	}
	for _, p := range ps {
		want := strings.HasSuffix(p.Name, ".weight") && len(p.Shape) == 2
		if p.Decay != want {
			t.Errorf("%s: Decay %v, want %v", p.Name, p.Decay, want)
		}
	}
	// The EMA target encoder is its own arena with the encoder's layout.
	tb := NewBuilder()
	if _, err := NewEncoder(tb.Scope("encoder."), cfg); err != nil {
		t.Fatal(err)
	}
	ta, err := tb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.SameLayout("encoder.", a, "encoder."); err != nil {
		t.Error(err)
	}
	if err := ta.SameLayout("encoder.", a, "predictor."); err == nil {
		t.Error("encoder and predictor reported as the same layout")
	}
	v, _ := a.ValuesOf("encoder.")
	if v.Numel() != ta.Len() {
		t.Errorf("encoder range %d elements, target arena %d", v.Numel(), ta.Len())
	}
}

func TestSinCos2D(t *testing.T) {
	// dim 8, grid 3, patch 5 = row 1, column 2; omega = [1, 1/100].
	// First half encodes the column (I-JEPA's meshgrid(grid_w, grid_h)).
	tab := SinCos2D(8, 3)
	want := []float64{
		math.Sin(2), math.Sin(0.02), math.Cos(2), math.Cos(0.02),
		math.Sin(1), math.Sin(0.01), math.Cos(1), math.Cos(0.01),
	}
	hand := []float32{0.9092974, 0.019998667, -0.41614684, 0.99980003, 0.84147096, 0.009999833, 0.5403023, 0.99995}
	for k, w := range want {
		if got := tab[5*8+k]; got != float32(w) || math.Abs(float64(got-hand[k])) > 1e-6 {
			t.Errorf("pos[5][%d] = %v, want %v (%v)", k, got, float32(w), hand[k])
		}
	}
	// Against a line-by-line port of the numpy code.
	for _, c := range []struct{ dim, grid int }{{16, 4}, {384, 14}, {12, 3}} {
		ref := refSinCos(c.dim, c.grid)
		got := SinCos2D(c.dim, c.grid)
		for i := range ref {
			if got[i] != float32(ref[i]) {
				t.Fatalf("dim %d grid %d element %d: %v, want %v", c.dim, c.grid, i, got[i], float32(ref[i]))
			}
		}
	}
}

func TestInitStatistics(t *testing.T) {
	b := cpu.New(2)
	cfg := ViTConfig{ImgSize: 32, PatchSize: 4, InChans: 3, Dim: 64, Depth: 3, Heads: 2, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02,
		PatchInitStd: 0.25}
	pcfg := PredictorConfig{GridSize: 8, EmbedDim: 64, Dim: 64, Depth: 2, Heads: 2, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pb := NewBuilder()
	enc, _ := NewEncoder(pb.Scope("encoder."), cfg)
	pred, _ := NewPredictor(pb.Scope("predictor."), pcfg)
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Fill(a.Values, 123) // Init must overwrite everything
	rng := tensor.NewRNG(42)
	enc.Init(b, rng)
	pred.Init(b, rng)
	vals := download(b, a.Values)
	for _, p := range a.Params() {
		v := vals[p.Offset : p.Offset+p.Numel()]
		var s, ss float64
		for _, x := range v {
			s += float64(x)
			ss += float64(x) * float64(x)
		}
		n := float64(len(v))
		mean, std := s/n, math.Sqrt(ss/n-(s/n)*(s/n))
		name := p.Name[strings.Index(p.Name, ".")+1:]
		switch {
		case strings.Contains(name, "norm") && strings.HasSuffix(name, ".weight"):
			if mean != 1 || std != 0 {
				t.Errorf("%s: mean %v std %v, want 1, 0", p.Name, mean, std)
			}
		case strings.HasSuffix(name, ".bias"):
			if ss != 0 {
				t.Errorf("%s not zero", p.Name)
			}
		default:
			wantStd := 0.02
			if strings.HasPrefix(p.Name, "encoder.patch_embed.") {
				wantStd = 0.25
			}
			if strings.HasSuffix(name, "attn.proj.weight") || strings.HasSuffix(name, "mlp.fc2.weight") {
				layer := int(name[strings.Index(name, "blocks.")+7]-'0') + 1
				wantStd /= math.Sqrt(2 * float64(layer))
			}
			tol := 4 / math.Sqrt(2*n) // ~4 standard errors of a std estimate
			if math.Abs(std/wantStd-1) > tol || math.Abs(mean) > 4*wantStd/math.Sqrt(n) {
				t.Errorf("%s: mean %.3g std %.4g, want 0, %.4g (n=%d)", p.Name, mean, std, wantStd, len(v))
			}
		}
	}
}
