package coordinator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

const (
	runID   = "run-1"
	digest  = "sha256:job"
	timeout = 10 * time.Second
)

var debugSim = false

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	continueCmd = hjepav1.Command_COMMAND_CONTINUE
	abortCmd    = hjepav1.Command_COMMAND_ABORT
	stopCmd     = hjepav1.Command_COMMAND_STOP

	completed = hjepav1.Outcome_OUTCOME_COMPLETED
	stopped   = hjepav1.Outcome_OUTCOME_STOPPED
	aborted   = hjepav1.Outcome_OUTCOME_ABORTED
	failed    = hjepav1.Outcome_OUTCOME_FAILED

	exitNext   = hjepav1.Next_NEXT_EXIT
	rejoinNext = hjepav1.Next_NEXT_REJOIN
)

// sim drives a Policy with events, a fake clock and call ids, and keeps
// what each worker was told.
type sim struct {
	t    *testing.T
	p    *Policy
	now  time.Time
	next CallID
	acts []Action // the last step's
	all  []Action // every step's

	regCall map[string]CallID  // worker -> its latest Register call
	stream  map[string]CallID  // worker -> its heartbeat stream
	rank    map[string]int     // worker -> its rank in gen
	gen     map[string]uint64  // worker -> its assigned generation
	closed  map[CallID]bool    // streams already closed
	answers map[CallID]*Action // call -> the action that answered it
	exits   int
	probes  []uint64 // ProbeCheckpoint generations not answered yet

	issued    []CallID // Register and Finish calls
	cancelled map[CallID]bool
}

func newSim(t *testing.T, cfg PolicyConfig) *sim {
	t.Helper()
	if cfg.WorldSize == 0 {
		cfg.WorldSize = 2
	}
	if cfg.RunID == "" {
		cfg.RunID = runID
	}
	if cfg.ConfigDigest == "" {
		cfg.ConfigDigest = digest
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = timeout
	}
	return &sim{t: t, p: NewPolicy(cfg), now: t0, regCall: map[string]CallID{}, stream: map[string]CallID{},
		rank: map[string]int{}, gen: map[string]uint64{}, closed: map[CallID]bool{}, answers: map[CallID]*Action{},
		cancelled: map[CallID]bool{}}
}

func (s *sim) call() CallID { s.next++; return s.next }

func (s *sim) advance(d time.Duration) []Action { s.now = s.now.Add(d); return s.step(Tick{}) }

// step applies ev; a ProbeCheckpoint is answered with "no checkpoint"
// unless the test answers it itself (probe = false).
func (s *sim) step(ev Event) []Action {
	s.t.Helper()
	acts := s.p.Step(s.now, ev)
	if debugSim {
		s.t.Logf("%v %#v -> %d actions, phase %v", s.now.Sub(t0), ev, len(acts), s.p.Phase())
	}
	s.acts = acts
	s.all = append(s.all, acts...)
	for i := range acts {
		a := &acts[i]
		var call CallID
		switch x := (*a).(type) {
		case Assign:
			call = x.Call
			s.rank[x.Worker], s.gen[x.Worker] = x.Rank, x.Generation
			delete(s.stream, x.Worker)
		case Refuse:
			call = x.Call
			for _, st := range s.stream {
				if st == call {
					s.closed[st] = true // a refused stream ends; the next beat opens another
				}
			}
		case ReplyFinish:
			call = x.Call
		case EndRegistration:
			call = x.Call
		case ProbeCheckpoint:
			s.probes = append(s.probes, x.Generation)
		case ExitJob:
			s.exits++
			if s.exits > 1 {
				s.t.Fatalf("second ExitJob: %+v", x)
			}
		}
		if call != 0 {
			if prev, ok := s.answers[call]; ok {
				s.t.Fatalf("call %d answered twice: %#v then %#v", call, *prev, *a)
			}
			s.answers[call] = a
		}
	}
	return acts
}

type regOpt func(*Registered)

func withRank(r int) regOpt      { return func(e *Registered) { e.Rank, e.HasRank = r, true } }
func withDigest(d string) regOpt { return func(e *Registered) { e.Digest = d } }
func withoutWorker() regOpt      { return func(e *Registered) { e.Worker = "" } }

func (s *sim) register(w string, opts ...regOpt) []Action {
	ev := Registered{Call: s.call(), Worker: w, Hostname: "host-" + w, PeerAddress: w + ":7000"}
	for _, o := range opts {
		o(&ev)
	}
	s.regCall[w] = ev.Call
	s.issued = append(s.issued, ev.Call)
	return s.step(ev)
}

func (s *sim) cancelRegister(w string) []Action {
	s.cancelled[s.regCall[w]] = true
	return s.step(RegisterCancelled{Call: s.regCall[w]})
}

// beat sends a beat on w's stream, opening one for its assignment's
// generation when it has none.
func (s *sim) beat(w string, step int64, mods ...func(*Beat)) []Action {
	st, ok := s.stream[w]
	if !ok || s.closed[st] {
		st = s.call()
		s.stream[w] = st
	}
	ev := Beat{Stream: st, RunID: runID, Generation: s.gen[w], Rank: s.rank[w], Phase: hjepav1.WorkerPhase_WORKER_PHASE_TRAINING,
		Step: step, Loss: 1.5, StepSeconds: 0.25}
	for _, m := range mods {
		m(&ev)
	}
	return s.step(ev)
}

func (s *sim) closeStream(w string, graceful bool) []Action {
	st := s.stream[w]
	s.closed[st] = true
	return s.step(StreamClosed{Stream: st, Graceful: graceful, Detail: "rpc error: code = Canceled"})
}

func (s *sim) finish(w string, o hjepav1.Outcome, step int64, errMsg string) (CallID, []Action) {
	c := s.call()
	s.issued = append(s.issued, c)
	acts := s.step(Finished{Call: c, RunID: runID, Generation: s.gen[w], Rank: s.rank[w], Worker: w, Outcome: o, Error: errMsg, Step: step})
	return c, acts
}

// answer returns how call c was answered (nil: not yet).
func (s *sim) answer(c CallID) Action {
	if a, ok := s.answers[c]; ok {
		return *a
	}
	return nil
}

func (s *sim) wantPhase(ph Phase) {
	s.t.Helper()
	if s.p.Phase() != ph {
		s.t.Fatalf("phase %v, want %v", s.p.Phase(), ph)
	}
}

func (s *sim) wantAssigned(w string, gen uint64, rank int) Assign {
	s.t.Helper()
	a, ok := s.answer(s.regCall[w]).(Assign)
	if !ok {
		s.t.Fatalf("%s: register answered %#v, want an assignment", w, s.answer(s.regCall[w]))
	}
	if a.Generation != gen || a.Rank != rank {
		s.t.Fatalf("%s: assigned generation %d rank %d, want %d %d", w, a.Generation, a.Rank, gen, rank)
	}
	return a
}

func (s *sim) wantRefused(c CallID, code codes.Code, substr ...string) Refuse {
	s.t.Helper()
	r, ok := s.answer(c).(Refuse)
	if !ok {
		s.t.Fatalf("call %d answered %#v, want a refusal %v", c, s.answer(c), code)
	}
	if r.Code != code {
		s.t.Fatalf("call %d refused %v %q, want %v", c, r.Code, r.Msg, code)
	}
	for _, sub := range substr {
		if !strings.Contains(r.Msg, sub) {
			s.t.Fatalf("refusal %q lacks %q", r.Msg, sub)
		}
	}
	return r
}

