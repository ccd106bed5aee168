package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/eval"
)

func evalCmd() *cobra.Command {
	var cf configFlags
	var req eval.Request
	var all bool
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
--checkpoint init evaluates the initialisation alone.

The model comes from the checkpoint's own configuration (its state.json);
--config, --set and HJEPA_* may change the data (data.*, but not the image
size or channels), the protocol (evaluation.*), device and threads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.loadForCheckpoint(req.Checkpoint, os.Stderr)
			if err != nil {
				return err
			}
			req.Config, req.Log = cfg, os.Stderr
			if all {
				req.CompareInit, req.Pixels, req.Context = true, true, true
			}
			_, err = eval.Run(cmd.Context(), req, os.Stdout)
			return err
		},
	}
	cf.add(c)
	c.Flags().StringVar(&req.Checkpoint, "checkpoint", "", `checkpoint directory (e.g. results/checkpoints/checkpoint_latest), or "init"`)
	c.Flags().StringVar(&req.JSONPath, "out", "", `also write the report as JSON to this file (several rows: {"pixels": {...}, "init": {...}, "trained": {...}, "context": {...}})`)
	c.Flags().BoolVar(&req.NoKNN, "no-knn", false, "skip the kNN classifier")
	c.Flags().BoolVar(&req.CompareInit, "compare-init", false, "also evaluate the target encoder at initialisation (same seed) and print the difference")
	c.Flags().BoolVar(&req.Pixels, "pixels", false, "also evaluate the same probe on the raw normalised pixels")
	c.Flags().BoolVar(&req.Context, "context", false, "also evaluate the checkpoint's context encoder")
	c.Flags().BoolVar(&all, "all", false, "--pixels --compare-init --context")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

func embedCmd() *cobra.Command {
	var cf configFlags
	var req eval.EmbedRequest
	c := &cobra.Command{
		Use:   "embed",
		Short: "Write mean-pooled target-encoder features of a split as .npy (and labels as <out>.labels.npy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.loadForCheckpoint(req.Checkpoint, os.Stderr)
			if err != nil {
				return err
			}
			req.Config, req.Log = cfg, os.Stderr
			return eval.Embed(cmd.Context(), req, os.Stdout)
		},
	}
	cf.add(c)
	c.Flags().StringVar(&req.Checkpoint, "checkpoint", "", "checkpoint directory")
	c.Flags().StringVar(&req.Out, "out", "features.npy", "output .npy file")
	c.Flags().StringVar(&req.Split, "split", "val", "train or val")
	c.Flags().IntVar(&req.Limit, "limit", 0, "at most this many images (0: all)")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}

func exportCmd() *cobra.Command {
	var cf configFlags
	var req eval.ExportRequest
	c := &cobra.Command{
		Use:   "export",
		Short: "Write the encoder as .safetensors with timm ViT key names",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := cf.loadForCheckpoint(req.Checkpoint, os.Stderr)
			if err != nil {
				return err
			}
			req.Config, req.Log = cfg, os.Stderr
			return eval.Export(req, os.Stdout)
		},
	}
	cf.add(c)
	c.Flags().StringVar(&req.Checkpoint, "checkpoint", "", "checkpoint directory")
	c.Flags().StringVar(&req.Out, "out", "encoder.safetensors", "output file")
	c.Flags().BoolVar(&req.Context, "context", false, "export the context encoder instead of the EMA target encoder")
	_ = c.MarkFlagRequired("checkpoint")
	return c
}
