package jobcmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	"github.com/hjepa-go/hjepa/coordinator"
	"github.com/hjepa-go/hjepa/coordinator/launch"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/train/telemetry"
)

// ExitError carries a process exit code out of a command (the job's status).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// coordinatorFlags are hjepa-coordinator's flags; launch builds the same
// command line.
type coordinatorFlags struct {
	cf                configFlags
	sec               securityFlags
	worldSize         int
	listen, out       string
	addrFile          string
	resume            bool
	maxRestarts       int
	hbInterval        time.Duration
	hbTimeout         time.Duration
	rendezvousTimeout time.Duration
	maxConns          int
	preAuthTimeout    time.Duration
	evictFD           int
	collTimeout       time.Duration
	chunkKiB          int
	checksumEvery     int
	logLevel          string
	metricsListen     string
}

// NewCoordinatorCommand is `hjepa coordinator` / hjepa-coordinator.
func NewCoordinatorCommand(use string) *cobra.Command {
	var f coordinatorFlags
	c := &cobra.Command{
		Use:   use,
		Short: "Coordinate a distributed H-JEPA job: rendezvous, ranks, heartbeats, restarts",
		Long: `The coordinator hands out ranks, ring neighbours and data shards to --world-size
workers, watches their heartbeats, and when one is lost aborts the generation
and restarts all workers from the last checkpoint (at most --max-restarts times).
It exits 0 when the job completes (or stops with a checkpoint after SIGTERM).

Without --token/--token-file/$HJEPA_JOB_TOKEN it makes a job token and writes it
to <out>/job.token (mode 0600): start the workers with --token-file pointing there.`,
		Example: `  hjepa-coordinator --world-size 4 --listen 0.0.0.0:29500 --config configs/fmnist-tiny.yaml --out results/ddp
  hjepa-worker --coordinator host:29500 --token-file results/ddp/job.token   # on each GPU`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCoordinator(cmd, &f)
		},
	}
	f.cf.add(c, "")
	f.sec.add(c)
	fl := c.Flags()
	fl.IntVar(&f.worldSize, "world-size", 0, "number of workers (default: distributed.world_size)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:29500", "address to serve on (0.0.0.0:PORT to accept other hosts)")
	fl.StringVar(&f.out, "out", "results", "job output directory: checkpoints/, logs/, metrics.jsonl (shared with the workers)")
	fl.StringVar(&f.addrFile, "addr-file", "", "write the address actually listened on to this file (for --listen :0)")
	fl.BoolVar(&f.resume, "resume", false, "continue from the latest checkpoint in --out")
	fl.IntVar(&f.maxRestarts, "max-restarts", -1, "restarts allowed after a lost worker (default: distributed.max_restarts)")
	sentinelDefault(fl, "max-restarts")
	fl.DurationVar(&f.hbInterval, "heartbeat-interval", time.Second, "how often workers beat")
	fl.DurationVar(&f.hbTimeout, "heartbeat-timeout", 10*time.Second, "a worker silent this long is lost (catches a SIGSTOPped or hung process)")
	fl.DurationVar(&f.rendezvousTimeout, "rendezvous-timeout", coordinator.DefaultRendezvousTimeout,
		"fail the job, naming the missing ranks, when the workers have not all registered within this (0: wait for ever)")
	fl.IntVar(&f.maxConns, "max-connections", 0, fmt.Sprintf("most simultaneous connections; a new one closes the oldest unauthenticated one (0: max(%d, 2 x world size))", rpcsec.DefaultMaxConns))
	fl.DurationVar(&f.preAuthTimeout, "preauth-timeout", rpcsec.DefaultPreAuthTimeout, "close a connection that has sent no RPC with the job token within this")
	fl.IntVar(&f.evictFD, "evict-fd", -1, "write the workers to kill (declared lost while perhaps alive) to this file descriptor, one JSON line each (hjepa launch)")
	_ = fl.MarkHidden("evict-fd")
	fl.DurationVar(&f.collTimeout, "collective-timeout", 5*time.Minute, "deadline of every collective (covers rank 0's validation and checkpoint writes)")
	fl.IntVar(&f.chunkKiB, "chunk-kib", 1024, "ring all-reduce chunk size")
	fl.IntVar(&f.checksumEvery, "checksum-every", 100, "compare parameter checksums across ranks every K steps (0: never)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", `serve Prometheus /metrics, /healthz and /readyz on this address (e.g. ":9400"; "": off)`)
	return c
}

