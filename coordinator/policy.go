// Package coordinator is the rendezvous and health service of a distributed
// job (DESIGN.md section 6): it hands out ranks, ring neighbours and shards
// per generation, watches heartbeats, aborts a generation when a worker is
// lost and restarts it from the latest checkpoint, and ends the job.
//
// The decisions live in Policy, a deterministic state machine without
// goroutines, I/O or clock reads (in the manner of etcd's raft package):
// events in, actions out, time given with every event. Server is the gRPC
// shell around it: it turns RPCs into events, feeds a ticker, and performs
// the actions.
//
// # The job's phases
//
//	waiting --N registered--> forming --checkpoint probed--> running
//	running --all COMPLETED--> done (exit 0)
//	running --worker lost / ABORTED / FAILED(device)--> waiting (generation+1, one restart used)
//	running --restart budget spent, or FAILED(other, out of memory)--> ending --all told / timeout--> done (exit 1)
//	running --stop (worker's stop_requested, coordinator's ctx)--> stopping
//	stopping --all STOPPED--> done (exit 0: resume with --resume)
//	stopping --worker lost, ABORTED, FAILED--> ending (exit 1); --grace over--> done (exit 1)
//	waiting/forming --stop--> done (exit 0); --rendezvous timeout, probe error--> done (exit 1)
//
// A worker lost because it went silent (no heartbeat, or no Finish after
// closing its stream) may be a live process, frozen or hung: the policy
// also evicts it (Evict), so that its supervisor kills it and a replacement
// can take its rank. The rendezvous timeout (default 10 min) ends a wait
// for workers that never come, naming the missing ranks.
//
// # What a worker must do
//
// Register (held until the generation forms); open the Heartbeat stream and
// beat every heartbeat_interval from assignment on, whatever training is
// doing; on COMMAND_ABORT cancel the generation and call Finish(ABORTED); on
// COMMAND_STOP agree on a step with the others, checkpoint, and call
// Finish(STOPPED). Keep the heartbeat stream open until Finish returns (it is
// held until the generation's outcome is known: all COMPLETED, all STOPPED,
// or an abort); a stream that breaks before Finish marks the worker lost,
// unless its last beat had phase FINISHING or it half-closed the stream, in
// which case Finish must follow within heartbeat_timeout. A held Finish
// waits for the slowest rank (its final checkpoint included), so give it no
// short deadline; a cancelled Finish of a COMPLETED worker still counts.
// After NEXT_REJOIN, Register again with the same worker_id: the old rank is
// kept (and reserved against other workers' requests for heartbeat_timeout).
// A worker that fails calls Finish(FAILED) with a failure_kind, before it
// leaves the ring (its peers then hear of it as the coordinator's ABORT,
// not as a broken ring): FAILURE_KIND_DEVICE aborts and restarts the
// generation like a lost worker; FAILURE_KIND_OUT_OF_MEMORY, which every
// restart at the same batch size would repeat, and every other kind fail
// the job.
package coordinator

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// PolicyConfig is what the policy needs to know about the job.
type PolicyConfig struct {
	WorldSize    int
	RunID        string
	ConfigDigest string
	// Resume: the first generation resumes from the latest checkpoint. Later
	// generations always do when one exists.
	Resume      bool
	MaxRestarts int
	// HeartbeatInterval is how often workers beat (default 1 s); a worker
	// silent for HeartbeatTimeout (default 10 s) is lost, and one silent for
	// half of it counts as failing (a new worker then waits instead of being
	// refused).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// RendezvousTimeout bounds each wait for world_size workers (default
	// 10 min; negative: wait forever): the job then fails, naming the
	// missing ranks.
	RendezvousTimeout time.Duration
	// StopTimeout bounds a coordinated stop (default 2 min): a generation
	// that has not stopped by then is aborted and the job exits 1.
	StopTimeout time.Duration
	// SummaryInterval is how often the per-rank summary is logged while
	// training (default 10 s).
	SummaryInterval time.Duration
}

// DefaultRendezvousTimeout bounds a wait for workers when the
// configuration does not: long enough for a scheduler to replace a lost
// machine, short enough that a job missing a worker ends rather than
// waiting for ever (torchrun's join timeout is also 10 min).
const DefaultRendezvousTimeout = 10 * time.Minute

func (c *PolicyConfig) setDefaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 10 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 2 * time.Minute
	}
	if c.RendezvousTimeout == 0 {
		c.RendezvousTimeout = DefaultRendezvousTimeout
	}
	if c.SummaryInterval <= 0 {
		c.SummaryInterval = 10 * time.Second
	}
}

// Phase is where the job is.
type Phase int

// The job's phases (see the package comment).
const (
	PhaseWaiting  Phase = iota // waiting for world_size registrations
	PhaseForming               // world_size registered; the latest checkpoint is being probed
	PhaseRunning               // a generation is assigned and training
	PhaseStopping              // COMMAND_STOP sent; waiting for every STOPPED
	PhaseEnding                // the job failed; telling the live workers (NEXT_EXIT 1)
	PhaseDone                  // ExitJob emitted; nothing more happens
)

func (ph Phase) String() string {
	return [...]string{"waiting", "forming", "running", "stopping", "ending", "done"}[ph]
}

// pending is a Register call waiting for a generation.
type pending struct {
	Registered
	seq uint64
}

