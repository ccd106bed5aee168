package jepa

import (
	"math"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
)

// NewModelConfig turns the run configuration into the model's shapes: the
// encoder_type preset with the model.* overrides (config.Config.Encoder, the
// one preset table), the predictor, the levels and the patch-embedding
// initialisation.
func NewModelConfig(c config.Config) (ModelConfig, error) {
	e, err := c.Encoder()
	if err != nil {
		return ModelConfig{}, err
	}
	std := float32(c.Model.InitStd)
	if std == 0 {
		std = 0.02
	}
	enc := nn.ViTConfig{ImgSize: e.ImageSize, PatchSize: e.PatchSize, InChans: e.Channels, Dim: e.EmbedDim,
		Depth: e.Depth, Heads: e.NumHeads, MLPRatio: e.MLPRatio, Eps: 1e-6, InitStd: std,
		PatchInitStd: float32(c.Model.PatchEmbedInitStd)}
	if enc.PatchInitStd == 0 && c.Model.PatchEmbedInit == config.PatchInitFanIn {
		enc.PatchInitStd = float32(1 / math.Sqrt(3*float64(enc.PatchDim())))
	}
	p := c.Model.Predictor
	pred := nn.PredictorConfig{GridSize: enc.GridSize(), EmbedDim: enc.Dim, Dim: p.EmbedDim, Depth: p.Depth,
		Heads: p.NumHeads, MLPRatio: p.MLPRatio, Eps: 1e-6, InitStd: std}
	mc := ModelConfig{Encoder: enc, Predictor: pred, Levels: c.Model.NumHierarchies, PredictionHeads: c.Model.PredictionHeads,
		ProjectorDim: c.Loss.VICReg.ProjectorDim}
	return mc, mc.Validate()
}

// NewMaskConfig turns the masking section into the mask generator's config.
func NewMaskConfig(c config.Config, mc ModelConfig) MaskConfig {
	m := c.Masking
	pair := func(v []float64) [2]float64 {
		if len(v) == 2 {
			return [2]float64{v[0], v[1]}
		}
		return [2]float64{}
	}
	g := mc.Encoder.GridSize()
	return MaskConfig{GridH: g, GridW: g, NumTargets: m.NumMasks,
		TargetScale: pair(m.MaskScale), TargetAspect: pair(m.AspectRatio), ContextScale: pair(m.ContextScale),
		MinKeep: m.MinKeep, AllowOverlap: m.AllowOverlap, Levels: mc.Levels}
}

// NewLossConfig turns the loss section into the step's loss config.
func NewLossConfig(c config.Config) LossConfig {
	l := c.Loss
	return LossConfig{Type: l.Type, Weights: l.HierarchyWeights, VICRegWeight: l.VICReg.Weight,
		VarianceCoeff: l.VICReg.VarianceCoeff, CovarianceCoeff: l.VICReg.CovarianceCoeff, StdTarget: l.VICReg.StdTarget,
		VICRegTokens: l.VICReg.TokensPerImage, InvarianceCoeff: l.VICReg.InvarianceCoeff,
		RawTargets: !l.NormalizeEmbeddings}
}

// NewInitialModel builds the model of c on b, initialised from c.Seed as
// `hjepa train` does at step 0.
func NewInitialModel(b tensor.Backend, c config.Config) (*Model, error) {
	mc, err := NewModelConfig(c)
	if err != nil {
		return nil, err
	}
	m, err := NewModel(b, mc)
	if err != nil {
		return nil, err
	}
	m.Init(b, tensor.NewRNG(uint64(c.Seed)))
	return m, nil
}