func runCoordinator(cmd *cobra.Command, f *coordinatorFlags) error {
	var extra []string
	if f.worldSize > 0 {
		extra = append(extra, fmt.Sprintf("distributed.world_size=%d", f.worldSize))
	}
	if f.maxRestarts >= 0 {
		extra = append(extra, fmt.Sprintf("distributed.max_restarts=%d", f.maxRestarts))
	}
	cfg, err := f.cf.load(append(extra, "distributed.enabled=true")...)
	if err != nil {
		return err
	}
	if cfg.Distributed.WorldSize < 1 {
		return fmt.Errorf("--world-size must be at least 1")
	}
	sec, err := f.sec.options()
	if err != nil {
		return err
	}
	log, err := newLogger(cmd.ErrOrStderr(), f.logLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if sec.Token == "" {
		tok, err := rpcsec.NewToken()
		if err != nil {
			return err
		}
		path := filepath.Join(f.out, "job.token")
		if err := rpcsec.WriteToken(path, tok); err != nil {
			return err
		}
		sec.Token = tok
		log.Info("job token written; start workers with --token-file "+path, zap.String("file", path))
	}
	yml, err := cfg.YAML()
	if err != nil {
		return err
	}
	d := cfg.Distributed
	rdzv := f.rendezvousTimeout
	if rdzv == 0 {
		rdzv = -1 // the flag's 0 waits for ever; the Config's is the default
	}
	var metrics *telemetry.Coordinator
	if f.metricsListen != "" {
		metrics = telemetry.NewCoordinator(d.WorldSize)
		ms, err := telemetry.Serve(f.metricsListen, metrics.Registry, metrics.Ready)
		if err != nil {
			return err
		}
		defer ms.Close()
		log.Info("serving metrics", zap.String("addr", ms.Addr()), zap.String("paths", "/metrics /healthz /readyz"))
	}
	var onEvict func(coordinator.Evict)
	if f.evictFD >= 0 {
		onEvict = evictionWriter(os.NewFile(uintptr(f.evictFD), "evict-fd"), log)
	}
	srv, err := coordinator.New(coordinator.Config{
		WorldSize: d.WorldSize, Listen: f.listen, ConfigYAML: yml, ConfigDigest: cfg.Digest(),
		OutDir: f.out, CheckpointDir: cfg.Checkpoint.Dir, Resume: f.resume, MaxRestarts: d.MaxRestarts,
		HeartbeatInterval: f.hbInterval, HeartbeatTimeout: f.hbTimeout, RendezvousTimeout: rdzv,
		Collective: &hjepav1.CollectiveOptions{
			ChunkBytes: int64(f.chunkKiB) << 10, FirstBucketBytes: int64(d.FirstBucketMiB * (1 << 20)),
			BucketBytes: int64(d.BucketMiB * (1 << 20)), TimeoutMs: f.collTimeout.Milliseconds(),
			ChecksumEvery: int32(f.checksumEvery),
		},
		Shard: func(rank int) *hjepav1.ShardPlan {
			return &hjepav1.ShardPlan{NumReplicas: int32(d.WorldSize), Rank: int32(rank), Seed: cfg.Seed,
				BatchSize: int32(cfg.Data.BatchSize), GlobalBatchSize: int32(cfg.Data.BatchSize * d.WorldSize)}
		},
		Security: sec, Conns: rpcsec.Limits{MaxConns: f.maxConns, PreAuthTimeout: f.preAuthTimeout},
		OnEvict: onEvict, Logger: log, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	if f.addrFile != "" {
		tmp := f.addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(srv.Addr()+"\n"), 0o644); err != nil {
			return fmt.Errorf("--addr-file: %w", err)
		}
		if err := os.Rename(tmp, f.addrFile); err != nil {
			return fmt.Errorf("--addr-file: %w", err)
		}
	}
	log.Info("coordinator listening", zap.String("addr", srv.Addr()), zap.Int("world_size", d.WorldSize),
		zap.String("config_digest", cfg.Digest()[:12]), zap.String("out", f.out))
	code, err := srv.Run(cmd.Context())
	if code != 0 || err != nil {
		return &ExitError{Code: max(code, 1), Err: err}
	}
	return nil
}

// evictionWriter writes each eviction to f as a launch.Eviction line (hjepa
// launch reads the pipe continuously; a line is one atomic write).
func evictionWriter(f *os.File, log *zap.Logger) func(coordinator.Evict) {
	return func(e coordinator.Evict) {
		line, err := json.Marshal(launch.Eviction{PID: e.PID, Host: e.Host, Worker: e.Worker, Rank: e.Rank, Reason: e.Reason})
		if err == nil {
			_, err = f.Write(append(line, '\n'))
		}
		if err != nil {
			log.Warn("eviction not reported to the launcher", zap.String("worker", e.Worker), zap.Error(err))
		}
	}
}
