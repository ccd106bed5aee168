package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// EncoderShape is the resolved ViT encoder: the encoder_type preset with the
// explicit model.* overrides applied and the image geometry from data.*.
type EncoderShape struct {
	ImageSize int // pixels per side (data.image_size)
	PatchSize int // pixels per patch side
	Channels  int // data.channels
	EmbedDim  int // D
	Depth     int // blocks
	NumHeads  int
	MLPRatio  float64 // MLP hidden width int(D * MLPRatio), as Python (nn.ViTConfig.Hidden)
	// PresetImageSize is the _S suffix of encoder_type (0 when absent); it
	// must equal ImageSize.
	PresetImageSize int
}

// Grid is the number of patches per side (ImageSize / PatchSize).
func (e EncoderShape) Grid() int {
	if e.PatchSize <= 0 {
		return 0
	}
	return e.ImageSize / e.PatchSize
}

// NumPatches is the number of tokens of a full image (Grid²).
func (e EncoderShape) NumPatches() int { return e.Grid() * e.Grid() }

type vitPreset struct {
	dim, depth, heads int
	mlp               float64
}

// vitPresets are timm's / I-JEPA's ViT sizes.
var vitPresets = map[string]vitPreset{
	"vit_tiny":  {192, 12, 3, 4},
	"vit_small": {384, 12, 6, 4},
	"vit_base":  {768, 12, 12, 4},
	"vit_large": {1024, 24, 16, 4},
	"vit_huge":  {1280, 32, 16, 4},
	"vit_giant": {1408, 40, 16, 48.0 / 11.0},
}

// presetPatch is the patch size of a preset named without _patchP (I-JEPA's
// VisionTransformer default).
const presetPatch = 16

// Patch-embedding initialisations (model.patch_embed_init).
const (
	PatchInitFanIn       = "fan_in"
	PatchInitTruncNormal = "trunc_normal"
)

// CustomEncoder is the encoder_type that takes every size from model.*.
const CustomEncoder = "custom"

var encoderTypeRE = regexp.MustCompile(`^(vit_[a-z]+)(?:_patch([0-9]+)(?:_([0-9]+))?)?$`)

// EncoderTypes lists the encoder_type base names (each also accepts the
// _patchP and _patchP_S suffixes, e.g. vit_base_patch16_224).
func EncoderTypes() []string {
	return []string{"vit_tiny", "vit_small", "vit_base", "vit_large", "vit_huge", "vit_giant", CustomEncoder}
}

// Encoder resolves model.encoder_type with the explicit overrides
// (model.embed_dim, depth, num_heads, patch_size, mlp_ratio win when > 0)
// and data.image_size/channels. It fails on an unknown encoder_type and on a
// "custom" encoder missing a size; it does not check divisibility (Validate
// does).
func (c Config) Encoder() (EncoderShape, error) {
	m := c.Model
	e := EncoderShape{ImageSize: c.Data.ImageSize, Channels: c.Data.Channels}
	if m.EncoderType == CustomEncoder {
		var missing []string
		for _, f := range []struct {
			name string
			v    int
		}{{"model.embed_dim", m.EmbedDim}, {"model.depth", m.Depth}, {"model.num_heads", m.NumHeads}, {"model.patch_size", m.PatchSize}} {
			if f.v <= 0 {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return e, fmt.Errorf("encoder_type custom needs %s set > 0", strings.Join(missing, ", "))
		}
		e.MLPRatio = 4
	} else {
		sub := encoderTypeRE.FindStringSubmatch(m.EncoderType)
		var p vitPreset
		ok := sub != nil
		if ok {
			p, ok = vitPresets[sub[1]]
		}
		if !ok {
			return e, fmt.Errorf("unknown encoder_type %q; use one of %s (optionally with _patchP or _patchP_S, e.g. vit_base_patch16_224)",
				m.EncoderType, strings.Join(EncoderTypes(), ", "))
		}
		e.EmbedDim, e.Depth, e.NumHeads, e.MLPRatio = p.dim, p.depth, p.heads, p.mlp
		e.PatchSize = presetPatch
		if sub[2] != "" {
			e.PatchSize, _ = strconv.Atoi(sub[2])
		}
		if sub[3] != "" {
			e.PresetImageSize, _ = strconv.Atoi(sub[3])
		}
	}
	if m.EmbedDim > 0 {
		e.EmbedDim = m.EmbedDim
	}
	if m.Depth > 0 {
		e.Depth = m.Depth
	}
	if m.NumHeads > 0 {
		e.NumHeads = m.NumHeads
	}
	if m.PatchSize > 0 {
		e.PatchSize = m.PatchSize
	}
	if m.MLPRatio > 0 {
		e.MLPRatio = m.MLPRatio
	}
	return e, nil
}
