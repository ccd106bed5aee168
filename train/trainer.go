package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/device"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/optim"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train/checkpoint"
	"github.com/hjepa-go/hjepa/train/progress"
	"github.com/hjepa-go/hjepa/train/telemetry"
	"github.com/hjepa-go/hjepa/train/tfevents"
)

// GradSync averages gradients across data-parallel replicas. The
// single-process trainer uses LocalSync; the distributed worker plugs in the
// ring all-reduce.
type GradSync interface {
	// Rank and WorldSize place this replica.
	Rank() int
	WorldSize() int
	// AllReduceMean replaces grads with their mean over replicas.
	AllReduceMean(ctx context.Context, step int64, grads *tensor.Tensor) error
	// ReduceMean replaces each value with its mean over replicas (losses
	// for logging, the stop vote).
	ReduceMean(ctx context.Context, step int64, v []float64) error
	// AllGather returns every replica's local (the same length on every
	// replica), indexed by rank: VICReg's samples of the global batch.
	AllGather(ctx context.Context, step int64, local []float32) ([][]float32, error)
	// Broadcast overwrites t with rank 0's values (DDP's initial parameter
	// broadcast).
	Broadcast(ctx context.Context, t *tensor.Tensor) error
	// AfterStep runs after each optimizer and EMA step: a replica compares
	// checksums of the parameters with the others every few steps and fails
	// on a mismatch.
	AfterStep(ctx context.Context, step int64, params, target *tensor.Tensor) error
}

// OverlappingSync is a GradSync that reduces gradient buckets while backward
// still runs (PyTorch DDP's overlap). The trainer calls BeginBackward before
// the backward whose gradients the next AllReduceMean averages; when it
// returns true, GradsReady(upTo) follows as grads[:upTo] become final.
type OverlappingSync interface {
	GradSync
	BeginBackward(ctx context.Context, step int64, grads *tensor.Tensor) bool
	GradsReady(upTo int)
}

// LocalSync is the GradSync of a single process: nothing to exchange.
type LocalSync struct{}

func (LocalSync) Rank() int      { return 0 }
func (LocalSync) WorldSize() int { return 1 }
func (LocalSync) AllReduceMean(context.Context, int64, *tensor.Tensor) error {
	return nil
}
func (LocalSync) ReduceMean(context.Context, int64, []float64) error { return nil }
func (LocalSync) AllGather(_ context.Context, _ int64, local []float32) ([][]float32, error) {
	return [][]float32{local}, nil
}
func (LocalSync) Broadcast(context.Context, *tensor.Tensor) error { return nil }
func (LocalSync) AfterStep(context.Context, int64, *tensor.Tensor, *tensor.Tensor) error {
	return nil
}

// Options are what `hjepa train` (or a worker) hands the trainer.
type Options struct {
	Config config.Config
	// Out is the output directory (checkpoints/, logs/, metrics.jsonl, plots/).
	Out string
	// Resume continues from the latest checkpoint under Out.
	Resume bool
	// Console receives the human-readable log (stderr when nil).
	Console io.Writer
	// Terminal says whether to draw a progress bar on Console (rank 0
	// only); the log then goes above the bar.
	Terminal bool
	// Sync exchanges gradients (LocalSync when nil).
	Sync GradSync
	// Stop, when closed, asks for a checkpoint and a clean stop at the next
	// step boundary; with several replicas they vote each step, so all stop
	// after the same step. With several replicas a cancelled ctx aborts
	// without writing a checkpoint (a peer was lost: the replicas may be at
	// different steps); a single process treats it as Stop.
	Stop <-chan struct{}
	// ResumeFrom resumes from this checkpoint directory instead of the latest
	// under Out (the coordinator picks it once for every rank); it implies
	// Resume.
	ResumeFrom string
	// OnStep, when set, is called after every optimizer step with what this
	// replica saw of it (a worker reports it on its heartbeat and /metrics).
	OnStep func(telemetry.Step)
	// Backend overrides the device chosen from Config.Device.
	Backend tensor.Backend
	// Logger overrides the logger built from Config.Logging.
	Logger *zap.Logger
}

