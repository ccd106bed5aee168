package coordinator

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// TestRandomSequences feeds the policy random but well-formed event
// sequences (any worker doing anything at any time, stale generations,
// cancelled calls, time jumps) and checks invariants after every step: no
// call answered twice and at most one exit (sim), every generation assigns
// each rank once, restarts stay within the budget, nothing but answers to
// late calls after the exit, every Register and Finish call answered (or
// withdrawn) when the job exits, and a stop ends the job within a bound.
func TestRandomSequences(t *testing.T) {
	outcomes := []hjepav1.Outcome{completed, completed, completed, aborted, aborted, stopped, failed}
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			n := 1 + rng.IntN(3)
			cfg := PolicyConfig{WorldSize: n, MaxRestarts: rng.IntN(3), Resume: rng.IntN(2) == 0, StopTimeout: 30 * time.Second}
			if rng.IntN(3) == 0 {
				cfg.RendezvousTimeout = time.Minute
			}
			s := newSim(t, cfg)
			pool := make([]string, n+2)
			for i := range pool {
				pool[i] = fmt.Sprintf("w%d", i)
			}
			pick := func() string { return pool[rng.IntN(len(pool))] }
			var finishCalls []CallID
			gen := uint64(0)
			exited := false
			check := func(acts []Action) {
				t.Helper()
				ranks := map[int]string{}
				for _, a := range acts {
					switch a := a.(type) {
					case Assign:
						if exited {
							t.Fatalf("assignment after the exit: %+v", a)
						}
						if a.Generation != gen+1 && a.Generation != gen {
							t.Fatalf("assigned generation %d after %d", a.Generation, gen)
						}
						gen = a.Generation
						if _, dup := ranks[a.Rank]; dup || a.Rank < 0 || a.Rank >= n {
							t.Fatalf("rank %d assigned twice or out of range", a.Rank)
						}
						ranks[a.Rank] = a.Worker
						if a.Peers[a.Rank].Worker != a.Worker {
							t.Fatalf("peers %+v for %+v", a.Peers, a)
						}
					case SendCommand, ProbeCheckpoint, LogSummary:
						if exited {
							t.Fatalf("%T after the exit", a)
						}
					case ExitJob:
						exited = true
						for _, c := range s.issued {
							if !s.cancelled[c] && s.answer(c) == nil {
								for _, a := range s.all {
									t.Logf("%#v", a)
								}
								t.Fatalf("the job exits with call %d unanswered", c)
							}
						}
					}
				}
				if len(ranks) != 0 && len(ranks) != n {
					t.Fatalf("generation %d assigned %d of %d ranks", gen, len(ranks), n)
				}
				if s.p.Restarts() > cfg.MaxRestarts {
					t.Fatalf("restarts %d > %d", s.p.Restarts(), cfg.MaxRestarts)
				}
				if exited != (s.p.Phase() == PhaseDone) {
					t.Fatalf("phase %v, exited %v", s.p.Phase(), exited)
				}
			}
			for range 250 {
				switch k := rng.IntN(100); {
				case k < 20:
					var opts []regOpt
					if rng.IntN(5) == 0 {
						opts = append(opts, withRank(rng.IntN(n+1)))
					}
					if rng.IntN(20) == 0 {
						opts = append(opts, withDigest("sha256:other"))
					}
					check(s.register(pick(), opts...))
				case k < 24:
					check(s.cancelRegister(pick()))
				case k < 55:
					w := pick()
					if _, ok := s.gen[w]; ok {
						check(s.beat(w, int64(rng.IntN(100)), func(b *Beat) {
							b.StopRequested = rng.IntN(50) == 0
							if rng.IntN(10) == 0 {
								b.Phase = hjepav1.WorkerPhase_WORKER_PHASE_FINISHING
							}
						}))
					}
				case k < 60:
					if w := pick(); s.stream[w] != 0 {
						check(s.closeStream(w, rng.IntN(2) == 0))
					}
				case k < 72:
					if w := pick(); s.gen[w] != 0 {
						o, step := outcomes[rng.IntN(len(outcomes))], int64(rng.IntN(100))
						var c CallID
						var acts []Action
						if o == failed {
							c, acts = s.finishFailed(w, failure{kind: hjepav1.FailureKind(rng.IntN(4)), batch: 8}, step, "boom")
						} else {
							c, acts = s.finish(w, o, step, "boom")
						}
						finishCalls = append(finishCalls, c)
						check(acts)
					}
				case k < 75:
					if len(finishCalls) > 0 {
						c := finishCalls[rng.IntN(len(finishCalls))]
						s.cancelled[c] = true
						check(s.step(FinishCancelled{Call: c}))
					}
				case k < 95:
					check(s.advance(time.Duration(rng.IntN(3000)) * time.Millisecond))
				case k < 96:
					check(s.step(StopRequested{Reason: "SIGTERM"}))
				default:
					if len(s.probes) > 0 {
						found := rng.IntN(2) == 0
						check(s.probe(found, int64(rng.IntN(100))))
					}
				}
			}
			// A stop ends any job within StopTimeout plus two heartbeat
			// timeouts, with nothing but time passing.
			check(s.step(StopRequested{Reason: "end of test"}))
			for range 2 * (30 + 2*10) {
				if exited {
					break
				}
				if len(s.probes) > 0 {
					check(s.probe(false, 0))
				}
				check(s.advance(time.Second))
			}
			if !exited {
				t.Fatalf("no exit after the stop; phase %v", s.p.Phase())
			}
		})
	}
}
