package eval

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// ExportTimm writes one encoder of m as a .safetensors file with timm's
// VisionTransformer keys (patch_embed.proj.weight as the Conv2d kernel
// [D, C, p, p], pos_embed [1, Np, D], blocks.N.attn.qkv.weight, norm.*), so
//
//	timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=2,
//	    in_chans=1, class_token=False, global_pool="avg", fc_norm=False,
//	    num_classes=0)
//
// (sizes from the metadata; see TimmSnippet) loads it with load_state_dict. target selects
// the EMA target encoder (what I-JEPA evaluates) rather than the context one.
func ExportTimm(b tensor.Backend, m *jepa.Model, path string, target bool) error {
	arena, enc := m.Params, m.Encoder
	if target {
		arena, enc = m.TargetParams, m.TargetEncoder
	}
	c := m.Cfg.Encoder
	vals := make([]float32, arena.Len())
	b.Download(vals, arena.Values)
	var out []safetensors.Tensor
	for _, p := range arena.Params() {
		name, ok := strings.CutPrefix(p.Name, jepa.EncoderScope)
		if !ok {
			continue
		}
		shape := p.Shape
		if name == "patch_embed.proj.weight" {
			shape = []int{c.Dim, c.InChans, c.PatchSize, c.PatchSize}
		}
		out = append(out, safetensors.Tensor{Name: name, Shape: shape, F32: vals[p.Offset : p.Offset+p.Numel()]})
	}
	pos := make([]float32, c.NumPatches()*c.Dim)
	b.Download(pos, enc.Positions(b))
	out = append(out, safetensors.Tensor{Name: "pos_embed", Shape: []int{1, c.NumPatches(), c.Dim}, F32: pos})
	meta := map[string]string{
		"format": "pt", "architecture": "vit", "img_size": fmt.Sprint(c.ImgSize), "patch_size": fmt.Sprint(c.PatchSize),
		"in_chans": fmt.Sprint(c.InChans), "embed_dim": fmt.Sprint(c.Dim), "depth": fmt.Sprint(c.Depth),
		"num_heads": fmt.Sprint(c.Heads), "mlp_ratio": fmt.Sprint(c.MLPRatio), "class_token": "False",
		"global_pool": "avg", "norm_eps": "1e-6", "encoder": map[bool]string{true: "target", false: "context"}[target],
	}
	if err := safetensors.WriteFile(path, out, meta); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}

// TimmSnippet is the Python that builds the timm model an export of an
// encoder of configuration e loads into, strictly, and loads path into it.
// fc_norm=False keeps the final LayerNorm on the tokens (norm) as I-JEPA
// has it: with global_pool="avg" timm otherwise moves it after the pooling
// (fc_norm) and makes norm an Identity, so norm.* would not load.
// tools/golden/check_timm_export.py runs it (eval's export test).
func TimmSnippet(e nn.ViTConfig, path string) string {
	return fmt.Sprintf("  m = timm.create_model(\"vit_base_patch16_224\", pretrained=False, img_size=%d, patch_size=%d, in_chans=%d, embed_dim=%d, depth=%d, num_heads=%d, mlp_ratio=%s, class_token=False, global_pool=\"avg\", fc_norm=False, num_classes=0)\n"+
		"  m.load_state_dict(safetensors.torch.load_file(%q))\n",
		e.ImgSize, e.PatchSize, e.InChans, e.Dim, e.Depth, e.Heads, pyFloat(e.MLPRatio), path)
}

// pyFloat writes x as a Python float literal (4 -> 4.0).
func pyFloat(x float64) string {
	s := strconv.FormatFloat(x, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// ExportRequest is one export of an encoder (`hjepa export`).
type ExportRequest struct {
	// Config is the loaded and validated configuration.
	Config config.Config
	// Checkpoint is the checkpoint directory ("" or "init": the
	// initialisation).
	Checkpoint string
	// Out is the .safetensors file.
	Out string
	// Context exports the context encoder instead of the EMA target encoder.
	Context bool
	// Log receives the device fallback line; nil discards it.
	Log io.Writer
}

// Export writes an encoder of a checkpoint with ExportTimm, then writes to out
// how to load it in PyTorch.
func Export(req ExportRequest, out io.Writer) error {
	b, m, err := openModel(req.Config, req.Checkpoint, req.Log)
	if err != nil {
		return err
	}
	defer device.Close(b)
	if err := ExportTimm(b, m, req.Out, !req.Context); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s; load it in PyTorch with timm:\n%s", req.Out, TimmSnippet(m.Cfg.Encoder, req.Out))
	return nil
}
