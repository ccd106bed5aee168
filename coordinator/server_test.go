package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// These tests run a real coordinator on 127.0.0.1 with fake workers (plain
// generated clients). They assert what each side is told, never how fast:
// every wait is bounded by a generous deadline (wait).

const (
	token = "job-token"
	wait  = 20 * time.Second
)

func testConfig(t *testing.T, n int) Config {
	return Config{
		WorldSize: n, Listen: "127.0.0.1:0", ConfigYAML: []byte("model: tiny\n"), ConfigDigest: digest,
		OutDir: t.TempDir(), HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		Security: rpcsec.Options{Token: token}, Logger: zaptest.NewLogger(t),
	}
}

// job is a coordinator running in the background.
type job struct {
	t      *testing.T
	srv    *Server
	cancel context.CancelFunc
	done   chan struct{}
	code   int
	err    error
}

func startJob(t *testing.T, cfg Config) *job {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{t: t, srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(j.done)
		j.code, j.err = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-j.done:
		case <-time.After(wait):
			t.Errorf("Run did not return after the test")
		}
	})
	return j
}

// result waits for Run to return.
func (j *job) result() (int, error) {
	j.t.Helper()
	select {
	case <-j.done:
		return j.code, j.err
	case <-time.After(wait):
		j.t.Fatalf("the coordinator did not exit")
		return 0, nil
	}
}

func (j *job) wantExit(code int, substr ...string) {
	j.t.Helper()
	got, err := j.result()
	if got != code {
		j.t.Fatalf("exit code %d (%v), want %d", got, err, code)
	}
	msg := j.srv.Message()
	if (err == nil) != (code == 0) || (err != nil && err.Error() != msg) {
		j.t.Fatalf("exit %d with error %v, message %q", got, err, msg)
	}
	for _, s := range substr {
		if !strings.Contains(msg, s) {
			j.t.Fatalf("exit message %q lacks %q", msg, s)
		}
	}
}

// worker is a fake worker process.
type worker struct {
	t   *testing.T
	id  string
	c   hjepav1.CoordinatorServiceClient
	asg *hjepav1.RegisterResponse

	cancel  context.CancelFunc // the heartbeat stream's
	cmds    chan *hjepav1.HeartbeatResponse
	paused  atomic.Bool // SIGSTOP-like: the stream stays open, no beats
	stopReq atomic.Bool
	step    atomic.Int64
	phase   atomic.Int32
	wg      sync.WaitGroup
}

func dial(t *testing.T, addr, tok string) hjepav1.CoordinatorServiceClient {
	t.Helper()
	opts, err := rpcsec.Options{Token: tok}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return hjepav1.NewCoordinatorServiceClient(conn)
}

func newWorker(t *testing.T, j *job, id string) *worker {
	w := &worker{t: t, id: id, c: dial(t, j.srv.Addr(), token)}
	t.Cleanup(w.stopBeating)
	return w
}

func (w *worker) request(mods ...func(*hjepav1.RegisterRequest)) *hjepav1.RegisterRequest {
	req := &hjepav1.RegisterRequest{WorkerId: w.id, PeerAddress: w.id + ":7000", Hostname: "host-" + w.id, Pid: 42}
	for _, m := range mods {
		m(req)
	}
	return req
}

func rank(r int32) func(*hjepav1.RegisterRequest) {
	return func(q *hjepav1.RegisterRequest) { q.Rank = &r }
}

// register calls Register (blocking until the generation forms).
func (w *worker) register(mods ...func(*hjepav1.RegisterRequest)) (*hjepav1.RegisterResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	asg, err := w.c.Register(ctx, w.request(mods...))
	if err == nil {
		w.asg = asg
	}
	return asg, err
}

// registerAll registers the workers concurrently and starts their beats.
func registerAll(t *testing.T, ws []*worker, mods map[*worker]func(*hjepav1.RegisterRequest)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Go(func() {
			var ms []func(*hjepav1.RegisterRequest)
			if m := mods[w]; m != nil {
				ms = append(ms, m)
			}
			_, errs[i] = w.register(ms...)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("register %s: %v", ws[i].id, err)
		}
	}
	for _, w := range ws {
		w.beat()
	}
}

