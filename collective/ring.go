// Package collective is the data-parallel collectives between workers: a
// ring of gRPC streams, rank r to rank r+1, one ring per generation of the
// job (DESIGN.md section 6, "Collective service").
//
// AllReduceSum is reduce-scatter then all-gather, 2(N-1) ring steps over N
// segments sent in chunks of at most ChunkBytes, two unacknowledged chunks in
// flight per link. Every element's sum is formed in the same order on every
// run and the all-gather copies the reduced segments, so the result is
// bitwise identical on every rank and from run to run.
//
// Callers run collectives in the same order on every rank (as with NCCL or
// Gloo). Every chunk carries its run, generation, sender, op, step, sequence
// number within the step, bucket, ring step, chunk index, offset and length;
// the receiver checks each against what it expects, and a mismatch, a missed
// deadline or a broken stream aborts the ring, which every other rank then
// sees within a few messages instead of hanging.
//
// On the wire a chunk is an ordinary hjepav1.RingRequest on a gRPC bidi
// stream (CollectiveService.Ring), written and read by this package's codec
// ("hjepa-ring", codec.go) without protobuf's copies, and carried by
// grpcwire, a lean gRPC-over-HTTP/2 transport for this one stream: a
// chunk is one DATA frame, its float32 payload leaves with one writev
// straight from the caller's buffer, and arrives straight from the socket:
// a chunk to be added into one pooled buffer, from which the reduction adds
// into the caller's buffer, and a chunk to be copied (the all-gather half,
// broadcasts) into the caller's buffer itself, once its header has been
// checked against the receive it must be (place.go). (grpc-go's transport cuts messages into
// 16 KiB frames and copies every byte twice more; on a 2-core machine that
// cost more CPU than Gloo's whole all-reduce.) A payload longer than one
// chunk is refused before anything is held, and the server refuses any
// message longer than a chunk plus a header, so a peer cannot make a rank
// hold more than the chunks in flight. Any gRPC client can open the
// stream (the bad-peer tests use grpc-go's).
package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hjepa-go/hjepa/collective/grpcwire"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// RingConfig is one rank's place in one generation's ring.
type RingConfig struct {
	RunID           string
	Generation      uint64
	Rank, WorldSize int
	// Next is the address of rank (Rank+1)%WorldSize's Endpoint.
	Next string
	// ChunkBytes is the payload of one message (default: the endpoint's;
	// at most the endpoint's). Every rank must use the same value.
	ChunkBytes int
	// Timeout bounds Join and every collective (default 60 s): a
	// collective fails when nothing has come from the peer it waits on for
	// this long.
	Timeout time.Duration
}

// sendWindow is the number of chunks a rank may have sent to its successor
// and not had acknowledged.
const sendWindow = 2

// Ring is one generation's ring as seen by one rank. Its collectives run one
// at a time; concurrent calls are serialized (and must still come in the
// same order on every rank).
type Ring struct {
	e          *Endpoint
	log        *zap.Logger
	cfg        RingConfig
	key        ringKey
	rank, n    int
	prev, next int
	chunkElems int // float32 elements per chunk
	maxPayload int // bytes: max(ChunkBytes, MaxGatherBytes)

	// ctx is the lifetime of the stream to the successor; cancel cuts it.
	ctx    context.Context
	cancel context.CancelFunc
	out    *grpcwire.ClientStream
	silent atomic.Bool // crash(): tear down without telling anyone
	joined atomic.Bool // Join succeeded: closeOut owns the successor stream's teardown

	in      *grpcwire.ServerStream
	inAddr  string
	inReady chan struct{}
	inMu    sync.Mutex // guards acks on in against the handler returning
	inEnded bool

	// sendMu makes one SendMsg at a time on out: a collective's chunks, or
	// closeOut's goodbye. sendWatch, armed while a collective runs, aborts
	// the ring when a send has been in progress (since sendSince, Unix
	// nanoseconds; 0: none) for the timeout: the successor stopped reading.
	sendMu    sync.Mutex
	sendWatch *time.Timer
	sendSince atomic.Int64
	running   atomic.Bool // a collective is running: sendWatch re-arms
	closeOnce sync.Once
	acksIn    chan struct{} // closed once the successor's end of out has been taken

	msgMu sync.Mutex
	msgs  []*inMsg

	mu        sync.Mutex
	inClaimed bool // guarded by e.mu: a hello has been accepted for this ring
	closed    bool
	err       error
	done      chan struct{} // closed on abort or Close: collectives stop
	aborted   chan struct{} // closed on abort
	closeNow  chan struct{} // closed when Close stops waiting for the neighbours
	wg        sync.WaitGroup

	opMu     sync.Mutex
	outEnd   error // the successor ended its stream (seen by a collective)
	opStep   int64
	opSeq    int32
	hasStep  bool
	outSlots [sendWindow]outMsg
	sends    []item
	recvs    []item
	ack      ackMsg // the ack being sent
	gotAck   ackMsg // the ack being received

	// Placement of received chunks into the running collective's buffer
	// (place.go), by the predecessor stream's reader.
	placeMu      sync.Mutex
	placeCond    *sync.Cond
	placeC       *collective // nil: no placement
	placeNext    int         // c.recvs before this index are past
	placing      bool        // the reader is writing into placeC's buffer
	placedChunks int         // chunks placed so far (tests)

	// tamper, when set (tests), edits each outgoing chunk header.
	tamper func(*header)
}

