// Package worker is the life of one hjepa-worker process (DESIGN.md section
// 6): discover the device, open the collective endpoint, register with the
// coordinator, train each generation with the ring as the trainer's
// GradSync while heartbeating, report how it ended, and rejoin or exit as
// the coordinator says.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/hjepa-go/hjepa/collective"
	"github.com/hjepa-go/hjepa/collective/rpcsec"
	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/device"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train"
	"github.com/hjepa-go/hjepa/train/telemetry"
)

// Options configure a worker.
type Options struct {
	// Coordinator is the coordinator's host:port.
	Coordinator string
	// Rank asks for a rank; -1 takes any free one.
	Rank int
	// WorldSize, when > 0, must equal the job's (torchrun's WORLD_SIZE).
	WorldSize int
	// LocalRank picks the GPU on this host for device auto.
	LocalRank int
	// Device overrides the configuration's device (auto, cpu, cuda, cuda:K).
	Device string
	// Threads overrides the configuration's CPU threads (0: keep).
	Threads int
	// Listen is the collective endpoint's address (default 127.0.0.1:0);
	// Advertise the address peers dial (default: the listener's).
	Listen, Advertise string
	// Config, when set, is this worker's own configuration: its digest must
	// match the job's (the coordinator refuses it otherwise).
	Config *config.Config
	// Security carries the job token and TLS files for both services.
	Security rpcsec.Options
	// ConnectTimeout bounds the wait for the coordinator to be reachable.
	ConnectTimeout time.Duration
	// Console receives the trainer's human-readable log (stderr when nil).
	Console io.Writer
	// ProgressBar draws rank 0's progress bar on Console even though it is
	// not a terminal (hjepa launch shows it on its own).
	ProgressBar bool
	Logger      *zap.Logger
	// Metrics, when set, records the worker's steps, all-reduces and job
	// (its /metrics and /readyz: telemetry.Serve).
	Metrics *telemetry.Worker
}

// Run is the worker's whole life. ctx cancellation (a second signal) stops
// at once; closing stop (the first SIGTERM/SIGINT) asks the job for a
// coordinated checkpoint and a clean stop. It returns the process's exit
// code and, when it is not 0, the error to print.
func Run(ctx context.Context, opts Options, stop <-chan struct{}) (int, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 60 * time.Second
	}
	w := &worker{opts: opts, log: log, stop: stop, prevRank: opts.Rank}

	ep, err := collective.Listen(collective.EndpointOptions{Listen: opts.Listen, Security: opts.Security, Logger: log})
	if err != nil {
		return 1, fmt.Errorf("worker: %w (every worker serves the ring: with TLS it needs --tls-cert and --tls-key; --listen must be a free address)", err)
	}
	defer ep.Close()
	w.ep = ep
	w.advertise = opts.Advertise
	if w.advertise == "" {
		w.advertise = ep.Addr()
	}

	dial, err := opts.Security.DialOptions()
	if err != nil {
		return 1, err
	}
	conn, err := grpc.NewClient(opts.Coordinator, dial...)
	if err != nil {
		return 1, fmt.Errorf("coordinator address %q: %w", opts.Coordinator, err)
	}
	defer conn.Close()
	w.conn, w.client = conn, hjepav1.NewCoordinatorServiceClient(conn)
	w.devices = discoverDevices(log)
	defer w.closeBackend()

	for {
		code, rejoin, err := w.generation(ctx)
		if !rejoin {
			return code, err
		}
		log.Info("rejoining for the next generation", zap.Int("previous_rank", w.prevRank))
	}
}

type worker struct {
	opts      Options
	log       *zap.Logger
	stop      <-chan struct{}
	ep        *collective.Endpoint
	advertise string
	conn      *grpc.ClientConn
	client    hjepav1.CoordinatorServiceClient
	devices   []*hjepav1.Device
	id        string
	prevRank  int
	// stopped is set once this process was asked to stop (its first
	// SIGTERM); later generations stop at once.
	stopped atomic.Bool

	backend    tensor.Backend
	backendCfg string // device and threads it was opened for
}

