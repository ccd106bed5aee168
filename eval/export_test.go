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

// PyTorch loads the export (strict) into the I-JEPA ViT and computes the same
// forward as our target encoder. Skipped where PyTorch is not installed.
func TestExportLoadsInPyTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch, numpy").Run(); err != nil {
		t.Skip("PyTorch not installed (Debian python3-torch); the key/shape test still ran")
	}
	b := cpu.New(1)
	m := exportModel(t, b)
	dir := t.TempDir()
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
	if err := WriteNPY(filepath.Join(dir, "x.npy"), x, []int{2, 3, 8, 8}); err != nil {
		t.Fatal(err)
	}
	if err := WriteNPY(filepath.Join(dir, "y.npy"), y, out.Shape()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "../tools/golden/check_export.py", path, filepath.Join(dir, "x.npy"), filepath.Join(dir, "y.npy"))
	cmd.Env = os.Environ()
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyTorch check failed: %v\n%s", err, res)
	}
	t.Logf("%s", res)
}
