package eval

import (
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// LoadWeights loads a checkpoint's model tensors (context and target sides)
// into m, checking every name and shape first.
func LoadWeights(b tensor.Backend, m *jepa.Model, dir string) error {
	ck, err := checkpoint.ReadExpect(dir, m.Shapes(), nil)
	if err != nil {
		return err
	}
	byName := map[string][]float32{}
	for _, x := range ck.Model {
		byName[x.Name] = x.Data
	}
	for _, np := range m.NamedParams() {
		b.Upload(np.Param.W, byName[np.Name])
	}
	return nil
}