// waitConnected waits until the coordinator's connection is ready.
func (w *worker) waitConnected(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.ConnectTimeout)
	defer cancel()
	w.conn.Connect()
	for {
		s := w.conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !w.conn.WaitForStateChange(ctx, s) {
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				// One call without waiting surfaces the transport's last error
				// (refused connection, TLS handshake failure, ...).
				why := ""
				pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := w.client.Finish(pctx, &hjepav1.FinishRequest{})
				cancel()
				if err != nil {
					why = " (" + status.Convert(err).Message() + ")"
				}
				return fmt.Errorf("coordinator %s not reachable within %v%s: start hjepa-coordinator first, check --coordinator (or MASTER_ADDR/MASTER_PORT), and use the coordinator's TLS settings", w.opts.Coordinator, w.opts.ConnectTimeout, why)
			}
			return ctx.Err()
		}
	}
}

// heldRankRetry is how long register retries a rank the coordinator says a
// live worker holds: longer than the coordinator's default heartbeat
// timeout (10 s), within which a dead holder is declared lost.
const heldRankRetry = 15 * time.Second

// register calls Register, retrying for up to heldRankRetry while the
// coordinator refuses the rank as held by a live worker: a worker restarted
// by its supervisor (hjepa launch, Docker, Kubernetes) can register before
// the coordinator has seen its predecessor's heartbeat stream break, and
// exiting then would spend the supervisor's restarts on a race. A rank held
// by a worker that really is alive still fails, after the wait.
func (w *worker) register(ctx context.Context, req *hjepav1.RegisterRequest) (*hjepav1.RegisterResponse, error) {
	wait := min(heldRankRetry, w.opts.ConnectTimeout)
	deadline := time.Now().Add(wait)
	for logged := false; ; {
		a, err := w.client.Register(ctx, req)
		if status.Code(err) != codes.AlreadyExists || ctx.Err() != nil || time.Now().After(deadline) {
			return a, err
		}
		if !logged {
			w.log.Info("rank held by a worker the coordinator still counts as alive; retrying until it is declared lost",
				zap.String("refusal", status.Convert(err).Message()), zap.Duration("for_at_most", wait))
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// generation registers, trains one generation and reports its outcome. It
// says whether to rejoin.
func (w *worker) generation(ctx context.Context) (code int, rejoin bool, err error) {
	if err := w.waitConnected(ctx); err != nil {
		return 1, false, err
	}
	req := &hjepav1.RegisterRequest{
		WorkerId: w.workerID(), PeerAddress: w.advertise, Hostname: hostname(), Pid: int32(os.Getpid()),
		LocalRank: int32(w.opts.LocalRank), Devices: w.devices,
	}
	if w.prevRank >= 0 {
		r := int32(w.prevRank)
		req.Rank = &r
	}
	if w.opts.Config != nil {
		req.ConfigDigest = w.opts.Config.Digest()
	}
	w.log.Info("registering", zap.String("coordinator", w.opts.Coordinator), zap.String("peer_address", w.advertise))
	// A stop asked while waiting for the other workers ends the wait.
	regCtx, cancelReg := context.WithCancel(ctx)
	defer cancelReg()
	go func() {
		select {
		case <-w.stop:
			w.stopped.Store(true)
			cancelReg()
		case <-regCtx.Done():
		}
	}()
	a, err := w.register(regCtx, req)
	if err != nil {
		if ctx.Err() != nil {
			return 1, false, ctx.Err()
		}
		if w.stopped.Load() {
			w.log.Info("stopped before joining a generation")
			return 0, false, nil
		}
		return 1, false, fmt.Errorf("coordinator %s refused registration: %s", w.opts.Coordinator, status.Convert(err).Message())
	}
	if end := a.GetJobEnd(); end != nil { // the job ended while this worker waited
		if end.ExitCode != 0 {
			return int(end.ExitCode), false, errors.New(end.Message)
		}
		w.log.Info("job finished before this worker joined a generation", zap.String("message", end.Message))
		return 0, false, nil
	}
	if err := checkAssignment(a); err != nil {
		return 1, false, fmt.Errorf("coordinator %s: %w (version skew between coordinator and worker?)", w.opts.Coordinator, err)
	}
	rank := int(a.Rank)
	w.prevRank = rank
	log := w.log.With(zap.Int("rank", rank), zap.Uint64("generation", a.Generation))
	if w.opts.WorldSize > 0 && int(a.WorldSize) != w.opts.WorldSize {
		return 1, false, fmt.Errorf("WORLD_SIZE=%d but the coordinator's job has world size %d", w.opts.WorldSize, a.WorldSize)
	}
	log.Info("assigned", zap.Int32("world_size", a.WorldSize), zap.Bool("resume", a.Resume), zap.Int64("resume_step", a.ResumeStep))

	cfg, err := w.jobConfig(a)
	if err != nil {
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_FAILED, 0, err, nil)
	}
	b, err := w.openBackend(cfg, log)
	if err != nil {
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_FAILED, 0, err, nil)
	}

	genCtx, cancelGen := context.WithCancelCause(ctx)
	defer cancelGen(nil)
	hb := newHeartbeat(w, a, log, cancelGen)
	if err := hb.start(genCtx); err != nil {
		return 1, false, err
	}
	defer hb.close()

	next := a.Peers[(rank+1)%int(a.WorldSize)].Address
	co := a.Collective
	timeout := time.Duration(co.GetTimeoutMs()) * time.Millisecond
	ring, err := w.ep.Join(genCtx, collective.RingConfig{
		RunID: a.RunId, Generation: a.Generation, Rank: rank, WorldSize: int(a.WorldSize),
		Next: next, ChunkBytes: int(co.GetChunkBytes()), Timeout: timeout,
	})
	if err != nil {
		return w.afterTraining(hb.finishCtx(ctx), a, hb, cfg, b, nil, fmt.Errorf("%w: joining the ring: %w", train.ErrAborted, err))
	}
	defer ring.Close()
	// An abort (coordinator's command, lost coordinator) cancels everything
	// in flight on the ring.
	stopAbort := context.AfterFunc(genCtx, func() { ring.Abort(context.Cause(genCtx)) })
	defer stopAbort()

	sync := &ringSync{ring: ring, b: b, firstBucket: co.GetFirstBucketBytes(), bucketBytes: co.GetBucketBytes(), checksumEvery: int(co.GetChecksumEvery()),
		metrics: w.opts.Metrics}
	hb.setPhase(hjepav1.WorkerPhase_WORKER_PHASE_TRAINING)
	w.opts.Metrics.SetJob(a.Generation, rank, int(a.WorldSize))
	w.opts.Metrics.SetReady(true, fmt.Sprintf("training: rank %d of %d, generation %d", rank, a.WorldSize, a.Generation))
	defer w.opts.Metrics.SetReady(false, "between generations")
	sum, err := train.Run(genCtx, train.Options{
		Config: cfg, Out: a.OutDir, ResumeFrom: a.ResumeCheckpoint, Console: w.opts.Console, Terminal: w.opts.ProgressBar && rank == 0,
		Sync: sync, Stop: hb.stopCh, Backend: b,
		OnStep: func(st telemetry.Step) {
			hb.progress(st.Step, st.Loss, st.Took)
			w.opts.Metrics.ObserveStep(st)
		},
	})
	if sync.Total > 0 {
		log.Info("all-reduce time", zap.Duration("total", sync.Total), zap.Duration("exposed", sync.Exposed))
	}
	if device.Err(b) == nil {
		// The ring is done before the outcome is reported: the coordinator
		// may exit as soon as it has answered, and that must not read as an
		// abort. A failed device is reported first instead (the deferred
		// Close follows): its peers, waiting in a collective, then hear of
		// it as the coordinator's ABORT, not as a broken ring whose ABORTED
		// could reach the coordinator first and restart a job that fails
		// the same way (an out of memory).
		stopAbort()
		_ = ring.Close()
	}
	hb.finishing.Store(true)
	return w.afterTraining(hb.finishCtx(ctx), a, hb, cfg, b, sum, err)
}

// checkAssignment refuses an assignment this worker cannot act on
// without indexing out of range: its rank, world size and ring.
func checkAssignment(a *hjepav1.RegisterResponse) error {
	n := a.GetWorldSize()
	switch {
	case n < 1:
		return fmt.Errorf("assignment with world size %d", n)
	case a.GetRank() < 0 || a.GetRank() >= n:
		return fmt.Errorf("assignment of rank %d in a world of %d", a.GetRank(), n)
	case len(a.GetPeers()) != int(n):
		return fmt.Errorf("assignment with %d peers in a world of %d", len(a.GetPeers()), n)
	case a.GetGeneration() == 0:
		return errors.New("assignment without a generation")
	}
	for i, p := range a.GetPeers() {
		if p.GetRank() != int32(i) || p.GetAddress() == "" {
			return fmt.Errorf("assignment's peer %d is rank %d at %q", i, p.GetRank(), p.GetAddress())
		}
	}
	return nil
}

// afterTraining classifies how the generation ended and reports it. A
// failed device (device.Err) is the cause whatever the trainer returned.
func (w *worker) afterTraining(ctx context.Context, a *hjepav1.RegisterResponse, hb *heartbeat, cfg config.Config, b tensor.Backend, sum *train.Summary, err error) (int, bool, error) {
	if lost := hb.coordinatorLost(); lost != nil {
		return 1, false, fmt.Errorf("%w; stopping this worker. Checkpoints under %s are intact: restart the coordinator with --resume and the workers to continue", lost, a.OutDir)
	}
	step := hb.lastStep() // the step in progress when training failed
	if sum != nil {
		step = sum.Steps
	}
	if derr := device.Err(b); derr != nil {
		// The trainer's error names the step and the batch size, unless the
		// failure surfaced in a collective (an abort) or not at all.
		if err == nil || !errors.Is(err, derr) || errors.Is(err, train.ErrAborted) {
			err = fmt.Errorf("step %d (data.batch_size %d): %w", step, cfg.Data.BatchSize, derr)
		}
		f := &failure{kind: failureKind(derr), batchSize: cfg.Data.BatchSize}
		if dm, ok := b.(tensor.DeviceMemory); ok {
			if _, total, merr := dm.DeviceMemory(); merr == nil {
				f.deviceMemory = total
			}
		}
		// The device's context is unusable: a later generation (after a
		// restart) opens a fresh one.
		w.closeBackend()
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_FAILED, step, err, f)
	}
	switch {
	case err == nil && sum != nil && sum.Interrupted:
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_STOPPED, step, nil, nil)
	case err == nil:
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_COMPLETED, step, nil, nil)
	case errors.Is(err, train.ErrDiverged):
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_FAILED, step, err, nil)
	case errors.Is(err, train.ErrAborted) || errors.Is(err, context.Canceled):
		if ctx.Err() != nil { // this process was told to quit
			return 1, false, ctx.Err()
		}
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_ABORTED, step, err, nil)
	default:
		return w.finish(ctx, a, hjepav1.Outcome_OUTCOME_FAILED, step, err, nil)
	}
}

