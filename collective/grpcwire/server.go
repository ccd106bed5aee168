package grpcwire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Path is the one method served, e.g. "/hjepa.v1.CollectiveService/Ring";
	// any other is answered Unimplemented.
	Path string
	// Codec encodes and decodes messages.
	Codec encoding.CodecV2
	// Pool holds received messages' buffers (default: grpc's default pool).
	Pool mem.BufferPool
	// MaxRecvMsgSize bounds a received message; a longer one is refused
	// (ResourceExhausted) before anything is allocated for it.
	MaxRecvMsgSize int
	// TLS, when set, is the server's TLS configuration ("h2" is added to
	// its NextProtos); nil serves plaintext HTTP/2 with prior knowledge, as
	// grpc-go's insecure credentials do.
	TLS *tls.Config
	// Authorize checks a stream's metadata before the handler runs; an
	// error (a gRPC status) refuses the stream with it.
	Authorize func(metadata.MD) error
	// Handler serves one stream; its error becomes the stream's status.
	Handler func(*ServerStream) error
}

// Server serves ServerOptions.Path on HTTP/2 connections, one stream each.
type Server struct {
	opts ServerOptions

	mu       sync.Mutex
	lis      []net.Listener
	conns    map[*conn]struct{}
	stopped  bool
	draining bool
	wg       sync.WaitGroup // connection goroutines
	// pending holds the accepted sockets not yet authenticated, with when
	// each was accepted (at most maxPreAuth; see maxPreAuthConns).
	pending map[net.Conn]time.Time
	evicted int // pending sockets closed to make room, in all

	// handshakeTimeout, writeTimeout, maxPreAuth and limits are the
	// constants of those names (tests shorten the deadlines or change the
	// limits).
	handshakeTimeout time.Duration
	maxPreAuth       int
	writeTimeout     time.Duration
	limits           floodLimits
}

// NewServer returns a server; Serve starts it.
func NewServer(opts ServerOptions) *Server {
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		cfg.NextProtos = append([]string{"h2"}, cfg.NextProtos...)
		opts.TLS = cfg
	}
	return &Server{opts: opts, conns: map[*conn]struct{}{}, pending: map[net.Conn]time.Time{},
		handshakeTimeout: handshakeTimeout, writeTimeout: writeTimeout, maxPreAuth: maxPreAuthConns, limits: defaultFloodLimits}
}

// Serve accepts connections on lis until Stop or GracefulStop, then
// returns nil; any other accept error is returned.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.stopped || s.draining {
		s.mu.Unlock()
		_ = lis.Close()
		return nil
	}
	s.lis = append(s.lis, lis)
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := lis.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.stopped || s.draining
			s.mu.Unlock()
			if done {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.stopped || s.draining {
			s.mu.Unlock()
			_ = nc.Close()
			return nil
		}
		victim := s.admitLocked(nc)
		s.wg.Add(1)
		s.mu.Unlock()
		if victim != nil {
			abortClose(victim)
		}
		go s.serveConn(nc)
	}
}

// Stop closes the listeners and every connection at once; handlers see
// their stream's context cancelled. It returns when every connection's
// goroutines have ended.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.closeListenersLocked()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(errors.New("grpcwire: server stopped"))
	}
	s.wg.Wait()
}

