package eval

import (
	"context"
	"errors"
	"fmt"
	"io"

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

// ExtractFeatures runs the model's target encoder (the encoder I-JEPA
// evaluates) over the first limit images of ds (all when limit <= 0) with
// the evaluation transform tf, in batches of batch, and returns the
// mean-pooled features with their labels.
func ExtractFeatures(ctx context.Context, b tensor.Backend, m *jepa.Model, ds data.Dataset, tf data.Transform, batch, workers, limit int) (*Features, error) {
	n := ds.Len()
	if limit > 0 && limit < n {
		n = limit
	}
	if n == 0 {
		return nil, fmt.Errorf("eval: dataset %s is empty", ds.Info().Path)
	}
	var sub data.Dataset = ds
	if n < ds.Len() {
		sub = prefix{ds, n}
	}
	s, err := data.NewDistributedSampler(n, 1, 0, false, 0, false)
	if err != nil {
		return nil, err
	}
	ld, err := data.NewLoader(sub, tf, s, data.LoaderOptions{BatchSize: batch, NumWorkers: workers, Prefetch: 2})
	if err != nil {
		return nil, err
	}
	defer ld.Close()
	d := m.Cfg.Encoder.Dim
	f := &Features{X: make([]float32, 0, n*d), Labels: make([]int, 0, n), D: d}
	var img tensor.Workspace
	for {
		bt, err := ld.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		x := img.Get(b, bt.B, bt.C, bt.H, bt.W)
		b.Upload(x, bt.Images)
		f.X = append(f.X, m.TargetFeatures(b, x)...)
		f.Labels = append(f.Labels, bt.Labels...)
		bt.Release()
	}
	f.N = len(f.Labels)
	return f, nil
}

// prefix is the first n images of a dataset.
type prefix struct {
	data.Dataset
	n int
}

func (p prefix) Len() int { return p.n }