// beat opens the heartbeat stream, beats every interval, and returns once
// the first beat is answered; commands other than CONTINUE go to w.cmds.
func (w *worker) beat() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.cmds = make(chan *hjepav1.HeartbeatResponse, 100)
	w.phase.Store(int32(hjepav1.WorkerPhase_WORKER_PHASE_TRAINING))
	st, err := w.c.Heartbeat(ctx)
	if err != nil {
		w.t.Fatalf("%s: heartbeat: %v", w.id, err)
	}
	asg, cmds := w.asg, w.cmds
	interval := time.Duration(asg.HeartbeatIntervalMs) * time.Millisecond
	w.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if !w.paused.Load() {
				err := st.Send(&hjepav1.HeartbeatRequest{RunId: asg.RunId, Generation: asg.Generation, Rank: asg.Rank,
					Phase: hjepav1.WorkerPhase(w.phase.Load()), Step: w.step.Add(1), Loss: 2.5, StepSeconds: 0.05, StopRequested: w.stopReq.Load()})
				if err != nil {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	acked := make(chan struct{})
	w.wg.Go(func() {
		first := true
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			if first {
				first = false
				close(acked) // the coordinator has bound the stream to this rank
			}
			if r.Command != hjepav1.Command_COMMAND_CONTINUE {
				select {
				case cmds <- r:
				default:
				}
			}
		}
	})
	select {
	case <-acked:
	case <-time.After(wait):
		w.t.Fatalf("%s: first beat not answered", w.id)
	}
}

// stopBeating cancels the heartbeat stream (as a dying process would).
func (w *worker) stopBeating() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}

// waitCommand waits for a command on the heartbeat stream.
func (w *worker) waitCommand(want hjepav1.Command) *hjepav1.HeartbeatResponse {
	w.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case r := <-w.cmds:
			if r.Command == want {
				return r
			}
		case <-timer.C:
			w.t.Fatalf("%s: no %v", w.id, want)
			return nil
		}
	}
}

func (w *worker) finish(o hjepav1.Outcome, step int64, msg string) (*hjepav1.FinishResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return w.c.Finish(ctx, &hjepav1.FinishRequest{RunId: w.asg.RunId, Generation: w.asg.Generation, Rank: w.asg.Rank,
		WorkerId: w.id, Outcome: o, Error: msg, Step: step})
}

// finishAll reports o from every worker concurrently (Finish is held
// until the generation's outcome is known) and returns the answers.
func finishAll(t *testing.T, ws []*worker, o hjepav1.Outcome, step int64) []*hjepav1.FinishResponse {
	t.Helper()
	out := make([]*hjepav1.FinishResponse, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() { out[i], errs[i] = w.finish(o, step, "") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("finish %s: %v", ws[i].id, err)
		}
	}
	return out
}

func wantCode(t *testing.T, err error, code codes.Code, substr ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want %v", err, code)
	}
	for _, s := range substr {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Fatalf("error %q lacks %q", status.Convert(err).Message(), s)
		}
	}
}

func wantNext(t *testing.T, r *hjepav1.FinishResponse, err error, next hjepav1.Next, code int32, substr ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	if r.Next != next || r.ExitCode != code {
		t.Fatalf("finish answered %v exit %d (%q), want %v exit %d", r.Next, r.ExitCode, r.Message, next, code)
	}
	for _, s := range substr {
		if !strings.Contains(r.Message, s) {
			t.Fatalf("finish message %q lacks %q", r.Message, s)
		}
	}
}

func workers(t *testing.T, j *job, ids ...string) []*worker {
	var ws []*worker
	for _, id := range ids {
		ws = append(ws, newWorker(t, j, id))
	}
	return ws
}