// failureKind classifies a device failure for the coordinator's restart
// policy.
func failureKind(err error) hjepav1.FailureKind {
	switch {
	case errors.Is(err, tensor.ErrOutOfMemory):
		return hjepav1.FailureKind_FAILURE_KIND_OUT_OF_MEMORY
	case errors.Is(err, tensor.ErrDeviceFault):
		return hjepav1.FailureKind_FAILURE_KIND_DEVICE
	}
	return hjepav1.FailureKind_FAILURE_KIND_OTHER
}

// failure is what a FAILED outcome tells the coordinator beyond the error.
type failure struct {
	kind         hjepav1.FailureKind
	batchSize    int    // data.batch_size
	deviceMemory uint64 // the device's total bytes, 0: unknown
}

// finish reports the outcome and returns what the coordinator says to do.
// f describes a FAILED outcome (nil: FAILURE_KIND_OTHER).
func (w *worker) finish(ctx context.Context, a *hjepav1.RegisterResponse, outcome hjepav1.Outcome, step int64, runErr error, f *failure) (int, bool, error) {
	req := &hjepav1.FinishRequest{RunId: a.RunId, Generation: a.Generation, Rank: a.Rank, WorkerId: w.workerID(), Outcome: outcome, Step: step}
	if f != nil {
		req.FailureKind, req.BatchSize, req.DeviceMemoryBytes = f.kind, int32(f.batchSize), f.deviceMemory
	} else if outcome == hjepav1.Outcome_OUTCOME_FAILED {
		req.FailureKind = hjepav1.FailureKind_FAILURE_KIND_OTHER
	}
	if runErr != nil {
		req.Error = runErr.Error()
		fields := []zap.Field{zap.Int32("rank", a.Rank), zap.Stringer("outcome", outcome), zap.Error(runErr)}
		if outcome == hjepav1.Outcome_OUTCOME_FAILED {
			fields = append(fields, zap.Stringer("failure_kind", req.FailureKind))
		}
		w.log.Warn("generation ended", fields...)
	}
	// No deadline: the coordinator answers once every rank has finished
	// (rank 0 may still be writing the final checkpoint); ctx ends when the
	// heartbeat finds the coordinator gone.
	resp, err := w.client.Finish(ctx, req)
	if err != nil {
		if c := status.Code(err); c == codes.Unavailable || c == codes.Canceled {
			// The coordinator is gone: a peer may have noticed first and
			// aborted the ring before this worker's heartbeat did.
			return 1, false, fmt.Errorf("the coordinator %s is gone (%s); stopping this worker. Checkpoints under %s are intact: restart the coordinator with --resume and the workers to continue",
				w.opts.Coordinator, status.Convert(err).Message(), a.OutDir)
		}
		if runErr != nil {
			return 1, false, fmt.Errorf("%w (and the coordinator could not be told: %s)", runErr, status.Convert(err).Message())
		}
		return 1, false, fmt.Errorf("reporting %s to the coordinator %s: %s", outcome, w.opts.Coordinator, status.Convert(err).Message())
	}
	if resp.Next == hjepav1.Next_NEXT_REJOIN {
		return 0, true, nil
	}
	if resp.ExitCode != 0 {
		msg := resp.Message
		if runErr != nil && outcome == hjepav1.Outcome_OUTCOME_FAILED {
			msg = runErr.Error()
		}
		return int(resp.ExitCode), false, errors.New(msg)
	}
	w.log.Info("job finished", zap.String("message", resp.Message))
	return 0, false, nil
}

