// Command hjepa is the single-binary front of hjepa-go: train, evaluate,
// embed and export H-JEPA models, inspect configurations and datasets.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/cmd/internal/jobcmd"
	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/eval"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "hjepa",
		Short:         "Pretrain Vision Transformers with H-JEPA (hierarchical I-JEPA)",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       jobcmd.Version(),
	}
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) of the command to this file")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return pprof.StartCPUProfile(f)
	}
	defer pprof.StopCPUProfile()
	root.AddCommand(trainCmd(), evalCmd(), embedCmd(), exportCmd(), configCmd(), dataCmd(), devicesCmd(), deployCmd(),
		jobcmd.NewLaunchCommand(), jobcmd.NewCoordinatorCommand("coordinator"), jobcmd.NewWorkerCommand("worker"))
	if code := jobcmd.Exit("hjepa", root.ExecuteContext(ctx)); code != 0 {
		pprof.StopCPUProfile()
		stop()
		os.Exit(code)
	}
}

// configFlags are the flags every command that loads a configuration takes.
type configFlags struct {
	file    string
	sets    []string
	device  string
	threads int
}

func (f *configFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.file, "config", "", "YAML configuration file (configs/*.yaml)")
	c.Flags().StringArrayVar(&f.sets, "set", nil, "override a key: --set training.lr=1e-4 (repeatable)")
	c.Flags().StringVar(&f.device, "device", "", "auto, cpu, cuda or cuda:K (overrides device)")
	c.Flags().IntVar(&f.threads, "threads", 0, "CPU worker threads (overrides threads; 0: all cores)")
}

// load reads and validates the configuration: file, HJEPA_* environment,
// --set overrides, then the --device/--threads flags. Notes on keys of
// other projects' configurations (PyTorch H-JEPA, I-JEPA) go to stderr.
func (f *configFlags) load(validate bool) (config.Config, error) {
	cfg, notes, err := f.loadOver(nil, validate)
	printNotes(os.Stderr, notes)
	return cfg, err
}

// loadOver is load with base (a YAML document) in place of the --config
// file when there is none, returning the notes instead of printing them.
func (f *configFlags) loadOver(base []byte, validate bool) (config.Config, []config.Note, error) {
	sets := append([]string(nil), f.sets...)
	if f.device != "" {
		sets = append(sets, "device="+f.device)
	}
	if f.threads != 0 {
		sets = append(sets, fmt.Sprintf("threads=%d", f.threads))
	}
	opts := config.LoadOptions{ConfigFile: f.file, Sets: sets, Env: true}
	if f.file == "" && base != nil {
		opts.ConfigYAML = base
	}
	cfg, notes, err := config.LoadWithNotes(opts)
	if err != nil {
		return cfg, nil, err
	}
	if validate {
		if err := cfg.Validate(); err != nil {
			var ve *config.ValidationError
			if errors.As(err, &ve) && f.file != "" {
				return cfg, notes, fmt.Errorf("%s: %w", f.file, err)
			}
			return cfg, notes, err
		}
	}
	return cfg, notes, nil
}

// loadForCheckpoint is the configuration of a command that reads checkpoint
// ck (eval, embed, export): the one saved in the checkpoint, with the data,
// evaluation and device keys of --config, --set and HJEPA_* (see
// eval.CheckpointConfig). --checkpoint init has no saved configuration: it
// takes --config's.
func (f *configFlags) loadForCheckpoint(ck string, log io.Writer) (config.Config, error) {
	if ck == "" || ck == "init" {
		if f.file == "" {
			return config.Config{}, errors.New("--checkpoint init evaluates the initialisation of a configuration's model: give --config")
		}
		return f.load(true)
	}
	saved, err := eval.SavedConfig(ck)
	if err != nil {
		return config.Config{}, err
	}
	var file *config.Config
	var base []byte
	if f.file != "" {
		fileOnly, err := config.Load(config.LoadOptions{ConfigFile: f.file})
		if err != nil {
			return config.Config{}, err
		}
		file = &fileOnly
	} else if base, err = config.NestedYAML(saved.Flat()); err != nil {
		return config.Config{}, err
	}
	user, cfgNotes, err := f.loadOver(base, false)
	printNotes(log, cfgNotes)
	if err != nil {
		return config.Config{}, err
	}
	cfg, notes, err := eval.CheckpointConfig(ck, saved, file, user)
	for _, n := range notes {
		fmt.Fprintln(log, "note:", n)
	}
	return cfg, err
}
