package eval

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/device"
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

// EmbedRequest is one export of features (`hjepa embed`).
type EmbedRequest struct {
	// Config is the loaded and validated configuration.
	Config config.Config
	// Checkpoint is the checkpoint directory ("" or "init": the
	// initialisation).
	Checkpoint string
	// Split is the split to embed ("train" or "val"); Limit takes its first
	// images (0: all).
	Split string
	Limit int
	// Out is the features' .npy file; the labels go to Out without its .npy
	// suffix plus .labels.npy.
	Out string
	// Log receives the device fallback line; nil discards it.
	Log io.Writer
}

// Embed writes the mean-pooled target-encoder features of a split [N, D] as
// float32 .npy and their labels [N] as int64 .npy, then says so on out.
func Embed(ctx context.Context, req EmbedRequest, out io.Writer) error {
	cfg := req.Config
	b, m, err := openModel(cfg, req.Checkpoint, req.Log)
	if err != nil {
		return err
	}
	defer device.Close(b)
	tf, err := data.EvalTransform(cfg.Data)
	if err != nil {
		return err
	}
	ds, err := data.Open(cfg.Data, req.Split, cfg.Seed)
	if err != nil {
		return err
	}
	f, err := ExtractFeatures(ctx, b, m, ds, tf, max(cfg.Data.BatchSize, 64), cfg.Data.NumWorkers, req.Limit)
	if err != nil {
		return err
	}
	if err := WriteNPY(req.Out, f.X, []int{f.N, f.D}); err != nil {
		return err
	}
	labels := make([]int64, f.N)
	for i, l := range f.Labels {
		labels[i] = int64(l)
	}
	lp := strings.TrimSuffix(req.Out, ".npy") + ".labels.npy"
	if err := WriteNPYInt64(lp, labels, []int{f.N}); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s [%d, %d] and %s\n", req.Out, f.N, f.D, lp)
	return nil
}