func TestServerRendezvousAndCompletion(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			cfg := testConfig(t, n)
			cfg.Collective = &hjepav1.CollectiveOptions{ChunkBytes: 1 << 20}
			j := startJob(t, cfg)
			var ids []string
			for i := range n {
				ids = append(ids, fmt.Sprintf("w%d", i))
			}
			ws := workers(t, j, ids...)
			registerAll(t, ws, nil)
			seen := map[int32]string{}
			for _, w := range ws {
				a := w.asg
				if a.RunId != j.srv.RunID() || a.Generation != 1 || a.WorldSize != int32(n) || a.Resume || a.ResumeCheckpoint != "" ||
					string(a.ConfigYaml) != "model: tiny\n" || a.ConfigDigest != digest || a.OutDir != cfg.OutDir ||
					a.HeartbeatIntervalMs != 50 || a.HeartbeatTimeoutMs != 2000 || a.Collective.GetChunkBytes() != 1<<20 ||
					a.Shard.GetNumReplicas() != int32(n) || a.Shard.GetRank() != a.Rank {
					t.Fatalf("%s: assignment %v", w.id, a)
				}
				if prev, dup := seen[a.Rank]; dup {
					t.Fatalf("rank %d given to %s and %s", a.Rank, prev, w.id)
				}
				seen[a.Rank] = w.id
				if len(a.Peers) != n {
					t.Fatalf("peers %v", a.Peers)
				}
				for r, p := range a.Peers {
					if p.Rank != int32(r) || p.Address != p.WorkerId+":7000" || p.Hostname != "host-"+p.WorkerId {
						t.Fatalf("peer %d: %v", r, p)
					}
				}
				if a.Peers[a.Rank].WorkerId != w.id {
					t.Fatalf("%s is not peer %d", w.id, a.Rank)
				}
			}
			for _, r := range finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 30) {
				wantNext(t, r, nil, hjepav1.Next_NEXT_EXIT, 0, "completed at step 30")
			}
			j.wantExit(0, "completed at step 30")
		})
	}
}

func TestServerRequestedRanks(t *testing.T) {
	j := startJob(t, testConfig(t, 3))
	ws := workers(t, j, "a", "b", "c")
	registerAll(t, ws, map[*worker]func(*hjepav1.RegisterRequest){ws[0]: rank(2), ws[2]: rank(0)})
	if ws[0].asg.Rank != 2 || ws[1].asg.Rank != 1 || ws[2].asg.Rank != 0 {
		t.Fatalf("ranks %d %d %d", ws[0].asg.Rank, ws[1].asg.Rank, ws[2].asg.Rank)
	}
	finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 1)
	j.wantExit(0)
}

func TestServerRefusals(t *testing.T) {
	j := startJob(t, testConfig(t, 2))
	a := newWorker(t, j, "a")
	aDone := make(chan error, 1)
	go func() { _, err := a.register(rank(0)); aDone <- err }()

	// Each refusal leaves the rendezvous as it was.
	_, err := dial(t, j.srv.Addr(), "not-the-token").Register(context.Background(), &hjepav1.RegisterRequest{WorkerId: "x"})
	wantCode(t, err, codes.Unauthenticated, "wrong job token")
	_, err = newWorker(t, j, "d").register(func(q *hjepav1.RegisterRequest) { q.ConfigDigest = "sha256:mine" })
	wantCode(t, err, codes.FailedPrecondition, "sha256:mine", digest, "coordinator's config")
	_, err = newWorker(t, j, "r").register(rank(2))
	wantCode(t, err, codes.InvalidArgument, "rank 2")

	b := newWorker(t, j, "b")
	if _, err := b.register(); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	a.beat()
	b.beat()
	if a.asg.Rank != 0 || b.asg.Rank != 1 {
		t.Fatalf("ranks %d %d", a.asg.Rank, b.asg.Rank)
	}
	// While the job runs: a duplicate rank, and a worker too many.
	_, err = newWorker(t, j, "dup").register(rank(0))
	wantCode(t, err, codes.AlreadyExists, "rank 0", "worker a")
	_, err = newWorker(t, j, "extra").register()
	wantCode(t, err, codes.ResourceExhausted, "job already has 2 workers")

	for _, r := range finishAll(t, []*worker{a, b}, hjepav1.Outcome_OUTCOME_COMPLETED, 5) {
		wantNext(t, r, nil, hjepav1.Next_NEXT_EXIT, 0)
	}
	j.wantExit(0)
}

