package main

import (
	"github.com/hjepa-go/hjepa/device"
	"github.com/spf13/cobra"
)

// devicesCmd lists the GPUs `--device cuda:K` can name.
func devicesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List the NVIDIA GPUs this machine offers (name, UUID, memory, compute capability)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return device.List(cmd.OutOrStdout())
		},
	}
}
