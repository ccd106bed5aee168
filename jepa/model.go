package jepa

import (
	"fmt"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
)

// ModelConfig sizes an H-JEPA model.
type ModelConfig struct {
	Encoder   nn.ViTConfig
	Predictor nn.PredictorConfig
	// Levels is the number of hierarchy levels L.
	Levels int
	// PredictionHeads gives every level l > 0 a trained head (Linear(D, D),
	// LayerNorm(D) with affine) on the pooled predictions; without it the
	// pooled predictions are LayerNorm'd without affine, like the targets.
	// Level 0 never has one (it is I-JEPA's loss).
	PredictionHeads bool
	// ProjectorDim > 0 gives VICReg an expander of that width (Projector);
	// 0 applies VICReg to the pooled context embeddings themselves.
	ProjectorDim int
}

// Validate reports every invalid field.
func (c ModelConfig) Validate() error {
	if err := c.Encoder.Validate(); err != nil {
		return err
	}
	if err := c.Predictor.Validate(); err != nil {
		return err
	}
	if c.Predictor.EmbedDim != c.Encoder.Dim || c.Predictor.GridSize != c.Encoder.GridSize() {
		return fmt.Errorf("jepa: predictor embed_dim %d / grid %d do not match the encoder's %d / %d",
			c.Predictor.EmbedDim, c.Predictor.GridSize, c.Encoder.Dim, c.Encoder.GridSize())
	}
	if c.Levels < 1 {
		return fmt.Errorf("jepa: levels %d must be at least 1", c.Levels)
	}
	if c.ProjectorDim < 0 {
		return fmt.Errorf("jepa: projector width %d must be >= 0", c.ProjectorDim)
	}
	return nil
}

// Head is a level's optional prediction-side projection: Linear(D, D) then
// LayerNorm(D).
type Head struct {
	Proj *nn.Linear
	Norm *nn.LayerNorm
}

func newHead(pb *nn.Builder, d int, eps float32) *Head {
	return &Head{Proj: nn.NewLinear(pb, "proj", d, d, true), Norm: nn.NewLayerNorm(pb, "norm", d, eps)}
}

// Forward maps x [R, D] to y [R, D].
func (h *Head) Forward(b tensor.Backend, x *tensor.Tensor) *tensor.Tensor {
	return h.Norm.Forward(b, h.Proj.Forward(b, x))
}

// Backward overwrites dx [R, D] from dy [R, D] using scratch (same shape) for
// the gradient between the two layers, and accumulates the head's gradients.
func (h *Head) Backward(b tensor.Backend, dx, dy, scratch *tensor.Tensor) {
	b.Fill(scratch, 0)
	h.Norm.Backward(b, scratch, dy)
	h.Proj.Backward(b, dx, scratch)
}

// Model is H-JEPA: the context encoder, predictor and optional prediction
// heads (trained, one arena), and the target encoder, their EMA copy of the
// context encoder (a second arena with no gradient use). Targets have no
// parameters besides the target encoder (DESIGN.md section 4): level 0 is
// LayerNorm(target encoder output), level l > 0 the LayerNorm of its 2^l x 2^l
// window means.
//
// Params lays out projector, heads, predictor, encoder in that order (the order in which
// backward finishes their gradients); TargetParams is the encoder's layout.
type Model struct {
	Cfg       ModelConfig
	Encoder   *nn.Encoder
	Predictor *nn.Predictor
	// Heads[l] is level l's prediction head; nil at level 0 and at every
	// level without ModelConfig.PredictionHeads.
	Heads []*Head
	// Projector is VICReg's expander (nil without ModelConfig.ProjectorDim).
	Projector *Projector
	Params    *nn.Arena

	TargetEncoder *nn.Encoder
	TargetParams  *nn.Arena

	// encoderStart and blockEnds cache the arena boundaries GradsReady
	// reports (gradBoundaries).
	encoderStart int
	blockEnds    []int

	// emaPairs are the (trained, target) value ranges EMA combines.
	emaPairs [][2]*tensor.Tensor

	step stepState
}

// Scopes of the parameter names in the arenas.
const (
	EncoderScope   = "encoder."
	PredictorScope = "predictor."
	HeadsScope     = "heads."
	ProjectorScope = "projector."
)

// NewModel declares and allocates the model on b. Parameters are zero until
// Init (or a checkpoint load).
func NewModel(b tensor.Backend, cfg ModelConfig) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg}
	d, eps := cfg.Encoder.Dim, cfg.Encoder.Eps

	pb := nn.NewBuilder()
	var err error
	if m.Encoder, err = nn.NewEncoder(pb.Scope(EncoderScope), cfg.Encoder); err != nil {
		return nil, err
	}
	if m.Predictor, err = nn.NewPredictor(pb.Scope(PredictorScope), cfg.Predictor); err != nil {
		return nil, err
	}
	m.Heads = make([]*Head, cfg.Levels)
	for l := 1; l < cfg.Levels && cfg.PredictionHeads; l++ {
		m.Heads[l] = newHead(pb.Scope(fmt.Sprintf("%s%d.", HeadsScope, l)), d, eps)
	}
	if cfg.ProjectorDim > 0 {
		m.Projector = newProjector(pb.Scope(ProjectorScope), d, cfg.ProjectorDim)
	}
	if m.Params, err = pb.Build(b); err != nil {
		return nil, err
	}

	tb := nn.NewBuilder()
	if m.TargetEncoder, err = nn.NewEncoder(tb.Scope(EncoderScope), cfg.Encoder); err != nil {
		return nil, err
	}
	m.TargetEncoder.ForwardOnly() // the EMA copy is never differentiated
	if m.TargetParams, err = tb.Build(b); err != nil {
		return nil, err
	}
	if err := m.Params.SameLayout(EncoderScope, m.TargetParams, EncoderScope); err != nil {
		return nil, fmt.Errorf("jepa: target arena: %w", err)
	}
	src, _ := m.Params.ValuesOf(EncoderScope)
	dst, _ := m.TargetParams.ValuesOf(EncoderScope)
	m.emaPairs = append(m.emaPairs, [2]*tensor.Tensor{src, dst})
	return m, nil
}

// Init draws the trained parameters as I-JEPA does (encoder, predictor, then
// each prediction head: trunc_normal(0.02) weights, zero biases, LayerNorm
// 1/0) and copies the encoder to the target side, as I-JEPA's deepcopy.
func (m *Model) Init(b tensor.Backend, rng *tensor.RNG) {
	m.Encoder.Init(b, rng)
	m.Predictor.Init(b, rng)
	std := m.Cfg.Encoder.InitStd
	for _, h := range m.Heads {
		if h == nil {
			continue
		}
		b.TruncNormal(h.Proj.W.W, rng, 0, std, -2, 2)
		b.Fill(h.Proj.B.W, 0)
		b.Fill(h.Norm.W.W, 1)
		b.Fill(h.Norm.B.W, 0)
	}
	if m.Projector != nil {
		m.Projector.init(b, rng, std)
	}
	for _, p := range m.emaPairs {
		b.Copy(p[1], p[0])
	}
}

// UpdateTarget applies the EMA step target = momentum*target + (1-momentum)*trained
// to the target encoder.
func (m *Model) UpdateTarget(b tensor.Backend, momentum float32) {
	for _, p := range m.emaPairs {
		b.EMA(p[1], p[0], momentum)
	}
}