func TestServerRegisterCancelled(t *testing.T) {
	cfg := testConfig(t, 2)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	held, left := make(chan struct{}, 1), make(chan struct{}, 1)
	srv.trace = func(ev Event) { // runs on the loop, before Run can race with it
		switch ev := ev.(type) {
		case Registered:
			if ev.Worker == "gone" {
				held <- struct{}{}
			}
		case RegisterCancelled:
			left <- struct{}{}
		}
	}
	j := &job{t: t, srv: srv, done: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	j.cancel = stop
	go func() { defer close(j.done); j.code, j.err = srv.Run(ctx) }()
	t.Cleanup(func() { stop(); <-j.done })

	gone := newWorker(t, j, "gone")
	rctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := gone.c.Register(rctx, gone.request(rank(1))); errc <- err }()
	<-held
	cancel()
	wantCode(t, <-errc, codes.Canceled)
	// The client sees Canceled before the server's handler has told the
	// loop; rank 1 is free only once the loop has taken that in.
	<-left
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, map[*worker]func(*hjepav1.RegisterRequest){ws[1]: rank(1)})
	if ws[1].asg.Rank != 1 {
		t.Fatalf("b got rank %d", ws[1].asg.Rank)
	}
	finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 1)
	j.wantExit(0)
}

func TestServerStreamLossRestartsTheGeneration(t *testing.T) {
	cfg := testConfig(t, 3)
	cfg.MaxRestarts = 2
	j := startJob(t, cfg)
	ws := workers(t, j, "a", "b", "c")
	registerAll(t, ws, nil)
	a, b, c := ws[0], ws[1], ws[2]
	oldRanks := map[string]int32{"a": a.asg.Rank, "b": b.asg.Rank}

	c.stopBeating() // its process died
	for _, w := range []*worker{a, b} {
		cmd := w.waitCommand(hjepav1.Command_COMMAND_ABORT)
		if cmd.Generation != 1 || !strings.Contains(cmd.Reason, "worker c") {
			t.Fatalf("%s: abort %v", w.id, cmd)
		}
		w.stopBeating()
		r, err := w.finish(hjepav1.Outcome_OUTCOME_ABORTED, 3, "aborted by the coordinator")
		wantNext(t, r, err, hjepav1.Next_NEXT_REJOIN, 0)
	}

	c2 := newWorker(t, j, "c-restarted")
	gen2 := []*worker{a, b, c2}
	registerAll(t, gen2, nil)
	for _, w := range gen2 {
		if w.asg.Generation != 2 || w.asg.RunId != j.srv.RunID() {
			t.Fatalf("%s: %v", w.id, w.asg)
		}
	}
	if a.asg.Rank != oldRanks["a"] || b.asg.Rank != oldRanks["b"] || c2.asg.Rank != c.asg.Rank {
		t.Fatalf("generation 2 ranks a=%d b=%d c2=%d, were a=%d b=%d c=%d", a.asg.Rank, b.asg.Rank, c2.asg.Rank,
			oldRanks["a"], oldRanks["b"], c.asg.Rank)
	}
	for _, r := range finishAll(t, gen2, hjepav1.Outcome_OUTCOME_COMPLETED, 10) {
		wantNext(t, r, nil, hjepav1.Next_NEXT_EXIT, 0)
	}
	j.wantExit(0, "completed at step 10")
}