// wantJobEnd checks that c (a Register) was told the job has ended, with
// the exit code its worker takes.
func (s *sim) wantJobEnd(c CallID, code int, substr ...string) EndRegistration {
	s.t.Helper()
	r, ok := s.answer(c).(EndRegistration)
	if !ok {
		s.t.Fatalf("call %d answered %#v, want the job's end (exit %d)", c, s.answer(c), code)
	}
	if r.ExitCode != code {
		s.t.Fatalf("call %d told exit %d %q, want exit %d", c, r.ExitCode, r.Msg, code)
	}
	for _, sub := range substr {
		if !strings.Contains(r.Msg, sub) {
			s.t.Fatalf("job end %q lacks %q", r.Msg, sub)
		}
	}
	return r
}

func (s *sim) wantReply(c CallID, next hjepav1.Next, code int, substr ...string) ReplyFinish {
	s.t.Helper()
	r, ok := s.answer(c).(ReplyFinish)
	if !ok {
		s.t.Fatalf("finish call %d answered %#v, want %v", c, s.answer(c), next)
	}
	if r.Next != next || r.ExitCode != code {
		s.t.Fatalf("finish call %d: %v exit %d (%q), want %v exit %d", c, r.Next, r.ExitCode, r.Msg, next, code)
	}
	for _, sub := range substr {
		if !strings.Contains(r.Msg, sub) {
			s.t.Fatalf("reply %q lacks %q", r.Msg, sub)
		}
	}
	return r
}

func (s *sim) wantUnanswered(c CallID) {
	s.t.Helper()
	if a := s.answer(c); a != nil {
		s.t.Fatalf("call %d answered %#v, want it held", c, a)
	}
}

// commands returns the commands sent on w's current stream in acts.
func commands(acts []Action, stream CallID) []hjepav1.Command {
	var out []hjepav1.Command
	for _, a := range acts {
		if c, ok := a.(SendCommand); ok && c.Stream == stream {
			out = append(out, c.Command)
		}
	}
	return out
}

func (s *sim) wantCommand(w string, acts []Action, want hjepav1.Command) SendCommand {
	s.t.Helper()
	for _, a := range acts {
		if c, ok := a.(SendCommand); ok && c.Stream == s.stream[w] && c.Command == want {
			return c
		}
	}
	s.t.Fatalf("%s was not sent %v; actions: %#v", w, want, acts)
	return SendCommand{}
}

func (s *sim) wantNoCommand(w string, acts []Action) {
	s.t.Helper()
	if cs := commands(acts, s.stream[w]); len(cs) > 0 {
		s.t.Fatalf("%s was sent %v", w, cs)
	}
}

func (s *sim) exit() (ExitJob, bool) {
	for _, a := range s.all {
		if e, ok := a.(ExitJob); ok {
			return e, true
		}
	}
	return ExitJob{}, false
}

func (s *sim) wantExit(code int, substr ...string) ExitJob {
	s.t.Helper()
	e, ok := s.exit()
	if !ok {
		s.t.Fatalf("no ExitJob; phase %v", s.p.Phase())
	}
	if e.Code != code {
		s.t.Fatalf("exit %d (%q), want %d", e.Code, e.Msg, code)
	}
	for _, sub := range substr {
		if !strings.Contains(e.Msg, sub) {
			s.t.Fatalf("exit message %q lacks %q", e.Msg, sub)
		}
	}
	s.wantPhase(PhaseDone)
	return e
}

func (s *sim) wantNoExit() {
	s.t.Helper()
	if e, ok := s.exit(); ok {
		s.t.Fatalf("unexpected ExitJob %+v", e)
	}
}

// probe answers the latest ProbeCheckpoint. Without one the generation
// formed without a probe (the first, not resuming): nothing to do.
func (s *sim) probe(found bool, step int64) []Action {
	s.t.Helper()
	if len(s.probes) == 0 {
		if s.p.Phase() != PhaseRunning || found {
			s.t.Fatalf("no ProbeCheckpoint to answer; phase %v", s.p.Phase())
		}
		return nil
	}
	gen := s.probes[len(s.probes)-1]
	s.probes = s.probes[:len(s.probes)-1]
	ev := CheckpointProbed{Generation: gen, Found: found, Step: step}
	if found {
		ev.Dir = fmt.Sprintf("/out/checkpoints/checkpoint_latest@%d", step)
	}
	return s.step(ev)
}

// start registers the workers, answers the probe if any, and beats once
// from each: generation 1 is training.
func (s *sim) start(workers ...string) {
	s.t.Helper()
	for _, w := range workers {
		s.register(w)
	}
	if s.p.Phase() == PhaseForming {
		s.probe(false, 0)
	}
	s.wantPhase(PhaseRunning)
	for _, w := range workers {
		s.beat(w, 0)
	}
}

func TestHappyPath(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newSim(t, PolicyConfig{WorldSize: n})
			var ws []string
			for i := range n {
				ws = append(ws, fmt.Sprintf("w%d", i))
			}
			for i, w := range ws {
				acts := s.register(w)
				if i < n-1 {
					s.wantUnanswered(s.regCall[w])
					s.wantPhase(PhaseWaiting)
				} else if len(acts) == 0 {
					t.Fatal("no actions on the last registration")
				}
			}
			s.wantPhase(PhaseRunning)
			for i, w := range ws {
				a := s.wantAssigned(w, 1, i)
				if a.WorldSize != n || len(a.Peers) != n || a.Resume {
					t.Fatalf("assignment %+v", a)
				}
				for r, p := range a.Peers {
					if p.Rank != r || p.Worker != ws[r] || p.Address != ws[r]+":7000" || p.Hostname != "host-"+ws[r] {
						t.Fatalf("peer %d: %+v", r, p)
					}
				}
			}
			for step := int64(1); step <= 3; step++ {
				s.advance(time.Second)
				for _, w := range ws {
					acts := s.beat(w, step)
					if cs := commands(acts, s.stream[w]); len(cs) != 1 || cs[0] != continueCmd {
						t.Fatalf("beat answered %v", cs)
					}
				}
			}
			var calls []CallID
			for _, w := range ws {
				c, _ := s.finish(w, completed, 100, "")
				calls = append(calls, c)
			}
			for _, c := range calls {
				s.wantReply(c, exitNext, 0)
			}
			s.wantExit(0, "completed at step 100")
		})
	}
}