// member is one rank of the current (or last, once aborted) generation.
type member struct {
	worker, host, addr string
	rank, pid          int
	stream             CallID // bound by the first beat; 0 before
	closed             bool   // its stream ended in a way that owes a Finish
	closedAt           time.Time
	lastBeat           time.Time // the assignment's time until the first beat
	beats              int
	phase              hjepav1.WorkerPhase
	step               int64
	loss, stepSeconds  float64

	lost       bool
	outcome    hjepav1.Outcome // UNSPECIFIED until its Finish
	finishStep int64
	finishErr  string
	held       []CallID // Finish calls not answered yet
	replied    bool     // told its final answer (ending)
	detached   bool     // its Finish calls were all cancelled: nobody to tell
}

// reservation keeps a survivor's rank of an aborted generation from being
// requested by another worker until the survivor registers again or
// heartbeat_timeout passes without word from it.
type reservation struct {
	rank   int
	worker string
	until  time.Time
}

// Policy is the coordinator's state machine. It is not safe for concurrent
// use: one goroutine (the shell's loop) owns it.
type Policy struct {
	cfg PolicyConfig

	phase    Phase
	gen      uint64 // the latest formed generation; 0 before the first
	members  []*member
	pending  []*pending
	seq      uint64
	prevRank map[string]int // worker id -> its rank in the last generation it was in
	reserved []reservation

	restarts  int
	failures  []string // one line per aborted generation
	started   bool
	waitSince time.Time

	stopReason  string
	stopAt      time.Time
	endAt       time.Time
	exitCode    int
	exitMsg     string
	lastSummary time.Time
}

// NewPolicy returns the policy of a job waiting for its first generation.
func NewPolicy(cfg PolicyConfig) *Policy {
	cfg.setDefaults()
	return &Policy{cfg: cfg, prevRank: map[string]int{}}
}

// Phase returns where the job is.
func (p *Policy) Phase() Phase { return p.phase }

// Generation returns the latest formed generation (0 before the first).
func (p *Policy) Generation() uint64 { return p.gen }

// Restarts returns how many restarts the job has used.
func (p *Policy) Restarts() int { return p.restarts }

// Config returns the policy's configuration with its defaults filled in.
func (p *Policy) Config() PolicyConfig { return p.cfg }

// Step applies one event at time now and returns what to do, in order.
func (p *Policy) Step(now time.Time, ev Event) []Action {
	if !p.started {
		p.started, p.waitSince = true, now
	}
	if p.phase == PhaseDone {
		return p.afterExit(ev)
	}
	switch ev := ev.(type) {
	case Registered:
		return p.register(now, ev)
	case RegisterCancelled:
		p.dropPending(ev.Call)
		return nil
	case Beat:
		return p.beat(now, ev)
	case StreamClosed:
		return p.streamClosed(now, ev)
	case Finished:
		return p.finish(now, ev)
	case FinishCancelled:
		p.finishCancelled(ev.Call)
		return nil // in ending no call is held: they are answered at once
	case Tick:
		return p.tick(now)
	case StopRequested:
		return p.stop(now, "coordinator: "+ev.Reason)
	case CheckpointProbed:
		return p.probed(now, ev)
	}
	return nil
}

// afterExit answers the RPCs that arrive while the shell shuts down.
func (p *Policy) afterExit(ev Event) []Action {
	msg := "the job has ended: " + p.exitMsg
	switch ev := ev.(type) {
	case Registered:
		return []Action{Refuse{Call: ev.Call, Worker: ev.Worker, Code: codes.FailedPrecondition, Msg: msg}}
	case Beat:
		return []Action{Refuse{Call: ev.Stream, Code: codes.FailedPrecondition, Msg: msg}}
	case Finished:
		return []Action{ReplyFinish{Call: ev.Call, Worker: ev.Worker, Next: hjepav1.Next_NEXT_EXIT, ExitCode: p.exitCode, Msg: p.exitMsg}}
	}
	return nil
}

// ---- registration ----