func TestServerSilentWorkerIsLost(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.HeartbeatTimeout = time.Second
	cfg.MaxRestarts = 1
	j := startJob(t, cfg)
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil)
	ws[1].paused.Store(true) // SIGSTOP: the connection stays, the beats stop
	cmd := ws[0].waitCommand(hjepav1.Command_COMMAND_ABORT)
	if !strings.Contains(cmd.Reason, "no heartbeat") || !strings.Contains(cmd.Reason, "worker b") {
		t.Fatalf("abort reason %q", cmd.Reason)
	}
	// SIGCONT: b's beats of generation 1 are told to abort too.
	ws[1].paused.Store(false)
	ws[1].waitCommand(hjepav1.Command_COMMAND_ABORT)
	j.cancel() // stop while waiting for generation 2
	j.wantExit(0, "resume with --resume")
}

func TestServerRestartBudgetExhausted(t *testing.T) {
	j := startJob(t, testConfig(t, 2)) // MaxRestarts 0
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil)
	ws[1].stopBeating()
	ws[0].waitCommand(hjepav1.Command_COMMAND_ABORT)
	r, err := ws[0].finish(hjepav1.Outcome_OUTCOME_ABORTED, 2, "")
	wantNext(t, r, err, hjepav1.Next_NEXT_EXIT, 1, "restart budget exhausted")
	j.wantExit(1, "restart budget exhausted (max_restarts 0)", "generation 1: worker b")
}

func TestServerFailedOutcome(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.MaxRestarts = 3
	j := startJob(t, cfg)
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil)
	r, err := ws[0].finish(hjepav1.Outcome_OUTCOME_FAILED, 4, "loss is NaN at step 4")
	wantNext(t, r, err, hjepav1.Next_NEXT_EXIT, 1, "loss is NaN")
	ws[1].waitCommand(hjepav1.Command_COMMAND_ABORT)
	r, err = ws[1].finish(hjepav1.Outcome_OUTCOME_ABORTED, 4, "")
	wantNext(t, r, err, hjepav1.Next_NEXT_EXIT, 1, "loss is NaN")
	j.wantExit(1, fmt.Sprintf("worker a (rank %d) failed at step 4: loss is NaN at step 4", ws[0].asg.Rank))
}

func TestServerStop(t *testing.T) {
	t.Run("coordinator interrupted", func(t *testing.T) {
		j := startJob(t, testConfig(t, 2))
		ws := workers(t, j, "a", "b")
		registerAll(t, ws, nil)
		j.cancel()
		for _, w := range ws {
			w.waitCommand(hjepav1.Command_COMMAND_STOP)
			w.phase.Store(int32(hjepav1.WorkerPhase_WORKER_PHASE_CHECKPOINTING))
		}
		for _, r := range finishAll(t, ws, hjepav1.Outcome_OUTCOME_STOPPED, 7) {
			wantNext(t, r, nil, hjepav1.Next_NEXT_EXIT, 0)
		}
		j.wantExit(0, "stopped at step 7; resume with --resume")
	})
	t.Run("worker's SIGTERM", func(t *testing.T) {
		j := startJob(t, testConfig(t, 2))
		ws := workers(t, j, "a", "b")
		registerAll(t, ws, nil)
		ws[1].stopReq.Store(true)
		for _, w := range ws {
			cmd := w.waitCommand(hjepav1.Command_COMMAND_STOP)
			if !strings.Contains(cmd.Reason, "worker b") {
				t.Fatalf("stop reason %q", cmd.Reason)
			}
		}
		finishAll(t, ws, hjepav1.Outcome_OUTCOME_STOPPED, 9)
		j.wantExit(0, "stopped at step 9")
	})
	t.Run("not all stop in time", func(t *testing.T) {
		cfg := testConfig(t, 2)
		cfg.StopTimeout = 500 * time.Millisecond
		j := startJob(t, cfg)
		ws := workers(t, j, "a", "b")
		registerAll(t, ws, nil)
		j.cancel()
		ws[0].waitCommand(hjepav1.Command_COMMAND_STOP)
		r, err := ws[0].finish(hjepav1.Outcome_OUTCOME_STOPPED, 3, "")
		wantNext(t, r, err, hjepav1.Next_NEXT_EXIT, 1, "did not report STOPPED")
		j.wantExit(1, fmt.Sprintf("rank %d (worker b)", ws[1].asg.Rank))
	})
}