func TestRankAssignment(t *testing.T) {
	t.Run("requested first then lowest free in registration order", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 4})
		s.register("a")
		s.register("b", withRank(0))
		s.register("c", withRank(2))
		s.register("d")
		s.wantAssigned("b", 1, 0)
		s.wantAssigned("a", 1, 1)
		s.wantAssigned("c", 1, 2)
		s.wantAssigned("d", 1, 3)
	})
	t.Run("survivors keep their rank; newcomers take the free one", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 3, MaxRestarts: 1})
		s.start("a", "b", "c")
		s.closeStream("a", false) // rank 0 lost
		s.finish("b", aborted, 5, "peer lost")
		s.finish("c", aborted, 5, "peer lost")
		s.register("new") // before the survivors: still not rank 1 or 2
		s.register("c")
		s.register("b")
		s.probe(true, 4)
		s.wantAssigned("new", 2, 0)
		s.wantAssigned("b", 2, 1)
		s.wantAssigned("c", 2, 2)
		if a := s.wantAssigned("b", 2, 1); !a.Resume || a.ResumeStep != 4 {
			t.Fatalf("generation 2 does not resume: %+v", a)
		}
	})
	t.Run("registrations beyond world size are refused when the generation forms", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		s.advance(6 * time.Second) // b silent for more than timeout/2: failing
		s.beat("a", 1)
		s.register("x")
		s.register("y")
		s.wantUnanswered(s.regCall["x"])
		s.wantUnanswered(s.regCall["y"])
		s.advance(4 * time.Second) // b lost; a's rank 0 is kept for it
		s.wantPhase(PhaseWaiting)
		s.finish("a", aborted, 1, "")
		s.register("a")
		s.probe(false, 0)
		s.wantAssigned("a", 2, 0)
		s.wantAssigned("x", 2, 1)
		s.wantRefused(s.regCall["y"], codes.ResourceExhausted, "job already has 2 workers")
	})
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *sim)
		reg   []regOpt
		code  codes.Code
		want  []string
		phase Phase
	}{
		{"empty worker id", nil, []regOpt{withoutWorker()}, codes.InvalidArgument, []string{"worker_id"}, PhaseWaiting},
		{"rank >= world size", nil, []regOpt{withRank(2)}, codes.InvalidArgument, []string{"rank 2", "world size is 2"}, PhaseWaiting},
		{"negative rank", nil, []regOpt{withRank(-1)}, codes.InvalidArgument, []string{"rank -1"}, PhaseWaiting},
		{"other config digest", nil, []regOpt{withDigest("sha256:mine")}, codes.FailedPrecondition,
			[]string{"sha256:mine", digest, "coordinator's config", "none"}, PhaseWaiting},
		{"rank requested by a waiting worker", func(s *sim) { s.register("a", withRank(1)) }, []regOpt{withRank(1)},
			codes.AlreadyExists, []string{"rank 1", "worker a"}, PhaseWaiting},
		{"rank of a running worker", func(s *sim) { s.start("a", "b") }, []regOpt{withRank(0)},
			codes.AlreadyExists, []string{"rank 0", "worker a"}, PhaseRunning},
		{"job full", func(s *sim) { s.start("a", "b") }, nil,
			codes.ResourceExhausted, []string{"job already has 2 workers"}, PhaseRunning},
		{"stopping", func(s *sim) { s.start("a", "b"); s.step(StopRequested{Reason: "SIGTERM"}) }, nil,
			codes.FailedPrecondition, []string{"stopping", "SIGTERM"}, PhaseStopping},
		{"failed job", func(s *sim) { s.start("a", "b"); s.finish("a", failed, 3, "NaN loss") }, nil,
			codes.FailedPrecondition, []string{"NaN loss"}, PhaseEnding},
		{"ended job", func(s *sim) {
			s.start("a", "b")
			s.finish("a", completed, 9, "")
			s.finish("b", completed, 9, "")
		}, nil, codes.FailedPrecondition, []string{"ended", "completed at step 9"}, PhaseDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, PolicyConfig{WorldSize: 2})
			if tc.setup != nil {
				tc.setup(s)
			}
			gen := s.p.Generation()
			s.register("z", tc.reg...)
			s.wantRefused(s.regCall["z"], tc.code, tc.want...)
			s.wantPhase(tc.phase)
			if s.p.Generation() != gen {
				t.Fatalf("generation moved to %d", s.p.Generation())
			}
			if tc.phase == PhaseRunning {
				// The job goes on.
				if cs := commands(s.beat("a", 1), s.stream["a"]); cs[0] != continueCmd {
					t.Fatalf("beat after the refusal answered %v", cs)
				}
			}
		})
	}
}

func TestRefusedRegistrationDoesNotCountTowardsTheRendezvous(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.register("a")
	s.register("z", withDigest("sha256:other"))
	s.wantPhase(PhaseWaiting)
	s.register("b")
	s.wantAssigned("a", 1, 0)
	s.wantAssigned("b", 1, 1)
}

func TestSameWorkerRegisteringTwiceSupersedes(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.register("a")
	first := s.regCall["a"]
	s.register("a")
	s.wantRefused(first, codes.Aborted, "superseded")
	s.wantPhase(PhaseWaiting)
	s.register("b")
	s.wantAssigned("a", 1, 0)
}

func TestRegistrationCancelled(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.register("a", withRank(1))
	s.cancelRegister("a")
	s.register("b", withRank(1)) // a's rank is free again
	s.wantUnanswered(s.regCall["b"])
	s.register("c")
	s.wantAssigned("b", 1, 1)
	s.wantAssigned("c", 1, 0)
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Run("silent after beating (SIGSTOP)", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		for range 9 {
			s.advance(time.Second)
			s.beat("a", 1)
		}
		s.wantPhase(PhaseRunning)
		acts := s.advance(time.Second) // b's last beat was 10 s ago
		s.wantCommand("a", acts, abortCmd)
		s.wantNoCommand("b", acts)
		s.wantPhase(PhaseWaiting)
		if s.p.Restarts() != 1 {
			t.Fatalf("restarts %d", s.p.Restarts())
		}
	})
	t.Run("never beat after the assignment", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.register("a")
		s.register("b")
		s.beat("a", 0)
		s.advance(9 * time.Second)
		s.beat("a", 0)
		s.wantPhase(PhaseRunning)
		acts := s.advance(time.Second)
		c := s.wantCommand("a", acts, abortCmd)
		if !strings.Contains(c.Reason, "no heartbeat within") {
			t.Fatalf("reason %q", c.Reason)
		}
	})
	t.Run("a finished worker needs no beats", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		ca, _ := s.finish("a", completed, 10, "")
		for range 30 {
			s.advance(time.Second)
			s.beat("b", 9)
		}
		s.wantPhase(PhaseRunning)
		cb, _ := s.finish("b", completed, 10, "")
		s.wantReply(ca, exitNext, 0)
		s.wantReply(cb, exitNext, 0)
		s.wantExit(0)
	})
}

func TestStreamClose(t *testing.T) {
	t.Run("broken: lost at once", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		acts := s.closeStream("b", false)
		c := s.wantCommand("a", acts, abortCmd)
		if !strings.Contains(c.Reason, "worker b (rank 1") || !strings.Contains(c.Reason, "heartbeat stream broken") {
			t.Fatalf("abort reason %q", c.Reason)
		}
		s.wantPhase(PhaseWaiting)
	})
	t.Run("graceful: Finish follows", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		s.closeStream("b", true)
		s.advance(5 * time.Second)
		s.beat("a", 1)
		s.wantPhase(PhaseRunning)
		cb, _ := s.finish("b", completed, 10, "")
		for range 20 {
			s.advance(time.Second)
			s.beat("a", 9)
		}
		s.wantPhase(PhaseRunning)
		ca, _ := s.finish("a", completed, 10, "")
		s.wantReply(ca, exitNext, 0)
		s.wantReply(cb, exitNext, 0)
	})
	t.Run("graceful without Finish: lost after the timeout", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		s.closeStream("b", true)
		s.advance(9 * time.Second)
		s.beat("a", 1)
		s.wantPhase(PhaseRunning)
		acts := s.advance(time.Second)
		c := s.wantCommand("a", acts, abortCmd)
		if !strings.Contains(c.Reason, "no Finish") {
			t.Fatalf("reason %q", c.Reason)
		}
	})
	t.Run("broken in phase FINISHING: Finish follows", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		s.beat("b", 10, func(b *Beat) { b.Phase = hjepav1.WorkerPhase_WORKER_PHASE_FINISHING })
		s.closeStream("b", false)
		s.wantPhase(PhaseRunning)
		s.finish("b", completed, 10, "")
		s.finish("a", completed, 10, "")
		s.wantExit(0)
	})
	t.Run("after Finish: ignored", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		cb, _ := s.finish("b", completed, 10, "")
		s.closeStream("b", false)
		s.wantPhase(PhaseRunning)
		s.wantUnanswered(cb)
	})
}

