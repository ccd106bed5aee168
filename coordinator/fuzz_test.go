package coordinator

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// fuzzRecord kinds: what one record of FuzzRequests' input does. A record
// is a kind byte, a length byte and that many bytes: the protobuf request
// (Register, Heartbeat, Finish) or nothing.
const (
	recRegister byte = iota
	recBeat
	recFinish
	recTick // advances the clock by length x 250 ms
	recStreamClosed
	recRegisterCancelled
	recFinishCancelled
	recProbed
	recKinds
)

const fuzzRunID = "fuzz-run"

// fuzzInput encodes records for the seeds.
func fuzzInput(t testing.TB, recs ...any) []byte {
	var b []byte
	for i := 0; i < len(recs); i += 2 {
		kind := recs[i].(byte)
		var body []byte
		switch m := recs[i+1].(type) {
		case proto.Message:
			var err error
			if body, err = proto.Marshal(m); err != nil {
				t.Fatal(err)
			}
		case int:
			body = make([]byte, m)
		}
		if len(body) > 255 {
			t.Fatalf("seed record of %d bytes", len(body))
		}
		b = append(append(b, kind, byte(len(body))), body...)
	}
	return b
}

// FuzzRequests feeds arbitrary request bytes, as a worker (or anyone with
// the token) could send them, through the server's translation into events
// and the policy: nothing panics, every refusal carries a code and a
// reason, every call is answered at most once, assignments are well formed
// and the job ends at most once.
func FuzzRequests(f *testing.F) {
	rank := func(r int32) *int32 { return &r }
	reg := func(w string, r int32) *hjepav1.RegisterRequest {
		return &hjepav1.RegisterRequest{WorkerId: w, Rank: rank(r), Hostname: "h", PeerAddress: w + ":1", Pid: 7}
	}
	hb := func(gen uint64, r int32, step int64) *hjepav1.HeartbeatRequest {
		return &hjepav1.HeartbeatRequest{RunId: fuzzRunID, Generation: gen, Rank: r, Step: step, Phase: hjepav1.WorkerPhase_WORKER_PHASE_TRAINING}
	}
	fin := func(w string, gen uint64, r int32, o hjepav1.Outcome) *hjepav1.FinishRequest {
		return &hjepav1.FinishRequest{RunId: fuzzRunID, Generation: gen, Rank: r, WorkerId: w, Outcome: o, Step: 10}
	}
	const completed, aborted = hjepav1.Outcome_OUTCOME_COMPLETED, hjepav1.Outcome_OUTCOME_ABORTED
	// A job that completes.
	f.Add(fuzzInput(f, recRegister, reg("a", 0), recRegister, reg("b", 1), recBeat|0x10, hb(1, 0, 1), recBeat|0x20, hb(1, 1, 1),
		recTick, 4, recFinish, fin("a", 1, 0, completed), recFinish, fin("b", 1, 1, completed)))
	// A silent worker, an abort, a rejoin from a checkpoint.
	f.Add(fuzzInput(f, recRegister, reg("a", 0), recRegister, reg("b", 1), recBeat|0x10, hb(1, 0, 1), recBeat|0x20, hb(1, 1, 1),
		recTick, 200, recBeat|0x10, hb(1, 0, 2), recFinish, fin("a", 1, 0, aborted), recRegister, reg("a", 0),
		recRegister, reg("c", 1), recProbed, 1, recBeat|0x30, hb(2, 0, 1), recStreamClosed|0x30, 0))
	// A broken stream, cancelled calls, a stop request.
	f.Add(fuzzInput(f, recRegister, reg("a", 0), recRegisterCancelled, 0, recRegister, reg("a", 5), recRegister, reg("b", -1),
		recRegister, reg("a", 1), recBeat|0x10, hb(1, 1, 1), recStreamClosed|0x10, 1, recFinish, fin("b", 1, 0, aborted),
		recFinishCancelled, 0, recBeat|0x20, &hjepav1.HeartbeatRequest{RunId: fuzzRunID, Generation: 1, StopRequested: true}))
	f.Add([]byte{recRegister, 3, 0x0a, 0x01, 'a', recTick, 255, recTick, 255, recTick, 255})

	f.Fuzz(func(t *testing.T, data []byte) {
		const world = 2
		p := NewPolicy(PolicyConfig{WorldSize: world, RunID: fuzzRunID, ConfigDigest: digest, MaxRestarts: 2,
			RendezvousTimeout: time.Minute, HeartbeatTimeout: 10 * time.Second})
		srv := &Server{cfg: Config{ConfigYAML: []byte("x: 1\n"), HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second}, runID: fuzzRunID}
		now := t0
		nextCall := CallID(1000) // streams are 1..15
		var lastReg, lastFin CallID
		answered := map[CallID]bool{}
		exits := 0
		step := func(ev Event) {
			for _, a := range p.Step(now, ev) {
				var call CallID
				switch a := a.(type) {
				case Assign:
					call = a.Call
					if a.Rank < 0 || a.Rank >= world || a.WorldSize != world || len(a.Peers) != world || a.Generation == 0 {
						t.Fatalf("bad assignment %+v", a)
					}
					if _, err := proto.Marshal(srv.assignment(a)); err != nil {
						t.Fatalf("assignment does not marshal: %v", err)
					}
				case Refuse:
					if a.Code == codes.OK || a.Msg == "" {
						t.Fatalf("refusal without a code or a reason: %+v", a)
					}
					if a.Call < 1000 {
						continue // a stream: refused on each beat until it closes
					}
					call = a.Call
				case EndRegistration:
					call = a.Call
				case ReplyFinish:
					call = a.Call
				case SendCommand:
					if a.Stream == 0 || a.Command == hjepav1.Command_COMMAND_UNSPECIFIED {
						t.Fatalf("bad command %+v", a)
					}
				case ExitJob:
					if exits++; exits > 1 {
						t.Fatalf("second ExitJob %+v", a)
					}
				}
				if call != 0 {
					if answered[call] {
						t.Fatalf("call %d answered twice (%+v)", call, a)
					}
					answered[call] = true
				}
			}
			if exits > 0 && p.Phase() != PhaseDone {
				t.Fatalf("exited in phase %v", p.Phase())
			}
		}
		for len(data) >= 2 {
			kind, n := data[0], int(data[1])
			body := data[2:min(len(data), 2+n)]
			data = data[min(len(data), 2+n):]
			stream := CallID(kind>>4) + 1
			now = now.Add(10 * time.Millisecond)
			switch kind % recKinds {
			case recRegister:
				var req hjepav1.RegisterRequest
				if proto.Unmarshal(body, &req) != nil {
					continue // grpc-go refuses it before the handler
				}
				nextCall++
				lastReg = nextCall
				step(registered(nextCall, &req))
			case recBeat:
				var req hjepav1.HeartbeatRequest
				if proto.Unmarshal(body, &req) != nil {
					continue
				}
				step(beat(stream, &req))
			case recFinish:
				var req hjepav1.FinishRequest
				if proto.Unmarshal(body, &req) != nil {
					continue
				}
				nextCall++
				lastFin = nextCall
				step(finished(nextCall, &req))
			case recTick:
				now = now.Add(time.Duration(n) * 250 * time.Millisecond)
				step(Tick{})
			case recStreamClosed:
				step(StreamClosed{Stream: stream, Graceful: n%2 == 1, Detail: "fuzz"})
			case recRegisterCancelled:
				if lastReg != 0 && !answered[lastReg] {
					answered[lastReg] = true // withdrawn: an answer now would be a bug
					step(RegisterCancelled{Call: lastReg})
				}
			case recFinishCancelled:
				if lastFin != 0 && !answered[lastFin] {
					answered[lastFin] = true
					step(FinishCancelled{Call: lastFin})
				}
			case recProbed:
				step(CheckpointProbed{Generation: p.Generation() + 1, Found: n%2 == 1, Step: int64(n), Dir: "ck"})
			}
		}
	})
}
