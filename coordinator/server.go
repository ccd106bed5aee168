package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/train/checkpoint"
	"github.com/hjepa-go/hjepa/train/telemetry"
)

// Config is a coordinator's job.
type Config struct {
	WorldSize    int
	Listen       string // "127.0.0.1:0" etc. (default "127.0.0.1:0")
	ConfigYAML   []byte // the job's configuration, sent to workers
	ConfigDigest string
	OutDir       string // job output dir; checkpoints under CheckpointDir
	// CheckpointDir defaults to OutDir/checkpoints; it must be where rank 0
	// writes them (the config's checkpoint.dir when set).
	CheckpointDir string
	// Resume: the first generation resumes from the latest checkpoint. New
	// refuses to start a new job over existing checkpoints, and to resume
	// without one, as `hjepa train` does.
	Resume            bool
	MaxRestarts       int
	HeartbeatInterval time.Duration // default 1 s
	HeartbeatTimeout  time.Duration // default 10 s
	// RendezvousTimeout bounds each wait for world_size workers (default
	// 10 min; negative: wait forever): the job then fails naming the
	// missing ranks.
	RendezvousTimeout time.Duration
	// StopTimeout bounds a coordinated stop (default 2 min): a stop not
	// complete by then exits 1.
	StopTimeout time.Duration
	Collective  *hjepav1.CollectiveOptions
	// Shard returns rank's shard plan (default: num_replicas and rank).
	Shard    func(rank int) *hjepav1.ShardPlan
	Security rpcsec.Options
	// Conns bound the connections the coordinator holds (rpcsec.Limits;
	// MaxConns defaults to max(rpcsec.DefaultMaxConns, 2 x WorldSize)).
	Conns rpcsec.Limits
	// OnEvict, when set, is told of every worker declared lost while its
	// process may still be alive (silent: frozen, hung) so that whoever
	// supervises that process kills it (hjepa launch). It is called on the
	// server's loop: it must not block.
	OnEvict func(Evict)
	Logger  *zap.Logger
	// Metrics, when set, records the job's generations, restarts and each
	// rank's heartbeats (its /metrics and /readyz: telemetry.Serve).
	Metrics *telemetry.Coordinator
}

// maxRecvBytes bounds a coordinator request (a RegisterRequest with a few
// devices is well under a kilobyte).
const maxRecvBytes = 1 << 20

// shutdownGrace bounds the graceful stop of the gRPC server after the job
// ended: answers already given are flushed, then connections are closed.
const shutdownGrace = 5 * time.Second

// Server is the coordinator's gRPC service: a thin shell around Policy. RPC
// handlers turn calls into events and wait for their answers; one loop
// (Run) owns the policy, feeds it the clock and performs its actions.
type Server struct {
	cfg    Config
	runID  string
	policy *Policy
	log    *zap.Logger
	lis    *rpcsec.Listener
	grpc   *grpc.Server
	tick   time.Duration

	events chan envelope
	done   chan struct{} // closed when the loop has ended
	nextID atomic.Uint64
	ran    atomic.Bool
	wg     sync.WaitGroup // heartbeat receivers and checkpoint probes

	// Loop-owned: where each open RPC's answer goes.
	calls   map[CallID]chan<- result
	streams map[CallID]streamChans
	exit    *ExitJob
	gen     uint64 // the last generation assigned (Metrics)
	// trace, when set (tests), sees every event after the policy took it.
	trace func(Event)
}

// envelope carries an event from a handler to the loop, with where the
// answer goes.
type envelope struct {
	ev     Event
	reply  chan<- result // Register and Finish calls
	stream *streamChans  // heartbeat streams
}

type result struct {
	reg *hjepav1.RegisterResponse
	fin *hjepav1.FinishResponse
	err error
}

type streamChans struct {
	cmds  chan<- *hjepav1.HeartbeatResponse
	end   chan<- error
	ended bool // refused: its beats until StreamClosed are not answered
}

