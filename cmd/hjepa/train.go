package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/train"
	"github.com/hjepa-go/hjepa/train/progress"
)

func trainCmd() *cobra.Command {
	var cf configFlags
	var out string
	var resume bool
	c := &cobra.Command{
		Use:   "train",
		Short: "Train an H-JEPA model on one process",
		Example: `  hjepa train --config configs/fmnist-tiny.yaml
  hjepa train --config configs/fmnist-tiny.yaml --set training.max_steps=200 --out results/quick
  hjepa train --config configs/fmnist-tiny.yaml --out results/quick --resume`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(true)
			if err != nil {
				return err
			}
			s, err := train.Run(cmd.Context(), train.Options{
				Config: cfg, Out: out, Resume: resume, Console: os.Stderr,
				Terminal: cfg.Logging.Progress && progress.IsTerminal(os.Stderr),
			})
			if err != nil {
				return err
			}
			printSummary(s, out, cf.file)
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&out, "out", "results", "output directory (checkpoints/, logs/, metrics.jsonl, plots/)")
	c.Flags().BoolVar(&resume, "resume", false, "continue from the latest checkpoint in --out")
	return c
}

func printSummary(s *train.Summary, out, cfgFile string) {
	state := "finished"
	if s.Interrupted {
		state = "interrupted (checkpoint written)"
	}
	fmt.Printf("\nTraining %s: %d steps (%.3g epochs) in %s\n", state, s.Steps, s.EpochsDone, s.Elapsed.Round(1e9))
	if s.Steps > 0 {
		fmt.Printf("  final loss %.5g (JEPA %.5g)", s.FinalLoss, s.FinalJEPALoss)
	} else {
		fmt.Print("  no step taken")
	}
	if s.BestValLoss > 0 && !math.IsInf(s.BestValLoss, 0) {
		fmt.Printf(", best validation loss %.5g, RankMe %.1f, feature std %.4g", s.BestValLoss, s.RankMe, s.FeatureStd)
	} else {
		fmt.Print(", no validation yet")
	}
	fmt.Printf(", collapse alarms %d\n", s.CollapseAlarms)
	ck := s.Checkpoint
	if ck == "" {
		ck = filepath.Join(out, "checkpoints", "checkpoint_latest")
	}
	cfgArg := ""
	if cfgFile != "" {
		cfgArg = " --config " + cfgFile
	}
	fmt.Println("Next steps:")
	if s.Interrupted {
		fmt.Printf("  continue:  hjepa train%s --out %s --resume\n", cfgArg, out)
	}
	fmt.Printf("  evaluate:  hjepa eval --checkpoint %s --all\n", ck)
	fmt.Printf("  export:    hjepa export --checkpoint %s --out encoder.safetensors\n", ck)
	fmt.Printf("  curves:    %s/plots/*.png, TensorBoard: tensorboard --logdir %s/logs/tensorboard\n", out, out)
}
