package jepa

import (
	"fmt"

	"github.com/hjepa-go/hjepa/nn"
)

// TargetPrefix prefixes the target-side (EMA) parameters in checkpoints:
// "target.encoder.blocks.0.attn.qkv.weight", "target.heads.1.proj.weight".
const TargetPrefix = "target."

// NamedParam is one parameter as it is stored in a checkpoint.
type NamedParam struct {
	Name  string
	Param *nn.Param
	// Target is true for the EMA copies (values only, no gradient).
	Target bool
}

// NamedParams lists every parameter of the model under its checkpoint
// name: the trained arena's names as declared, the target arena's with
// TargetPrefix.
func (m *Model) NamedParams() []NamedParam {
	var out []NamedParam
	for _, p := range m.Params.Params() {
		out = append(out, NamedParam{Name: p.Name, Param: p})
	}
	for _, p := range m.TargetParams.Params() {
		out = append(out, NamedParam{Name: TargetPrefix + p.Name, Param: p, Target: true})
	}
	return out
}

// Shapes maps every checkpoint name to its shape, for checking a checkpoint
// against the model before loading it.
func (m *Model) Shapes() map[string][]int {
	s := map[string][]int{}
	for _, np := range m.NamedParams() {
		s[np.Name] = np.Param.Shape
	}
	return s
}

// String summarises the model's sizes.
func (m *Model) String() string {
	e, p := m.Cfg.Encoder, m.Cfg.Predictor
	return fmt.Sprintf("H-JEPA: ViT %dx%d/%d, D=%d depth %d heads %d; predictor %d x %d heads %d; %d levels; %d trained parameters",
		e.ImgSize, e.ImgSize, e.PatchSize, e.Dim, e.Depth, e.Heads, p.Dim, p.Depth, p.Heads, m.Cfg.Levels, m.Params.Len())
}