func (p *Policy) register(now time.Time, ev Registered) []Action {
	refuse := func(code codes.Code, format string, args ...any) []Action {
		return []Action{Refuse{Call: ev.Call, Worker: ev.Worker, Code: code, Msg: fmt.Sprintf(format, args...)}}
	}
	n := p.cfg.WorldSize
	switch {
	case ev.Worker == "":
		return refuse(codes.InvalidArgument, "register: empty worker_id")
	case ev.HasRank && (ev.Rank < 0 || ev.Rank >= n):
		return refuse(codes.InvalidArgument, "requested rank %d is out of range: the job's world size is %d (ranks 0..%d); fix --rank or $RANK", ev.Rank, n, n-1)
	case ev.Digest != "" && ev.Digest != p.cfg.ConfigDigest:
		return refuse(codes.FailedPrecondition, "worker %s has config digest %s but the job's is %s: start the worker with the coordinator's config, or with none to take the coordinator's", ev.Worker, ev.Digest, p.cfg.ConfigDigest)
	case p.phase == PhaseStopping:
		return refuse(codes.FailedPrecondition, "the job is stopping (%s): no further generation will start", p.stopReason)
	case p.phase == PhaseEnding:
		return refuse(codes.FailedPrecondition, "the job has failed: %s", p.exitMsg)
	}

	var acts []Action
	// The same process registering again: a held registration is
	// superseded; a member has left its generation.
	if i := p.pendingIndex(ev.Worker); i >= 0 {
		old := p.pending[i]
		p.pending = slices.Delete(p.pending, i, i+1)
		acts = append(acts, Refuse{Call: old.Call, Worker: old.Worker, Code: codes.Aborted, Msg: "superseded by a newer registration of worker " + ev.Worker})
	}
	if m := p.memberByWorker(ev.Worker); m != nil && p.active() && !m.lost {
		acts = append(acts, p.lose(now, []*member{m}, fmt.Sprintf("registered again while in generation %d", p.gen))...)
		if p.phase != PhaseWaiting && p.phase != PhaseForming {
			return append(acts, p.Step(now, ev)...) // the job failed: refused
		}
	}
	p.reserved = slices.DeleteFunc(p.reserved, func(r reservation) bool { return r.worker == ev.Worker })

	if ev.HasRank {
		if holder, host := p.rankHolder(now, ev.Rank, ev.Worker); holder != "" {
			return append(acts, refuse(codes.AlreadyExists, "rank %d is already held by worker %s (host %s), which is alive: give this worker another --rank/$RANK, or none to take a free rank", ev.Rank, holder, host)...)
		}
	}
	if p.phase == PhaseRunning && !p.failing(now) {
		return append(acts, refuse(codes.ResourceExhausted, "job already has %d workers (generation %d is running and all are healthy): this worker is not needed now", n, p.gen)...)
	}
	p.seq++
	p.pending = append(p.pending, &pending{Registered: ev, seq: p.seq})
	fields := []Field{{"worker", ev.Worker}, {"host", ev.Hostname}, {"registered", len(p.pending)}, {"world_size", n}}
	if ev.HasRank {
		fields = append(fields, Field{"rank", ev.Rank})
	}
	if p.phase == PhaseRunning {
		acts = append(acts, Log{LevelInfo, "worker waits for the next generation", fields})
		return acts
	}
	acts = append(acts, Log{LevelInfo, "worker registered", fields})
	if p.phase == PhaseWaiting {
		acts = append(acts, p.tryForm(now)...)
	}
	return acts
}

// rankHolder returns the live worker other than self holding rank r: a
// held registration that asked for it, a member of the running generation,
// or a survivor of an aborted one that has not come back yet.
func (p *Policy) rankHolder(now time.Time, r int, self string) (worker, host string) {
	for _, q := range p.pending {
		if q.HasRank && q.Rank == r && q.Worker != self {
			return q.Worker, q.Hostname
		}
	}
	if p.active() && r < len(p.members) {
		if m := p.members[r]; m != nil && !m.lost && m.worker != self {
			return m.worker, m.host
		}
	}
	for _, res := range p.reserved {
		if res.rank == r && res.worker != self && now.Before(res.until) {
			host := ""
			if m := p.memberByWorker(res.worker); m != nil {
				host = m.host
			}
			return res.worker, host
		}
	}
	return "", ""
}

// failing reports whether a member of the running generation looks unwell:
// lost, owing a Finish after closing its stream, or silent for half the
// heartbeat timeout. A worker registering then waits rather than being
// refused.
func (p *Policy) failing(now time.Time) bool {
	for _, m := range p.members {
		if m.lost || m.closed {
			return true
		}
		if m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED && now.Sub(m.lastBeat) > p.cfg.HeartbeatTimeout/2 {
			return true
		}
	}
	return false
}

func (p *Policy) pendingIndex(worker string) int {
	return slices.IndexFunc(p.pending, func(q *pending) bool { return q.Worker == worker })
}

func (p *Policy) dropPending(call CallID) {
	p.pending = slices.DeleteFunc(p.pending, func(q *pending) bool { return q.Call == call })
}

func (p *Policy) memberByWorker(worker string) *member {
	for _, m := range p.members {
		if m.worker == worker {
			return m
		}
	}
	return nil
}

// active: the members are a generation in progress (not an aborted one).
func (p *Policy) active() bool {
	return p.phase == PhaseRunning || p.phase == PhaseStopping || p.phase == PhaseEnding
}

// ---- forming a generation ----

func (p *Policy) tryForm(now time.Time) []Action {
	if _, ok := p.selectMembers(now); !ok {
		return nil
	}
	if p.gen == 0 && !p.cfg.Resume {
		return p.form(now, CheckpointProbed{Generation: 1})
	}
	p.phase = PhaseForming
	return []Action{ProbeCheckpoint{Generation: p.gen + 1}}
}

func (p *Policy) probed(now time.Time, ev CheckpointProbed) []Action {
	if p.phase != PhaseForming || ev.Generation != p.gen+1 {
		return nil
	}
	if ev.Err != "" {
		return p.failJob(now, fmt.Sprintf("generation %d cannot resume: %s", ev.Generation, ev.Err))
	}
	if _, ok := p.selectMembers(now); !ok {
		p.phase = PhaseWaiting // a registration was withdrawn meanwhile
		return nil
	}
	return p.form(now, ev)
}

// selectMembers picks world_size held registrations and their ranks:
// requested ranks first, then each returning worker's previous rank, then
// the lowest free rank in registration order. A survivor's reserved rank
// goes to no one else. ok is false while the ranks cannot all be filled.
func (p *Policy) selectMembers(now time.Time) (ranks []*pending, ok bool) {
	if len(p.pending) < p.cfg.WorldSize {
		return nil, false
	}
	ranks = p.assignRanks(now)
	return ranks, !slices.Contains(ranks, nil)
}