// Summary is what a finished (or interrupted) run reports.
type Summary struct {
	Steps          int64
	Epochs         int     // the epoch in progress (0-based) when the run ended
	EpochsDone     float64 // steps / steps per epoch
	FinalLoss      float64
	FinalJEPALoss  float64
	BestValLoss    float64
	RankMe         float64
	FeatureStd     float64
	CollapseAlarms int
	Interrupted    bool
	Checkpoint     string
	Elapsed        time.Duration
}

// State is state.json of a checkpoint: everything besides the tensors that
// an exact resume needs, and what a reader wants to know about the run.
type State struct {
	Format         int                `json:"format"`
	Step           int64              `json:"step"` // optimizer steps completed
	Epoch          int                `json:"epoch"`
	Loader         data.LoaderState   `json:"loader"`
	OptimizerSteps int                `json:"optimizer_steps"`
	BestValLoss    *float64           `json:"best_val_loss,omitempty"`
	Seed           int64              `json:"seed"`
	LR             float64            `json:"lr"`
	WD             float64            `json:"wd"`
	EMAMomentum    float64            `json:"ema_momentum"`
	ConfigDigest   string             `json:"config_digest"`
	Config         json.RawMessage    `json:"config"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	// Collapse is the collapse monitor's history (initial and peak values).
	Collapse  *CollapseMonitor  `json:"collapse_monitor,omitempty"`
	WorldSize int               `json:"world_size"`
	Versions  map[string]string `json:"versions"`
	Time      string            `json:"time"`
}

const stateFormat = 1

// trainer is one run: what it was given, and its parts grouped by job.
type trainer struct {
	cfg      config.Config
	opts     Options
	b        tensor.Backend
	log      *zap.Logger
	closeLog func()
	sync     GradSync
	// closeBackend releases a backend the trainer opened itself (a GPU's
	// memory and context); nil when the caller passed one in Options.
	closeBackend func()

	stepParts
	feed
	sinks
	position
	watch
}

// stepParts are what a training step computes with.
type stepParts struct {
	model   *jepa.Model
	masker  *jepa.MultiBlockMasker
	vmasker *jepa.MultiBlockMasker // validation masks, a stream of their own
	loss    jepa.LossConfig
	opt     *optim.AdamW
	sched   optim.Schedules
}

// feed is the data side: splits, loaders and the device staging of batches.
type feed struct {
	train, val    data.Dataset
	loader        *data.Loader
	valLoader     *data.Loader
	img, img2     tensor.Workspace
	viewHost      []float32 // staging for uploadViews
	stepsPerEpoch int
	accum         int
}

// sinks are where the run writes: checkpoints, TensorBoard, metrics.jsonl,
// the progress bar (rank 0 only, except checkpoints' reads).
type sinks struct {
	ckpt    *checkpoint.Manager
	tb      *tfevents.Writer
	metrics *os.File
	bar     *progress.Bar
}

// position is where the run stands: saved in checkpoints, restored on
// resume.
type position struct {
	step  int64
	epoch int
	best  float64
	// epochEnded defers the epoch-end work to the end of the step;
	// stepStart is the loader position when the current step began.
	epochEnded     bool
	validatedAt    int64 // step of the last validation (-1: none)
	stepStart      data.LoaderState
	stepStartEpoch int
}

// watch is what the run measures about itself.
type watch struct {
	monitor   CollapseMonitor
	termNorms *[2]float64 // JEPA and VICReg gradient norms of this step, when measured
	lastStats jepa.StepStats
	summary   Summary
}

// Run trains as the configuration says: the seven phases of DESIGN.md
// section 5. A cancelled ctx (SIGINT/SIGTERM) writes a checkpoint and
// returns a Summary with Interrupted set and a nil error.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	start := time.Now()
	// The parameters, moments and activation buffers are most of the heap
	// and live for the whole run; Go's default GC target (GOGC 100: twice
	// the live heap) would let garbage double the resident memory. A
	// quarter keeps the peak near the live bytes; collections stay rare (a
	// step allocates little) and cheap (float buffers have no pointers to
	// scan). A GOGC set in the environment wins.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(trainGCPercent))
	}
	t, err := newTrainer(opts)
	if err != nil {
		return nil, err
	}
	defer t.close()
	s, err := t.loop(ctx)
	// A failed device (out of memory, a driver error) is the cause of
	// whatever the loop returned after it (a NaN loss, a failed collective):
	// its kernels did nothing since. Report the failure itself.
	if derr := t.deviceErr(); derr != nil {
		t.log.Error("device failed", zap.Int64("step", t.step), zap.Int("batch_size", t.cfg.Data.BatchSize), zap.Error(derr))
		return nil, derr
	}
	if s != nil {
		s.Elapsed = time.Since(start)
	}
	return s, err
}

// trainGCPercent is the GC target during training (see Run).
const trainGCPercent = 25

// deviceErr is the backend's device failure (device.Err) with the step and
// the batch size, nil while the device is healthy.
func (t *trainer) deviceErr() error {
	err := device.Err(t.b)
	if err == nil {
		return nil
	}
	return fmt.Errorf("step %d (data.batch_size %d): %w", t.step, t.cfg.Data.BatchSize, err)
}

// newTrainer runs phases 1-4: init, data, model, setup (and resume).
func newTrainer(opts Options) (*trainer, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Out == "" {
		opts.Out = "results"
	}
	if opts.Console == nil {
		opts.Console = os.Stderr
	}
	if opts.Terminal {
		// The bar and the log share the terminal: log lines go above the bar.
		opts.Console = progress.NewConsole(opts.Console)
	}
	t := &trainer{cfg: cfg, opts: opts, sync: opts.Sync, closeLog: func() {}, position: position{best: math.Inf(1), validatedAt: -1}}
	if t.sync == nil {
		t.sync = LocalSync{}
	}
	rank := t.sync.Rank()

	// 1. Init: output directories, logging, device.
	logDir := cfg.Logging.Dir
	if logDir == "" {
		logDir = filepath.Join(opts.Out, "logs")
	}
	for _, d := range []string{opts.Out, logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create output directory %s: %w (set --out to a writable directory)", d, err)
		}
	}
	if opts.Logger != nil {
		t.log = opts.Logger
	} else {
		lg, closeFn, err := newRankLogger(logDir, cfg.Logging.Level, opts.Console, rank)
		if err != nil {
			return nil, err
		}
		t.log, t.closeLog = lg, closeFn
	}
	t.b = opts.Backend
	if t.b == nil {
		b, fallback, err := device.Open(cfg)
		if err != nil {
			t.closeLog()
			return nil, err
		}
		if fallback != "" {
			t.log.Info(fallback)
		}
		t.b = b
		t.closeBackend = func() { device.Close(b) }
	}
	t.log.Info("device", zap.String("backend", t.b.Name()), zap.Int("rank", rank), zap.Int("world_size", t.sync.WorldSize()))

	// Phases 2-4 and the sinks; on an error close what was opened.
	for _, phase := range []func() error{t.openData, t.buildModel, t.setup, func() error { return t.openSinksAndBar(logDir) }} {
		if err := phase(); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

// openData is phase 2: the training and validation splits, their
// transforms, samplers and loaders, and the schedules (which need the
// number of steps per epoch).
func (t *trainer) openData() error {
	cfg, rank := t.cfg, t.sync.Rank()
	var err error
	if t.train, err = data.Open(cfg.Data, "train", cfg.Seed); err != nil {
		return fmt.Errorf("training data: %w; run 'hjepa data verify %s' to list every problem, then fix or re-download the files (or set data.path)", err, cfg.Data.Path)
	}
	if t.val, err = data.Open(cfg.Data, "val", cfg.Seed); err != nil {
		t.log.Warn("no validation split; validation loss and collapse metrics use training images", zap.Error(err))
		t.val = t.train
	}
	if _, _, err := t.train.Get(0); err != nil {
		return fmt.Errorf("training data %s: first image unreadable: %w (run 'hjepa data verify %s')", cfg.Data.Path, err, cfg.Data.Path)
	}
	tf, err := data.TrainTransform(cfg.Data)
	if err != nil {
		return fmt.Errorf("data.augmentation: %w", err)
	}
	vtf, err := data.EvalTransform(cfg.Data)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	sampler, err := data.NewDistributedSampler(t.train.Len(), t.sync.WorldSize(), rank, true, cfg.Seed, false)
	if err != nil {
		return err
	}
	lo := data.LoaderOptions{BatchSize: cfg.Data.BatchSize, NumWorkers: cfg.Data.NumWorkers, Prefetch: cfg.Data.Prefetch, DropLast: true, Seed: cfg.Seed}
	if t.loader, err = data.NewLoader(t.train, tf, sampler, lo); err != nil {
		return fmt.Errorf("data: %w", err) // the loader's errors name the key (data.batch_size, data.shard_shuffle)
	}
	vs, err := data.NewDistributedSampler(t.val.Len(), 1, 0, false, cfg.Seed, false)
	if err != nil {
		return err
	}
	vlo := lo
	vlo.DropLast = false
	if t.valLoader, err = data.NewLoader(t.val, vtf, vs, vlo); err != nil {
		return fmt.Errorf("validation data: %w", err)
	}
	t.accum = max(1, cfg.Training.AccumulationSteps)
	t.stepsPerEpoch = max(1, t.loader.BatchesPerEpoch()/t.accum)
	total, warmup := cfg.Training.Steps(t.stepsPerEpoch)
	t.sched = optim.Schedules{Total: total, Warmup: warmup, StartLR: cfg.Training.StartLR, LR: cfg.Training.LR,
		FinalLR: cfg.Training.MinLR, WD: cfg.Training.WeightDecay, FinalWD: cfg.Training.WeightDecayEnd,
		EMAStart: cfg.Model.EMA.Momentum, EMAEnd: cfg.Model.EMA.MomentumEnd, Constant: cfg.Training.LRSchedule == "constant"}
	if err := t.sched.Validate(); err != nil {
		return err
	}
	t.log.Info("data", zap.String("train", t.train.Info().String()), zap.String("val", t.val.Info().String()),
		zap.Int("batch_size", cfg.Data.BatchSize), zap.Int("steps_per_epoch", t.stepsPerEpoch),
		zap.Int("total_steps", total), zap.Int("warmup_steps", warmup))
	return nil
}

// buildModel is phase 3: the model's shapes, the memory preflight, the
// parameters initialised from the seed.
func (t *trainer) buildModel() error {
	cfg := t.cfg
	mc, err := jepa.NewModelConfig(cfg)
	if err != nil {
		return err
	}
	if err := t.preflight(mc); err != nil {
		return err
	}
	if t.model, err = jepa.NewModel(t.b, mc); err != nil {
		return err
	}
	t.model.Init(t.b, tensor.NewRNG(uint64(cfg.Seed)))
	t.log.Info("model", zap.String("summary", t.model.String()))
	return nil
}

// setup is phase 4: masks, loss, optimizer, collapse monitor, checkpoints
// (resuming from one when asked).
func (t *trainer) setup() error {
	cfg, opts, rank := t.cfg, t.opts, t.sync.Rank()
	mcfg := jepa.NewMaskConfig(cfg, t.model.Cfg)
	var err error
	if t.masker, err = jepa.NewMultiBlockMasker(mcfg, uint64(cfg.Seed)); err != nil {
		return err
	}
	if t.vmasker, err = jepa.NewMultiBlockMasker(mcfg, uint64(cfg.Seed)^0x5bd1e995); err != nil {
		return err
	}
	t.loss = jepa.NewLossConfig(cfg)
	t.monitor = CollapseMonitor{RankFraction: cfg.Evaluation.CollapseRank, StdFraction: cfg.Evaluation.CollapseStd}
	betas := cfg.Training.Betas
	t.opt = optim.NewAdamW(t.b, t.model.Params, float32(betas[0]), float32(betas[1]), float32(cfg.Training.Eps))

	ckDir := cfg.Checkpoint.Dir
	if ckDir == "" {
		ckDir = filepath.Join(opts.Out, "checkpoints")
	}
	t.ckpt = &checkpoint.Manager{Dir: ckDir, KeepLast: cfg.Checkpoint.KeepLast, KeepBestN: cfg.Checkpoint.KeepBestN}
	if opts.ResumeFrom != "" {
		t.opts.Resume = true
	}
	if t.opts.Resume {
		if err := t.resume(); err != nil {
			return err
		}
	} else if rank != 0 {
		// Rank 0 checks the directory (and the coordinator did).
	} else if dir, ok, _, _ := t.ckpt.Latest(); ok {
		// A new run would replace that run's checkpoint_latest.
		return fmt.Errorf("%s already holds a run's checkpoints (%s): pass --resume to continue it, or choose another --out (or checkpoint.dir)", t.ckpt.Dir, dir)
	}
	return nil
}

// openSinksAndBar opens phase 6's sinks (rank 0 writes the files) and the
// progress bar.
func (t *trainer) openSinksAndBar(logDir string) error {
	rank := t.sync.Rank()
	if rank == 0 {
		if err := t.openSinks(logDir); err != nil {
			return err
		}
	}
	if t.opts.Terminal && rank == 0 {
		t.bar = progress.New(t.opts.Console, int64(t.sched.Total), true)
	}
	return nil
}

func (t *trainer) close() {
	if t.loader != nil {
		t.loader.Close()
	}
	if t.valLoader != nil {
		t.valLoader.Close()
	}
	if t.tb != nil {
		_ = t.tb.Close()
	}
	if t.metrics != nil {
		_ = t.metrics.Close()
	}
	if t.closeBackend != nil {
		t.closeBackend()
	}
	t.closeLog()
}

// loop is phase 5 and 7.
func (t *trainer) loop(ctx context.Context) (*Summary, error) {
	total := int64(t.sched.Total)
	t.log.Info("training", zap.Int64("from_step", t.step), zap.Int64("to_step", total))
	distributed := t.sync.WorldSize() > 1
	if distributed {
		// DDP starts every replica from rank 0's parameters.
		for _, v := range []*tensor.Tensor{t.model.Params.Values, t.model.TargetParams.Values} {
			if err := t.sync.Broadcast(ctx, v); err != nil {
				return nil, t.abortErr(ctx, fmt.Errorf("broadcast of rank 0's parameters: %w", err))
			}
		}
	}
	if t.step == 0 && total > 0 {
		// The collapse monitor's reference: the initialisation's features.
		if err := t.validate(ctx); err != nil {
			return nil, err
		}
	}
	for t.step < total {
		stop, err := t.stopVote(ctx)
		if err != nil {
			return nil, err
		}
		if stop {
			return t.interrupt()
		}
		started := time.Now()
		t.stepStart, t.stepStartEpoch = t.loader.State(), t.epoch
		batches, err := t.nextBatches(ctx)
		if err != nil {
			if ctx.Err() != nil && distributed {
				return nil, t.abortErr(ctx, err)
			}
			if ctx.Err() != nil {
				// Put back the micro-batches this unfinished step took,
				// so the checkpoint resumes exactly at the step.
				if err := t.loader.Restore(t.stepStart); err != nil {
					return nil, err
				}
				t.epoch, t.epochEnded = t.stepStartEpoch, false
				return t.interrupt()
			}
			return nil, err
		}
		res, err := t.trainStep(ctx, batches)
		for _, bt := range batches {
			bt.Release()
		}
		if err != nil {
			return nil, err
		}
		if err := t.afterStep(ctx, res, time.Since(started)); err != nil {
			return nil, err
		}
	}
	// 7. Completion (the final validation unless the loop just ran it).
	if t.validatedAt != t.step {
		if err := t.validate(ctx); err != nil {
			return nil, err
		}
	}
	if err := t.save("", 0); err != nil {
		return nil, err
	}
	t.finish()
	return &t.summary, nil
}

// stepResult is what one optimizer step reports.
type stepResult struct {
	Stats       jepa.StepStats // averaged over the micro-batches, this replica's
	GradNorm    float64        // global gradient norm before clipping
	LR, WD, EMA float64        // the schedules' values the step used
}

// trainStep is one optimizer step on this replica's micro-batches (one per
// accumulation step): forward and backward of each, the gradient
// all-reduce (overlapped with the backward when the sync can), clipping and
// the guards, AdamW, the EMA update of the target encoder and the sync's
// after-step check. It advances t.step.
func (t *trainer) trainStep(ctx context.Context, batches []*data.Batch) (stepResult, error) {
	var res stepResult
	t.model.Params.ZeroGrad(t.b)
	for micro, batch := range batches {
		img, view2 := t.uploadViews(batch)
		masks := t.masker.SampleMicro(t.step, batch.B, micro, len(batches), t.sync.Rank(), t.sync.WorldSize())
		if n := int64(t.cfg.Logging.GradNormsEvery); n > 0 && micro == 0 && (t.step+1)%n == 0 {
			if err := t.termGradNorms(img, view2, masks); err != nil {
				return res, t.fatal(fmt.Errorf("step %d: %w", t.step, err))
			}
		}
		opts := jepa.StepOptions{Backward: true, Replicas: t.replicas(ctx), View2: view2}
		if ov, ok := t.sync.(OverlappingSync); ok && len(batches) == 1 && ov.BeginBackward(ctx, t.step, t.model.Params.Grads) {
			opts.GradsReady = ov.GradsReady
		}
		s, err := t.model.ForwardBackward(t.b, img, masks, t.loss, opts)
		if err != nil {
			return res, t.fatal(fmt.Errorf("step %d: %w", t.step, err))
		}
		res.Stats = accumulate(res.Stats, s, len(batches))
	}
	if len(batches) > 1 {
		t.b.Scale(t.model.Params.Grads, 1/float32(len(batches)))
	}
	if err := t.sync.AllReduceMean(ctx, t.step, t.model.Params.Grads); err != nil {
		return res, t.abortErr(ctx, fmt.Errorf("step %d: gradient all-reduce: %w", t.step, err))
	}
	res.GradNorm = optim.ClipGradNorm(t.b, t.model.Params.Grads, t.cfg.Training.ClipGrad)
	if math.IsNaN(res.GradNorm) || math.IsInf(res.GradNorm, 0) {
		return res, t.fatal(fmt.Errorf("step %d: gradient norm is %v", t.step, res.GradNorm))
	}
	if g := t.cfg.Training.GradExplosion; g > 0 && res.GradNorm > g {
		t.log.Warn("gradient norm explosion", zap.Int64("step", t.step), zap.Float64("grad_norm", res.GradNorm), zap.Float64("threshold", g))
	}
	i := int(t.step)
	res.LR, res.WD, res.EMA = t.sched.LRAt(i), t.sched.WDAt(i), t.sched.EMAAt(i)
	t.opt.Step(t.b, t.model.Params, res.LR, res.WD)
	t.model.UpdateTarget(t.b, float32(res.EMA))
	// Device failures are sticky (device.Err): after one, every kernel did
	// nothing and every value read back is NaN. Stop before this step
	// counts, is logged, checksummed or checkpointed.
	if err := t.deviceErr(); err != nil {
		return res, err
	}
	t.step++
	t.lastStats = res.Stats
	if err := t.sync.AfterStep(ctx, t.step, t.model.Params.Values, t.model.TargetParams.Values); err != nil {
		if errors.Is(err, ErrDiverged) {
			return res, err
		}
		return res, t.abortErr(ctx, fmt.Errorf("step %d: %w", t.step, err))
	}
	return res, nil
}

// afterStep is the bookkeeping between steps: the step callback, the log
// line and sinks, the epoch end, and the step-interval validation and
// checkpoint.
func (t *trainer) afterStep(ctx context.Context, res stepResult, took time.Duration) error {
	cfg := t.cfg
	total := int64(t.sched.Total)
	if t.opts.OnStep != nil {
		t.opts.OnStep(telemetry.Step{Step: t.step, Epoch: t.epoch, Loss: res.Stats.Loss, JEPALoss: res.Stats.JEPA, LR: res.LR,
			GradNorm: res.GradNorm, Took: took, Images: t.accum * cfg.Data.BatchSize})
	}
	if t.step%int64(max(1, cfg.Logging.EverySteps)) == 0 || t.step == total {
		if err := t.logStep(ctx, res.Stats, res.LR, res.WD, res.EMA, res.GradNorm, took); err != nil {
			return err
		}
	}
	if err := t.endOfEpoch(ctx); err != nil {
		return err
	}
	if n := int64(cfg.Evaluation.EverySteps); n > 0 && t.step%n == 0 {
		if err := t.validate(ctx); err != nil {
			return err
		}
	}
	if n := int64(cfg.Checkpoint.EverySteps); n > 0 && t.step%n == 0 && t.step < total {
		if err := t.save("step", int(t.step)); err != nil {
			return err
		}
	}
	return nil
}

// stopVote says whether to stop before the next step: a single process
// stops when ctx is cancelled; replicas stop together when any of them was
// asked to (Options.Stop), voting through the collective so all stop after
// the same step.
func (t *trainer) stopVote(ctx context.Context) (bool, error) {
	if t.sync.WorldSize() <= 1 {
		return ctx.Err() != nil || stopRequested(t.opts.Stop), nil
	}
	if ctx.Err() != nil {
		return false, t.abortErr(ctx, ctx.Err())
	}
	vote := []float64{0}
	if stopRequested(t.opts.Stop) {
		vote[0] = 1
	}
	if err := t.sync.ReduceMean(ctx, t.step, vote); err != nil {
		return false, t.abortErr(ctx, fmt.Errorf("step %d: stop vote: %w", t.step, err))
	}
	return vote[0] > 0, nil
}

func stopRequested(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ErrAborted marks a distributed run stopped because its generation was
// aborted (ctx cancelled, or a collective failed): no checkpoint was
// written, and the worker can join the next generation.
var ErrAborted = errors.New("generation aborted")

// ErrDiverged marks replicas whose parameters differ (the periodic checksum
// of GradSync.AfterStep): a restart from the checkpoint would not explain
// it, so the job fails.
var ErrDiverged = errors.New("replicas diverged")

// abortErr wraps err in ErrAborted when this replica's work cannot go on
// because of the others (ctx cancelled by the worker, or a collective
// failed), so the worker rejoins instead of failing the job.
func (t *trainer) abortErr(ctx context.Context, err error) error {
	if t.sync.WorldSize() <= 1 {
		return err
	}
	t.log.Warn("generation aborted", zap.Int64("step", t.step), zap.Error(err))
	return fmt.Errorf("%w at step %d: %w", ErrAborted, t.step, err)
}

// accumulate averages micro-batch stats.
func accumulate(acc, s jepa.StepStats, n int) jepa.StepStats {
	if acc.Levels == nil {
		acc.Levels = make([]float64, len(s.Levels))
		acc.Windows = s.Windows
	}
	acc.Loss += s.Loss / float64(n)
	acc.JEPA += s.JEPA / float64(n)
	acc.VICReg += s.VICReg / float64(n)
	for l := range s.Levels {
		acc.Levels[l] += s.Levels[l] / float64(n)
	}
	return acc
}

// termGradNorms measures the gradient norm of the JEPA loss and of the
// VICReg term apart on this replica's batch (logging.grad_norms_every) and
// leaves the gradients zeroed for the step itself.
func (t *trainer) termGradNorms(img, view2 *tensor.Tensor, masks *jepa.Masks) error {
	jl, vl := t.loss, t.loss
	jl.VICRegWeight = 0
	vl.Weights = make([]float64, len(t.loss.Weights))
	norms := [2]float64{}
	for i, lc := range []jepa.LossConfig{jl, vl} {
		if i == 1 && t.loss.VICRegWeight == 0 {
			break
		}
		t.model.Params.ZeroGrad(t.b)
		if _, err := t.model.ForwardBackward(t.b, img, masks, lc, jepa.StepOptions{Backward: true, View2: view2}); err != nil {
			return err
		}
		norms[i] = optim.ClipGradNorm(t.b, t.model.Params.Grads, 0)
	}
	t.model.Params.ZeroGrad(t.b)
	t.termNorms = &norms
	return nil
}

// replicas is the step's view of the other data-parallel replicas (nil for
// one process): VICReg gathers its samples through it.
func (t *trainer) replicas(ctx context.Context) jepa.BatchGather {
	if t.sync.WorldSize() <= 1 {
		return nil
	}
	return syncGather{ctx: ctx, step: t.step, sync: t.sync}
}

// syncGather is a GradSync's AllGather bound to one step.
type syncGather struct {
	ctx  context.Context
	step int64
	sync GradSync
}

func (g syncGather) Rank() int      { return g.sync.Rank() }
func (g syncGather) WorldSize() int { return g.sync.WorldSize() }
func (g syncGather) GatherRows(local []float32) ([][]float32, error) {
	return g.sync.AllGather(g.ctx, g.step, local)
}

// nextBatches takes the next step's micro-batches (one per accumulation
// step); on an error it releases those it took.
func (t *trainer) nextBatches(ctx context.Context) ([]*data.Batch, error) {
	out := make([]*data.Batch, 0, t.accum)
	for range t.accum {
		bt, err := t.nextBatch(ctx)
		if err != nil {
			for _, b := range out {
				b.Release()
			}
			return nil, err
		}
		out = append(out, bt)
	}
	return out, nil
}

// nextBatch returns the next training batch, rolling over epochs. The
// epoch-end validation and checkpoint wait until the step in progress has
// finished (endOfEpoch), so a checkpoint never holds half an accumulated step.
func (t *trainer) nextBatch(ctx context.Context) (*data.Batch, error) {
	for {
		b, err := t.loader.Next(ctx)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("training data: %w; run 'hjepa data verify %s' to list every unreadable file, then fix or re-download them", err, t.cfg.Data.Path)
		}
		t.epoch++
		t.loader.SetEpoch(t.epoch)
		t.epochEnded = true
	}
}

// endOfEpoch runs the per-epoch validation and checkpoint after the step
// during which an epoch ended.
func (t *trainer) endOfEpoch(ctx context.Context) error {
	if !t.epochEnded {
		return nil
	}
	t.epochEnded = false
	if f := t.cfg.Evaluation.EvalFrequency; f > 0 && t.epoch%f == 0 && t.cfg.Evaluation.EverySteps == 0 {
		if err := t.validate(ctx); err != nil {
			return err
		}
	}
	if f := t.cfg.Checkpoint.SaveFrequency; f > 0 && t.epoch%f == 0 && t.step < int64(t.sched.Total) {
		if err := t.save("epoch", t.epoch); err != nil {
			return err
		}
	}
	return nil
}

func (t *trainer) upload(batch *data.Batch) *tensor.Tensor {
	img := t.img.Get(t.b, batch.B, batch.C, batch.H, batch.W)
	t.b.Upload(img, batch.Images)
	return img
}

// uploadViews uploads a training batch of data.augmentation.views views per
// image ([B, V*C, H, W], each image's views one after the other) as the
// first view and, with two, the second.
func (t *trainer) uploadViews(batch *data.Batch) (first, second *tensor.Tensor) {
	v := max(1, t.cfg.Data.Augmentation.Views)
	if v == 1 {
		return t.upload(batch), nil
	}
	c := batch.C / v
	n := c * batch.H * batch.W
	if cap(t.viewHost) < batch.B*n {
		t.viewHost = make([]float32, batch.B*n)
	}
	host := t.viewHost[:batch.B*n]
	out := [2]*tensor.Tensor{}
	for k, ws := range []*tensor.Workspace{&t.img, &t.img2} {
		for i := 0; i < batch.B; i++ {
			copy(host[i*n:(i+1)*n], batch.Images[(i*v+k)*n:][:n])
		}
		out[k] = ws.Get(t.b, batch.B, c, batch.H, batch.W)
		t.b.Upload(out[k], host)
	}
	return out[0], out[1]
}

// fatal adds the guard's advice to a non-finite loss or gradient error.
func (t *trainer) fatal(err error) error {
	where := "no checkpoint has been written yet"
	if dir, ok, _, _ := t.ckpt.Latest(); ok {
		where = "the last good checkpoint " + dir + " is intact"
	}
	t.log.Error("training stopped", zap.Error(err))
	return fmt.Errorf("%w; no update was applied and %s; lower training.lr, set training.clip_grad, or check the data for NaNs, then rerun with --resume", err, where)
}

// interrupt writes a checkpoint after SIGINT/SIGTERM.
func (t *trainer) interrupt() (*Summary, error) {
	t.log.Info("interrupted: writing a checkpoint", zap.Int64("step", t.step))
	if err := t.save("", 0); err != nil {
		return nil, err
	}
	t.summary.Interrupted = true
	t.finish()
	return &t.summary, nil
}
