package eval

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

func exportModel(t *testing.T, b tensor.Backend) *jepa.Model {
	t.Helper()
	enc := nn.ViTConfig{ImgSize: 8, PatchSize: 2, InChans: 3, Dim: 16, Depth: 2, Heads: 2, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	pred := nn.PredictorConfig{GridSize: 4, EmbedDim: 16, Dim: 8, Depth: 1, Heads: 2, MLPRatio: 4, Eps: 1e-6, InitStd: 0.02}
	m, err := jepa.NewModel(b, jepa.ModelConfig{Encoder: enc, Predictor: pred, Levels: 2})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(b, tensor.NewRNG(3))
	return m
}

// The export has timm's keys and shapes, and holds the target encoder.
func TestExportTimmKeys(t *testing.T) {
	b := cpu.New(1)
	m := exportModel(t, b)
	path := filepath.Join(t.TempDir(), "enc.safetensors")
	if err := ExportTimm(b, m, path, true); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string][]int{
		"patch_embed.proj.weight": {16, 3, 2, 2}, "patch_embed.proj.bias": {16}, "pos_embed": {1, 16, 16},
		"blocks.0.attn.qkv.weight": {48, 16}, "blocks.1.mlp.fc2.weight": {16, 64}, "norm.weight": {16},
	}
	got := map[string][]int{}
	for _, info := range f.Tensors() {
		got[info.Name] = info.Shape
	}
	for name, shape := range want {
		if !slices.Equal(got[name], shape) {
			t.Errorf("%s: shape %v, want %v", name, got[name], shape)
		}
	}
	// Only the encoder: 4 + 12 per block + 2 + pos_embed.
	if len(got) != 2+12*2+2+1 {
		t.Errorf("%d tensors: %v", len(got), got)
	}
}

// writeExportFixture exports m's target encoder to dir and writes a batch of
// images (x.npy), their token features (y.npy) and mean-pooled features
// (pooled.npy) as our encoder computes them.
func writeExportFixture(t *testing.T, b tensor.Backend, m *jepa.Model, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "enc.safetensors")
	if err := ExportTimm(b, m, path, true); err != nil {
		t.Fatal(err)
	}
	img := b.New(tensor.Float32, 2, 3, 8, 8)
	b.RandNormal(img, tensor.NewRNG(9), 0, 1)
	out := m.TargetEncoder.Forward(b, img, nil)
	x := make([]float32, img.Numel())
	y := make([]float32, out.Numel())
	b.Download(x, img)
	b.Download(y, out)
	sh := out.Shape() // [B, N, D]
	pooled := make([]float32, sh[0]*sh[2])
	for i := range sh[0] {
		for n := range sh[1] {
			for d := range sh[2] {
				pooled[i*sh[2]+d] += y[(i*sh[1]+n)*sh[2]+d] / float32(sh[1])
			}
		}
	}
	for name, a := range map[string]struct {
		v     []float32
		shape []int
	}{"x.npy": {x, []int{2, 3, 8, 8}}, "y.npy": {y, sh}, "pooled.npy": {pooled, []int{sh[0], sh[2]}}} {
		if err := WriteNPY(filepath.Join(dir, name), a.v, a.shape); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func requirePyTorch(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("PyTorch not installed (Debian python3-torch); the key/shape test still ran")
	}
	return py
}

// PyTorch loads the export (strict) into the I-JEPA ViT and computes the same
// forward as our target encoder. Skipped where PyTorch is not installed.
func TestExportLoadsInPyTorch(t *testing.T) {
	py := requirePyTorch(t)
	b := cpu.New(1)
	dir := t.TempDir()
	path := writeExportFixture(t, b, exportModel(t, b), dir)
	cmd := exec.Command(py, "../tools/golden/check_export.py", path, filepath.Join(dir, "x.npy"), filepath.Join(dir, "y.npy"))
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyTorch check failed: %v\n%s", err, res)
	}
	t.Logf("%s", res)
}

// The snippet `hjepa export` prints builds a timm model (timm's module
// names and its norm/fc_norm layout; timm itself where installed) that loads
// the export strictly and computes our mean-pooled features; without
// fc_norm=False the same snippet fails. Skipped without PyTorch.
func TestExportTimmSnippet(t *testing.T) {
	py := requirePyTorch(t)
	b := cpu.New(1)
	m := exportModel(t, b)
	dir := t.TempDir()
	path := writeExportFixture(t, b, m, dir)
	snippet := filepath.Join(dir, "snippet.txt")
	if err := os.WriteFile(snippet, []byte(TimmSnippet(m.Cfg.Encoder, path)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "../tools/golden/check_timm_export.py", snippet, filepath.Join(dir, "x.npy"), filepath.Join(dir, "pooled.npy"))
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed snippet does not load the export as timm would: %v\n%s", err, res)
	}
	t.Logf("%s", res)
}