// assignRanks is selectMembers' choice, with nil for each rank it cannot
// fill yet.
func (p *Policy) assignRanks(now time.Time) []*pending {
	n := p.cfg.WorldSize
	ranks := make([]*pending, n)
	chosen := map[*pending]bool{}
	free := func(r int, q *pending) bool {
		if ranks[r] != nil {
			return false
		}
		for _, res := range p.reserved {
			if res.rank == r && res.worker != q.Worker && now.Before(res.until) {
				return false
			}
		}
		return true
	}
	take := func(q *pending, r int) { ranks[r], chosen[q] = q, true }
	for _, q := range p.pending {
		if q.HasRank && free(q.Rank, q) {
			take(q, q.Rank)
		}
	}
	for _, q := range p.pending {
		if r, ok := p.prevRank[q.Worker]; ok && !chosen[q] && len(chosen) < n && free(r, q) {
			take(q, r)
		}
	}
	for _, q := range p.pending {
		if chosen[q] || len(chosen) == n {
			continue
		}
		for r := range n {
			if free(r, q) {
				take(q, r)
				break
			}
		}
	}
	return ranks
}

// missingRanks names the ranks the held registrations cannot fill, with
// who held each in the last generation: "missing ranks 1 (worker w on h
// in generation 1), 3".
func (p *Policy) missingRanks(now time.Time) string {
	var miss []string
	for r, q := range p.assignRanks(now) {
		if q != nil {
			continue
		}
		s := fmt.Sprint(r)
		if r < len(p.members) && p.members[r] != nil {
			m := p.members[r]
			s += fmt.Sprintf(" (worker %s on %s in generation %d)", m.worker, m.host, p.gen)
		}
		miss = append(miss, s)
	}
	if len(miss) == 1 {
		return "missing rank " + miss[0]
	}
	return "missing ranks " + strings.Join(miss, ", ")
}

// form starts the next generation with the selected registrations and
// refuses the others.
func (p *Policy) form(now time.Time, ck CheckpointProbed) []Action {
	n := p.cfg.WorldSize
	ranks, _ := p.selectMembers(now)
	p.pending = slices.DeleteFunc(p.pending, func(q *pending) bool { return slices.Contains(ranks, q) })

	p.gen++
	p.phase = PhaseRunning
	p.reserved = nil
	p.lastSummary = now
	p.members = make([]*member, n)
	peers := make([]Peer, n)
	for r, q := range ranks {
		p.members[r] = &member{worker: q.Worker, host: q.Hostname, addr: q.PeerAddress, rank: r, pid: q.PID, lastBeat: now}
		p.prevRank[q.Worker] = r
		peers[r] = Peer{Rank: r, Worker: q.Worker, Address: q.PeerAddress, Hostname: q.Hostname}
	}
	resume := ck.Found
	fields := []Field{{"generation", p.gen}, {"world_size", n}, {"resume", resume}}
	if resume {
		fields = append(fields, Field{"step", ck.Step}, Field{"checkpoint", ck.Dir})
	}
	acts := []Action{Log{LevelInfo, "generation formed", fields}}
	// Registrations left over would be refused if they came now.
	acts = append(acts, p.refusePending(codes.ResourceExhausted, fmt.Sprintf("job already has %d workers (generation %d formed without this one): this worker is not needed now", n, p.gen))...)
	for r, q := range ranks {
		acts = append(acts, Assign{Call: q.Call, Worker: q.Worker, Generation: p.gen, Rank: r, WorldSize: n,
			Peers: peers, Resume: resume, ResumeStep: ck.Step, ResumeDir: ck.Dir})
	}
	return acts
}

// ---- heartbeats ----

func (p *Policy) beat(now time.Time, ev Beat) []Action {
	if ev.RunID != p.cfg.RunID {
		return []Action{Refuse{Call: ev.Stream, Code: codes.FailedPrecondition, Msg: fmt.Sprintf("heartbeat for run %q, but this coordinator runs %q", ev.RunID, p.cfg.RunID)}}
	}
	if ev.Generation > p.gen || ev.Generation == 0 {
		return []Action{Refuse{Call: ev.Stream, Code: codes.InvalidArgument, Msg: fmt.Sprintf("heartbeat for generation %d, but the latest is %d", ev.Generation, p.gen)}}
	}
	abort := func(worker, reason string) []Action {
		return []Action{SendCommand{Stream: ev.Stream, Worker: worker, Rank: ev.Rank, Generation: ev.Generation, Command: hjepav1.Command_COMMAND_ABORT, Reason: reason}}
	}
	if ev.Generation < p.gen || !p.active() {
		// A stale generation: changes nothing; the beat is told it is over.
		return abort("", fmt.Sprintf("generation %d is over; register again", ev.Generation))
	}
	if ev.Rank < 0 || ev.Rank >= len(p.members) {
		return []Action{Refuse{Call: ev.Stream, Code: codes.InvalidArgument, Msg: fmt.Sprintf("heartbeat for rank %d: generation %d has ranks 0..%d", ev.Rank, p.gen, len(p.members)-1)}}
	}
	m := p.members[ev.Rank]
	switch m.stream {
	case 0:
		m.stream = ev.Stream
	case ev.Stream:
	default:
		return []Action{Refuse{Call: ev.Stream, Worker: m.worker, Code: codes.AlreadyExists, Msg: fmt.Sprintf("rank %d of generation %d already has a heartbeat stream", ev.Rank, p.gen)}}
	}
	m.lastBeat, m.beats, m.phase, m.closed = now, m.beats+1, ev.Phase, false
	m.step, m.loss, m.stepSeconds = ev.Step, ev.Loss, ev.StepSeconds
	cmd := func(c hjepav1.Command, reason string) []Action {
		return []Action{SendCommand{Stream: ev.Stream, Worker: m.worker, Rank: m.rank, Generation: p.gen, Command: c, Reason: reason}}
	}
	switch p.phase {
	case PhaseRunning:
		if ev.StopRequested {
			return p.stop(now, fmt.Sprintf("worker %s (rank %d) asked to stop", m.worker, m.rank))
		}
		return cmd(hjepav1.Command_COMMAND_CONTINUE, "")
	case PhaseStopping:
		return cmd(hjepav1.Command_COMMAND_STOP, p.stopReason)
	default: // ending
		return abort(m.worker, p.exitMsg)
	}
}

