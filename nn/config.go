package nn

import (
	"errors"
	"fmt"
)

// ViTConfig describes a ViT encoder as I-JEPA builds it: square images cut into
// square patches, no cls token, pre-norm blocks with qkv bias.
type ViTConfig struct {
	ImgSize   int     // image height and width in pixels
	PatchSize int     // patch height and width in pixels
	InChans   int     // image channels
	Dim       int     // embedding width D
	Depth     int     // number of blocks
	Heads     int     // attention heads; Dim/Heads is the head width
	MLPRatio  float64 // MLP hidden width is int(Dim*MLPRatio), as in Python
	Eps       float32 // LayerNorm epsilon (1e-6)
	InitStd   float32 // trunc_normal std of weights (0.02)
	// PatchInitStd is the patch embedding's trunc_normal std (0: InitStd).
	PatchInitStd float32
}

// GridSize is the number of patches along each side.
func (c ViTConfig) GridSize() int { return c.ImgSize / c.PatchSize }

// NumPatches is GridSize squared.
func (c ViTConfig) NumPatches() int { return c.GridSize() * c.GridSize() }

// PatchDim is the length of a flattened patch, C*p*p.
func (c ViTConfig) PatchDim() int { return c.InChans * c.PatchSize * c.PatchSize }

// Hidden is the MLP hidden width.
func (c ViTConfig) Hidden() int { return mlpHidden(c.Dim, c.MLPRatio) }

// Validate reports every invalid field at once, each error naming the field.
func (c ViTConfig) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vit.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.ImgSize <= 0 {
		bad("img_size", "%d, must be positive", c.ImgSize)
	}
	if c.PatchSize <= 0 {
		bad("patch_size", "%d, must be positive", c.PatchSize)
	} else if c.ImgSize > 0 && c.ImgSize%c.PatchSize != 0 {
		bad("patch_size", "%d does not divide img_size %d", c.PatchSize, c.ImgSize)
	}
	if c.InChans <= 0 {
		bad("in_chans", "%d, must be positive", c.InChans)
	}
	validateWidth(bad, c.Dim, c.Depth, c.Heads, c.MLPRatio, c.Eps, c.InitStd)
	return errors.Join(errs...)
}

// PredictorConfig describes the I-JEPA predictor (VisionTransformerPredictor).
type PredictorConfig struct {
	GridSize int     // patches per side of the encoder's grid (positions table)
	EmbedDim int     // encoder width D (input and output width)
	Dim      int     // predictor width Dp
	Depth    int     // number of predictor blocks
	Heads    int     // attention heads in the predictor
	MLPRatio float64 // MLP hidden width is int(Dim*MLPRatio)
	Eps      float32 // LayerNorm epsilon (1e-6)
	InitStd  float32 // trunc_normal std (0.02)
}

// NumPatches is GridSize squared.
func (c PredictorConfig) NumPatches() int { return c.GridSize * c.GridSize }

// Hidden is the MLP hidden width.
func (c PredictorConfig) Hidden() int { return mlpHidden(c.Dim, c.MLPRatio) }

// Validate reports every invalid field at once, each error naming the field.
func (c PredictorConfig) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("predictor.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.GridSize <= 0 {
		bad("grid_size", "%d, must be positive", c.GridSize)
	}
	if c.EmbedDim <= 0 {
		bad("embed_dim", "%d, must be positive", c.EmbedDim)
	}
	validateWidth(bad, c.Dim, c.Depth, c.Heads, c.MLPRatio, c.Eps, c.InitStd)
	return errors.Join(errs...)
}

func validateWidth(bad func(string, string, ...any), dim, depth, heads int, ratio float64, eps, std float32) {
	if dim <= 0 || dim%4 != 0 {
		bad("dim", "%d, must be a positive multiple of 4 (2-D sin-cos positions)", dim)
	}
	if depth <= 0 {
		bad("depth", "%d, must be positive", depth)
	}
	if heads <= 0 {
		bad("heads", "%d, must be positive", heads)
	} else if dim > 0 && dim%heads != 0 {
		bad("heads", "%d does not divide dim %d", heads, dim)
	}
	if !(ratio > 0) || (dim > 0 && mlpHidden(dim, ratio) <= 0) {
		bad("mlp_ratio", "%v, must give a positive hidden width", ratio)
	}
	if !(eps > 0) {
		bad("eps", "%v, must be positive", eps)
	}
	if !(std > 0) {
		bad("init_std", "%v, must be positive", std)
	}
}

func mlpHidden(dim int, ratio float64) int { return int(float64(dim) * ratio) }