func writeCheckpoint(t *testing.T, dir string, step int64) {
	t.Helper()
	m := &checkpoint.Manager{Dir: dir}
	err := m.SaveLatest(&checkpoint.Checkpoint{
		Model:     []checkpoint.Tensor{{Name: "w", Shape: []int{2}, Data: []float32{1, 2}}},
		Optimizer: []checkpoint.Tensor{{Name: "w.exp_avg", Shape: []int{2}, Data: []float32{0, 0}}},
		State:     []byte(fmt.Sprintf(`{"format": 1, "step": %d, "epoch": 0}`, step)),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestServerResumesFromCheckpoint(t *testing.T) {
	cfg := testConfig(t, 2)
	writeCheckpoint(t, filepath.Join(cfg.OutDir, "checkpoints"), 42)

	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("New over existing checkpoints without Resume: %v", err)
	}
	cfg.Resume = true
	j := startJob(t, cfg)
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil)
	want := filepath.Join(cfg.OutDir, "checkpoints", checkpoint.LatestName)
	for _, w := range ws {
		if !w.asg.Resume || w.asg.ResumeStep != 42 || w.asg.ResumeCheckpoint != want {
			t.Fatalf("%s: resume %v step %d from %q", w.id, w.asg.Resume, w.asg.ResumeStep, w.asg.ResumeCheckpoint)
		}
	}
	finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 50)
	j.wantExit(0)
}

func TestServerRestartResumesFromCheckpoint(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.MaxRestarts = 1
	j := startJob(t, cfg)
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil)
	writeCheckpoint(t, filepath.Join(cfg.OutDir, "checkpoints"), 20) // rank 0's periodic save
	ws[1].stopBeating()
	ws[0].waitCommand(hjepav1.Command_COMMAND_ABORT)
	ws[0].stopBeating()
	r, err := ws[0].finish(hjepav1.Outcome_OUTCOME_ABORTED, 25, "")
	wantNext(t, r, err, hjepav1.Next_NEXT_REJOIN, 0)
	registerAll(t, ws, nil)
	for _, w := range ws {
		if w.asg.Generation != 2 || !w.asg.Resume || w.asg.ResumeStep != 20 || w.asg.ResumeCheckpoint == "" {
			t.Fatalf("%s: %v", w.id, w.asg)
		}
	}
	finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 30)
	j.wantExit(0)
}

func TestNewChecks(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.Resume = true
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("resume without a checkpoint: %v", err)
	}
	cfg = testConfig(t, 0)
	if _, err := New(cfg); err == nil {
		t.Fatal("world size 0 accepted")
	}
	cfg = testConfig(t, 2)
	cfg.OutDir = ""
	if _, err := New(cfg); err == nil {
		t.Fatal("no output directory accepted")
	}
	cfg = testConfig(t, 2)
	cfg.Listen = "127.0.0.1:bad"
	if _, err := New(cfg); err == nil {
		t.Fatal("bad listen address accepted")
	}
}

func TestServerWrongRunHeartbeat(t *testing.T) {
	j := startJob(t, testConfig(t, 1))
	w := newWorker(t, j, "a")
	if _, err := w.register(); err != nil {
		t.Fatal(err)
	}
	st, err := w.c.Heartbeat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&hjepav1.HeartbeatRequest{RunId: "other", Generation: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if errors.Is(err, io.EOF) {
		t.Fatal("stream ended without a status")
	}
	wantCode(t, err, codes.FailedPrecondition, "other")
	w.beat()
	r, err := w.finish(hjepav1.Outcome_OUTCOME_COMPLETED, 1, "")
	wantNext(t, r, err, hjepav1.Next_NEXT_EXIT, 0)
	j.wantExit(0)
}