func (p *Policy) streamClosed(now time.Time, ev StreamClosed) []Action {
	if !p.active() || ev.Stream == 0 {
		return nil
	}
	var m *member
	for _, x := range p.members {
		if x.stream == ev.Stream {
			m = x
		}
	}
	if m == nil || m.lost || m.outcome != hjepav1.Outcome_OUTCOME_UNSPECIFIED {
		return nil
	}
	m.stream = 0
	if ev.Graceful || m.phase == hjepav1.WorkerPhase_WORKER_PHASE_FINISHING || p.phase == PhaseEnding {
		// It is finishing (or was told to abort): its Finish is due soon.
		m.closed, m.closedAt = true, now
		return nil
	}
	return p.lose(now, []*member{m}, "heartbeat stream broken: "+ev.Detail)
}

// lose marks members lost and acts on it: the running generation is
// aborted; a stop in progress fails; an ending job stops waiting for them.
func (p *Policy) lose(now time.Time, ms []*member, reason string) []Action {
	var who []string
	acts := []Action{}
	for _, m := range ms {
		m.lost = true
		who = append(who, fmt.Sprintf("worker %s (rank %d, host %s)", m.worker, m.rank, m.host))
		acts = append(acts, Log{LevelWarn, "worker lost", []Field{{"worker", m.worker}, {"rank", m.rank}, {"generation", p.gen}, {"step", m.step}, {"reason", reason}}})
	}
	what := fmt.Sprintf("%s lost: %s", strings.Join(who, ", "), reason)
	switch p.phase {
	case PhaseRunning:
		return append(acts, p.abort(now, what)...)
	case PhaseStopping:
		return append(acts, p.failJob(now, "the coordinated stop failed: "+what)...)
	case PhaseEnding:
		return append(acts, p.checkDrain()...)
	}
	return acts
}

// ---- aborts and the end of the job ----

// abort ends the running generation: every live member is told to abort
// (or, when it already finished, to rejoin), and the job waits for
// world_size workers again, unless the restart budget is spent.
func (p *Policy) abort(now time.Time, reason string) []Action {
	p.failures = append(p.failures, fmt.Sprintf("generation %d: %s", p.gen, reason))
	if p.restarts >= p.cfg.MaxRestarts {
		return p.failJob(now, fmt.Sprintf("restart budget exhausted (max_restarts %d): %s", p.cfg.MaxRestarts, strings.Join(p.failures, "; ")))
	}
	p.restarts++
	acts := []Action{Log{LevelWarn, "generation aborted", []Field{{"generation", p.gen}, {"restart", p.restarts}, {"max_restarts", p.cfg.MaxRestarts}, {"reason", reason}}}}
	msg := fmt.Sprintf("generation %d aborted: %s", p.gen, reason)
	for _, m := range p.members {
		acts = append(acts, p.answer(m, hjepav1.Next_NEXT_REJOIN, 0, msg+"; register again")...)
		if m.lost {
			continue
		}
		if m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED && m.stream != 0 {
			acts = append(acts, SendCommand{Stream: m.stream, Worker: m.worker, Rank: m.rank, Generation: p.gen, Command: hjepav1.Command_COMMAND_ABORT, Reason: msg})
		}
		p.reserved = append(p.reserved, reservation{rank: m.rank, worker: m.worker, until: now.Add(p.cfg.HeartbeatTimeout)})
	}
	p.phase, p.waitSince = PhaseWaiting, now
	return append(acts, p.tryForm(now)...)
}

// answer replies to a member's held Finish calls.
func (p *Policy) answer(m *member, next hjepav1.Next, code int, msg string) []Action {
	var acts []Action
	for _, c := range m.held {
		acts = append(acts, ReplyFinish{Call: c, Worker: m.worker, Next: next, ExitCode: code, Msg: msg})
	}
	m.held = nil
	return acts
}

