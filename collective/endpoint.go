package collective

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hjepa-go/hjepa/collective/grpcwire"
	"github.com/hjepa-go/hjepa/collective/rpcsec"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

const (
	// DefaultChunkBytes is the payload of one ring message.
	DefaultChunkBytes = 1 << 20
	// MaxGatherBytes bounds each rank's block in AllGather.
	MaxGatherBytes = 64 << 10
	// DefaultTimeout bounds Join and every collective.
	DefaultTimeout = 60 * time.Second

	minChunkBytes    = 4 << 10
	maxChunkBytes    = 64 << 20
	maxRunIDBytes    = 256
	maxAckErrorBytes = 4 << 10
	// headerSlack is what a RingRequest needs beyond its payload: the
	// header (at most maxHeaderBytes with a maxRunIDBytes run id) and the
	// payload's tag and length.
	headerSlack = 1 << 10
	// helloWait is how long a predecessor's hello waits for the local Join
	// of its generation.
	helloWait = DefaultTimeout
)

// EndpointOptions configure a worker's collective server.
type EndpointOptions struct {
	// Listen is the address to listen on, e.g. "127.0.0.1:0".
	Listen string
	// Security is the job token / TLS for the server and for dialing the
	// successor.
	Security rpcsec.Options
	// ChunkBytes is the payload of one ring message (default 1 MiB, at
	// least 4 KiB, a multiple of 4). The server refuses any message larger
	// than max(ChunkBytes, MaxGatherBytes) plus a small header slack.
	ChunkBytes int
	// Logger receives structured logs (nil: none).
	Logger *zap.Logger
}

// Endpoint is a worker's collective server: one per worker process, living
// across generations. Each generation's ring is made with Join.
type Endpoint struct {
	opts EndpointOptions
	log  *zap.Logger
	lis  net.Listener
	srv  *grpcwire.Server
	// streamOpts open a Ring stream to a successor.
	streamOpts grpcwire.StreamOptions
	served     chan struct{}
	stopped    chan struct{} // closed by Close

	mu      sync.Mutex
	rings   map[ringKey]*Ring
	latest  ringKey // the last Join's run and generation
	joined  bool    // whether latest is set
	changed chan struct{}
	closed  bool
}

type ringKey struct {
	runID      string
	generation uint64
}

var errEndpointClosed = errors.New("collective: endpoint closed")

// Listen starts a worker's collective server.
func Listen(opts EndpointOptions) (*Endpoint, error) {
	if opts.ChunkBytes == 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	if err := checkChunkBytes(opts.ChunkBytes); err != nil {
		return nil, fmt.Errorf("collective endpoint: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	maxMsg := max(opts.ChunkBytes, MaxGatherBytes) + headerSlack
	serverTLS, err := opts.Security.ServerTLS()
	if err != nil {
		return nil, fmt.Errorf("collective endpoint: %w", err)
	}
	clientTLS, err := opts.Security.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("collective endpoint: %w", err)
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("collective endpoint: listen %q: %w", opts.Listen, err)
	}
	e := &Endpoint{
		opts: opts,
		log:  opts.Logger.With(zap.String("endpoint", lis.Addr().String())),
		lis:  lis,
		streamOpts: grpcwire.StreamOptions{
			Path:           ringPath,
			ContentSubtype: codecName,
			Codec:          ringCodec{},
			Pool:           wireBufs,
			MaxRecvMsgSize: maxAckErrorBytes + 64,
			TLS:            clientTLS,
			Metadata:       opts.Security.RequestMetadata(),
		},
		served:  make(chan struct{}),
		stopped: make(chan struct{}),
		rings:   map[ringKey]*Ring{},
		changed: make(chan struct{}),
	}
	e.srv = grpcwire.NewServer(grpcwire.ServerOptions{
		Path:           ringPath,
		Codec:          ringCodec{},
		Pool:           wireBufs,
		MaxRecvMsgSize: maxMsg,
		TLS:            serverTLS,
		Authorize:      opts.Security.CheckMetadata,
		Handler:        e.serveRing,
	})
	go func() {
		defer close(e.served)
		if err := e.srv.Serve(lis); err != nil {
			e.log.Error("collective server stopped", zap.Error(err))
		}
	}()
	return e, nil
}

// ringPath is the Ring method's HTTP/2 path.
var ringPath = "/" + hjepav1.CollectiveService_ServiceDesc.ServiceName + "/Ring"

func checkChunkBytes(n int) error {
	if n < minChunkBytes || n > maxChunkBytes || n%4 != 0 {
		return fmt.Errorf("chunk bytes %d: want a multiple of 4 in [%d, %d]", n, minChunkBytes, maxChunkBytes)
	}
	return nil
}

// Addr returns the address the endpoint listens on (host:port).
func (e *Endpoint) Addr() string { return e.lis.Addr().String() }

// Close aborts the endpoint's rings and stops its server, cutting every
// stream. Rings joined on it still need their own Close.
func (e *Endpoint) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.stopped)
	rings := make([]*Ring, 0, len(e.rings))
	for _, r := range e.rings {
		rings = append(rings, r)
	}
	e.mu.Unlock()
	for _, r := range rings {
		r.Abort(errEndpointClosed)
	}
	// GracefulStop flushes what the handlers wrote last (acks, statuses);
	// Stop cuts whatever is still open after a grace period.
	stopped := make(chan struct{})
	go func() {
		e.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(teardownGrace):
		e.srv.Stop()
		<-stopped
	}
	<-e.served
}

