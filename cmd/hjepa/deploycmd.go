package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/deploy"
)

func deployCmd() *cobra.Command {
	c := &cobra.Command{Use: "deploy", Short: "Write deployment files"}
	var gpus int
	compose := &cobra.Command{
		Use:   "compose",
		Short: "Print the compose file of a job on one host: a coordinator and one worker per GPU",
		Long: `Prints a compose file (docker-compose / docker compose) for one host with
--gpus GPUs: a coordinator with --world-size equal to the GPU count and one
worker per GPU, each given its own GPU by device id. deploy/compose.gpu.yaml
is the output for --gpus 2.

  hjepa deploy compose --gpus 8 > compose.gpu.yaml
  HJEPA_JOB_TOKEN=$(openssl rand -hex 16) docker-compose -f compose.gpu.yaml up`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			out, err := deploy.ComposeGPU(gpus)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		},
	}
	compose.Flags().IntVar(&gpus, "gpus", 0, "number of GPUs on the host (one worker each)")
	_ = compose.MarkFlagRequired("gpus")
	c.AddCommand(compose)
	return c
}