// failJob decides that the job fails. Members of a generation in progress
// are told (ABORT on their stream, NEXT_EXIT 1 to their Finish) before
// the job exits, for at most heartbeat_timeout.
func (p *Policy) failJob(now time.Time, msg string) []Action {
	wasActive := p.active()
	p.phase, p.exitCode, p.exitMsg, p.endAt = PhaseEnding, 1, msg, now
	acts := []Action{Log{LevelError, "job failed", []Field{{"generation", p.gen}, {"reason", msg}}}}
	acts = append(acts, p.endPending(1, "the job has failed: "+msg)...)
	p.reserved = nil
	if !wasActive {
		return append(acts, p.exit(1, msg)...)
	}
	for _, m := range p.members {
		if m.outcome != hjepav1.Outcome_OUTCOME_UNSPECIFIED {
			acts = append(acts, p.answer(m, hjepav1.Next_NEXT_EXIT, 1, msg)...)
			m.replied = true
		} else if m.stream != 0 && !m.lost {
			acts = append(acts, SendCommand{Stream: m.stream, Worker: m.worker, Rank: m.rank, Generation: p.gen, Command: hjepav1.Command_COMMAND_ABORT, Reason: msg})
		}
	}
	return append(acts, p.checkDrain()...)
}

// checkDrain exits an ending job once every live member has been told.
func (p *Policy) checkDrain() []Action {
	if p.phase != PhaseEnding {
		return nil
	}
	for _, m := range p.members {
		if !m.lost && !m.detached && !m.replied {
			return nil
		}
	}
	return p.exit(p.exitCode, p.exitMsg)
}

// finishJob ends the job with every member told NEXT_EXIT code.
func (p *Policy) finishJob(code int, msg string) []Action {
	var acts []Action
	for _, m := range p.members {
		acts = append(acts, p.answer(m, hjepav1.Next_NEXT_EXIT, code, msg)...)
		m.replied = true
	}
	acts = append(acts, p.endPending(code, "the job has ended: "+msg)...)
	return append(acts, p.exit(code, msg)...)
}

func (p *Policy) exit(code int, msg string) []Action {
	p.phase, p.exitCode, p.exitMsg = PhaseDone, code, msg
	return []Action{ExitJob{Code: code, Msg: msg}}
}

// endPending tells the workers waiting in Register that the job has ended
// (they exit with code: a stopped job's waiting workers exit 0, like its
// members).
func (p *Policy) endPending(code int, msg string) []Action {
	var acts []Action
	for _, q := range p.pending {
		acts = append(acts, EndRegistration{Call: q.Call, Worker: q.Worker, ExitCode: code, Msg: msg})
	}
	p.pending = nil
	return acts
}

func (p *Policy) refusePending(code codes.Code, msg string) []Action {
	var acts []Action
	for _, q := range p.pending {
		acts = append(acts, Refuse{Call: q.Call, Worker: q.Worker, Code: code, Msg: msg})
	}
	p.pending = nil
	return acts
}

// ---- Finish ----

func (p *Policy) finish(now time.Time, ev Finished) []Action {
	refuse := func(code codes.Code, format string, args ...any) []Action {
		return []Action{Refuse{Call: ev.Call, Worker: ev.Worker, Code: code, Msg: fmt.Sprintf(format, args...)}}
	}
	reply := func(next hjepav1.Next, code int, msg string) []Action {
		return []Action{ReplyFinish{Call: ev.Call, Worker: ev.Worker, Next: next, ExitCode: code, Msg: msg}}
	}
	switch {
	case ev.RunID != p.cfg.RunID:
		return refuse(codes.FailedPrecondition, "finish for run %q, but this coordinator runs %q", ev.RunID, p.cfg.RunID)
	case ev.Generation > p.gen || ev.Generation == 0:
		return refuse(codes.InvalidArgument, "finish for generation %d, but the latest is %d", ev.Generation, p.gen)
	case ev.Outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED:
		return refuse(codes.InvalidArgument, "finish without an outcome")
	}
	if ev.Generation < p.gen || !p.active() {
		// An aborted generation: rejoin, or exit when the job is over.
		for i := range p.reserved {
			if p.reserved[i].worker == ev.Worker {
				p.reserved[i].until = now.Add(p.cfg.HeartbeatTimeout)
			}
		}
		if p.phase == PhaseEnding {
			return reply(hjepav1.Next_NEXT_EXIT, 1, p.exitMsg)
		}
		if ev.Generation == p.gen && isOutOfMemory(ev) {
			// A peer's ABORTED (it saw this worker leave the ring) got here
			// first and aborted the generation, but the cause repeats:
			// the next generation would run out of memory the same way.
			msg := outOfMemoryMsg(fmt.Sprintf("worker %s (rank %d)", ev.Worker, ev.Rank), ev)
			return append(reply(hjepav1.Next_NEXT_EXIT, 1, msg), p.failJob(now, msg)...)
		}
		return reply(hjepav1.Next_NEXT_REJOIN, 0, fmt.Sprintf("generation %d is over; register again for generation %d", ev.Generation, p.gen+1))
	}
	if ev.Rank < 0 || ev.Rank >= len(p.members) || p.members[ev.Rank].worker != ev.Worker {
		return refuse(codes.InvalidArgument, "worker %s is not rank %d of generation %d", ev.Worker, ev.Rank, p.gen)
	}
	m := p.members[ev.Rank]
	if p.phase == PhaseEnding {
		if m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED {
			m.outcome, m.finishStep, m.finishErr = ev.Outcome, ev.Step, ev.Error
		}
		m.replied, m.detached = true, false
		return append(reply(hjepav1.Next_NEXT_EXIT, 1, p.exitMsg), p.checkDrain()...)
	}
	m.held = append(m.held, ev.Call)
	m.detached = false
	if m.outcome != hjepav1.Outcome_OUTCOME_UNSPECIFIED {
		return nil // a repeated Finish: answered with the first
	}
	m.outcome, m.finishStep, m.finishErr, m.closed = ev.Outcome, ev.Step, ev.Error, false
	acts := []Action{Log{LevelInfo, "worker finished", []Field{{"worker", m.worker}, {"rank", m.rank}, {"generation", p.gen}, {"step", ev.Step}, {"outcome", ev.Outcome.String()}}}}
	who := fmt.Sprintf("worker %s (rank %d)", m.worker, m.rank)
	switch ev.Outcome {
	case hjepav1.Outcome_OUTCOME_FAILED:
		switch {
		case isOutOfMemory(ev):
			// At the same batch size every restart runs out of memory
			// again: end the job now rather than spend max_restarts.
			return append(acts, p.failJob(now, outOfMemoryMsg(who, ev))...)
		case ev.Failure == hjepav1.FailureKind_FAILURE_KIND_DEVICE:
			// A device fault (a driver error, a lost GPU) may not repeat
			// on a fresh context: restart, as after a lost worker.
			what := fmt.Sprintf("%s had a device fault at step %d: %s", who, ev.Step, ev.Error)
			if p.phase == PhaseStopping {
				return append(acts, p.failJob(now, "the coordinated stop failed: "+what)...)
			}
			return append(acts, p.abort(now, what)...)
		}
		return append(acts, p.failJob(now, fmt.Sprintf("%s failed at step %d: %s", who, ev.Step, ev.Error))...)
	case hjepav1.Outcome_OUTCOME_ABORTED:
		what := fmt.Sprintf("%s aborted at step %d: %s", who, ev.Step, ev.Error)
		if p.phase == PhaseStopping {
			return append(acts, p.failJob(now, "the coordinated stop failed: "+what)...)
		}
		return append(acts, p.abort(now, what)...)
	case hjepav1.Outcome_OUTCOME_STOPPED:
		if p.phase == PhaseRunning {
			// It cannot stop alone: the others must checkpoint the same step.
			acts = append(acts, p.stop(now, who+" stopped")...)
		}
	}
	return append(acts, p.checkDone()...)
}