// Join connects this rank into one generation's ring: it dials Next
// (retrying until Timeout, since the successor may start later), sends
// OP_HELLO, and waits for the predecessor's hello on this endpoint. A world
// of one returns a ring whose collectives are local no-ops.
func (e *Endpoint) Join(ctx context.Context, cfg RingConfig) (*Ring, error) {
	if cfg.ChunkBytes == 0 {
		cfg.ChunkBytes = e.opts.ChunkBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if err := validateConfig(cfg, e.opts.ChunkBytes); err != nil {
		return nil, fmt.Errorf("collective join: %w", err)
	}
	n := cfg.WorldSize
	r := &Ring{
		e:          e,
		cfg:        cfg,
		key:        ringKey{cfg.RunID, cfg.Generation},
		rank:       cfg.Rank,
		n:          n,
		prev:       (cfg.Rank - 1 + n) % n,
		next:       (cfg.Rank + 1) % n,
		chunkElems: cfg.ChunkBytes / 4,
		maxPayload: max(cfg.ChunkBytes, MaxGatherBytes),
		inReady:    make(chan struct{}),
		aborted:    make(chan struct{}),
		closeNow:   make(chan struct{}),
		acksIn:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	r.sendWatch = time.AfterFunc(time.Hour, r.sendStalled)
	r.sendWatch.Stop()
	for i := range r.outSlots {
		r.outSlots[i].released = make(chan struct{}, 1)
	}
	r.placeCond = sync.NewCond(&r.placeMu)
	r.log = e.opts.Logger.With(zap.String("run", cfg.RunID), zap.Uint64("generation", cfg.Generation),
		zap.Int("rank", cfg.Rank), zap.Int("world_size", n))
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if n == 1 {
		return r, nil
	}
	if err := e.register(r); err != nil {
		r.cancel()
		return nil, fmt.Errorf("collective join: %w", err)
	}
	where := fmt.Sprintf("join run %q generation %d as rank %d of %d", cfg.RunID, cfg.Generation, cfg.Rank, n)
	jctx, jcancel := context.WithTimeout(ctx, cfg.Timeout)
	defer jcancel()
	outErr := make(chan error, 1)
	go func() { outErr <- r.connectNext(jctx) }()

	var errIn error
	select {
	case <-r.inReady:
	case <-jctx.Done():
		if ctx.Err() != nil {
			errIn = ctx.Err()
		} else {
			errIn = fmt.Errorf("no hello from rank %d (the predecessor) within %v", r.prev, cfg.Timeout)
		}
	case <-r.done:
		errIn = r.abortErr()
	}
	if errIn != nil {
		jcancel()
	}
	errOut := <-outErr
	if errOut != nil || errIn != nil {
		var err error
		switch {
		case errOut == nil:
			err = fmt.Errorf("%s: %w", where, errIn)
		case errIn == nil:
			err = fmt.Errorf("%s: %w", where, errOut)
		default:
			err = fmt.Errorf("%s: %w; and %w", where, errIn, errOut)
		}
		r.fail(err)
		_ = r.Close()
		return nil, err
	}
	r.joined.Store(true)
	r.wg.Add(1)
	go r.watchOut()
	r.log.Info("joined ring", zap.String("next", cfg.Next), zap.String("prev", r.peerPrev()))
	return r, nil
}

func validateConfig(cfg RingConfig, endpointChunk int) error {
	var errs []error
	if cfg.WorldSize < 1 {
		errs = append(errs, fmt.Errorf("world size %d: want at least 1", cfg.WorldSize))
	} else if cfg.Rank < 0 || cfg.Rank >= cfg.WorldSize {
		errs = append(errs, fmt.Errorf("rank %d: want 0 <= rank < world size %d", cfg.Rank, cfg.WorldSize))
	}
	if cfg.WorldSize > 1 && cfg.Next == "" {
		errs = append(errs, errors.New("next: the successor's address is empty"))
	}
	if len(cfg.RunID) > maxRunIDBytes {
		errs = append(errs, fmt.Errorf("run id of %d bytes: at most %d", len(cfg.RunID), maxRunIDBytes))
	}
	if err := checkChunkBytes(cfg.ChunkBytes); err != nil {
		errs = append(errs, err)
	} else if cfg.ChunkBytes > endpointChunk {
		errs = append(errs, fmt.Errorf("chunk bytes %d: larger than the endpoint's %d (its peers refuse bigger messages)", cfg.ChunkBytes, endpointChunk))
	}
	return errors.Join(errs...)
}

// connectNext opens the stream to the successor and has its hello accepted,
// retrying while the successor is unreachable.
func (r *Ring) connectNext(jctx context.Context) error {
	hello := &outMsg{h: header{runID: r.cfg.RunID, generation: r.cfg.Generation, sender: int32(r.rank), op: hjepav1.Op_OP_HELLO}}
	for {
		// The stream lives as long as the ring; only its setup is bounded by
		// the join deadline.
		sctx, scancel := context.WithCancel(r.ctx)
		stop := context.AfterFunc(jctx, scancel)
		stream, err := grpcwire.NewStream(sctx, r.cfg.Next, r.e.streamOpts)
		if err == nil {
			_ = stream.SendMsg(hello) // a refusal shows in RecvMsg's status
			var a ackMsg
			err = stream.RecvMsg(&a)
		}
		if err == nil && stop() {
			r.out = stream
			return nil
		}
		stop()
		scancel()
		if jctx.Err() != nil {
			if err == nil || status.Code(err) == codes.Canceled {
				err = jctx.Err()
			}
			return fmt.Errorf("successor rank %d at %s: no accepted hello within %v: %w", r.next, r.cfg.Next, r.cfg.Timeout, err)
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.FailedPrecondition, codes.Unauthenticated, codes.InvalidArgument:
			return fmt.Errorf("successor rank %d at %s refused the hello: %w", r.next, r.cfg.Next, err)
		}
		r.log.Debug("successor not ready, retrying", zap.String("next", r.cfg.Next), zap.Error(err))
		select {
		case <-time.After(100 * time.Millisecond):
		case <-jctx.Done():
		}
	}
}

// attachIn hands the predecessor's accepted stream to the ring.
func (r *Ring) attachIn(stream *grpcwire.ServerStream, from string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.err != nil {
		return fmt.Errorf("rank %d: ring already closed", r.rank)
	}
	r.in, r.inAddr = stream, from
	stream.SetPlacer(r)
	close(r.inReady)
	return nil
}

// Rank returns this rank.
func (r *Ring) Rank() int { return r.rank }

// WorldSize returns the number of ranks.
func (r *Ring) WorldSize() int { return r.n }

var errRingClosed = errors.New("collective: ring closed")

// Abort cancels everything in flight and closes both streams; the
// collectives in flight and all later ones return an error wrapping err.
// The other ranks see their streams end and fail too.
func (r *Ring) Abort(err error) {
	if err == nil {
		err = errors.New("aborted")
	}
	r.fail(fmt.Errorf("ring aborted: %w", err))
}

// fail aborts the ring with err unless it is already aborted or closed.
func (r *Ring) fail(err error) bool {
	r.mu.Lock()
	if r.err != nil || r.closed { // after Close, a neighbour's end is no news
		r.mu.Unlock()
		return false
	}
	r.err = err
	close(r.aborted)
	close(r.done)
	r.mu.Unlock()
	if r.joined.Load() {
		r.startClose()
	} else {
		r.cancel()
	}
	r.log.Warn("ring aborted", zap.Error(err))
	return true
}

// abortErr returns the error the ring was aborted with (nil if none).
func (r *Ring) abortErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// usable returns why no collective can run (nil if one can).
func (r *Ring) usable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if r.closed {
		return errRingClosed
	}
	return nil
}

// Close ends the ring: it half-closes the stream to the successor and waits
// (at most a couple of seconds) until both neighbours have ended their side,
// so that a neighbour still finishing the last collective (waiting for an
// ack, say) is not cut off by this process exiting. A collective in flight
// on this rank fails; the successor's next collective that needs data from
// this rank fails.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	aborted := r.err != nil
	if !aborted {
		close(r.done)
	}
	in := r.in
	r.mu.Unlock()
	if r.n > 1 {
		r.e.unregister(r)
	}
	if r.joined.Load() {
		r.startClose() // (already started if the ring was aborted)
	}
	if !aborted && r.joined.Load() && !r.silent.Load() {
		grace := time.NewTimer(teardownGrace)
		select { // the successor has seen our end and ended its side
		case <-r.acksIn:
		case <-grace.C:
		}
		if in != nil {
			select { // the predecessor has closed too
			case <-in.Ended():
			case <-grace.C:
			}
		}
		grace.Stop()
	}
	close(r.closeNow)
	r.sendWatch.Stop()
	watchdog := time.AfterFunc(teardownGrace+time.Second, r.cancel) // as in fail
	defer watchdog.Stop()
	r.wg.Wait()
	r.cancel()
	r.msgMu.Lock()
	r.msgs = nil
	r.msgMu.Unlock()
	return nil
}

