package grpcwire

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// StreamOptions configure a client stream.
type StreamOptions struct {
	// Path is the method, e.g. "/hjepa.v1.CollectiveService/Ring".
	Path string
	// ContentSubtype makes the content-type "application/grpc+SUBTYPE"
	// ("": "application/grpc").
	ContentSubtype string
	// Codec encodes and decodes messages.
	Codec encoding.CodecV2
	// Pool holds received messages' buffers (default: grpc's default pool).
	Pool mem.BufferPool
	// MaxRecvMsgSize bounds a received message.
	MaxRecvMsgSize int
	// TLS, when set, is the client's TLS configuration ("h2" is required by
	// ALPN; ServerName defaults to the host of the address).
	TLS *tls.Config
	// Metadata is sent with the request (e.g. "authorization").
	Metadata map[string]string
}

// ClientStream is the client's end of one stream on its own connection.
type ClientStream struct {
	c    *conn
	opts StreamOptions
	ctx  context.Context
	addr string

	gotHeaders  bool // only the reader touches it
	readerDone  chan struct{}
	stopWatcher func() bool
}

// NewStream dials addr, opens the stream and sends its headers. ctx is the
// stream's lifetime: cancelling it resets the stream and closes the
// connection (RecvMsg then returns Canceled). A failure to connect is
// returned as Unavailable.
func NewStream(ctx context.Context, addr string, opts StreamOptions) (*ClientStream, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errFromContext(ctx)
		}
		return nil, status.Errorf(codes.Unavailable, "connection error: %v", err)
	}
	scheme := "http"
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		cfg.NextProtos = []string{"h2"}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			if ctx.Err() != nil {
				return nil, errFromContext(ctx)
			}
			return nil, status.Errorf(codes.Unavailable, "connection error: tls handshake with %s: %v", addr, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			_ = tc.Close()
			return nil, status.Errorf(codes.Unavailable, "connection error: %s did not negotiate HTTP/2 (ALPN %q)", addr, p)
		}
		nc, scheme = tc, "https"
	}
	c := newConn(nc, false, opts.Codec, opts.Pool, opts.MaxRecvMsgSize)
	c.streamID = 1
	cs := &ClientStream{c: c, opts: opts, ctx: ctx, addr: addr, readerDone: make(chan struct{})}
	ct := "application/grpc"
	if opts.ContentSubtype != "" {
		ct += "+" + opts.ContentSubtype
	}
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: scheme},
		{Name: ":path", Value: opts.Path},
		{Name: ":authority", Value: addr},
		{Name: "content-type", Value: ct},
		{Name: "te", Value: "trailers"},
		{Name: "user-agent", Value: "hjepa-grpcwire"},
	}
	for k, v := range opts.Metadata {
		k = strings.ToLower(k)
		if strings.HasSuffix(k, "-bin") {
			v = encodeBinHeader(v)
		}
		fields = append(fields, hpack.HeaderField{Name: k, Value: v})
	}
	err = func() error {
		c.wmu.Lock()
		c.armWrite()
		_, err := nc.Write([]byte(clientPreface))
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		if err := c.writeSettings(); err != nil {
			return err
		}
		return c.writeHeaders(fields, false)
	}()
	if err != nil {
		_ = nc.Close()
		return nil, status.Errorf(codes.Unavailable, "connection error: %s: %v", addr, err)
	}
	go func() {
		c.readLoop(cs)
		close(cs.readerDone)
	}()
	// The stream's end: reset on cancellation; either way the connection
	// goes once the stream is over.
	cs.stopWatcher = context.AfterFunc(ctx, func() {
		c.finish(errFromContext(ctx))
		c.endSending(errFromContext(ctx))
		c.sendRST(http2.ErrCodeCancel)
		c.shutdown(errFromContext(ctx))
	})
	go func() {
		<-c.ended
		cs.stopWatcher()
		c.endSending(errSendEnded)
		c.shutdown(errStreamOver)
	}()
	return cs, nil
}

// SendMsg sends m. Once the stream has ended it returns io.EOF; RecvMsg
// then returns the stream's status.
func (cs *ClientStream) SendMsg(m any) error {
	if cs.c.finalErr() != nil {
		return io.EOF
	}
	bufs, err := cs.opts.Codec.Marshal(m)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	if err := cs.c.writeMsg(bufs); err != nil {
		cs.fail(err)
		return io.EOF
	}
	return nil
}

// CloseSend half-closes the stream.
func (cs *ClientStream) CloseSend() error {
	if err := cs.c.endStream(); err != nil {
		cs.fail(err)
	}
	return nil
}

// RecvMsg reads the next message into m: io.EOF once the server has ended
// the stream with status OK, else the stream's status.
func (cs *ClientStream) RecvMsg(m any) error { return cs.c.recvMsg(m) }

// TryRecvMsg is RecvMsg without the wait: ok is false when no message is
// queued and the stream has not ended (see Ready).
func (cs *ClientStream) TryRecvMsg(m any) (ok bool, err error) { return cs.c.tryRecvMsg(m) }