// TestLossInEveryState loses a worker (broken stream or silence) in each
// state the job can be in, and checks what everyone is told.
func TestLossInEveryState(t *testing.T) {
	type check func(t *testing.T, s *sim, calls map[string]CallID)
	for _, tc := range []struct {
		name   string
		n      int
		resume bool
		setup  func(s *sim) map[string]CallID
		lose   func(s *sim)
		check  check
	}{
		{
			name:  "waiting for registrations",
			setup: func(s *sim) map[string]CallID { s.register("a"); s.register("b", withRank(1)); return nil },
			lose:  func(s *sim) { s.cancelRegister("b") },
			check: func(t *testing.T, s *sim, _ map[string]CallID) {
				s.wantPhase(PhaseWaiting)
				withdrawn := s.regCall["b"]
				s.register("c", withRank(1)) // b's rank is free again
				s.register("d")
				s.wantAssigned("a", 1, 0)
				s.wantAssigned("c", 1, 1)
				s.wantAssigned("d", 1, 2)
				s.wantUnanswered(withdrawn)
				if s.p.Restarts() != 0 {
					t.Fatal("a withdrawn registration used a restart")
				}
			},
		},
		{
			name:   "forming (probing the checkpoint)",
			n:      3,
			resume: true,
			setup: func(s *sim) map[string]CallID {
				s.register("a")
				s.register("b")
				s.register("c")
				return nil
			},
			lose: func(s *sim) {
				s.cancelRegister("c")
				s.probe(true, 7)
			},
			check: func(t *testing.T, s *sim, _ map[string]CallID) {
				s.wantPhase(PhaseWaiting)
				s.register("d")
				s.wantPhase(PhaseForming)
				s.probe(true, 7)
				s.wantAssigned("a", 1, 0)
				s.wantAssigned("b", 1, 1)
				s.wantAssigned("d", 1, 2)
			},
		},
		{
			name: "assigned, not all beating",
			setup: func(s *sim) map[string]CallID {
				s.register("a")
				s.register("b")
				s.register("c")
				s.probe(false, 0)
				s.beat("a", 0)
				s.beat("b", 0) // c has no stream yet
				return nil
			},
			lose: func(s *sim) { s.closeStream("b", false) },
			check: func(t *testing.T, s *sim, _ map[string]CallID) {
				s.wantCommand("a", s.acts, abortCmd)
				s.wantPhase(PhaseWaiting)
				// c opens its stream late: told to abort, nothing changes.
				acts := s.beat("c", 0)
				s.wantCommand("c", acts, abortCmd)
				s.wantPhase(PhaseWaiting)
			},
		},
		{
			name: "training",
			setup: func(s *sim) map[string]CallID {
				s.start("a", "b", "c")
				s.advance(time.Second)
				s.beat("a", 1)
				s.beat("b", 1)
				s.beat("c", 1)
				return nil
			},
			lose: func(s *sim) {
				s.advance(5 * time.Second)
				s.beat("a", 2)
				s.beat("b", 2)
				s.advance(5 * time.Second) // c silent 10 s
			},
			check: func(t *testing.T, s *sim, _ map[string]CallID) {
				s.wantCommand("a", s.acts, abortCmd)
				s.wantCommand("b", s.acts, abortCmd)
				s.wantPhase(PhaseWaiting)
			},
		},
		{
			name: "stopping",
			setup: func(s *sim) map[string]CallID {
				s.start("a", "b", "c")
				s.step(StopRequested{Reason: "SIGTERM"})
				ca, _ := s.finish("a", stopped, 50, "")
				return map[string]CallID{"a": ca}
			},
			lose: func(s *sim) { s.closeStream("c", false) },
			check: func(t *testing.T, s *sim, calls map[string]CallID) {
				s.wantReply(calls["a"], exitNext, 1, "stop failed")
				s.wantCommand("b", s.acts, abortCmd)
				s.wantPhase(PhaseEnding)
				cb, _ := s.finish("b", aborted, 50, "cancelled")
				s.wantReply(cb, exitNext, 1)
				s.wantExit(1, "coordinated stop failed", "worker c")
			},
		},
		{
			name: "after some completed",
			setup: func(s *sim) map[string]CallID {
				s.start("a", "b", "c")
				ca, _ := s.finish("a", completed, 100, "")
				return map[string]CallID{"a": ca}
			},
			lose: func(s *sim) { s.closeStream("c", false) },
			check: func(t *testing.T, s *sim, calls map[string]CallID) {
				s.wantReply(calls["a"], rejoinNext, 0, "generation 1 aborted")
				s.wantCommand("b", s.acts, abortCmd)
				s.wantPhase(PhaseWaiting)
				s.wantNoExit()
			},
		},
		{
			name: "finishing: all but one completed",
			n:    2,
			setup: func(s *sim) map[string]CallID {
				s.start("a", "b")
				s.beat("b", 100, func(b *Beat) { b.Phase = hjepav1.WorkerPhase_WORKER_PHASE_FINISHING })
				ca, _ := s.finish("a", completed, 100, "")
				return map[string]CallID{"a": ca}
			},
			lose: func(s *sim) {
				s.closeStream("b", false) // finishing: gets heartbeat_timeout to Finish
				s.advance(timeout)
			},
			check: func(t *testing.T, s *sim, calls map[string]CallID) {
				s.wantReply(calls["a"], rejoinNext, 0, "sent no Finish")
				s.wantPhase(PhaseWaiting)
			},
		},
		{
			name: "ending (after a FAILED)",
			setup: func(s *sim) map[string]CallID {
				s.start("a", "b", "c")
				ca, _ := s.finish("a", failed, 9, "non-finite loss")
				return map[string]CallID{"a": ca}
			},
			lose: func(s *sim) { s.closeStream("c", false) },
			check: func(t *testing.T, s *sim, calls map[string]CallID) {
				s.wantReply(calls["a"], exitNext, 1, "non-finite loss")
				s.wantPhase(PhaseEnding) // b still owes its Finish
				cb, _ := s.finish("b", aborted, 9, "")
				s.wantReply(cb, exitNext, 1, "non-finite loss")
				// c's stream broke after the abort: it may still Finish,
				// for at most heartbeat_timeout.
				s.wantNoExit()
				s.advance(timeout)
				s.wantExit(1, "worker a (rank 0) failed at step 9: non-finite loss")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.n == 0 {
				tc.n = 3
			}
			s := newSim(t, PolicyConfig{WorldSize: tc.n, MaxRestarts: 3, Resume: tc.resume})
			calls := tc.setup(s)
			tc.lose(s)
			tc.check(t, s, calls)
		})
	}
}