func isOutOfMemory(ev Finished) bool {
	return ev.Outcome == hjepav1.Outcome_OUTCOME_FAILED && ev.Failure == hjepav1.FailureKind_FAILURE_KIND_OUT_OF_MEMORY
}

// outOfMemoryMsg is the job's end when who's device ran out of memory: the
// rank, the batch size, the device's memory, what to change, and the
// worker's own message (what it allocated, what it held, what was free).
func outOfMemoryMsg(who string, ev Finished) string {
	batch := ""
	if ev.BatchSize > 0 {
		batch = fmt.Sprintf(" with data.batch_size %d", ev.BatchSize)
	}
	dev := "its device"
	if ev.DeviceMemory > 0 {
		dev = fmt.Sprintf("its %s device", formatBytes(ev.DeviceMemory))
	}
	return fmt.Sprintf("%s ran out of memory on %s at step %d%s; every restart would at this batch size, so the job ends without one: "+
		"reduce data.batch_size (or the model or image size) and run again. The worker said: %s",
		who, dev, ev.Step, batch, ev.Error)
}

// formatBytes is n in the largest binary unit that keeps it >= 1.
func formatBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// checkDone ends the job when every member completed (running) or every
// member stopped or completed (stopping).
func (p *Policy) checkDone() []Action {
	if p.phase != PhaseRunning && p.phase != PhaseStopping {
		return nil
	}
	var step int64
	stopped := false
	for _, m := range p.members {
		switch m.outcome {
		case hjepav1.Outcome_OUTCOME_COMPLETED:
		case hjepav1.Outcome_OUTCOME_STOPPED:
			stopped = true
		default:
			return nil
		}
		step = max(step, m.finishStep)
	}
	if stopped {
		return p.finishJob(0, fmt.Sprintf("stopped at step %d; resume with --resume", step))
	}
	return p.finishJob(0, fmt.Sprintf("completed at step %d", step))
}

func (p *Policy) finishCancelled(call CallID) {
	for _, m := range p.members {
		if i := slices.Index(m.held, call); i >= 0 {
			m.held = slices.Delete(m.held, i, i+1)
			m.detached = len(m.held) == 0
		}
	}
}

// ---- stop ----

func (p *Policy) stop(now time.Time, reason string) []Action {
	switch p.phase {
	case PhaseWaiting, PhaseForming:
		msg := fmt.Sprintf("stopped while waiting for workers for generation %d (%s)", p.gen+1, reason)
		if p.gen > 0 || p.cfg.Resume {
			msg += "; resume with --resume"
		}
		acts := []Action{Log{LevelInfo, "stopping", []Field{{"reason", reason}}}}
		acts = append(acts, p.endPending(0, "the job has stopped: "+msg)...)
		return append(acts, p.exit(0, msg)...)
	case PhaseRunning:
	default:
		return nil // already stopping or ending
	}
	p.phase, p.stopReason, p.stopAt = PhaseStopping, reason, now
	acts := []Action{Log{LevelInfo, "stopping: coordinated checkpoint", []Field{{"generation", p.gen}, {"reason", reason}}}}
	for _, m := range p.members {
		if m.stream != 0 && !m.lost && m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED {
			acts = append(acts, SendCommand{Stream: m.stream, Worker: m.worker, Rank: m.rank, Generation: p.gen, Command: hjepav1.Command_COMMAND_STOP, Reason: reason})
		}
	}
	acts = append(acts, p.endPending(0, fmt.Sprintf("the job is stopping (%s): no further generation will start", reason))...)
	return append(acts, p.checkDone()...)
}

