package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/eval"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
)

// loadModel builds the model of cfg and loads a checkpoint's weights into it
// ("" or "init" keeps the initialisation: the baseline a trained encoder is compared to).
func loadModel(cfg config.Config, ckDir string) (tensor.Backend, *jepa.Model, error) {
	b, fallback, err := device.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	if fallback != "" {
		fmt.Fprintln(os.Stderr, fallback)
	}
	m, err := jepa.NewInitialModel(b, cfg)
	if err != nil {
		return nil, nil, err
	}
	if ckDir != "" && ckDir != "init" {
		if err := eval.LoadWeights(b, m, ckDir); err != nil {
			return nil, nil, err
		}
	}
	return b, m, nil
}

func evalCmd() *cobra.Command {
	var cf configFlags
	var ck, out string
	var noKNN, compareInit, pixels, context, all bool
	c := &cobra.Command{
		Use:   "eval",
		Short: "Linear probe, kNN and RankMe of a checkpoint's encoders (and of the raw pixels and the initialisation)",
		Long: `Extracts mean-pooled encoder features of the training and test splits (forward
passes only, one pass over the images for every row), fits a multinomial
logistic regression (L-BFGS, standardised features, L2 chosen on a held-out
tenth of the training set) and a kNN classifier (k=20, cosine, temperature
0.07), and reports test accuracy and RankMe.

Rows: "trained" is the checkpoint's target encoder (what I-JEPA evaluates);
--context adds its context encoder ("context"), --compare-init the same
encoder at initialisation ("init"), --pixels the same probe on the raw
normalised pixels ("pixels"); --all adds all three. Every row uses the same
images (evaluation.train_limit / test_limit) and the same protocol.
--checkpoint init evaluates the initialisation alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(true)
			if err != nil {
				return err
			}
			if all {
				compareInit, pixels, context = true, true, true
			}
			b, fallback, err := device.Open(cfg)
			if err != nil {
				return err
			}
			defer device.Close(b)
			if fallback != "" {
				fmt.Fprintln(os.Stderr, fallback)
			}
			rows, err := evalRows(b, cfg, ck, compareInit, pixels, context)
			if err != nil {
				return err
			}
			opts, err := evalOptions(cfg, noKNN)
			if err != nil {
				return err
			}
			opts.Progress = func(r eval.Report) {
				knn := fmt.Sprintf("%.2f%%", 100*r.KNNAccuracy)
				if noKNN {
					knn = "skipped"
				}
				fmt.Printf("%-8s linear probe %.2f%% (L2 %g)  kNN %s  RankMe %.1f (%.2f of D=%d; uncentred %.1f)  [%d train / %d test images, %.0fs]\n",
					r.Name, 100*r.ProbeAccuracy, r.ProbeL2, knn, r.RankMe, r.RankMeFraction, r.Dim, r.RankMeRaw, r.TrainImages, r.TestImages, r.Seconds)
			}
			start := time.Now()
			reports, err := eval.Evaluate(cmd.Context(), b, opts, rows)
			if err != nil {
				return err
			}
			byName := map[string]eval.Report{}
			for i := range reports {
				if reports[i].Encoder != "pixels" {
					reports[i].Checkpoint = ck
					if reports[i].Name == "init" {
						reports[i].Checkpoint = "init"
					}
				}
				byName[reports[i].Name] = reports[i]
			}
			if len(reports) > 1 {
				printEvalTable(os.Stdout, reports)
			}
			fmt.Printf("evaluated %d row(s) in %s\n", len(reports), time.Since(start).Round(time.Second))
			if out != "" {
				var v any = reports[0]
				if len(reports) > 1 {
					v = byName
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
	c.Flags().StringVar(&out, "out", "", `also write the report as JSON to this file (several rows: {"pixels": {...}, "init": {...}, "trained": {...}, "context": {...}})`)
	c.Flags().BoolVar(&noKNN, "no-knn", false, "skip the kNN classifier")
	c.Flags().BoolVar(&compareInit, "compare-init", false, "also evaluate the target encoder at initialisation (same seed) and print the difference")
	c.Flags().BoolVar(&pixels, "pixels", false, "also evaluate the same probe on the raw normalised pixels")
	c.Flags().BoolVar(&context, "context", false, "also evaluate the checkpoint's context encoder")
	c.Flags().BoolVar(&all, "all", false, "--pixels --compare-init --context")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

// printEvalTable prints the rows side by side, with each encoder's gain over
// the initialisation and the pixels where those rows exist.
func printEvalTable(w io.Writer, reports []eval.Report) {
	base := map[string]eval.Report{}
	for _, r := range reports {
		base[r.Name] = r
	}
	fmt.Fprintf(w, "\n%-8s  %12s  %8s  %7s  %-22s  %s\n", "row", "linear probe", "kNN", "RankMe", "vs init (probe, kNN)", "vs pixels (probe, kNN)")
	diff := func(r eval.Report, name string) string {
		b, ok := base[name]
		if !ok || r.Name == name || r.Encoder == "pixels" || (name == "init" && r.Name == "init") {
			return ""
		}
		return fmt.Sprintf("%+.2f, %+.2f", 100*(r.ProbeAccuracy-b.ProbeAccuracy), 100*(r.KNNAccuracy-b.KNNAccuracy))
	}
	for _, r := range reports {
		fmt.Fprintf(w, "%-8s  %11.2f%%  %7.2f%%  %7.1f  %-22s  %s\n", r.Name, 100*r.ProbeAccuracy, 100*r.KNNAccuracy, r.RankMe, diff(r, "init"), diff(r, "pixels"))
	}
	r := reports[0]
	fmt.Fprintf(w, "protocol: mean-pooled features; the probe (L2 chosen on a held-out tenth) and kNN (k=%d) learn from the first %d training images and are scored on %d test images; RankMe is centred, on the test features\n", r.KNNK, r.TrainImages, r.TestImages)
}

// evalRows builds the rows `hjepa eval` asked for, in the order pixels,
// init, trained, context.
func evalRows(b tensor.Backend, cfg config.Config, ck string, compareInit, pixels, context bool) ([]eval.Extractor, error) {
	var rows []eval.Extractor
	if pixels {
		e, err := cfg.Encoder()
		if err != nil {
			return nil, err
		}
		rows = append(rows, eval.PixelExtractor(e.Channels, e.ImageSize, e.ImageSize))
	}
	if ck == "init" || compareInit {
		m, err := jepa.NewInitialModel(b, cfg)
		if err != nil {
			return nil, err
		}
		rows = append(rows, eval.TargetExtractor("init", m))
	}
	if ck != "init" {
		m, err := jepa.NewInitialModel(b, cfg)
		if err != nil {
			return nil, err
		}
		if err := eval.LoadWeights(b, m, ck); err != nil {
			return nil, err
		}
		rows = append(rows, eval.TargetExtractor("trained", m))
		if context {
			rows = append(rows, eval.ContextExtractor("context", m))
		}
	}
	return rows, nil
}

// evalOptions opens the splits and sets the probe protocol from cfg.
func evalOptions(cfg config.Config, noKNN bool) (eval.Options, error) {
	tf, err := data.EvalTransform(cfg.Data)
	if err != nil {
		return eval.Options{}, err
	}
	trainDS, err := data.Open(cfg.Data, "train", cfg.Seed)
	if err != nil {
		return eval.Options{}, err
	}
	testDS, err := data.Open(cfg.Data, "val", cfg.Seed)
	if err != nil {
		return eval.Options{}, err
	}
	ev := cfg.Evaluation
	return eval.Options{Train: trainDS, Test: testDS, Transform: tf, TrainLimit: ev.TrainLimit, TestLimit: ev.TestLimit,
		Batch: max(cfg.Data.BatchSize, evalBatch), Workers: cfg.Data.NumWorkers,
		Probe: eval.ProbeOptions{L2: ev.ProbeL2, MaxIter: ev.ProbeMaxIter, Threads: cfg.Threads},
		KNN:   eval.KNNOptions{K: ev.KNNK, T: ev.KNNTemp, Threads: cfg.Threads}, NoKNN: noKNN}, nil
}

// evalBatch is the smallest extraction batch (larger GEMMs run closer to the
// machine's peak).
const evalBatch = 256

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