func TestAbortAndRejoin(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 3, MaxRestarts: 2})
	s.register("a")
	s.register("b")
	s.register("c")
	s.probe(false, 0)
	s.beat("a", 0)
	s.beat("b", 0)
	s.beat("c", 0)
	old := s.stream["a"]
	acts := s.closeStream("b", false)
	s.wantCommand("a", acts, abortCmd)
	s.wantCommand("c", acts, abortCmd)
	ca, _ := s.finish("a", aborted, 20, "aborted by coordinator")
	s.wantReply(ca, rejoinNext, 0)
	// A late duplicate Finish of the aborted generation: rejoin again.
	ca2, _ := s.finish("a", aborted, 20, "")
	s.wantReply(ca2, rejoinNext, 0)
	s.register("a")
	s.register("b2") // b's replacement
	s.wantPhase(PhaseWaiting)
	cc, _ := s.finish("c", aborted, 20, "")
	s.wantReply(cc, rejoinNext, 0)
	s.register("c")
	s.wantPhase(PhaseForming)
	s.probe(true, 15)
	s.wantAssigned("a", 2, 0)
	s.wantAssigned("b2", 2, 1)
	a := s.wantAssigned("c", 2, 2)
	if !a.Resume || a.ResumeStep != 15 {
		t.Fatalf("assignment %+v", a)
	}
	// Old streams: their beats are told to abort and change nothing; their
	// close is ignored.
	acts = s.step(Beat{Stream: old, RunID: runID, Generation: 1, Rank: 0, Step: 20})
	if cs := commands(acts, old); len(cs) != 1 || cs[0] != abortCmd {
		t.Fatalf("stale beat answered %v", cs)
	}
	s.step(StreamClosed{Stream: old})
	s.wantPhase(PhaseRunning)
	s.beat("a", 15)
	s.beat("b2", 15)
	s.beat("c", 15)
	s.wantPhase(PhaseRunning)
	if s.p.Restarts() != 1 {
		t.Fatalf("restarts %d", s.p.Restarts())
	}
	// A Finish of generation 1 arriving now: rejoin (it is over), no effect.
	c, _ := s.finishGen("c", 1, 0, aborted)
	s.wantReply(c, rejoinNext, 0)
	s.wantPhase(PhaseRunning)
}

func (s *sim) finishGen(w string, gen uint64, rank int, o hjepav1.Outcome) (CallID, []Action) {
	c := s.call()
	return c, s.step(Finished{Call: c, RunID: runID, Generation: gen, Rank: rank, Worker: w, Outcome: o})
}

func TestReplacementBeforeAbortFinished(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	s.closeStream("b", false)
	// The replacement arrives while a is still aborting.
	s.register("b-new")
	s.wantUnanswered(s.regCall["b-new"])
	// Another process asks for a's rank while a is alive: refused.
	s.register("intruder", withRank(0))
	s.wantRefused(s.regCall["intruder"], codes.AlreadyExists, "worker a")
	// A restarted process may ask for the lost rank.
	s.register("b-again", withRank(1))
	s.wantUnanswered(s.regCall["b-again"])
	ca, _ := s.finish("a", aborted, 3, "")
	s.wantReply(ca, rejoinNext, 0)
	s.register("a")
	s.probe(false, 0)
	s.wantAssigned("a", 2, 0)
	s.wantAssigned("b-again", 2, 1)
	s.wantRefused(s.regCall["b-new"], codes.ResourceExhausted)
	s.beat("a", 0)
	s.beat("b-again", 0)
	s.finish("a", completed, 10, "")
	s.finish("b-again", completed, 10, "")
	s.wantExit(0)
}

func TestSurvivorReservationExpires(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	s.closeStream("b", false)
	s.register("x")
	s.register("y")
	s.wantPhase(PhaseWaiting) // rank 0 is a's until it comes back or times out
	s.advance(timeout - time.Second)
	s.wantPhase(PhaseWaiting)
	s.advance(time.Second) // a never came back
	s.probe(false, 0)
	s.wantAssigned("x", 2, 0)
	s.wantAssigned("y", 2, 1)
	s.register("a")
	s.wantRefused(s.regCall["a"], codes.ResourceExhausted)
}

func TestRestartBudgetExhausted(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	s.closeStream("b", false)
	s.finish("a", aborted, 3, "")
	s.register("a")
	s.register("b")
	s.probe(false, 0)
	s.beat("a", 0)
	s.beat("b", 0)
	acts := s.closeStream("a", false)
	s.wantCommand("b", acts, abortCmd)
	s.wantPhase(PhaseEnding)
	cb, _ := s.finish("b", aborted, 4, "")
	s.wantReply(cb, exitNext, 1, "restart budget exhausted")
	s.wantExit(1, "restart budget exhausted (max_restarts 1)", "generation 1: worker b", "generation 2: worker a")
}

func TestZeroRestarts(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.start("a", "b")
	s.advance(timeout) // both silent
	s.wantExit(1, "max_restarts 0", "rank 0", "rank 1")
}

func TestEndingIsBounded(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 3})
	s.start("a", "b", "c")
	s.finish("a", failed, 3, "bad record 17")
	s.beat("b", 3)
	s.advance(timeout - time.Second)
	s.wantNoExit()
	s.advance(time.Second)
	s.wantExit(1, "bad record 17")
}

func TestFailedOutcome(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 3, MaxRestarts: 5})
	s.start("a", "b", "c")
	cc, _ := s.finish("c", completed, 9, "") // c happened to finish first
	ca, acts := s.finish("a", failed, 9, "loss is NaN at step 9")
	s.wantReply(ca, exitNext, 1, "loss is NaN")
	s.wantReply(cc, exitNext, 1, "loss is NaN")
	s.wantCommand("b", acts, abortCmd)
	s.wantNoCommand("c", acts)
	if s.p.Restarts() != 0 {
		t.Fatal("FAILED used a restart")
	}
	// b keeps beating until it notices: told to abort again.
	s.wantCommand("b", s.beat("b", 9), abortCmd)
	cb, _ := s.finish("b", aborted, 9, "")
	s.wantReply(cb, exitNext, 1)
	s.wantExit(1, "worker a (rank 0) failed at step 9: loss is NaN at step 9")
}

func TestAbortedOutcome(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	cb, acts := s.finish("b", aborted, 7, "all-reduce: deadline exceeded")
	s.wantReply(cb, rejoinNext, 0)
	c := s.wantCommand("a", acts, abortCmd)
	if !strings.Contains(c.Reason, "deadline exceeded") {
		t.Fatalf("reason %q", c.Reason)
	}
	s.wantPhase(PhaseWaiting)
}

// failure is how a worker's FAILED generation ended.
type failure struct {
	kind         hjepav1.FailureKind
	batch        int
	deviceMemory uint64
}

func (s *sim) finishFailed(w string, f failure, step int64, errMsg string) (CallID, []Action) {
	c := s.call()
	s.issued = append(s.issued, c)
	acts := s.step(Finished{Call: c, RunID: runID, Generation: s.gen[w], Rank: s.rank[w], Worker: w, Outcome: failed,
		Error: errMsg, Step: step, Failure: f.kind, BatchSize: f.batch, DeviceMemory: f.deviceMemory})
	return c, acts
}

