package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/eval"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train"
)

// fallbackOnce prints the device fallback line once per process (eval
// --compare-init loads two models).
var fallbackOnce sync.Once

// loadModel builds the model of cfg and loads a checkpoint's weights into it
// ("" or "init" keeps the initialisation: the baseline a trained encoder is compared to).
func loadModel(cfg config.Config, ckDir string) (tensor.Backend, *jepa.Model, error) {
	b, fallback, err := train.NewBackend(cfg)
	if err != nil {
		return nil, nil, err
	}
	if fallback != "" {
		fallbackOnce.Do(func() { fmt.Fprintln(os.Stderr, fallback) })
	}
	m, err := train.NewInitialModel(b, cfg)
	if err != nil {
		return nil, nil, err
	}
	if ckDir != "" && ckDir != "init" {
		if err := train.LoadWeights(b, m, ckDir); err != nil {
			return nil, nil, err
		}
	}
	return b, m, nil
}

// EvalReport is what `hjepa eval` prints and writes.
type EvalReport struct {
	Checkpoint     string  `json:"checkpoint"`
	Encoder        string  `json:"encoder"`
	TrainImages    int     `json:"train_images"`
	TestImages     int     `json:"test_images"`
	Dim            int     `json:"dim"`
	ProbeAccuracy  float64 `json:"linear_probe_accuracy"`
	ProbeL2        float64 `json:"linear_probe_l2"`
	ProbeIters     int     `json:"linear_probe_iterations"`
	KNNAccuracy    float64 `json:"knn_accuracy"`
	KNNK           int     `json:"knn_k"`
	RankMe         float64 `json:"rankme"` // on centred features (the collapse monitor)
	RankMeFraction float64 `json:"rankme_fraction"`
	RankMeRaw      float64 `json:"rankme_uncentered"` // Garrido et al.'s definition
	FeatureStd     float64 `json:"feature_std"`
	Seconds        float64 `json:"seconds"`
}

