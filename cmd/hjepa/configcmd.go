package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/config"
)

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show, validate or list configuration keys"}
	var show, validate configFlags
	showCmd := &cobra.Command{
		Use:   "show",
		Short: "Print the resolved configuration (defaults <- file <- HJEPA_* <- --set) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := show.load(false)
			if err != nil {
				return err
			}
			y, err := cfg.YAML()
			if err != nil {
				return err
			}
			fmt.Print(string(y))
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("the configuration above is not valid:\n%w", err)
			}
			return nil
		},
	}
	show.add(showCmd)
	validateCmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration and report every problem at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := validate.load(true)
			if err != nil {
				return err
			}
			enc, _ := cfg.Encoder()
			fmt.Printf("ok: %s, ViT D=%d depth %d heads %d patch %d on %dx%dx%d, digest %s\n",
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
	c.AddCommand(showCmd, validateCmd, keysCmd)
	return c
}
