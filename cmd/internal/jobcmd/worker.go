package jobcmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/train/telemetry"
	"github.com/hjepa-go/hjepa/worker"
)

type workerFlags struct {
	cf                configFlags
	sec               securityFlags
	coordinator       string
	rank, localRank   int
	device            string
	threads           int
	listen, advertise string
	connectTimeout    time.Duration
	logLevel          string
	metricsListen     string
	progressBar       bool
}

// NewWorkerCommand is `hjepa worker` / hjepa-worker.
func NewWorkerCommand(use string) *cobra.Command {
	var f workerFlags
	c := &cobra.Command{
		Use:   use,
		Short: "Run one data-parallel worker of a distributed H-JEPA job (one per GPU)",
		Long: `A worker registers with the coordinator, receives its rank, the job's
configuration and its data shard, trains with its ring neighbours (gradients
averaged by a ring all-reduce before every AdamW and EMA step, like PyTorch DDP),
and rejoins after a peer is lost. The first SIGTERM/SIGINT asks the whole job for
a checkpoint and a clean stop; a second one exits at once.

Like torchrun's workers it also reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
and MASTER_PORT; flags win. Without --rank and RANK, a Kubernetes Indexed Job's
JOB_COMPLETION_INDEX is the rank.`,
		Example: `  hjepa-worker --coordinator 10.0.0.1:29500 --token-file results/ddp/job.token --device cuda:0
  RANK=1 LOCAL_RANK=1 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 HJEPA_JOB_TOKEN=... hjepa-worker`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd, &f)
		},
	}
	f.cf.add(c, "; optional: the job's comes from the coordinator, and this one must match it")
	f.sec.add(c)
	fl := c.Flags()
	fl.StringVar(&f.coordinator, "coordinator", "", "coordinator host:port (default: $MASTER_ADDR:$MASTER_PORT)")
	fl.IntVar(&f.rank, "rank", -1, "ask for this rank (default: $RANK, else $JOB_COMPLETION_INDEX, else any free rank)")
	sentinelDefault(fl, "rank")
	fl.IntVar(&f.localRank, "local-rank", -1, "index of this worker on its host: picks the GPU for --device auto (default: $LOCAL_RANK, else 0)")
	sentinelDefault(fl, "local-rank")
	fl.StringVar(&f.device, "device", "", "auto, cpu, cuda or cuda:K (default: the configuration's)")
	fl.IntVar(&f.threads, "threads", 0, "CPU threads (0: the configuration's)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "address of this worker's collective endpoint (0.0.0.0:PORT for peers on other hosts)")
	fl.StringVar(&f.advertise, "advertise", "", "address peers dial to reach this worker (default: the listener's)")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", time.Minute, "how long to wait for the coordinator to be reachable")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.BoolVar(&f.progressBar, "progress-bar", false, "as rank 0, draw the progress bar on stderr although it is not a terminal (hjepa launch)")
	_ = fl.MarkHidden("progress-bar")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", `serve Prometheus /metrics, /healthz and /readyz on this address (e.g. ":9401"; "": off)`)
	return c
}

func runWorker(cmd *cobra.Command, f *workerFlags) error {
	opts := worker.Options{Coordinator: f.coordinator, Rank: f.rank, LocalRank: f.localRank, Device: f.device,
		Threads: f.threads, Listen: f.listen, Advertise: f.advertise, ConnectTimeout: f.connectTimeout, Console: cmd.ErrOrStderr(),
		ProgressBar: f.progressBar}
	var err error
	if opts.Coordinator == "" {
		addr, port := os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT")
		if addr == "" || port == "" {
			return fmt.Errorf("no coordinator: pass --coordinator host:port, or set MASTER_ADDR and MASTER_PORT")
		}
		opts.Coordinator = addr + ":" + port
	}
	if opts.Rank < 0 {
		if opts.Rank, err = envInt("RANK", -1); err != nil {
			return err
		}
	}
	if opts.Rank < 0 { // a pod of a Kubernetes Indexed Job (deploy/k8s)
		if opts.Rank, err = envInt("JOB_COMPLETION_INDEX", -1); err != nil {
			return err
		}
	}
	if opts.LocalRank < 0 {
		if opts.LocalRank, err = envInt("LOCAL_RANK", 0); err != nil {
			return err
		}
	}
	if opts.WorldSize, err = envInt("WORLD_SIZE", 0); err != nil {
		return err
	}
	if opts.Security, err = f.sec.options(); err != nil {
		return err
	}
	if f.cf.given() {
		cfg, err := f.cf.load()
		if err != nil {
			return err
		}
		opts.Config = &cfg
	}
	log, err := newLogger(cmd.ErrOrStderr(), f.logLevel)
	if err != nil {
		return err
	}
	opts.Logger = log
	if f.metricsListen != "" {
		opts.Metrics = telemetry.NewWorker()
		ms, err := telemetry.Serve(f.metricsListen, opts.Metrics.Registry, opts.Metrics.Ready)
		if err != nil {
			return err
		}
		defer ms.Close()
		log.Info("serving metrics", zap.String("addr", ms.Addr()), zap.String("paths", "/metrics /healthz /readyz"))
	}

	// First signal: coordinated checkpoint and stop. Second: exit now. The
	// worker handles signals itself, so the command's context (cancelled by
	// the program's own signal handling) must not abort it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer cancel()
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for {
			select {
			case s := <-sigs:
				n++
				if n == 1 {
					log.Info("signal: asking the job for a checkpoint and a stop (send it again to quit now)", zap.String("signal", s.String()))
					close(stop)
				} else {
					log.Warn("second signal: quitting without a checkpoint", zap.String("signal", s.String()))
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	code, err := worker.Run(ctx, opts, stop)
	if code != 0 || err != nil {
		return &ExitError{Code: max(code, 1), Err: err}
	}
	return nil
}