func (r *Ring) peerNext() string { return fmt.Sprintf("rank %d (%s)", r.next, r.cfg.Next) }
func (r *Ring) peerPrev() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("rank %d (%s)", r.prev, r.inAddr)
}

// startClose starts closeOut (once).
func (r *Ring) startClose() {
	r.closeOnce.Do(func() {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.closeOut()
		}()
	})
}

// closeOut ends the successor stream: an abort notice first when the ring
// was aborted (so the successor's error says why), then a half-close, then,
// once the successor has ended the stream or a grace period has passed,
// cancellation.
func (r *Ring) closeOut() {
	defer r.cancel()
	if r.silent.Load() {
		return
	}
	// A send stuck on a successor that no longer reads holds sendMu: this
	// cuts it, and bounds the goodbye.
	guard := time.AfterFunc(teardownGrace, r.cancel)
	defer guard.Stop()
	r.sendMu.Lock()
	if err := r.abortErr(); err != nil {
		reason := err.Error()
		if len(reason) > MaxGatherBytes {
			reason = reason[:MaxGatherBytes]
		}
		notice := &outMsg{h: r.header(hjepav1.Op_OP_ABORT, 0, 0, 0), raw: []byte(reason)}
		_ = r.out.SendMsg(notice)
	}
	_ = r.out.CloseSend()
	r.sendMu.Unlock()
	select {
	case <-r.acksIn:
	case <-time.After(teardownGrace):
	}
}

