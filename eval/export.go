package eval

import (
	"fmt"
	"strings"

	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// ExportTimm writes one encoder of m as a .safetensors file with timm's
// VisionTransformer keys (patch_embed.proj.weight as the Conv2d kernel
// [D, C, p, p], pos_embed [1, Np, D], blocks.N.attn.qkv.weight, norm.*), so
//
//	timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=2,
//	    in_chans=1, class_token=False, global_pool="avg", num_classes=0)
//
// (sizes from the metadata) loads it with load_state_dict. target selects
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
