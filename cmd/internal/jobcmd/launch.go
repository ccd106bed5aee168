package jobcmd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	"github.com/hjepa-go/hjepa/coordinator/launch"
	"github.com/hjepa-go/hjepa/train/progress"
)

// NewLaunchCommand is `hjepa launch`: the torchrun of this project.
func NewLaunchCommand() *cobra.Command {
	var (
		cf          configFlags
		nproc       int
		out         string
		resume      bool
		device      string
		threads     int
		maxRestarts int
		port        int
		metricsPort int
		metricsHost string
		extra       []string
	)
	c := &cobra.Command{
		Use:   "launch",
		Short: "Train on this host with N data-parallel worker processes (a coordinator and N workers)",
		Long: `launch starts one coordinator and --nproc workers on this host, from this same
binary, the way torchrun does: worker i gets rank i and local rank i (GPU i with
--device auto), gradients are averaged by a ring all-reduce over 127.0.0.1, and
rank 0 writes checkpoints and <out>/metrics.jsonl (the loss averaged over ranks).
data.batch_size is per worker. A worker that dies, or that the coordinator
declares lost because it went silent (a frozen or hung process, which launch
kills), is started again and the job resumes from the last checkpoint (at most
distributed.max_restarts times).
SIGINT/SIGTERM go to every process: the job writes a checkpoint and stops; resume
it with --resume. Every line of output is prefixed with its process.`,
		Example: `  hjepa launch --nproc 2 --config configs/fmnist-tiny.yaml --out results/ddp
  hjepa launch --nproc 2 --config configs/fmnist-tiny.yaml --out results/ddp --resume`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nproc < 1 {
				return fmt.Errorf("--nproc %d: want at least 1 worker", nproc)
			}
			// Check the configuration here, so a typo fails once and clearly
			// rather than in N+1 processes.
			cfg, err := cf.load()
			if err != nil {
				return err
			}
			restarts := cfg.Distributed.MaxRestarts
			if maxRestarts >= 0 {
				restarts = maxRestarts
			}
			// launch's own log shares the children's output (lines above
			// rank 0's progress bar).
			output := launch.NewOutput(cmd.ErrOrStderr())
			log, err := newLogger(output, "info")
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("launch: cannot find this program's path: %w", err)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			tok, err := rpcsec.NewToken()
			if err != nil {
				return err
			}
			if port == 0 {
				if port, err = freePort(); err != nil {
					return err
				}
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			if threads == 0 {
				threads = max(1, runtime.NumCPU()/nproc)
			}
			env := []string{rpcsec.TokenEnv + "=" + tok}
			coordArgs := []string{"coordinator", "--world-size", strconv.Itoa(nproc), "--listen", addr, "--out", out,
				"--evict-fd", strconv.Itoa(launch.EvictFD)}
			if cf.file != "" {
				coordArgs = append(coordArgs, "--config", cf.file)
			}
			for _, s := range cf.sets {
				coordArgs = append(coordArgs, "--set", s)
			}
			if resume {
				coordArgs = append(coordArgs, "--resume")
			}
			if maxRestarts >= 0 {
				coordArgs = append(coordArgs, "--max-restarts", strconv.Itoa(maxRestarts))
			}
			if metricsPort > 0 {
				coordArgs = append(coordArgs, "--metrics-listen", net.JoinHostPort(metricsHost, strconv.Itoa(metricsPort)))
			}
			coordArgs = append(coordArgs, extra...)
			spec := launch.Spec{
				Coordinator: launch.Proc{Name: "coordinator", Path: exe, Args: coordArgs, Env: env},
				Output:      output,
				// The coordinator enforces the job's restart budget; the
				// launcher restarts a dead worker process as often.
				MaxRestarts: restarts,
				// A worker the coordinator declares lost for silence (frozen,
				// hung) is killed and restarted like one that died.
				Evictions: true,
				Logger:    log.Named("launch"),
			}
			for i := 0; i < nproc; i++ {
				args := []string{"worker", "--coordinator", addr, "--rank", strconv.Itoa(i), "--local-rank", strconv.Itoa(i),
					"--threads", strconv.Itoa(threads)}
				if device != "" {
					args = append(args, "--device", device)
				}
				if metricsPort > 0 {
					args = append(args, "--metrics-listen", net.JoinHostPort(metricsHost, strconv.Itoa(metricsPort+1+i)))
				}
				// One progress display: rank 0's bar, drawn by launch below
				// every process's log lines (rank 0 logs the steps; the
				// others say nothing per step).
				bar := i == 0 && cfg.Logging.Progress && progress.IsTerminal(os.Stderr) && cmd.ErrOrStderr() == os.Stderr
				if bar {
					args = append(args, "--progress-bar")
				}
				spec.Workers = append(spec.Workers, launch.Proc{Name: fmt.Sprintf("rank %d", i), Path: exe, Args: args, Env: env, Bar: bar})
			}
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			// Signals are forwarded to the children (a coordinated stop), so
			// the command's own cancellation must not kill them first.
			ctx := context.WithoutCancel(cmd.Context())
			start := time.Now()
			code, err := launch.Run(ctx, spec, sigs)
			if err != nil {
				return &ExitError{Code: max(code, 1), Err: err}
			}
			if code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("the job failed (coordinator exit status %d); see the [coordinator] lines above", code)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\nJob finished in %s: %d workers; metrics in %s, checkpoint %s\n",
				time.Since(start).Round(time.Second), nproc, filepath.Join(out, "metrics.jsonl"),
				filepath.Join(out, "checkpoints", "checkpoint_latest"))
			return nil
		},
	}
	cf.add(c, "")
	fl := c.Flags()
	fl.IntVar(&nproc, "nproc", 2, "number of worker processes (one per GPU)")
	fl.StringVar(&out, "out", "results", "output directory (checkpoints/, logs/, metrics.jsonl, plots/)")
	fl.BoolVar(&resume, "resume", false, "continue from the latest checkpoint in --out")
	fl.StringVar(&device, "device", "", "device of every worker: auto (GPU = local rank), cpu, cuda")
	fl.IntVar(&threads, "threads", 0, "CPU threads per worker (0: cores / nproc)")
	fl.IntVar(&maxRestarts, "max-restarts", -1, "restarts after a lost worker (default: distributed.max_restarts)")
	sentinelDefault(fl, "max-restarts")
	fl.IntVar(&port, "port", 0, "coordinator port on 127.0.0.1 (0: a free one)")
	fl.IntVar(&metricsPort, "metrics-port", 0, "serve Prometheus /metrics, /healthz, /readyz: the coordinator on this port, rank r on port+1+r (0: off)")
	fl.StringVar(&metricsHost, "metrics-host", "127.0.0.1", "address the --metrics-port servers listen on (0.0.0.0: every interface)")
	fl.StringArrayVar(&extra, "coordinator-flag", nil, "extra flag for the coordinator, e.g. --coordinator-flag=--checksum-every=10 (repeatable)")
	return c
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("launch: no free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