// teardownGrace bounds the goodbye to the successor: the abort notice, and
// the wait for it to end the stream.
const teardownGrace = 2 * time.Second

// send writes one message of the running collective to the successor. The
// write happens on the collective's goroutine (a hand-off to a sending
// goroutine and back cost more than the write on a busy machine); should
// it not finish within the timeout, sendWatch aborts the ring, which cuts
// the stream and so ends the write. (The watch is a timestamp, not a timer
// reset per send: arming a timer can wake the runtime's network poller,
// a thread switch per chunk.)
func (r *Ring) send(m *outMsg) error {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	r.sendSince.Store(time.Now().UnixNano())
	err := r.out.SendMsg(m)
	r.sendSince.Store(0)
	return err
}

// watchSends arms sendWatch for a collective; the returned func disarms it.
func (r *Ring) watchSends() (stop func()) {
	r.running.Store(true)
	r.sendWatch.Reset(r.cfg.Timeout)
	return func() {
		r.running.Store(false)
		r.sendWatch.Stop()
	}
}

// sendStalled runs when sendWatch fires: it aborts the ring if the send in
// progress began a timeout ago, else checks again when it could.
func (r *Ring) sendStalled() {
	left := r.cfg.Timeout
	if since := r.sendSince.Load(); since != 0 {
		left -= time.Since(time.Unix(0, since))
	}
	if left <= 0 {
		r.fail(fmt.Errorf("a send to %s has not finished within %v (it stopped reading)", r.peerNext(), r.cfg.Timeout))
		return
	}
	if r.running.Load() {
		r.sendWatch.Reset(left)
	}
}