// register records a Join so the predecessor's hello can find it.
func (e *Endpoint) register(r *Ring) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errEndpointClosed
	}
	if old := e.rings[r.key]; old != nil {
		return fmt.Errorf("run %q generation %d is already joined on this endpoint (as rank %d)", r.key.runID, r.key.generation, old.rank)
	}
	e.rings[r.key] = r
	e.latest, e.joined = r.key, true
	e.notifyLocked()
	return nil
}

func (e *Endpoint) unregister(r *Ring) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rings[r.key] == r {
		delete(e.rings, r.key)
		e.notifyLocked()
	}
}

func (e *Endpoint) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// serveRing serves CollectiveService.Ring: the predecessor's end of a ring.
func (e *Endpoint) serveRing(stream *grpcwire.ServerStream) error {
	ctx := stream.Context()
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	log := e.log.With(zap.String("peer", from))
	if md, _ := metadata.FromIncomingContext(ctx); !hasRingSubtype(md.Get("content-type")) {
		return status.Errorf(codes.InvalidArgument, "Ring streams must use content-subtype %q (application/grpc+%s), got content-type %q",
			codecName, codecName, strings.Join(md.Get("content-type"), ","))
	}

	// The hello, read on a goroutine so a silent client cannot hold the
	// handler past helloWait. The goroutine ends with the stream.
	hello := &inMsg{}
	got := make(chan error, 1)
	go func() { got <- stream.RecvMsg(hello) }()
	timer := time.NewTimer(helloWait)
	defer timer.Stop()
	select {
	case err := <-got:
		if err != nil {
			return err
		}
	case <-timer.C:
		return status.Errorf(codes.DeadlineExceeded, "no OP_HELLO within %v of opening the Ring stream", helloWait)
	case <-e.stopped:
		return status.Error(codes.Unavailable, "collective endpoint closed")
	}
	h := hello.h
	h.runID = string(hello.runID)
	if h.op != hjepav1.Op_OP_HELLO {
		log.Warn("ring stream refused: first message is not a hello", zap.Stringer("op", h.op))
		return status.Errorf(codes.InvalidArgument, "the first message on a Ring stream must be OP_HELLO, got %v", h.op)
	}

	var r *Ring
	for r == nil {
		e.mu.Lock()
		var err error
		r, err = e.matchHelloLocked(&h)
		changed := e.changed
		e.mu.Unlock()
		if err != nil {
			log.Warn("ring hello refused", zap.String("run", h.runID), zap.Uint64("generation", h.generation),
				zap.Int32("sender_rank", h.sender), zap.Error(err))
			return err
		}
		if r != nil {
			break
		}
		select {
		case <-changed:
		case <-timer.C:
			return status.Errorf(codes.FailedPrecondition, "hello from rank %d for run %q generation %d: no Join of that generation on this endpoint within %v (%s)",
				h.sender, h.runID, h.generation, helloWait, e.describeLatest())
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-e.stopped:
			return status.Error(codes.Unavailable, "collective endpoint closed")
		}
	}

	if err := stream.SendMsg(&ackMsg{}); err != nil {
		r.fail(fmt.Errorf("accepting rank %d (%s): %w", h.sender, from, err))
		return err
	}
	if err := r.attachIn(stream, from); err != nil {
		return status.Error(codes.Aborted, err.Error())
	}
	log.Debug("ring predecessor connected", zap.Int("rank", r.rank), zap.Uint64("generation", h.generation))
	defer func() {
		r.inMu.Lock() // no more acks on this stream once the handler returns
		r.inEnded = true
		r.inMu.Unlock()
	}()
	select {
	case <-r.aborted:
	case <-r.closeNow:
	case <-stream.Ended(): // the predecessor closed or aborted its ring, or went away
		r.predecessorEnded(ctx)
	case <-ctx.Done(): // the predecessor went away
		r.predecessorEnded(ctx)
		return nil
	}
	if err := r.abortErr(); err != nil {
		return status.Errorf(codes.Aborted, "rank %d aborted the ring: %v", r.rank, err)
	}
	return nil
}