// ---- time ----

func (p *Policy) tick(now time.Time) []Action {
	switch p.phase {
	case PhaseWaiting, PhaseForming:
		expired := len(p.reserved)
		p.reserved = slices.DeleteFunc(p.reserved, func(r reservation) bool { return !now.Before(r.until) })
		expired -= len(p.reserved)
		if t := p.cfg.RendezvousTimeout; t > 0 && now.Sub(p.waitSince) >= t {
			var got []string
			for _, q := range p.pending {
				got = append(got, fmt.Sprintf("%s on %s", q.Worker, q.Hostname))
			}
			return p.failJob(now, fmt.Sprintf("rendezvous timed out after %s: %d of %d workers registered for generation %d [%s]; %s "+
				"(start the missing workers, or raise --rendezvous-timeout)",
				t, len(p.pending), p.cfg.WorldSize, p.gen+1, strings.Join(got, ", "), p.missingRanks(now)))
		}
		if expired > 0 && p.phase == PhaseWaiting {
			return p.tryForm(now) // a survivor's rank is free for a newcomer now
		}
		return nil
	case PhaseEnding:
		if now.Sub(p.endAt) >= p.cfg.HeartbeatTimeout {
			return p.exit(p.exitCode, p.exitMsg)
		}
		if a := p.checkDrain(); a != nil {
			return a
		}
	}

	// Running, stopping, ending: heartbeat and Finish timeouts.
	var lost []*member
	var why []string
	for _, m := range p.members {
		if m.lost || m.outcome != hjepav1.Outcome_OUTCOME_UNSPECIFIED {
			continue
		}
		if m.closed && now.Sub(m.closedAt) >= p.cfg.HeartbeatTimeout {
			lost = append(lost, m)
			why = append(why, fmt.Sprintf("rank %d closed its heartbeat stream and sent no Finish within %s", m.rank, p.cfg.HeartbeatTimeout))
		} else if !m.closed && now.Sub(m.lastBeat) >= p.cfg.HeartbeatTimeout {
			lost = append(lost, m)
			if m.beats == 0 {
				why = append(why, fmt.Sprintf("rank %d sent no heartbeat within %s of its assignment", m.rank, p.cfg.HeartbeatTimeout))
			} else {
				why = append(why, fmt.Sprintf("rank %d sent no heartbeat for %s (timeout %s)", m.rank, now.Sub(m.lastBeat), p.cfg.HeartbeatTimeout))
			}
		}
	}
	if len(lost) > 0 {
		// Running aborts, stopping fails, ending drains: no later check
		// applies. The silent processes may be alive (frozen, hung): their
		// supervisor is asked to kill them, so replacements can take their
		// ranks.
		reason := strings.Join(why, "; ")
		acts := p.lose(now, lost, reason)
		for _, m := range lost {
			acts = append(acts, Evict{Worker: m.worker, Rank: m.rank, Host: m.host, PID: m.pid, Generation: p.gen, Reason: reason})
		}
		return acts
	}
	if p.phase == PhaseStopping && now.Sub(p.stopAt) >= p.cfg.StopTimeout {
		return p.stopTimedOut()
	}
	if (p.phase == PhaseRunning || p.phase == PhaseStopping) && now.Sub(p.lastSummary) >= p.cfg.SummaryInterval {
		p.lastSummary = now
		return []Action{p.summary(now)}
	}
	return nil
}

// stopTimedOut ends a stop that did not complete within StopTimeout.
func (p *Policy) stopTimedOut() []Action {
	var late []string
	for _, m := range p.members {
		if m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED {
			late = append(late, fmt.Sprintf("rank %d (worker %s)", m.rank, m.worker))
		}
	}
	msg := fmt.Sprintf("the coordinated stop did not finish within %s: %s did not report STOPPED; the latest complete checkpoint is kept", p.cfg.StopTimeout, strings.Join(late, ", "))
	acts := []Action{Log{LevelError, "stop timed out", []Field{{"generation", p.gen}, {"reason", msg}}}}
	for _, m := range p.members {
		if m.outcome == hjepav1.Outcome_OUTCOME_UNSPECIFIED && m.stream != 0 && !m.lost {
			acts = append(acts, SendCommand{Stream: m.stream, Worker: m.worker, Rank: m.rank, Generation: p.gen, Command: hjepav1.Command_COMMAND_ABORT, Reason: msg})
		}
		acts = append(acts, p.answer(m, hjepav1.Next_NEXT_EXIT, 1, msg)...)
	}
	return append(acts, p.exit(1, msg)...)
}

func (p *Policy) summary(now time.Time) LogSummary {
	s := LogSummary{Generation: p.gen}
	for _, m := range p.members {
		s.Ranks = append(s.Ranks, RankStatus{Rank: m.rank, Worker: m.worker, Beats: m.beats, Step: m.step, Loss: m.loss,
			StepSeconds: m.stepSeconds, SinceBeat: now.Sub(m.lastBeat), Outcome: m.outcome})
	}
	return s
}
