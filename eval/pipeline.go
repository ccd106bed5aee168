package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/tensor"
)

// Extractor is one row of an evaluation: a named way of turning a batch of
// images into features.
type Extractor struct {
	// Name is the row's name in the report ("pixels", "init", "trained",
	// "context").
	Name string
	// Encoder says what the features come from ("pixels", "target",
	// "context").
	Encoder string
	// Dim is the feature width.
	Dim int
	// Features maps img [B, C, H, W] to [B, Dim] on the host (valid until
	// the next call). It runs the forward pass only.
	Features func(b tensor.Backend, img *tensor.Tensor) []float32
}

// PixelExtractor is the raw-pixel baseline: each image's normalised pixels,
// flattened (C*H*W features), as they enter the encoder.
func PixelExtractor(c, h, w int) Extractor {
	var host []float32
	return Extractor{Name: "pixels", Encoder: "pixels", Dim: c * h * w,
		Features: func(b tensor.Backend, img *tensor.Tensor) []float32 {
			if cap(host) < img.Numel() {
				host = make([]float32, img.Numel())
			}
			host = host[:img.Numel()]
			b.Download(host, img)
			return host
		}}
}

// Options configure Evaluate.
type Options struct {
	// Train and Test are the probe's fitting and scoring splits, read with
	// Transform (the evaluation transform: no augmentation).
	Train, Test data.Dataset
	Transform   data.Transform
	// TrainLimit and TestLimit use the first images of each split (0: all).
	TrainLimit, TestLimit int
	// Batch is the extraction batch; Workers the loader's decoding workers.
	Batch, Workers int
	Probe          ProbeOptions
	KNN            KNNOptions
	NoKNN          bool
	// Progress, when set, is told each finished row.
	Progress func(Report)
}

// Report is one row of an evaluation.
type Report struct {
	Name           string  `json:"-"`
	Checkpoint     string  `json:"checkpoint,omitempty"`
	Encoder        string  `json:"encoder"`
	TrainImages    int     `json:"train_images"`
	TestImages     int     `json:"test_images"`
	Dim            int     `json:"dim"`
	ProbeAccuracy  float64 `json:"linear_probe_accuracy"`
	ProbeL2        float64 `json:"linear_probe_l2"`
	ProbeIters     int     `json:"linear_probe_iterations"`
	KNNAccuracy    float64 `json:"knn_accuracy"`
	KNNK           int     `json:"knn_k"`  // 0: kNN skipped
	RankMe         float64 `json:"rankme"` // on centred features (the collapse monitor)
	RankMeFraction float64 `json:"rankme_fraction"`
	RankMeRaw      float64 `json:"rankme_uncentered"` // Garrido et al.'s definition
	FeatureStd     float64 `json:"feature_std"`
	// FeatureSeconds is this row's share of the extraction (the pass over
	// the images is shared by every row); Seconds adds its probe and kNN.
	FeatureSeconds float64 `json:"feature_seconds"`
	Seconds        float64 `json:"seconds"`
}

// Evaluate extracts every extractor's features of the training and test
// splits in one pass over each split, then fits each row's linear probe on
// the training features, scores it and the kNN classifier on the test
// features, and measures RankMe and the per-dimension std of the test
// features. Every row sees the same images and the same probe protocol.
func Evaluate(ctx context.Context, b tensor.Backend, opts Options, rows []Extractor) ([]Report, error) {
	if len(rows) == 0 {
		return nil, errors.New("eval: nothing to evaluate")
	}
	start := time.Now()
	train, err := ExtractAll(ctx, b, opts.Train, opts.Transform, opts.Batch, opts.Workers, opts.TrainLimit, rows)
	if err != nil {
		return nil, fmt.Errorf("training features: %w", err)
	}
	test, err := ExtractAll(ctx, b, opts.Test, opts.Transform, opts.Batch, opts.Workers, opts.TestLimit, rows)
	if err != nil {
		return nil, fmt.Errorf("test features: %w", err)
	}
	featSec := time.Since(start).Seconds() / float64(len(rows))
	classes := 0
	for _, l := range append(append([]int(nil), train[0].Labels...), test[0].Labels...) {
		classes = max(classes, l+1)
	}
	var out []Report
	for i, row := range rows {
		t0 := time.Now()
		r, err := score(train[i], test[i], classes, opts)
		if err != nil {
			return out, fmt.Errorf("%s: %w", row.Name, err)
		}
		r.Name, r.Encoder = row.Name, row.Encoder
		r.FeatureSeconds = featSec
		r.Seconds = featSec + time.Since(t0).Seconds()
		if opts.Progress != nil {
			opts.Progress(r)
		}
		out = append(out, r)
	}
	return out, nil
}

// score fits the probe and kNN of one row.
func score(tr, te *Features, classes int, opts Options) (Report, error) {
	r := Report{TrainImages: tr.N, TestImages: te.N, Dim: tr.D}
	probe, rep, err := FitProbe(tr.X, tr.Labels, tr.D, classes, opts.Probe)
	if err != nil {
		return r, err
	}
	pred, err := probe.Predict(te.X)
	if err != nil {
		return r, err
	}
	r.ProbeAccuracy, r.ProbeL2, r.ProbeIters = Accuracy(pred, te.Labels), rep.L2, rep.Iters
	if !opts.NoKNN {
		kp, err := KNN(tr.X, tr.Labels, te.X, tr.D, classes, opts.KNN)
		if err != nil {
			return r, err
		}
		r.KNNAccuracy, r.KNNK = Accuracy(kp, te.Labels), opts.KNN.K
		if r.KNNK <= 0 {
			r.KNNK = defaultKNNK
		}
	}
	if r.RankMe, err = CenteredRankMe(te.X, te.N, te.D); err != nil {
		return r, err
	}
	if r.RankMeRaw, err = RankMe(te.X, te.N, te.D); err != nil {
		return r, err
	}
	r.RankMeFraction = r.RankMe / float64(te.D)
	std, err := PerDimStd(te.X, te.N, te.D)
	if err != nil {
		return r, err
	}
	r.FeatureStd = std.Mean
	return r, nil
}

// ExtractAll runs every extractor over the first limit images of ds (all
// when limit <= 0), read once with the transform tf in batches of batch, and
// returns their features with the labels.
func ExtractAll(ctx context.Context, b tensor.Backend, ds data.Dataset, tf data.Transform, batch, workers, limit int, rows []Extractor) ([]*Features, error) {
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
	out := make([]*Features, len(rows))
	for i, r := range rows {
		out[i] = &Features{X: make([]float32, 0, n*r.Dim), Labels: make([]int, 0, n), D: r.Dim}
	}
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
		for i, r := range rows {
			f := r.Features(b, x)
			if len(f) != bt.B*r.Dim {
				bt.Release()
				return nil, fmt.Errorf("eval: %s gave %d features for %d images of width %d", r.Name, len(f), bt.B, r.Dim)
			}
			out[i].X = append(out[i].X, f...)
			out[i].Labels = append(out[i].Labels, bt.Labels...)
		}
		bt.Release()
	}
	for _, f := range out {
		f.N = len(f.Labels)
	}
	return out, nil
}