// wantGenerations fails unless exactly n generations were assigned.
func (s *sim) wantGenerations(n uint64) {
	s.t.Helper()
	if g := s.p.Generation(); g != n {
		s.t.Fatalf("%d generations formed, want %d", g, n)
	}
	for _, a := range s.all {
		if x, ok := a.(Assign); ok && x.Generation > n {
			s.t.Fatalf("generation %d assigned: %+v", x.Generation, x)
		}
	}
}

const oomErr = "step 0 (data.batch_size 64): cuda: out of memory on cuda:0: allocating 8.0 MiB (8388608 bytes) with 60.0 MiB held " +
	"by this backend in live tensors (its cache released); the device has 2.0 MiB free of 64.0 MiB: emu: CUDA_ERROR_OUT_OF_MEMORY; " +
	"reduce data.batch_size (or the model or image size), or stop other processes using the GPU"

var oom = failure{kind: hjepav1.FailureKind_FAILURE_KIND_OUT_OF_MEMORY, batch: 64, deviceMemory: 64 << 20}

// TestOutOfMemoryEndsTheJob: a worker whose device ran out of memory would
// run out again in every restart at the same batch size: the job fails in
// its first generation, with a message naming the rank, the batch size and
// the device memory, and no restart is used.
func TestOutOfMemoryEndsTheJob(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s.start("a", "b")
	cb, acts := s.finishFailed("b", oom, 0, oomErr)
	says := []string{"worker b (rank 1) ran out of memory on its 64.0 MiB device at step 0 with data.batch_size 64",
		"every restart would", "reduce data.batch_size", "2.0 MiB free of 64.0 MiB"}
	s.wantReply(cb, exitNext, 1, says...)
	s.wantCommand("a", acts, abortCmd)
	s.wantPhase(PhaseEnding)
	ca, _ := s.finish("a", aborted, 0, "aborted by the coordinator")
	s.wantReply(ca, exitNext, 1, says...)
	s.wantExit(1, says...)
	s.wantGenerations(1)
	if s.p.Restarts() != 0 {
		t.Fatalf("%d restarts used, want 0", s.p.Restarts())
	}
}

// TestOutOfMemoryAfterPeerAborted: the peer's ABORTED (it saw the failed
// worker leave the ring) can reach the coordinator first and abort the
// generation; the out of memory that follows still ends the job before a
// second generation forms.
func TestOutOfMemoryAfterPeerAborted(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s.start("a", "b")
	ca, _ := s.finish("a", aborted, 0, "all-reduce: rank 1 closed the stream")
	s.wantReply(ca, rejoinNext, 0)
	s.wantPhase(PhaseWaiting)
	s.register("a")
	cb, _ := s.finishFailed("b", oom, 0, oomErr)
	s.wantReply(cb, exitNext, 1, "rank 1", "data.batch_size 64", "64.0 MiB device")
	s.wantJobEnd(s.regCall["a"], 1, "data.batch_size 64")
	s.wantExit(1, "rank 1", "data.batch_size 64", "64.0 MiB device")
	s.wantGenerations(1)
	// A FAILED of another kind after such an abort is answered as before.
	s2 := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s2.start("a", "b")
	s2.finish("a", aborted, 0, "")
	cb2, _ := s2.finish("b", failed, 0, "bad record")
	s2.wantReply(cb2, rejoinNext, 0)
	s2.wantNoExit()
}

// TestDeviceFaultRestarts: a device fault other than an out of memory (a
// driver error, a lost GPU) may not repeat on a fresh context: the
// generation is aborted and restarted within max_restarts, like a crash.
func TestDeviceFaultRestarts(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	cb, acts := s.finishFailed("b", failure{kind: hjepav1.FailureKind_FAILURE_KIND_DEVICE, batch: 64}, 5,
		"cuda: launch hjepa_axpy on cuda:0: CUDA_ERROR_ILLEGAL_ADDRESS")
	s.wantReply(cb, rejoinNext, 0)
	s.wantCommand("a", acts, abortCmd)
	ca, _ := s.finish("a", aborted, 5, "")
	s.wantReply(ca, rejoinNext, 0)
	s.register("a")
	s.register("b")
	s.probe(false, 0)
	s.wantAssigned("a", 2, 0)
	s.wantAssigned("b", 2, 1)
	if s.p.Restarts() != 1 {
		t.Fatalf("%d restarts, want 1", s.p.Restarts())
	}
	// The budget is spent: the next fault ends the job.
	s.beat("a", 0)
	s.beat("b", 0)
	s.finishFailed("b", failure{kind: hjepav1.FailureKind_FAILURE_KIND_DEVICE}, 2, "CUDA_ERROR_ECC_UNCORRECTABLE")
	s.finish("a", aborted, 2, "")
	s.wantExit(1, "restart budget exhausted", "device fault", "CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_ECC_UNCORRECTABLE")
}

// TestCrashRestartsOutOfMemoryDoesNot: a plain crash (the worker's stream
// breaks) still restarts the job; the out of memory in the new generation
// ends it there, with restarts left.
func TestCrashRestartsOutOfMemoryDoesNot(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s.start("a", "b")
	acts := s.closeStream("b", false)
	s.wantCommand("a", acts, abortCmd)
	s.finish("a", aborted, 4, "")
	s.register("a")
	s.register("b")
	s.probe(true, 4)
	s.wantAssigned("b", 2, 1)
	s.beat("a", 4)
	s.beat("b", 4)
	cb, _ := s.finishFailed("b", failure{kind: hjepav1.FailureKind_FAILURE_KIND_OUT_OF_MEMORY, batch: 64}, 4, oomErr)
	s.wantReply(cb, exitNext, 1, "rank 1", "data.batch_size 64")
	s.finish("a", aborted, 4, "")
	s.wantExit(1, "worker b (rank 1) ran out of memory on its device at step 4 with data.batch_size 64")
	s.wantGenerations(2)
	if s.p.Restarts() != 1 {
		t.Fatalf("%d restarts, want 1", s.p.Restarts())
	}
}