// jobConfig is the coordinator's configuration with this process's local
// settings (device, threads) applied.
func (w *worker) jobConfig(a *hjepav1.RegisterResponse) (config.Config, error) {
	var sets []string
	if w.opts.Config != nil {
		// Process-local keys (paths, device, threads) stay this worker's.
		for _, k := range config.ProcessLocalKeys {
			if v, ok := w.opts.Config.Get(k); ok {
				sets = append(sets, fmt.Sprintf("%s=%v", k, v))
			}
		}
	}
	if w.opts.Device != "" {
		sets = append(sets, "device="+w.opts.Device)
	}
	if w.opts.Threads > 0 {
		sets = append(sets, fmt.Sprintf("threads=%d", w.opts.Threads))
	}
	cfg, err := config.Load(config.LoadOptions{ConfigFile: "coordinator's configuration", ConfigYAML: a.ConfigYaml, Sets: sets})
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if cfg.Digest() != a.ConfigDigest {
		return cfg, fmt.Errorf("the configuration received has digest %s, the coordinator announced %s (version skew between coordinator and worker?)", cfg.Digest(), a.ConfigDigest)
	}
	return cfg, nil
}

// openBackend opens the device once per process (a GPU context is costly)
// and keeps it across generations.
func (w *worker) openBackend(cfg config.Config, log *zap.Logger) (tensor.Backend, error) {
	key := fmt.Sprintf("%s/%d/%v", cfg.Device, cfg.Threads, cfg.AllowTF32)
	if w.backend != nil && key == w.backendCfg {
		return w.backend, nil
	}
	w.closeBackend()
	b, fallback, err := device.OpenLocal(cfg, w.opts.LocalRank)
	if err != nil {
		return nil, err
	}
	if fallback != "" {
		log.Info(fallback)
	}
	log.Info("device", zap.String("backend", b.Name()), zap.Int("local_rank", w.opts.LocalRank))
	w.backend, w.backendCfg = b, key
	return b, nil
}