// Ready returns a channel that receives a value after a message, or the
// stream's end, has been queued. It is for one consumer that polls with
// TryRecvMsg until that reports nothing queued, then waits on Ready (with
// its other events, in one select): no goroutine of its own is needed to
// receive. RecvMsg and Ready must not be used at the same time.
func (cs *ClientStream) Ready() <-chan struct{} { return cs.c.queued }

// Ended returns a channel closed once the stream's end is known; messages
// queued before the end can still be received.
func (cs *ClientStream) Ended() <-chan struct{} { return cs.c.ended }

// Context returns the stream's context.
func (cs *ClientStream) Context() context.Context { return cs.ctx }

// fail ends the stream after a write error.
func (cs *ClientStream) fail(err error) {
	cs.c.finish(status.Errorf(codes.Unavailable, "connection to %s broke: %v", cs.addr, err))
	cs.c.shutdown(err)
}

func (cs *ClientStream) headers(fields []hpack.HeaderField, endStream bool) error {
	first := !cs.gotHeaders
	cs.gotHeaders = true
	r := parseResponse(fields)
	httpStatus, grpcStatus, grpcMessage, contentType, hasGrpcStatus := r.httpStatus, r.grpcStatus, r.grpcMessage, r.contentType, r.hasGrpcStatus
	if first {
		if httpStatus != "200" {
			if hasGrpcStatus {
				cs.c.finish(grpcErr(grpcStatus, grpcMessage))
			} else {
				cs.c.finish(status.Errorf(httpCode(httpStatus), "unexpected HTTP status code received from server: %s; transport: received content-type %q", httpStatus, contentType))
			}
			return nil
		}
		if !strings.HasPrefix(contentType, "application/grpc") {
			cs.c.finish(status.Errorf(codes.Unknown, "unexpected content-type %q from %s", contentType, cs.addr))
			return nil
		}
	}
	if !endStream {
		if !first {
			cs.c.finish(status.Error(codes.Internal, "grpc: a second header block without END_STREAM"))
		}
		return nil
	}
	if !hasGrpcStatus {
		cs.c.finish(status.Error(codes.Internal, "grpc: the server's trailers lack grpc-status"))
		return nil
	}
	cs.c.finish(grpcErr(grpcStatus, grpcMessage))
	return nil
}

// response is what a response's header block (headers or trailers) says.
type response struct {
	httpStatus, contentType string
	grpcStatus, grpcMessage string // grpcMessage percent-decoded
	hasGrpcStatus           bool
}

func parseResponse(fields []hpack.HeaderField) response {
	var r response
	for _, f := range fields {
		switch f.Name {
		case ":status":
			r.httpStatus = f.Value
		case "content-type":
			r.contentType = f.Value
		case "grpc-status":
			r.grpcStatus, r.hasGrpcStatus = f.Value, true
		case "grpc-message":
			r.grpcMessage = decodeGrpcMessage(f.Value)
		}
	}
	return r
}

// grpcErr is the error for a grpc-status: io.EOF for OK.
func grpcErr(code, msg string) error {
	n, err := strconv.ParseUint(code, 10, 32)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: malformed grpc-status %q", code)
	}
	if codes.Code(n) == codes.OK {
		return io.EOF
	}
	return status.Error(codes.Code(n), msg)
}

// httpCode maps an HTTP status to a gRPC code as grpc-go does.
func httpCode(s string) codes.Code {
	switch s {
	case "400":
		return codes.Internal
	case "401":
		return codes.Unauthenticated
	case "403":
		return codes.PermissionDenied
	case "404":
		return codes.Unimplemented
	case "429", "502", "503", "504":
		return codes.Unavailable
	}
	return codes.Unknown
}

func (cs *ClientStream) reset(code http2.ErrCode) {
	switch code {
	case http2.ErrCodeNo:
		// After a complete response: the status is in the trailers.
		if cs.c.finalErr() == nil {
			cs.c.finish(status.Error(codes.Internal, "stream terminated by RST_STREAM with error code: NO_ERROR"))
		}
	case http2.ErrCodeCancel:
		cs.c.finish(status.Error(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL"))
	case http2.ErrCodeRefusedStream:
		cs.c.finish(status.Error(codes.Unavailable, "stream refused by the server (RST_STREAM REFUSED_STREAM)"))
	default:
		cs.c.finish(status.Errorf(codes.Internal, "stream terminated by RST_STREAM with error code: %v", code))
	}
}

func (cs *ClientStream) broken(err error) {
	if cs.ctx.Err() != nil {
		cs.c.finish(errFromContext(cs.ctx))
		return
	}
	cs.c.finish(status.Errorf(codes.Unavailable, "connection to %s closed: %v", cs.addr, err))
}

func (cs *ClientStream) abort(err error) {
	cs.c.finish(err)
	cs.c.sendRST(http2.ErrCodeCancel)
}