func TestStop(t *testing.T) {
	t.Run("while waiting", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.register("a")
		s.step(StopRequested{Reason: "SIGTERM"})
		s.wantJobEnd(s.regCall["a"], 0, "the job has stopped")
		s.wantExit(0)
	})
	t.Run("while waiting after an abort", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		s.closeStream("b", false)
		s.step(StopRequested{Reason: "SIGTERM"})
		s.wantExit(0, "resume with --resume")
	})
	t.Run("coordinator's stop while running", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 3})
		s.register("a")
		s.register("b")
		s.register("c")
		s.beat("a", 60)
		s.beat("b", 60) // c has not opened its stream yet
		s.advance(6 * time.Second)
		s.beat("a", 60)
		s.beat("b", 60)
		s.register("late") // c looks unwell: late waits
		s.wantUnanswered(s.regCall["late"])
		acts := s.step(StopRequested{Reason: "SIGTERM"})
		s.wantCommand("a", acts, stopCmd)
		s.wantCommand("b", acts, stopCmd)
		s.wantJobEnd(s.regCall["late"], 0, "stopping")
		s.wantPhase(PhaseStopping)
		s.wantCommand("c", s.beat("c", 60), stopCmd)
		s.wantCommand("a", s.beat("a", 60, func(b *Beat) { b.Phase = hjepav1.WorkerPhase_WORKER_PHASE_CHECKPOINTING }), stopCmd)
		ca, _ := s.finish("a", stopped, 70, "")
		cb, _ := s.finish("b", stopped, 70, "")
		s.wantUnanswered(ca)
		for range 60 { // checkpointing takes a while; c keeps beating
			s.advance(time.Second)
			s.beat("c", 70)
		}
		cc, _ := s.finish("c", stopped, 70, "")
		for _, c := range []CallID{ca, cb, cc} {
			s.wantReply(c, exitNext, 0, "stopped at step 70")
		}
		s.wantExit(0, "stopped at step 70; resume with --resume")
	})
	t.Run("worker's stop_requested", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		acts := s.beat("b", 5, func(b *Beat) { b.StopRequested = true })
		s.wantCommand("a", acts, stopCmd)
		c := s.wantCommand("b", acts, stopCmd)
		if !strings.Contains(c.Reason, "worker b") {
			t.Fatalf("reason %q", c.Reason)
		}
		// A second request changes nothing.
		s.wantCommand("a", s.beat("a", 5, func(b *Beat) { b.StopRequested = true }), stopCmd)
		s.finish("a", stopped, 6, "")
		s.finish("b", stopped, 6, "")
		s.wantExit(0, "stopped at step 6")
	})
	t.Run("a worker reporting STOPPED unasked stops the others", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		_, acts := s.finish("a", stopped, 6, "")
		s.wantCommand("b", acts, stopCmd)
		s.finish("b", stopped, 6, "")
		s.wantExit(0)
	})
	t.Run("completed and stopped together", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		s.finish("a", completed, 100, "")
		s.step(StopRequested{Reason: "SIGTERM"})
		s.finish("b", stopped, 100, "")
		s.wantExit(0, "stopped at step 100")
	})
	t.Run("timeout", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, StopTimeout: 30 * time.Second})
		s.start("a", "b")
		s.step(StopRequested{Reason: "SIGTERM"})
		ca, _ := s.finish("a", stopped, 6, "")
		for range 29 {
			s.advance(time.Second)
			s.beat("b", 5) // alive but never done
		}
		s.wantNoExit()
		acts := s.advance(time.Second)
		s.wantCommand("b", acts, abortCmd)
		s.wantReply(ca, exitNext, 1, "rank 1")
		s.wantExit(1, "did not finish within 30s")
	})
	t.Run("ABORTED during the stop", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
		s.start("a", "b")
		s.step(StopRequested{Reason: "SIGTERM"})
		cb, _ := s.finish("b", aborted, 6, "barrier failed")
		s.wantReply(cb, exitNext, 1)
		ca, _ := s.finish("a", aborted, 6, "")
		s.wantReply(ca, exitNext, 1)
		s.wantExit(1, "stop failed", "barrier failed")
	})
	t.Run("twice", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2})
		s.start("a", "b")
		s.step(StopRequested{Reason: "SIGTERM"})
		if acts := s.step(StopRequested{Reason: "SIGINT"}); len(acts) != 0 {
			t.Fatalf("second stop: %#v", acts)
		}
	})
}

func TestDuplicateAndLateFinish(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	c1, _ := s.finish("a", completed, 10, "")
	c2, _ := s.finish("a", completed, 10, "") // a retry: both answered
	c3, _ := s.finish("a", completed, 10, "")
	s.step(FinishCancelled{Call: c3}) // the client gave up on this one
	// Not a member, not the latest generation, no outcome: refused.
	bad := s.call()
	s.step(Finished{Call: bad, RunID: runID, Generation: 1, Rank: 1, Worker: "a", Outcome: completed})
	s.wantRefused(bad, codes.InvalidArgument, "not rank 1")
	future := s.call()
	s.step(Finished{Call: future, RunID: runID, Generation: 2, Rank: 0, Worker: "a", Outcome: completed})
	s.wantRefused(future, codes.InvalidArgument, "generation 2")
	none := s.call()
	s.step(Finished{Call: none, RunID: runID, Generation: 1, Rank: 0, Worker: "a"})
	s.wantRefused(none, codes.InvalidArgument, "outcome")
	other := s.call()
	s.step(Finished{Call: other, RunID: "run-0", Generation: 1, Rank: 0, Worker: "a", Outcome: completed})
	s.wantRefused(other, codes.FailedPrecondition, "run-0")
	s.wantPhase(PhaseRunning)
	cb, _ := s.finish("b", completed, 10, "")
	for _, c := range []CallID{c1, c2, cb} {
		s.wantReply(c, exitNext, 0)
	}
	s.wantUnanswered(c3)
	// Finish after the exit (the shell is shutting down): told to exit.
	late, _ := s.finish("a", completed, 10, "")
	s.wantReply(late, exitNext, 0)
}

func TestDetachedCompletedWorkerStillCounts(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.start("a", "b")
	ca, _ := s.finish("a", completed, 10, "")
	s.step(FinishCancelled{Call: ca}) // a died after completing
	s.finish("b", completed, 10, "")
	s.wantUnanswered(ca)
	s.wantExit(0)
}

func TestHeartbeatStreams(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.start("a", "b")
	dup := s.call()
	s.step(Beat{Stream: dup, RunID: runID, Generation: 1, Rank: 0})
	s.wantRefused(dup, codes.AlreadyExists, "already has a heartbeat stream")
	other := s.call()
	s.step(Beat{Stream: other, RunID: "run-0", Generation: 1, Rank: 0})
	s.wantRefused(other, codes.FailedPrecondition, "run-0")
	future := s.call()
	s.step(Beat{Stream: future, RunID: runID, Generation: 2, Rank: 0})
	s.wantRefused(future, codes.InvalidArgument, "generation 2")
	badRank := s.call()
	s.step(Beat{Stream: badRank, RunID: runID, Generation: 1, Rank: 5})
	s.wantRefused(badRank, codes.InvalidArgument, "rank 5")
	// The refused duplicate closing is not a's stream breaking.
	s.step(StreamClosed{Stream: dup})
	s.wantPhase(PhaseRunning)
}

func TestMemberRegisteringAgainLeftItsGeneration(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	acts := s.register("b") // b restarted with the same id
	s.wantCommand("a", acts, abortCmd)
	s.wantPhase(PhaseWaiting)
	s.wantUnanswered(s.regCall["b"])
	s.finish("a", aborted, 1, "")
	s.register("a")
	s.probe(false, 0)
	s.wantAssigned("a", 2, 0)
	s.wantAssigned("b", 2, 1)
}

func TestNewWorkerWaitsWhileOneIsFailing(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
	s.start("a", "b")
	s.advance(4 * time.Second)
	s.beat("a", 1)
	s.register("early")
	s.wantRefused(s.regCall["early"], codes.ResourceExhausted)
	s.advance(2 * time.Second) // b silent for 6 s > timeout/2
	s.beat("a", 2)
	s.register("spare")
	s.wantUnanswered(s.regCall["spare"])
	s.advance(4 * time.Second) // b lost
	s.wantPhase(PhaseWaiting)
	s.finish("a", aborted, 2, "")
	s.register("a")
	s.probe(true, 2)
	s.wantAssigned("a", 2, 0)
	s.wantAssigned("spare", 2, 1)
}

