package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/data"
)

func dataCmd() *cobra.Command {
	c := &cobra.Command{Use: "data", Short: "Verify, download or shard datasets"}
	var maxPixels int
	verify := &cobra.Command{
		Use:   "verify PATH",
		Short: "Report a dataset's format, counts and classes, and every unreadable file",
		Long: `Report a dataset's format, counts and classes, and every unreadable file.

PATH is a dataset directory (IDX, CIFAR binary, ImageFolder), an IDX images
file, or WebDataset tar shards: a .tar file or a pattern such as
'shards/train-{000000..000127}.tar' (quote it), a glob or a comma-separated
list. For shards every member is parsed, every image decoded within the pixel
limit and every label checked against classes.txt; problems name the shard
and the member, and the sample count of each shard is listed.`,
		Args: cobra.ExactArgs(1),
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
	var shardSize string
	var perShard int
	var force bool
	shard := &cobra.Command{
		Use:   "shard SRC OUTPATTERN",
		Short: "Write an ImageFolder tree as WebDataset tar shards (data.dataset webdataset)",
		Long: `Write the ImageFolder at SRC (SRC/train when it exists, as training reads it)
as tar shards named by OUTPATTERN, one numeric range such as
'out/train-{000000..009999}.tar' (quote it), and out/classes.txt with the
class names. Sample i of the shards is ImageFolder image i with its label
(KEY.jpg|png holds the file's bytes, KEY.cls the label), so training from the
shards gives the same batches as training from SRC with the same seed.

A shard closes before it would pass --shard-size bytes or --samples-per-shard
samples (default: 1GiB). Shards are written to a temporary file and renamed;
existing shards are refused unless --force. The data.path to train with is
printed at the end.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opt data.ShardOptions
			if shardSize != "" {
				n, err := parseBytes(shardSize)
				if err != nil {
					return fmt.Errorf("--shard-size: %w", err)
				}
				opt.MaxBytes = n
			}
			if perShard < 0 {
				return fmt.Errorf("--samples-per-shard is %d; must be positive", perShard)
			}
			opt.MaxSamples, opt.Force = perShard, force
			res, err := data.WriteShards(args[0], args[1], opt)
			if err != nil {
				return err
			}
			total := 0
			for i, s := range res.Shards {
				fmt.Printf("%s: %d samples\n", s, res.Samples[i])
				total += res.Samples[i]
			}
			fmt.Printf("wrote %d samples of %s in %d shard(s); classes in %s\n", total, res.Source, len(res.Shards), res.Classes)
			if res.Stale != "" {
				fmt.Fprintf(os.Stderr, "warning: %s is left from an earlier run and is not part of these shards; remove it before using a glob\n", res.Stale)
			}
			fmt.Printf("train with: --set data.dataset=webdataset --set 'data.path=%s'\n", res.Pattern)
			return nil
		},
	}
	shard.Flags().StringVar(&shardSize, "shard-size", "", "largest shard in bytes (suffixes K, M, G: powers of 1024; default 1G unless --samples-per-shard is set)")
	shard.Flags().IntVar(&perShard, "samples-per-shard", 0, "most samples per shard (0: no bound)")
	shard.Flags().BoolVar(&force, "force", false, "overwrite existing shards")
	c.AddCommand(verify, download, shard)
	return c
}

// parseBytes reads a size such as 1073741824, 512M, 1G or 1GiB (K, M, G
// are powers of 1024).
func parseBytes(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "B"), "i")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive size (e.g. 1073741824, 512M, 1G)", s)
	}
	return n * mult, nil
}