func (w *worker) closeBackend() {
	if w.backend != nil {
		device.Close(w.backend)
		w.backend = nil
	}
}

func (w *worker) workerID() string {
	if w.id == "" {
		tok, _ := rpcsec.NewToken()
		w.id = fmt.Sprintf("%s-%d-%s", hostname(), os.Getpid(), tok[:8])
	}
	return w.id
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// heartbeat holds the generation's heartbeat stream: beats out, commands
// in. ABORT cancels the generation; STOP closes stopCh (the trainer's
// coordinated stop); a broken stream or silence means the coordinator is
// gone, which also cancels the generation.
type heartbeat struct {
	w      *worker
	a      *hjepav1.RegisterResponse
	log    *zap.Logger
	cancel context.CancelCauseFunc
	stopCh chan struct{}

	mu       sync.Mutex
	stopOnce sync.Once
	phase    hjepav1.WorkerPhase
	step     int64
	loss     float64
	took     time.Duration
	lost     error
	// finishing is set once training has ended: the coordinator may then
	// close the stream and exit right after answering Finish (its answer
	// can arrive after the stream's end), so a closed stream is no longer a
	// lost coordinator; a failed Finish says so itself.
	finishing atomic.Bool
	lostCh    chan struct{}
	lostOnce  sync.Once
	lastResp  atomic.Int64 // unix nanos of the last message from the coordinator
	done      chan struct{}
	wg        sync.WaitGroup
	stream    hjepav1.CoordinatorService_HeartbeatClient
	streamCx  context.CancelFunc
}

func newHeartbeat(w *worker, a *hjepav1.RegisterResponse, log *zap.Logger, cancel context.CancelCauseFunc) *heartbeat {
	return &heartbeat{w: w, a: a, log: log, cancel: cancel, stopCh: make(chan struct{}), done: make(chan struct{}), lostCh: make(chan struct{}),
		phase: hjepav1.WorkerPhase_WORKER_PHASE_STARTING}
}

func (h *heartbeat) setPhase(p hjepav1.WorkerPhase) {
	h.mu.Lock()
	h.phase = p
	h.mu.Unlock()
}

func (h *heartbeat) progress(step int64, loss float64, took time.Duration) {
	h.mu.Lock()
	h.step, h.loss, h.took = step, loss, took
	h.mu.Unlock()
}

// lastStep is the number of steps done, as last reported.
func (h *heartbeat) lastStep() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.step
}

