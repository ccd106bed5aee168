package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/data"
)

func dataCmd() *cobra.Command {
	c := &cobra.Command{Use: "data", Short: "Verify or download datasets"}
	var maxPixels int
	verify := &cobra.Command{
		Use:   "verify PATH",
		Short: "Report a dataset's format, counts and classes, and every unreadable file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := data.VerifyLimit(args[0], maxPixels)
			if err != nil {
				return err
			}
			fmt.Print(r.String())
			return r.Err()
		},
	}
	verify.Flags().IntVar(&maxPixels, "max-image-pixels", 0,
		fmt.Sprintf("list images larger than this many pixels as problems, as training would refuse them (data.max_image_pixels; 0: %d)", data.DefaultMaxImagePixels))
	var dir, baseURL string
	download := &cobra.Command{
		Use:       "download NAME",
		Short:     "Download mnist, fashion-mnist, cifar10 or cifar100 (SHA-256 checked, resumable)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"mnist", "fashion-mnist", "cifar10", "cifar100"},
		RunE: func(cmd *cobra.Command, args []string) error {
			last := map[string]int64{}
			err := data.Download(cmd.Context(), args[0], dir, data.DownloadOptions{
				BaseURL: baseURL,
				Progress: func(file string, done, total int64) {
					if done-last[file] >= 1<<22 || done == total {
						last[file] = done
						fmt.Fprintf(os.Stderr, "\r%s: %d/%d MiB", file, done>>20, total>>20)
						if done == total {
							fmt.Fprintln(os.Stderr)
						}
					}
				},
			})
			if err != nil {
				return err
			}
			fmt.Printf("%s is in %s\n", args[0], dir)
			return nil
		},
	}
	download.Flags().StringVar(&dir, "dir", "data", "directory to download into")
	download.Flags().StringVar(&baseURL, "base-url", "", "mirror to download from instead of the dataset's own site")
	c.AddCommand(verify, download)
	return c
}