// GracefulStop closes the listeners and waits until every stream has ended
// (its handler returned and its status went out).
func (s *Server) GracefulStop() {
	s.mu.Lock()
	s.draining = true
	s.closeListenersLocked()
	var idle []*conn
	for c := range s.conns {
		if !c.active.Load() {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	for _, c := range idle { // no stream yet: nothing to wait for
		c.shutdown(errors.New("grpcwire: server stopping"))
	}
	s.wg.Wait()
}

// admitLocked counts nc as pending authentication and, when that makes
// more than maxPreAuth, returns the oldest pending socket for the caller to
// close (its goroutine then ends on the closed socket).
func (s *Server) admitLocked(nc net.Conn) (victim net.Conn) {
	if len(s.pending) >= s.maxPreAuth {
		var oldest time.Time
		for c, at := range s.pending {
			if victim == nil || at.Before(oldest) {
				victim, oldest = c, at
			}
		}
		delete(s.pending, victim)
		s.evicted++
	}
	s.pending[nc] = time.Now()
	return victim
}

// settled removes nc from the sockets pending authentication (it
// authenticated or is gone); false: it was no longer pending (evicted, and
// being closed).
func (s *Server) settled(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[nc]
	delete(s.pending, nc)
	return ok
}

func (s *Server) closeListenersLocked() {
	for _, l := range s.lis {
		_ = l.Close()
	}
	s.lis = nil
}

func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	// Until its request is authenticated the connection's reads and writes
	// stop at the handshake deadline, and the socket is closed then in
	// any case (a TLS handshake or a write may be what is blocked).
	deadline := time.Now().Add(s.handshakeTimeout)
	_ = nc.SetDeadline(deadline)
	tcp := nc
	defer func() { s.settled(tcp) }()
	expire := time.AfterFunc(s.handshakeTimeout, func() { abortClose(tcp) })
	defer expire.Stop()
	if s.opts.TLS != nil {
		tc := tls.Server(nc, s.opts.TLS)
		if err := tc.Handshake(); err != nil {
			_ = nc.Close()
			return
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = tc.Close()
			return
		}
		nc = tc
	}
	var pre [len(clientPreface)]byte
	if _, err := io.ReadFull(nc, pre[:]); err != nil || string(pre[:]) != clientPreface {
		_ = nc.Close()
		return
	}
	c := newConn(nc, true, s.opts.Codec, s.opts.Pool, s.opts.MaxRecvMsgSize)
	c.handshakeDeadline, c.expire = deadline, expire
	c.onAuth = func() bool { return s.settled(tcp) }
	c.writeTimeout, c.limits = s.writeTimeout, s.limits
	s.mu.Lock()
	if s.stopped || s.draining {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	if err := c.writeSettings(); err != nil {
		_ = nc.Close()
		return
	}
	st := &ServerStream{s: s, c: c, readerDone: make(chan struct{}), handlerDone: make(chan struct{})}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	c.readLoop(st)
	close(st.readerDone)
	st.cancel()
	if st.started {
		<-st.handlerDone
	}
}

// ServerStream is the server's end of one stream.
type ServerStream struct {
	s           *Server
	c           *conn
	ctx         context.Context
	cancel      context.CancelFunc
	started     bool // the handler runs (set by the reader before it starts it)
	readerDone  chan struct{}
	handlerDone chan struct{}
	contentType string

	hmu         sync.Mutex
	headersSent bool
	statusSent  bool
	// forced is the status abort decided on: it wins over the handler's.
	forced atomic.Pointer[error]
}

// Context is the stream's context: it carries the request's metadata
// (metadata.FromIncomingContext) and the peer's address (peer.FromContext),
// and is cancelled when the client cancels or the connection breaks.
func (st *ServerStream) Context() context.Context { return st.ctx }

// RecvMsg reads the next message into m; io.EOF when the client has
// half-closed.
func (st *ServerStream) RecvMsg(m any) error { return st.c.recvMsg(m) }

// TryRecvMsg, Ready and Ended are as for ClientStream.
func (st *ServerStream) TryRecvMsg(m any) (ok bool, err error) { return st.c.tryRecvMsg(m) }

// Ready is as for ClientStream.
func (st *ServerStream) Ready() <-chan struct{} { return st.c.queued }

// Ended is as for ClientStream.
func (st *ServerStream) Ended() <-chan struct{} { return st.c.ended }

// SendMsg sends m.
func (st *ServerStream) SendMsg(m any) error {
	if err := st.ctx.Err(); err != nil {
		return errFromContext(st.ctx)
	}
	bufs, err := st.s.opts.Codec.Marshal(m)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	if err := st.sendHeaders(); err != nil {
		bufs.Free()
		return err
	}
	if err := st.c.writeMsg(bufs); err != nil {
		return status.Errorf(codes.Unavailable, "sending to %s: %v", st.c.nc.RemoteAddr(), err)
	}
	return nil
}

func (st *ServerStream) sendHeaders() error {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if st.statusSent {
		return status.Error(codes.Internal, "grpc: SendMsg after the stream's status was sent")
	}
	if st.headersSent {
		return nil
	}
	st.headersSent = true
	return st.c.writeHeaders([]hpack.HeaderField{
		{Name: ":status", Value: "200"},
		{Name: "content-type", Value: st.contentType},
	}, false)
}

// writeStatus ends the stream with err's status (nil: OK): trailers, or a
// trailers-only response when no headers went out.
func (st *ServerStream) writeStatus(err error) {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if st.statusSent {
		return
	}
	st.statusSent = true
	if f := st.forced.Load(); f != nil {
		err = *f
	}
	s := status.Convert(err)
	var fields []hpack.HeaderField
	if !st.headersSent {
		ct := st.contentType
		if ct == "" {
			ct = "application/grpc"
		}
		fields = append(fields, hpack.HeaderField{Name: ":status", Value: "200"}, hpack.HeaderField{Name: "content-type", Value: ct})
	}
	fields = append(fields, hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(s.Code()))})
	if m := s.Message(); m != "" {
		fields = append(fields, hpack.HeaderField{Name: "grpc-message", Value: encodeGrpcMessage(m)})
	}
	err = st.c.writeHeaders(fields, true)
	st.c.endSending(errSendEnded)
	if err == nil && !st.c.peerEnded() {
		// The response is complete; the rest of the request is not wanted.
		st.c.sendRST(http2.ErrCodeNo)
	}
}

