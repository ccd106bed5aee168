package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/config"
)

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show, validate, migrate or list configuration keys"}
	var show, validate configFlags
	showCmd := &cobra.Command{
		Use:   "show",
		Short: "Print the resolved configuration (defaults <- file <- HJEPA_* <- --set) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, notes, err := show.loadOver(nil, false)
			printNotes(cmd.ErrOrStderr(), notes)
			if err != nil {
				return err
			}
			y, err := cfg.YAML()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), string(y))
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("the configuration above is not valid:\n%w", err)
			}
			return nil
		},
	}
	show.add(showCmd)
	validateCmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration and report every problem at once (and notes on keys of other projects' configurations)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, notes, err := validate.loadOver(nil, true)
			printNotes(cmd.ErrOrStderr(), notes)
			if err != nil {
				return err
			}
			enc, _ := cfg.Encoder()
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s, ViT D=%d depth %d heads %d patch %d on %dx%dx%d, digest %s\n",
				cfg.Model.EncoderType, enc.EmbedDim, enc.Depth, enc.NumHeads, enc.PatchSize,
				enc.ImageSize, enc.ImageSize, enc.Channels, cfg.Digest()[:12])
			return nil
		},
	}
	validate.add(validateCmd)
	keysCmd := &cobra.Command{
		Use:   "keys",
		Short: "List every configuration key (and its HJEPA_* variable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, k := range config.Keys() {
				fmt.Printf("%-40s %s\n", k, config.EnvName(k))
			}
			return nil
		},
	}
	migrateCmd := &cobra.Command{
		Use:   "migrate FILE",
		Short: "Print a PyTorch H-JEPA (or I-JEPA) configuration rewritten in this schema's key names",
		Long: `Migrate prints FILE with every key in this schema's names: renamed keys
(data.data_path, checkpoint.checkpoint_dir, logging.log_dir, ...) take ours,
keys with no meaning here (pin_memory, W&B, the NCCL backend, ...) are dropped
with a comment saying why, and the notes 'hjepa config validate' would print
become comments. The output validates without notes. Keys hjepa refuses
(model.rope.use_rope: true, ...) stop it with the reason, as they stop
validate.

  hjepa config migrate pytorch/configs/default.yaml > configs/mine.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := config.Migrate(args[0], nil)
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(out); err != nil {
				return err
			}
			cfg, notes, err := config.LoadWithNotes(config.LoadOptions{ConfigFile: args[0] + " (migrated)", ConfigYAML: out})
			if err != nil || len(notes) > 0 {
				// Migrate promises a file that loads without notes.
				return fmt.Errorf("bug: the migrated configuration does not load cleanly: %v %v", err, notes)
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("the migrated configuration above is not valid; edit those keys:\n%w", err)
			}
			return nil
		},
	}
	c.AddCommand(showCmd, validateCmd, keysCmd, migrateCmd)
	return c
}

// printNotes writes one "note:" line per note.
func printNotes(w io.Writer, notes []config.Note) {
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