// watchOut takes the successor's end of the stream (its status) when no
// collective does: an abort or a broken stream aborts the ring at once; a
// clean end (the successor closed its ring) is noted in outEnd, so that
// only a collective that still sends fails. A collective in flight reads
// the acks and the end itself (ops.go); this waits for it to finish.
func (r *Ring) watchOut() {
	defer r.wg.Done()
	defer close(r.acksIn)
	<-r.out.Ended()
	r.opMu.Lock()
	defer r.opMu.Unlock()
	for {
		var a ackMsg
		ok, err := r.out.TryRecvMsg(&a)
		switch {
		case !ok: // cannot happen: the end is known
			return
		case err == io.EOF:
			r.outEnd = r.outBroken(err)
			return
		case err != nil:
			r.fail(r.outBroken(err))
			return
		case a.err != "":
			r.fail(fmt.Errorf("%s aborted the ring: %s", r.peerNext(), a.err))
		}
	}
}

func (r *Ring) outBroken(err error) error {
	if err == io.EOF {
		return fmt.Errorf("%s ended the ring stream", r.peerNext())
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Aborted {
		return fmt.Errorf("%s: %s", r.peerNext(), st.Message())
	}
	return fmt.Errorf("connection to %s broke: %w", r.peerNext(), err)
}

// predecessorEnded takes the end of the predecessor's stream when no
// collective does (the stream's handler calls it; a collective in flight
// reads the stream itself, and this waits for it to finish). An abort
// notice or a broken stream aborts the ring at once; a clean end (the
// predecessor closed its ring) does not: only a collective that still
// needs data from the predecessor fails, when it reads the end. Chunks
// still queued are dropped: a predecessor that closes cleanly has had
// every chunk it sent consumed (each is acknowledged).
func (r *Ring) predecessorEnded(ctx context.Context) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	m := r.getMsg()
	defer r.putMsg(m)
	for {
		ok, err := r.in.TryRecvMsg(m)
		switch {
		case !ok: // the stream's context ended before its end was queued
			r.fail(r.inBroken(status.FromContextError(ctx.Err()).Err()))
			return
		case err == io.EOF:
			return
		case err != nil:
			r.fail(r.inBroken(err))
			return
		case m.h.op == hjepav1.Op_OP_ABORT:
			r.fail(fmt.Errorf("%s aborted the ring: %s", r.peerPrev(), m.payload()))
		}
		m.release()
	}
}

func (r *Ring) inBroken(err error) error {
	if err == io.EOF {
		return fmt.Errorf("%s closed its stream to rank %d", r.peerPrev(), r.rank)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Canceled {
		return fmt.Errorf("%s went away (stream cancelled)", r.peerPrev())
	}
	return fmt.Errorf("stream from %s broke: %w", r.peerPrev(), err)
}

func (r *Ring) getMsg() *inMsg {
	r.msgMu.Lock()
	defer r.msgMu.Unlock()
	if n := len(r.msgs); n > 0 {
		m := r.msgs[n-1]
		r.msgs = r.msgs[:n-1]
		return m
	}
	return &inMsg{maxPayload: r.maxPayload}
}

// putMsg releases m's transport buffers and recycles it.
func (r *Ring) putMsg(m *inMsg) {
	m.release()
	r.msgMu.Lock()
	r.msgs = append(r.msgs, m)
	r.msgMu.Unlock()
}

// header returns this rank's header for a chunk of the current collective.
func (r *Ring) header(op hjepav1.Op, step int64, seq, bucket int32) header {
	return header{runID: r.cfg.RunID, generation: r.cfg.Generation, sender: int32(r.rank), op: op, step: step, seq: seq, bucket: bucket}
}
