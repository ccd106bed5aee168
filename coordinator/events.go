package coordinator

import (
	"time"

	"google.golang.org/grpc/codes"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// CallID names one RPC of the job: a Register call, a Finish call or a
// Heartbeat stream. The shell assigns them and never reuses one; actions
// that answer an RPC carry its CallID.
type CallID uint64

// Event is an input of the Policy: something a worker did, something the
// shell learnt, or the passing of time (Tick).
type Event interface{ isEvent() }

// Registered: a worker called Register. The call stays open until an Assign
// or a Refuse action answers it, or RegisterCancelled withdraws it.
type Registered struct {
	Call   CallID
	Worker string
	// Rank is the requested rank when HasRank (--rank or RANK).
	Rank    int
	HasRank bool
	// Digest is the worker's own config digest; empty: it takes the job's.
	Digest      string
	PeerAddress string
	Hostname    string
	PID         int
	LocalRank   int
}

// RegisterCancelled: a Register call ended on the worker's side (its
// context) before it was answered.
type RegisterCancelled struct{ Call CallID }

// Beat: one message on a Heartbeat stream. Stream identifies the stream;
// the first beat binds it to the member (Generation, Rank).
type Beat struct {
	Stream        CallID
	RunID         string
	Generation    uint64
	Rank          int
	Phase         hjepav1.WorkerPhase
	Step          int64
	Loss          float64
	StepSeconds   float64
	StopRequested bool
}

// StreamClosed: a Heartbeat stream ended. Graceful is true when the worker
// half-closed it (io.EOF), false when it broke (cancelled, connection lost).
type StreamClosed struct {
	Stream   CallID
	Graceful bool
	Detail   string
}

// Finished: a worker called Finish. The call stays open until a ReplyFinish
// or a Refuse action answers it, or FinishCancelled withdraws it.
type Finished struct {
	Call       CallID
	RunID      string
	Generation uint64
	Rank       int
	Worker     string
	Outcome    hjepav1.Outcome
	Error      string
	Step       int64
	// Failure classifies a FAILED outcome (UNSPECIFIED reads as OTHER);
	// BatchSize is the worker's data.batch_size and DeviceMemory its
	// device's bytes (0: unknown), for the job's message.
	Failure      hjepav1.FailureKind
	BatchSize    int
	DeviceMemory uint64
}

// FinishCancelled: a Finish call ended on the worker's side before it was
// answered.
type FinishCancelled struct{ Call CallID }

// Tick: time passed (the shell's ticker). Timeouts are checked here.
type Tick struct{}

// StopRequested: the coordinator itself was asked to stop (its SIGTERM):
// a coordinated checkpoint and a clean exit.
type StopRequested struct{ Reason string }

// CheckpointProbed answers a ProbeCheckpoint action: the latest checkpoint
// under the job's checkpoint directory when generation Generation forms.
type CheckpointProbed struct {
	Generation uint64
	Found      bool
	Step       int64
	Dir        string
	// Err is set when the directory holds only damaged checkpoints or cannot
	// be read: the job fails rather than silently starting over.
	Err string
}

func (Registered) isEvent()        {}
func (RegisterCancelled) isEvent() {}
func (Beat) isEvent()              {}
func (StreamClosed) isEvent()      {}
func (Finished) isEvent()          {}
func (FinishCancelled) isEvent()   {}
func (Tick) isEvent()              {}
func (StopRequested) isEvent()     {}
func (CheckpointProbed) isEvent()  {}

// Action is an output of the Policy that the shell performs.
type Action interface{ isAction() }

// Peer is one member of a generation's ring.
type Peer struct {
	Rank     int
	Worker   string
	Address  string
	Hostname string
}

// Assign answers a Register call: the worker is rank Rank of Generation.
type Assign struct {
	Call       CallID
	Worker     string
	Generation uint64
	Rank       int
	WorldSize  int
	Peers      []Peer // every rank, by rank
	Resume     bool
	ResumeStep int64
	ResumeDir  string
}

// Refuse fails an RPC (Register, Finish, or a Heartbeat stream) with a gRPC
// status.
type Refuse struct {
	Call   CallID
	Worker string
	Code   codes.Code
	Msg    string
}

// EndRegistration answers a waiting Register: the job ended while the
// worker waited for a generation; it exits with ExitCode.
type EndRegistration struct {
	Call     CallID
	Worker   string
	ExitCode int
	Msg      string
}

// SendCommand sends a command on a Heartbeat stream.
type SendCommand struct {
	Stream     CallID
	Worker     string
	Rank       int
	Generation uint64
	Command    hjepav1.Command
	Reason     string
}

// ReplyFinish answers a Finish call.
type ReplyFinish struct {
	Call     CallID
	Worker   string
	Next     hjepav1.Next
	ExitCode int
	Msg      string
}

// Evict names a worker declared lost because it went silent (no
// heartbeat, or no Finish after closing its stream): its process may still
// be alive, frozen or hung, holding its rank's resources and unable to
// rejoin. Whoever supervises that process (hjepa launch) should kill it so
// that a replacement can take the rank. A worker lost because its stream
// broke or because it registered again is not evicted: it is dead, or alive
// and rejoining.
type Evict struct {
	Worker     string
	Rank       int
	Host       string
	PID        int // as the worker registered it; 0: unknown
	Generation uint64
	Reason     string
}

// ProbeCheckpoint asks the shell for the latest checkpoint; it answers with
// a CheckpointProbed event before any other.
type ProbeCheckpoint struct{ Generation uint64 }

// RankStatus is one rank's latest heartbeat.
type RankStatus struct {
	Rank        int
	Worker      string
	Beats       int
	Step        int64
	Loss        float64
	StepSeconds float64
	SinceBeat   time.Duration
	Outcome     hjepav1.Outcome
}

// LogSummary logs one line per rank of the running generation.
type LogSummary struct {
	Generation uint64
	Ranks      []RankStatus
}

// LogLevel is the severity of a Log action.
type LogLevel int

// Log levels.
const (
	LevelInfo LogLevel = iota
	LevelWarn
	LevelError
)

// Field is one structured log field.
type Field struct {
	Key   string
	Value any
}

// Log records a decision of the policy (a generation formed or aborted, a
// worker lost, the job stopping).
type Log struct {
	Level  LogLevel
	Msg    string
	Fields []Field
}

// ExitJob ends the job: the shell stops serving and the process exits with
// Code. Nothing more is sent to the workers.
type ExitJob struct {
	Code int
	Msg  string
}

func (Assign) isAction()          {}
func (Refuse) isAction()          {}
func (EndRegistration) isAction() {}
func (SendCommand) isAction()     {}
func (ReplyFinish) isAction()     {}
func (Evict) isAction()           {}
func (ProbeCheckpoint) isAction() {}
func (LogSummary) isAction()      {}
func (Log) isAction()             {}
func (ExitJob) isAction()         {}