// headers handles the request's header block (and ignores trailers).
func (st *ServerStream) headers(fields []hpack.HeaderField, endStream bool) error {
	if st.started || st.statusSent {
		return nil // the client's trailers: nothing in them matters
	}
	st.c.active.Store(true)
	req := parseRequest(fields)
	method, path, md, badBin := req.method, req.path, req.md, req.badBin
	st.contentType = req.contentType
	refuse := func(err error) error {
		st.writeStatus(err)
		st.started = true
		close(st.handlerDone)
		go st.c.linger(st.readerDone)
		return nil
	}
	if method != "POST" {
		return refuse(status.Errorf(codes.Unimplemented, "grpc: method %q, want POST", method))
	}
	if !strings.HasPrefix(st.contentType, "application/grpc") {
		return refuse(status.Errorf(codes.Internal, "grpc: content-type %q is not gRPC", st.contentType))
	}
	if badBin != nil {
		return refuse(badBin)
	}
	if path != st.s.opts.Path {
		return refuse(status.Errorf(codes.Unimplemented, "unknown method %s", strings.TrimPrefix(path, "/")))
	}
	if a := st.s.opts.Authorize; a != nil {
		if err := a(md); err != nil {
			return refuse(err)
		}
	}
	if !st.c.authenticated() {
		return errHandshakeExpired
	}
	ctx := metadata.NewIncomingContext(st.ctx, md)
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: st.c.nc.RemoteAddr(), LocalAddr: st.c.nc.LocalAddr()})
	st.ctx = ctx
	st.started = true
	go st.run()
	return nil // an END_STREAM on these headers is the reader's to handle
}

var errHandshakeExpired = errors.New("grpcwire: the handshake deadline passed before the request was authenticated")

// authenticated ends the connection's handshake: its request passed
// Authorize. It is false when the handshake deadline came first (the
// socket is being closed).
func (c *conn) authenticated() bool {
	if !c.expire.Stop() {
		return false
	}
	if c.onAuth != nil && !c.onAuth() {
		return false // evicted to make room (see maxPreAuthConns): being closed
	}
	c.authed.Store(true)
	_ = c.nc.SetReadDeadline(time.Time{}) // a stream may be idle between steps
	return true
}

// request is what a request's header block says.
type request struct {
	method, path, contentType string
	md                        metadata.MD // content-type and the custom metadata
	badBin                    error       // a "-bin" value that is not base64
}

func parseRequest(fields []hpack.HeaderField) request {
	r := request{md: metadata.MD{}}
	for _, f := range fields {
		switch f.Name {
		case ":method":
			r.method = f.Value
		case ":path":
			r.path = f.Value
		case ":authority", ":scheme":
		case "content-type":
			r.contentType = f.Value
			r.md.Append(f.Name, f.Value)
		case "te", "connection", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding":
		default:
			if strings.HasPrefix(f.Name, ":") {
				continue
			}
			v := f.Value
			if strings.HasSuffix(f.Name, "-bin") {
				b, err := decodeBinHeader(v)
				if err != nil {
					r.badBin = status.Errorf(codes.Internal, "grpc: malformed binary metadata %q: %v", f.Name, err)
					continue
				}
				v = string(b)
			}
			r.md.Append(f.Name, v)
		}
	}
	return r
}

func (st *ServerStream) run() {
	defer close(st.handlerDone)
	err := st.s.opts.Handler(st)
	st.writeStatus(err)
	st.cancel()
	st.c.linger(st.readerDone)
}

func (st *ServerStream) reset(code http2.ErrCode) {
	err := status.Errorf(codes.Canceled, "the client reset the stream (%v)", code)
	st.c.finish(err)
	st.c.endSending(err)
	st.cancel()
}

func (st *ServerStream) broken(err error) {
	if errors.Is(err, errStreamOver) {
		return
	}
	st.c.finish(status.Error(codes.Canceled, fmt.Sprintf("the connection from %s ended: %v", st.c.nc.RemoteAddr(), err)))
	st.cancel()
}

// abort runs on the reader: the status goes out from another goroutine, so
// the reader never waits behind the handler's data write.
func (st *ServerStream) abort(err error) {
	st.forced.CompareAndSwap(nil, &err)
	st.c.finish(err)
	st.cancel()
	go st.writeStatus(err)
}

// SetPlacer has the stream's large messages placed by p (nil: none). It may
// be called while messages arrive; it applies from the next one.
func (st *ServerStream) SetPlacer(p Placer) {
	if p == nil {
		st.c.placer.Store(nil)
		return
	}
	st.c.placer.Store(&p)
}