func (h *heartbeat) requestStop() { h.stopOnce.Do(func() { close(h.stopCh) }) }

func (h *heartbeat) coordinatorLost() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}

func (h *heartbeat) markLost(err error) {
	h.mu.Lock()
	if h.lost == nil {
		h.lost = err
	}
	h.mu.Unlock()
	h.cancel(err)
	h.lostOnce.Do(func() { close(h.lostCh) })
}

// finishCtx is ctx, also cancelled when the coordinator is found gone (a
// Finish must not wait forever on a dead or frozen coordinator).
func (h *heartbeat) finishCtx(ctx context.Context) context.Context {
	fctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-h.lostCh:
			cancel()
		case <-h.done:
			cancel()
		case <-fctx.Done():
		}
	}()
	return fctx
}

// start opens the stream (outliving genCtx's cancellation, so a worker
// whose generation was aborted can still say so) and runs the sender and
// the receiver.
func (h *heartbeat) start(genCtx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(genCtx))
	stream, err := h.w.client.Heartbeat(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("heartbeat stream to %s: %s", h.w.opts.Coordinator, status.Convert(err).Message())
	}
	h.stream, h.streamCx = stream, cancel
	h.lastResp.Store(time.Now().UnixNano())
	if h.w.stopped.Load() {
		h.requestStop()
	}
	interval := time.Duration(h.a.HeartbeatIntervalMs) * time.Millisecond
	if interval <= 0 {
		interval = time.Second
	}
	timeout := time.Duration(h.a.HeartbeatTimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 10 * interval
	}
	if err := h.send(); err != nil {
		cancel()
		return fmt.Errorf("heartbeat stream to %s: %w", h.w.opts.Coordinator, err)
	}
	h.wg.Add(2)
	go func() { // sender
		defer h.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		sig := h.w.stop
		for {
			select {
			case <-h.done:
				return
			case <-sig:
				// This process's SIGTERM: stop locally (the trainer's vote
				// tells the other ranks) and tell the coordinator.
				h.w.stopped.Store(true)
				h.requestStop()
				sig = nil
			case <-t.C:
			}
			if silent := time.Since(time.Unix(0, h.lastResp.Load())); silent > timeout {
				h.markLost(fmt.Errorf("the coordinator %s has not answered for %v", h.w.opts.Coordinator, silent.Round(time.Second)))
				return
			}
			if err := h.send(); err != nil {
				select {
				case <-h.done:
				default:
					if h.finishing.Load() {
						return
					}
					h.markLost(fmt.Errorf("the coordinator %s is gone (heartbeat: %v)", h.w.opts.Coordinator, err))
				}
				return
			}
		}
	}()
	go func() { // receiver
		defer h.wg.Done()
		for {
			resp, err := stream.Recv()
			if err != nil {
				select {
				case <-h.done:
				default:
					if h.finishing.Load() {
						return
					}
					h.markLost(fmt.Errorf("the coordinator %s is gone (heartbeat stream: %s)", h.w.opts.Coordinator, status.Convert(err).Message()))
				}
				return
			}
			h.lastResp.Store(time.Now().UnixNano())
			if resp.Generation != 0 && resp.Generation != h.a.Generation {
				continue
			}
			switch resp.Command {
			case hjepav1.Command_COMMAND_ABORT:
				h.log.Warn("coordinator aborted the generation", zap.String("reason", resp.Reason))
				h.cancel(fmt.Errorf("%w by the coordinator: %s", train.ErrAborted, resp.Reason))
			case hjepav1.Command_COMMAND_STOP:
				h.log.Info("coordinator asked for a checkpoint and a stop", zap.String("reason", resp.Reason))
				h.requestStop()
			}
		}
	}()
	return nil
}

func (h *heartbeat) send() error {
	h.mu.Lock()
	req := &hjepav1.HeartbeatRequest{RunId: h.a.RunId, Generation: h.a.Generation, Rank: h.a.Rank, Phase: h.phase,
		Step: h.step, Loss: h.loss, StepSeconds: h.took.Seconds()}
	h.mu.Unlock()
	select {
	case <-h.stopCh:
		req.StopRequested = true
	default:
	}
	return h.stream.Send(req)
}

// close ends the stream after Finish (or on the way out).
func (h *heartbeat) close() {
	select {
	case <-h.done:
		return
	default:
	}
	close(h.done)
	_ = h.stream.CloseSend()
	h.streamCx()
	h.wg.Wait()
}