// New checks cfg, opens the listener and returns a server ready to Run.
func New(cfg Config) (*Server, error) {
	if cfg.WorldSize < 1 {
		return nil, fmt.Errorf("coordinator: world size %d: need at least 1 worker", cfg.WorldSize)
	}
	if cfg.MaxRestarts < 0 {
		return nil, fmt.Errorf("coordinator: max restarts %d is negative", cfg.MaxRestarts)
	}
	if cfg.OutDir == "" {
		return nil, errors.New("coordinator: no output directory: set --out")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.CheckpointDir == "" {
		cfg.CheckpointDir = filepath.Join(cfg.OutDir, "checkpoints")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if err := checkStart(cfg); err != nil {
		return nil, err
	}
	runID, err := newRunID()
	if err != nil {
		return nil, err
	}
	policy := NewPolicy(PolicyConfig{
		WorldSize: cfg.WorldSize, RunID: runID, ConfigDigest: cfg.ConfigDigest, Resume: cfg.Resume,
		MaxRestarts: cfg.MaxRestarts, HeartbeatInterval: cfg.HeartbeatInterval, HeartbeatTimeout: cfg.HeartbeatTimeout,
		RendezvousTimeout: cfg.RendezvousTimeout, StopTimeout: cfg.StopTimeout,
	})
	pc := policy.Config()
	cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.StopTimeout = pc.HeartbeatInterval, pc.HeartbeatTimeout, pc.StopTimeout

	if cfg.Conns.MaxConns <= 0 {
		cfg.Conns.MaxConns = max(rpcsec.DefaultMaxConns, 2*cfg.WorldSize)
	}
	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("coordinator: listen on %s: %w (choose another --listen address or port)", cfg.Listen, err)
	}
	// The token is checked on each RPC's headers; a connection that has
	// sent none with it within the pre-auth deadline is closed, and the
	// connections are capped, so idle sockets cannot lock workers out.
	lis, opts, err := cfg.Security.Listen(tcp, cfg.Conns, maxRecvBytes)
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	s := &Server{
		cfg: cfg, runID: runID, policy: policy, log: cfg.Logger.With(zap.String("run_id", runID)),
		lis: lis, grpc: grpc.NewServer(opts...),
		tick:   max(min(cfg.HeartbeatInterval, cfg.HeartbeatTimeout/4), 5*time.Millisecond),
		events: make(chan envelope, 256), done: make(chan struct{}),
		calls: map[CallID]chan<- result{}, streams: map[CallID]streamChans{},
	}
	hjepav1.RegisterCoordinatorServiceServer(s.grpc, service{s: s})
	return s, nil
}

// checkStart refuses a new job over a run's checkpoints and a resume
// without one.
func checkStart(cfg Config) error {
	m := &checkpoint.Manager{Dir: cfg.CheckpointDir, ReadOnly: true} // rank 0 may write on another host
	dir, ok, warning, err := m.Latest()
	if warning != "" {
		cfg.Logger.Warn("skipped damaged checkpoints", zap.String("details", warning))
	}
	switch {
	case cfg.Resume && err != nil:
		return fmt.Errorf("--resume: %w", err)
	case cfg.Resume && !ok:
		return fmt.Errorf("--resume: no checkpoint under %s; run without --resume to start a new run", cfg.CheckpointDir)
	case !cfg.Resume && ok:
		return fmt.Errorf("%s already holds a run's checkpoints (%s): pass --resume to continue it, or choose another --out", cfg.CheckpointDir, dir)
	}
	return nil
}

func newRunID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("coordinator: run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// RunID is the job's run id (random per job, the same in every generation).
func (s *Server) RunID() string { return s.runID }

// Run serves until the job ends and returns the process's exit code; err
// says why when it is not 0. Cancelling ctx asks for a coordinated stop
// (COMMAND_STOP, a checkpoint, exit 0), bounded by Config.StopTimeout.
func (s *Server) Run(ctx context.Context) (exitCode int, err error) {
	if !s.ran.CompareAndSwap(false, true) {
		return 1, errors.New("coordinator: Run called twice")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.grpc.Serve(s.lis) }()
	s.log.Info("waiting for workers", zap.String("addr", s.Addr()), zap.Int("world_size", s.cfg.WorldSize),
		zap.Int("max_restarts", s.cfg.MaxRestarts), zap.Bool("resume", s.cfg.Resume), zap.String("checkpoint_dir", s.cfg.CheckpointDir))

	s.cfg.Metrics.SetReady(true, fmt.Sprintf("coordinating a job of %d ranks", s.cfg.WorldSize))
	defer s.cfg.Metrics.SetReady(false, "the job has ended")
	ticker := time.NewTicker(s.tick)
	stopReq := ctx.Done()
	s.apply(Tick{})
	for s.exit == nil {
		select {
		case env := <-s.events:
			s.handle(env)
		case <-ticker.C:
			s.apply(Tick{})
		case <-stopReq:
			stopReq = nil
			s.apply(StopRequested{Reason: "interrupted (" + context.Cause(ctx).Error() + ")"})
		case err := <-serveErr:
			s.exit = &ExitJob{Code: 1, Msg: fmt.Sprintf("serve %s: %v", s.Addr(), err)}
			s.log.Error("coordinator failed", zap.Error(err))
		}
	}
	ticker.Stop()
	close(s.done)
	s.shutdown()
	if s.exit.Code != 0 {
		return s.exit.Code, errors.New(s.exit.Msg)
	}
	return 0, nil
}

// Message is how the job ended (after Run returned): "completed at step
// S", "stopped at step S; resume with --resume", or the failures.
func (s *Server) Message() string {
	if s.exit == nil || !s.ran.Load() {
		return ""
	}
	return s.exit.Msg
}

// shutdown stops serving: the handlers return (answers already given are
// sent first), then the connections close.
func (s *Server) shutdown() {
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(shutdownGrace)
	select {
	case <-stopped:
	case <-timer.C:
		s.grpc.Stop()
		<-stopped
	}
	timer.Stop()
	s.wg.Wait()
}

// post hands an event to the loop; false once the loop has ended.
func (s *Server) post(env envelope) bool {
	select {
	case s.events <- env:
		return true
	case <-s.done:
		return false
	}
}

func (s *Server) newID() CallID { return CallID(s.nextID.Add(1)) }

// handle registers where an RPC's answer goes, then applies its event.
func (s *Server) handle(env envelope) {
	switch ev := env.ev.(type) {
	case Registered:
		s.calls[ev.Call] = env.reply
	case Finished:
		s.calls[ev.Call] = env.reply
	case Beat:
		if _, ok := s.streams[ev.Stream]; !ok && env.stream != nil {
			s.streams[ev.Stream] = *env.stream
		}
		if ev.Generation == s.gen && ev.RunID == s.runID {
			s.cfg.Metrics.Beat(ev.Rank, ev.Step, ev.Loss, ev.StepSeconds)
		}
	}
	s.apply(env.ev)
	switch ev := env.ev.(type) {
	case RegisterCancelled:
		delete(s.calls, ev.Call)
	case FinishCancelled:
		delete(s.calls, ev.Call)
	case StreamClosed:
		delete(s.streams, ev.Stream)
	}
}

// apply steps the policy and performs its actions.
func (s *Server) apply(ev Event) {
	for _, a := range s.policy.Step(time.Now(), ev) {
		s.perform(a)
	}
	if s.trace != nil {
		s.trace(ev)
	}
}

func (s *Server) perform(a Action) {
	switch a := a.(type) {
	case Assign:
		if a.Generation != s.gen {
			s.cfg.Metrics.Generation(a.Generation, s.gen == 0)
			s.gen = a.Generation
		}
		s.log.Info("assigned", zap.String("worker", a.Worker), zap.Int("rank", a.Rank), zap.Uint64("generation", a.Generation),
			zap.Bool("resume", a.Resume), zap.Int64("step", a.ResumeStep))
		s.answer(a.Call, result{reg: s.assignment(a)})
	case Refuse:
		s.log.Warn("refused", zap.String("worker", a.Worker), zap.String("code", a.Code.String()), zap.String("reason", a.Msg))
		err := status.Error(a.Code, a.Msg)
		if st, ok := s.streams[a.Call]; ok {
			if !st.ended {
				st.end <- err // buffered, and sent once: it ends the stream
				st.ended = true
				s.streams[a.Call] = st
			}
			return // forgotten at its StreamClosed
		}
		s.answer(a.Call, result{err: err})
	case SendCommand:
		// Debug: a command answers every beat; the policy logs each transition once.
		s.log.Debug("command", zap.String("command", a.Command.String()), zap.String("worker", a.Worker),
			zap.Int("rank", a.Rank), zap.Uint64("generation", a.Generation), zap.String("reason", a.Reason))
		st, ok := s.streams[a.Stream]
		if !ok || st.ended {
			return
		}
		select {
		case st.cmds <- &hjepav1.HeartbeatResponse{Command: a.Command, Generation: a.Generation, Reason: a.Reason}:
		default:
			// The worker reads no commands: its beats (and the timeout)
			// decide its fate; a CONTINUE lost here changes nothing.
			s.log.Warn("heartbeat stream not reading; command dropped", zap.String("worker", a.Worker), zap.String("command", a.Command.String()))
		}
	case EndRegistration:
		s.log.Info("registration answered: the job has ended", zap.String("worker", a.Worker), zap.Int("exit_code", a.ExitCode), zap.String("message", a.Msg))
		s.answer(a.Call, result{reg: &hjepav1.RegisterResponse{RunId: s.runID, JobEnd: &hjepav1.JobEnd{ExitCode: int32(a.ExitCode), Message: a.Msg}}})
	case ReplyFinish:
		s.log.Info("finish answered", zap.String("worker", a.Worker), zap.String("next", a.Next.String()),
			zap.Int("exit_code", a.ExitCode), zap.String("message", a.Msg))
		s.answer(a.Call, result{fin: &hjepav1.FinishResponse{Next: a.Next, ExitCode: int32(a.ExitCode), Message: a.Msg}})
	case Evict:
		s.log.Warn("evicting a silent worker: its supervisor should kill it", zap.String("worker", a.Worker), zap.Int("rank", a.Rank),
			zap.String("host", a.Host), zap.Int("pid", a.PID), zap.Uint64("generation", a.Generation))
		if s.cfg.OnEvict != nil {
			s.cfg.OnEvict(a)
		}
	case ProbeCheckpoint:
		s.wg.Add(1)
		go func() { // owned by the loop's wg; reading a large checkpoint's checksums takes a while
			defer s.wg.Done()
			s.post(envelope{ev: probeCheckpoint(s.cfg.CheckpointDir, a.Generation, s.log)})
		}()
	case LogSummary:
		for _, r := range a.Ranks {
			s.log.Info("rank summary", zap.Uint64("generation", a.Generation), zap.Int("rank", r.Rank), zap.String("worker", r.Worker),
				zap.Int64("step", r.Step), zap.Float64("loss", r.Loss), zap.Float64("step_seconds", r.StepSeconds),
				zap.Duration("since_beat", r.SinceBeat))
		}
	case Log:
		fields := make([]zap.Field, len(a.Fields))
		for i, f := range a.Fields {
			fields[i] = zap.Any(f.Key, f.Value)
		}
		switch a.Level {
		case LevelError:
			s.log.Error(a.Msg, fields...)
		case LevelWarn:
			s.log.Warn(a.Msg, fields...)
		default:
			s.log.Info(a.Msg, fields...)
		}
	case ExitJob:
		if a.Code == 0 {
			s.log.Info("coordinator exiting", zap.Int("exit_code", a.Code), zap.String("message", a.Msg))
		} else {
			s.log.Error("coordinator exiting", zap.Int("exit_code", a.Code), zap.String("message", a.Msg))
		}
		s.exit = &a
	}
}

func (s *Server) answer(c CallID, r result) {
	if ch, ok := s.calls[c]; ok {
		ch <- r // buffered, one answer per call
		delete(s.calls, c)
	}
}

func (s *Server) assignment(a Assign) *hjepav1.RegisterResponse {
	peers := make([]*hjepav1.Peer, len(a.Peers))
	for i, p := range a.Peers {
		peers[i] = &hjepav1.Peer{Rank: int32(p.Rank), WorkerId: p.Worker, Address: p.Address, Hostname: p.Hostname}
	}
	var shard *hjepav1.ShardPlan
	if s.cfg.Shard != nil {
		shard = s.cfg.Shard(a.Rank)
	}
	if shard == nil {
		shard = &hjepav1.ShardPlan{NumReplicas: int32(a.WorldSize), Rank: int32(a.Rank)}
	}
	var coll *hjepav1.CollectiveOptions
	if s.cfg.Collective != nil {
		coll = proto.Clone(s.cfg.Collective).(*hjepav1.CollectiveOptions)
	}
	return &hjepav1.RegisterResponse{
		RunId: s.runID, Generation: a.Generation, Rank: int32(a.Rank), WorldSize: int32(a.WorldSize), Peers: peers,
		ConfigYaml: s.cfg.ConfigYAML, ConfigDigest: s.cfg.ConfigDigest, OutDir: s.cfg.OutDir,
		Resume: a.Resume, ResumeStep: a.ResumeStep, ResumeCheckpoint: a.ResumeDir, Shard: shard, Collective: coll,
		HeartbeatIntervalMs: s.cfg.HeartbeatInterval.Milliseconds(), HeartbeatTimeoutMs: s.cfg.HeartbeatTimeout.Milliseconds(),
	}
}

// probeCheckpoint finds the latest checkpoint under dir and its step.
func probeCheckpoint(dir string, gen uint64, log *zap.Logger) CheckpointProbed {
	ev := CheckpointProbed{Generation: gen}
	path, ok, warning, err := (&checkpoint.Manager{Dir: dir, ReadOnly: true}).Latest() // rank 0 may be writing on another host
	if warning != "" {
		log.Warn("skipped damaged checkpoints", zap.String("details", warning))
	}
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	if !ok {
		return ev
	}
	data, err := os.ReadFile(filepath.Join(path, checkpoint.StateFile))
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	var st struct {
		Step int64 `json:"step"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		ev.Err = fmt.Sprintf("%s: %v", filepath.Join(path, checkpoint.StateFile), err)
		return ev
	}
	ev.Found, ev.Step, ev.Dir = true, st.Step, path
	return ev
}

// registered, finished and beat translate requests into the policy's
// events; the policy checks every field (FuzzRequests).
func registered(call CallID, req *hjepav1.RegisterRequest) Registered {
	ev := Registered{Call: call, Worker: req.GetWorkerId(), Digest: req.GetConfigDigest(), PeerAddress: req.GetPeerAddress(),
		Hostname: req.GetHostname(), PID: int(req.GetPid()), LocalRank: int(req.GetLocalRank())}
	if req.Rank != nil {
		ev.Rank, ev.HasRank = int(req.GetRank()), true
	}
	return ev
}

func finished(call CallID, req *hjepav1.FinishRequest) Finished {
	return Finished{Call: call, RunID: req.GetRunId(), Generation: req.GetGeneration(), Rank: int(req.GetRank()),
		Worker: req.GetWorkerId(), Outcome: req.GetOutcome(), Error: req.GetError(), Step: req.GetStep(),
		Failure: req.GetFailureKind(), BatchSize: int(req.GetBatchSize()), DeviceMemory: req.GetDeviceMemoryBytes()}
}

func beat(stream CallID, req *hjepav1.HeartbeatRequest) Beat {
	return Beat{Stream: stream, RunID: req.GetRunId(), Generation: req.GetGeneration(), Rank: int(req.GetRank()),
		Phase: req.GetPhase(), Step: req.GetStep(), Loss: req.GetLoss(), StepSeconds: req.GetStepSeconds(),
		StopRequested: req.GetStopRequested()}
}

// service implements the generated CoordinatorServiceServer over a Server.
type service struct {
	hjepav1.UnimplementedCoordinatorServiceServer
	s *Server
}

var errShutdown = status.Error(codes.Unavailable, "the coordinator is shutting down: the job has ended")

func (h service) Register(ctx context.Context, req *hjepav1.RegisterRequest) (*hjepav1.RegisterResponse, error) {
	s := h.s
	reply := make(chan result, 1)
	ev := registered(s.newID(), req)
	s.log.Info("register", zap.String("worker", ev.Worker), zap.String("host", ev.Hostname), zap.Int("pid", ev.PID),
		zap.String("peer_address", ev.PeerAddress), zap.Int("devices", len(req.GetDevices())))
	if !s.post(envelope{ev: ev, reply: reply}) {
		return nil, errShutdown
	}
	select {
	case r := <-reply:
		return r.reg, r.err
	case <-ctx.Done():
		s.post(envelope{ev: RegisterCancelled{Call: ev.Call}})
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.done:
		r := waitAnswer(reply)
		return r.reg, r.err
	}
}

// waitAnswer returns an answer the loop gave before it ended, or the
// shutdown error.
func waitAnswer(reply <-chan result) result {
	select {
	case r := <-reply:
		return r
	default:
		return result{err: errShutdown}
	}
}

func (h service) Finish(ctx context.Context, req *hjepav1.FinishRequest) (*hjepav1.FinishResponse, error) {
	s := h.s
	reply := make(chan result, 1)
	ev := finished(s.newID(), req)
	if !s.post(envelope{ev: ev, reply: reply}) {
		return nil, errShutdown
	}
	select {
	case r := <-reply:
		return r.fin, r.err
	case <-ctx.Done():
		s.post(envelope{ev: FinishCancelled{Call: ev.Call}})
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.done:
		r := waitAnswer(reply)
		return r.fin, r.err
	}
}

func (h service) Heartbeat(st grpc.BidiStreamingServer[hjepav1.HeartbeatRequest, hjepav1.HeartbeatResponse]) error {
	s := h.s
	id := s.newID()
	cmds := make(chan *hjepav1.HeartbeatResponse, 64)
	end := make(chan error, 1)
	chans := &streamChans{cmds: cmds, end: end}
	recvDone := make(chan struct{})
	s.wg.Add(1)
	// The receiver belongs to this handler; it ends with the stream (its
	// Recv fails once the handler has returned).
	go func() {
		defer s.wg.Done()
		defer close(recvDone)
		for {
			req, err := st.Recv()
			if err != nil {
				s.post(envelope{ev: StreamClosed{Stream: id, Graceful: errors.Is(err, io.EOF), Detail: err.Error()}})
				return
			}
			s.post(envelope{stream: chans, ev: beat(id, req)})
		}
	}()
	flush := func() error {
		for {
			select {
			case c := <-cmds:
				if err := st.Send(c); err != nil {
					return err
				}
			default:
				return nil
			}
		}
	}
	for {
		select {
		case c := <-cmds:
			if err := st.Send(c); err != nil {
				return err
			}
		case err := <-end:
			return err
		case <-recvDone:
			// The worker half-closed (or the stream broke): send what is
			// queued and end.
			return flush()
		case <-s.done:
			if err := flush(); err != nil {
				return err
			}
			return errShutdown
		}
	}
}