func TestRendezvousTimeout(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 3, RendezvousTimeout: time.Minute})
	s.step(Tick{})
	s.advance(30 * time.Second)
	s.register("a")
	s.advance(29 * time.Second)
	s.wantNoExit()
	s.advance(time.Second)
	s.wantJobEnd(s.regCall["a"], 1, "rendezvous timed out")
	s.wantExit(1, "rendezvous timed out after 1m0s: 1 of 3 workers", "a on host-a")
}

func TestRendezvousTimeoutAfterAbort(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3, RendezvousTimeout: time.Minute})
	s.start("a", "b")
	s.advance(5 * time.Minute)
	s.wantPhase(PhaseWaiting) // both silent: aborted
	s.advance(time.Minute)
	s.wantExit(1, "rendezvous timed out", "generation 2")
}

func TestCheckpointProbe(t *testing.T) {
	t.Run("resume on the first generation", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, Resume: true})
		s.register("a")
		acts := s.register("b")
		if len(acts) == 0 {
			t.Fatal("no probe")
		}
		s.probe(true, 300)
		a := s.wantAssigned("a", 1, 0)
		if !a.Resume || a.ResumeStep != 300 || a.ResumeDir == "" {
			t.Fatalf("assignment %+v", a)
		}
	})
	t.Run("no checkpoint yet after an abort: start over", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 1})
		s.start("a", "b")
		s.closeStream("b", false)
		s.finish("a", aborted, 0, "")
		s.register("a")
		s.register("b")
		s.probe(false, 0)
		if a := s.wantAssigned("a", 2, 0); a.Resume {
			t.Fatalf("assignment %+v", a)
		}
	})
	t.Run("damaged checkpoints", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, Resume: true})
		s.register("a")
		s.register("b")
		s.step(CheckpointProbed{Generation: 1, Err: "no readable checkpoint"})
		s.wantJobEnd(s.regCall["a"], 1, "no readable checkpoint")
		s.wantExit(1, "cannot resume")
	})
	t.Run("a stale probe result is ignored", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, Resume: true})
		s.register("a")
		s.step(CheckpointProbed{Generation: 1, Found: true, Step: 1})
		s.wantPhase(PhaseWaiting)
	})
}

func TestSummary(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.start("a", "b")
	s.advance(5 * time.Second)
	s.beat("a", 40, func(b *Beat) { b.Loss, b.StepSeconds = 0.75, 0.125 })
	s.beat("b", 40)
	acts := s.advance(5 * time.Second)
	if len(acts) != 1 {
		t.Fatalf("actions %#v", acts)
	}
	sum, ok := acts[0].(LogSummary)
	if !ok || sum.Generation != 1 || len(sum.Ranks) != 2 {
		t.Fatalf("summary %#v", acts[0])
	}
	if r := sum.Ranks[0]; r.Rank != 0 || r.Worker != "a" || r.Step != 40 || r.Loss != 0.75 || r.StepSeconds != 0.125 || r.SinceBeat != 5*time.Second {
		t.Fatalf("rank 0 %+v", r)
	}
	s.beat("a", 41)
	s.beat("b", 41)
	if acts := s.advance(time.Second); len(acts) != 0 {
		t.Fatalf("summary again after 1 s: %#v", acts)
	}
}

// TestDeterministic replays one sequence twice and compares the actions.
func TestDeterministic(t *testing.T) {
	run := func() string {
		s := newSim(t, PolicyConfig{WorldSize: 3, MaxRestarts: 2})
		s.register("c", withRank(2))
		s.register("a")
		s.register("b")
		s.probe(false, 0)
		s.beat("a", 1)
		s.beat("b", 1)
		s.beat("c", 1)
		s.advance(11 * time.Second)
		return fmt.Sprintf("%#v", s.all)
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("two runs differ:\n%s\n%s", a, b)
	}
}

// TestRendezvousTimeoutNamesMissingRanks: the job's end names the ranks no
// worker registered for, and who held them in the last generation.
func TestRendezvousTimeoutNamesMissingRanks(t *testing.T) {
	t.Run("first generation", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 4, RendezvousTimeout: time.Minute})
		s.step(Tick{})
		s.register("a", withRank(0))
		s.register("c", withRank(2))
		s.advance(time.Minute)
		s.wantExit(1, "rendezvous timed out after 1m0s", "2 of 4 workers", "missing ranks 1, 3")
	})
	t.Run("after an abort", func(t *testing.T) {
		s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3, RendezvousTimeout: time.Minute})
		s.start("a", "b")
		for range 10 { // b froze: silent for the heartbeat timeout
			s.advance(time.Second)
			s.beat("a", 1)
		}
		s.wantPhase(PhaseWaiting)
		s.finish("a", aborted, 1, "")
		s.register("a")
		s.advance(time.Minute)
		s.wantExit(1, "rendezvous timed out", "generation 2", "1 of 2 workers", "missing rank 1 (worker b on host-b in generation 1)")
	})
}

// TestDefaultRendezvousTimeout: without a RendezvousTimeout the wait is
// still bounded (defaultRendezvousTimeout); a negative one waits forever.
func TestDefaultRendezvousTimeout(t *testing.T) {
	s := newSim(t, PolicyConfig{WorldSize: 2})
	s.step(Tick{})
	s.register("a")
	s.advance(time.Hour)
	s.wantExit(1, "rendezvous timed out", "missing rank 1")

	s = newSim(t, PolicyConfig{WorldSize: 2, RendezvousTimeout: -1})
	s.step(Tick{})
	s.register("a")
	s.advance(100 * time.Hour)
	s.wantNoExit()
}

// TestSilentWorkerEvicted: a worker lost for silence (frozen, hung) is
// evicted with the pid it registered, so that its supervisor kills it; one
// whose stream broke (dead, or alive and rejoining) is not.
func TestSilentWorkerEvicted(t *testing.T) {
	evictions := func(acts []Action) []Evict {
		var ev []Evict
		for _, a := range acts {
			if e, ok := a.(Evict); ok {
				ev = append(ev, e)
			}
		}
		return ev
	}
	pid := func(p int) regOpt { return func(e *Registered) { e.PID = p } }

	s := newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s.register("a", pid(100))
	s.register("b", pid(200))
	s.beat("a", 1)
	s.beat("b", 1)
	for range 10 { // b froze
		s.advance(time.Second)
		s.beat("a", 2)
	}
	s.wantPhase(PhaseWaiting)
	got := evictions(s.all)
	want := []Evict{{Worker: "b", Rank: 1, Host: "host-b", PID: 200, Generation: 1}}
	if len(got) != 1 || got[0].Reason == "" {
		t.Fatalf("evictions %+v, want %+v with a reason", got, want)
	}
	got[0].Reason = ""
	if got[0] != want[0] {
		t.Fatalf("eviction %+v, want %+v", got[0], want[0])
	}

	s = newSim(t, PolicyConfig{WorldSize: 2, MaxRestarts: 3})
	s.register("a", pid(100))
	s.register("b", pid(200))
	s.beat("a", 1)
	s.beat("b", 1)
	s.closeStream("b", false)
	s.wantPhase(PhaseWaiting)
	if got := evictions(s.all); len(got) != 0 {
		t.Fatalf("a broken stream evicted %+v", got)
	}
}