func hasRingSubtype(cts []string) bool {
	for _, ct := range cts {
		if strings.EqualFold(ct, "application/grpc+"+codecName) {
			return true
		}
	}
	return false
}

// matchHelloLocked decides a predecessor's hello: the ring it joins, an
// error (a gRPC status) when it can never be accepted, or neither when it
// may be for a Join that has not happened yet.
func (e *Endpoint) matchHelloLocked(h *header) (*Ring, error) {
	key := ringKey{h.runID, h.generation}
	if r := e.rings[key]; r != nil {
		want := (r.rank - 1 + r.n) % r.n
		if int(h.sender) != want {
			return nil, status.Errorf(codes.PermissionDenied,
				"hello for run %q generation %d from sender rank %d: this endpoint is rank %d of %d and accepts only its predecessor, rank %d",
				h.runID, h.generation, h.sender, r.rank, r.n, want)
		}
		if r.inClaimed {
			return nil, status.Errorf(codes.FailedPrecondition,
				"hello for run %q generation %d from sender rank %d: rank %d already has its predecessor connected",
				h.runID, h.generation, h.sender, r.rank)
		}
		r.inClaimed = true
		return r, nil
	}
	if e.joined && h.runID == e.latest.runID {
		switch {
		case h.generation < e.latest.generation:
			return nil, status.Errorf(codes.FailedPrecondition,
				"hello for run %q generation %d from sender rank %d: stale generation, this endpoint is at generation %d",
				h.runID, h.generation, h.sender, e.latest.generation)
		case h.generation == e.latest.generation:
			return nil, status.Errorf(codes.FailedPrecondition,
				"hello for run %q generation %d from sender rank %d: that generation has ended on this endpoint",
				h.runID, h.generation, h.sender)
		}
		return nil, nil // a later generation: its Join may still come
	}
	for k := range e.rings {
		if k.runID != h.runID {
			return nil, status.Errorf(codes.PermissionDenied,
				"hello for run %q generation %d from sender rank %d: this endpoint serves run %q (generation %d)",
				h.runID, h.generation, h.sender, k.runID, k.generation)
		}
	}
	return nil, nil
}

func (e *Endpoint) describeLatest() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.joined {
		return "no Join yet"
	}
	return fmt.Sprintf("latest Join: run %q generation %d", e.latest.runID, e.latest.generation)
}

// crash stops the endpoint the way a killed process would: streams cut,
// nothing sent. Tests only.
func (e *Endpoint) crash() {
	e.mu.Lock()
	e.closed = true
	close(e.stopped)
	rings := make([]*Ring, 0, len(e.rings))
	for _, r := range e.rings {
		rings = append(rings, r)
	}
	e.mu.Unlock()
	for _, r := range rings {
		r.silent.Store(true)
		r.cancel()
	}
	e.srv.Stop()
	<-e.served
	for _, r := range rings {
		r.fail(errEndpointClosed)
	}
}
