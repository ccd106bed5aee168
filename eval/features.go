package eval

import (
	"context"

	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
)

// Features are mean-pooled encoder features of a dataset split.
type Features struct {
	X      []float32 // [N, D]
	Labels []int     // [N]
	N, D   int
}

// TargetExtractor is the row of m's target encoder (the encoder I-JEPA
// evaluates), mean-pooled over all patches.
func TargetExtractor(name string, m *jepa.Model) Extractor {
	return Extractor{Name: name, Encoder: "target", Dim: m.Cfg.Encoder.Dim, Features: m.TargetFeatures}
}

// ContextExtractor is the row of m's context encoder on whole images,
// mean-pooled over all patches.
func ContextExtractor(name string, m *jepa.Model) Extractor {
	return Extractor{Name: name, Encoder: "context", Dim: m.Cfg.Encoder.Dim, Features: m.ContextFeatures}
}

// ExtractFeatures runs the model's target encoder over the first limit
// images of ds (all when limit <= 0) with the evaluation transform tf, in
// batches of batch, and returns the mean-pooled features with their labels.
func ExtractFeatures(ctx context.Context, b tensor.Backend, m *jepa.Model, ds data.Dataset, tf data.Transform, batch, workers, limit int) (*Features, error) {
	f, err := ExtractAll(ctx, b, ds, tf, batch, workers, limit, []Extractor{TargetExtractor("trained", m)})
	if err != nil {
		return nil, err
	}
	return f[0], nil
}

// prefix is the first n images of a dataset.
type prefix struct {
	data.Dataset
	n int
}

func (p prefix) Len() int { return p.n }