func evalCmd() *cobra.Command {
	var cf configFlags
	var ck, out string
	var noKNN, compareInit bool
	c := &cobra.Command{
		Use:   "eval",
		Short: "Linear probe, kNN and RankMe of a checkpoint's target encoder",
		Long: `Extracts mean-pooled target-encoder features of the training and test splits,
fits a multinomial logistic regression (L-BFGS, standardised features, L2 chosen
on a held-out tenth of the training set) and a kNN classifier (k=20, cosine,
temperature 0.07), and reports test accuracy and RankMe. --checkpoint init
evaluates the encoder at initialisation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(true)
			if err != nil {
				return err
			}
			checkpoints := []string{ck}
			if compareInit && ck != "init" {
				checkpoints = []string{"init", ck}
			}
			var reports []EvalReport
			for _, c := range checkpoints {
				r, err := evaluate(cmd, cfg, c, noKNN)
				if err != nil {
					return err
				}
				knn := fmt.Sprintf("%.2f%%", 100*r.KNNAccuracy)
				if noKNN {
					knn = "skipped"
				}
				fmt.Printf("%-10s linear probe %.2f%% (L2 %g)  kNN %s  RankMe %.1f (%.2f of D=%d; uncentred %.1f)  [%d train / %d test images, %s, %.0fs]\n",
					label(c), 100*r.ProbeAccuracy, r.ProbeL2, knn, r.RankMe, r.RankMeFraction, r.Dim, r.RankMeRaw, r.TrainImages, r.TestImages, c, r.Seconds)
				reports = append(reports, r)
			}
			if len(reports) == 2 {
				fmt.Printf("trained - init: linear probe %+.2f points, kNN %+.2f points\n",
					100*(reports[1].ProbeAccuracy-reports[0].ProbeAccuracy), 100*(reports[1].KNNAccuracy-reports[0].KNNAccuracy))
			}
			if out != "" {
				var v any = reports[len(reports)-1]
				if len(reports) == 2 {
					v = map[string]EvalReport{"init": reports[0], "trained": reports[1]}
				}
				js, _ := json.MarshalIndent(v, "", "  ")
				if err := os.WriteFile(out, append(js, '\n'), 0o644); err != nil {
					return fmt.Errorf("write %s: %w", out, err)
				}
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&ck, "checkpoint", "", `checkpoint directory (e.g. results/checkpoints/checkpoint_latest), or "init"`)
	c.Flags().StringVar(&out, "out", "", "also write the report as JSON to this file")
	c.Flags().BoolVar(&noKNN, "no-knn", false, "skip the kNN classifier")
	c.Flags().BoolVar(&compareInit, "compare-init", false, "also evaluate the encoder at initialisation (same seed) and print the difference")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

// features extracts train and test features with the evaluation transform,
// bounded by evaluation.train_limit / test_limit.
func features(cmd *cobra.Command, cfg config.Config, b tensor.Backend, m *jepa.Model) (*eval.Features, *eval.Features, error) {
	tf, err := data.EvalTransform(cfg.Data)
	if err != nil {
		return nil, nil, err
	}
	ev := cfg.Evaluation
	trainDS, err := data.Open(cfg.Data, "train", cfg.Seed)
	if err != nil {
		return nil, nil, err
	}
	testDS, err := data.Open(cfg.Data, "val", cfg.Seed)
	if err != nil {
		return nil, nil, err
	}
	bs := max(cfg.Data.BatchSize, 64)
	tr, err := eval.ExtractFeatures(cmd.Context(), b, m, trainDS, tf, bs, cfg.Data.NumWorkers, ev.TrainLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("training features: %w", err)
	}
	te, err := eval.ExtractFeatures(cmd.Context(), b, m, testDS, tf, bs, cfg.Data.NumWorkers, ev.TestLimit)
	if err != nil {
		return nil, nil, fmt.Errorf("test features: %w", err)
	}
	return tr, te, nil
}

func embedCmd() *cobra.Command {
	var cf configFlags
	var ck, out, split string
	var limit int
	c := &cobra.Command{
		Use:   "embed",
		Short: "Write mean-pooled target-encoder features of a split as .npy (and labels as <out>.labels.npy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(true)
			if err != nil {
				return err
			}
			b, m, err := loadModel(cfg, ck)
			if err != nil {
				return err
			}
			tf, err := data.EvalTransform(cfg.Data)
			if err != nil {
				return err
			}
			ds, err := data.Open(cfg.Data, split, cfg.Seed)
			if err != nil {
				return err
			}
			f, err := eval.ExtractFeatures(cmd.Context(), b, m, ds, tf, max(cfg.Data.BatchSize, 64), cfg.Data.NumWorkers, limit)
			if err != nil {
				return err
			}
			if err := eval.WriteNPY(out, f.X, []int{f.N, f.D}); err != nil {
				return err
			}
			labels := make([]int64, f.N)
			for i, l := range f.Labels {
				labels[i] = int64(l)
			}
			lp := strings.TrimSuffix(out, ".npy") + ".labels.npy"
			if err := eval.WriteNPYInt64(lp, labels, []int{f.N}); err != nil {
				return err
			}
			fmt.Printf("wrote %s [%d, %d] and %s\n", out, f.N, f.D, lp)
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&ck, "checkpoint", "", "checkpoint directory")
	c.Flags().StringVar(&out, "out", "features.npy", "output .npy file")
	c.Flags().StringVar(&split, "split", "val", "train or val")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many images (0: all)")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

func exportCmd() *cobra.Command {
	var cf configFlags
	var ck, out string
	var context bool
	c := &cobra.Command{
		Use:   "export",
		Short: "Write the encoder as .safetensors with timm ViT key names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(true)
			if err != nil {
				return err
			}
			b, m, err := loadModel(cfg, ck)
			if err != nil {
				return err
			}
			if err := eval.ExportTimm(b, m, out, !context); err != nil {
				return err
			}
			e := m.Cfg.Encoder
			fmt.Printf("wrote %s; load it in PyTorch with\n  m = timm.create_model(\"vit_base_patch16_224\", img_size=%d, patch_size=%d, in_chans=%d, embed_dim=%d, depth=%d, num_heads=%d, class_token=False, global_pool=\"avg\", num_classes=0)\n  m.load_state_dict(safetensors.torch.load_file(%q))\n",
				out, e.ImgSize, e.PatchSize, e.InChans, e.Dim, e.Depth, e.Heads, out)
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&ck, "checkpoint", "", "checkpoint directory")
	c.Flags().StringVar(&out, "out", "encoder.safetensors", "output file")
	c.Flags().BoolVar(&context, "context", false, "export the context encoder instead of the EMA target encoder")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

func label(ck string) string {
	if ck == "init" {
		return "init"
	}
	return "trained"
}

// evaluate extracts features with the encoder of checkpoint ck ("init": at
// initialisation) and fits the probe and kNN.
func evaluate(cmd *cobra.Command, cfg config.Config, ck string, noKNN bool) (EvalReport, error) {
	start := time.Now()
	b, m, err := loadModel(cfg, ck)
	if err != nil {
		return EvalReport{}, err
	}
	ev := cfg.Evaluation
	trainFeat, testFeat, err := features(cmd, cfg, b, m)
	if err != nil {
		return EvalReport{}, err
	}
	r := EvalReport{Checkpoint: ck, Encoder: "target", TrainImages: trainFeat.N, TestImages: testFeat.N, Dim: trainFeat.D}
	classes := 0
	for _, l := range append(append([]int(nil), trainFeat.Labels...), testFeat.Labels...) {
		classes = max(classes, l+1)
	}
	probe, rep, err := eval.FitProbe(trainFeat.X, trainFeat.Labels, trainFeat.D, classes,
		eval.ProbeOptions{L2: ev.ProbeL2, MaxIter: ev.ProbeMaxIter, Threads: cfg.Threads})
	if err != nil {
		return r, err
	}
	pred, err := probe.Predict(testFeat.X)
	if err != nil {
		return r, err
	}
	r.ProbeAccuracy, r.ProbeL2, r.ProbeIters = eval.Accuracy(pred, testFeat.Labels), rep.L2, rep.Iters
	if !noKNN {
		kp, err := eval.KNN(trainFeat.X, trainFeat.Labels, testFeat.X, trainFeat.D, classes,
			eval.KNNOptions{K: ev.KNNK, T: ev.KNNTemp, Threads: cfg.Threads})
		if err != nil {
			return r, err
		}
		r.KNNAccuracy, r.KNNK = eval.Accuracy(kp, testFeat.Labels), ev.KNNK
	}
	if r.RankMe, err = eval.CenteredRankMe(testFeat.X, testFeat.N, testFeat.D); err != nil {
		return r, err
	}
	if r.RankMeRaw, err = eval.RankMe(testFeat.X, testFeat.N, testFeat.D); err != nil {
		return r, err
	}
	r.RankMeFraction = r.RankMe / float64(testFeat.D)
	std, err := eval.PerDimStd(testFeat.X, testFeat.N, testFeat.D)
	if err != nil {
		return r, err
	}
	r.FeatureStd = std.Mean
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}
