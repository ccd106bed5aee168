package grpcwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// statusMsg has characters grpc-message must percent-encode.
const statusMsg = "msg with % and ünïcode\n"

// ---- grpc-go client -> grpcwire server ----

func TestGoClientWireServerEcho(t *testing.T) {
	authMD := make(chan metadata.MD, 1)
	type seen struct {
		md   metadata.MD
		peer *peer.Peer
		eof  bool
	}
	handlerSaw := make(chan seen, 1)
	_, addr := startWire(t, ServerOptions{
		Authorize: func(md metadata.MD) error {
			authMD <- md.Copy()
			if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer tok" {
				return status.Errorf(codes.Unauthenticated, "authorization %q", got)
			}
			return nil
		},
		Handler: func(st *ServerStream) error {
			var s seen
			s.md, _ = metadata.FromIncomingContext(st.Context())
			s.peer, _ = peer.FromContext(st.Context())
			for {
				var b []byte
				err := st.RecvMsg(&b)
				if err == io.EOF {
					s.eof = true
					break
				}
				if err != nil {
					handlerSaw <- s
					return err
				}
				if err := st.SendMsg(&b); err != nil {
					handlerSaw <- s
					return err
				}
			}
			handlerSaw <- s
			return nil
		},
	})
	localAddr := make(chan string, 1)
	cc := dialGo(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		if err == nil {
			select {
			case localAddr <- c.LocalAddr().String():
			default:
			}
		}
		return c, err
	}))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok", "x-extra", "v1")
	s, err := goStream(ctx, cc, testPath)
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrips(t, func(b *[]byte) error { return s.SendMsg(b) }, func(b *[]byte) error { return s.RecvMsg(b) }, echoSizes)
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := await(t, handlerSaw, "the handler's end")
	if !got.eof {
		t.Fatal("the handler's RecvMsg did not return io.EOF after CloseSend")
	}
	var b []byte
	if err := within(t, "final RecvMsg", func() error { return s.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("RecvMsg after the handler returned nil: %v, want io.EOF", err)
	}

	md := await(t, authMD, "Authorize")
	for _, m := range []metadata.MD{md, got.md} {
		if v := m.Get("authorization"); len(v) != 1 || v[0] != "Bearer tok" {
			t.Errorf("authorization = %q, want [Bearer tok] (md %v)", v, m)
		}
		if v := m.Get("x-extra"); len(v) != 1 || v[0] != "v1" {
			t.Errorf("x-extra = %q, want [v1]", v)
		}
	}
	if got.peer == nil || got.peer.Addr == nil {
		t.Fatal("no peer in the handler's context")
	}
	if want := await(t, localAddr, "the client's local address"); got.peer.Addr.String() != want {
		t.Errorf("peer address %s, want the client's %s", got.peer.Addr, want)
	}
}

func TestGoClientWireServerStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool // echo one message before failing (trailers, not trailers-only)
	}{{"trailers-only", false}, {"after-a-message", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
				if tc.first {
					var b []byte
					if err := st.RecvMsg(&b); err != nil {
						return err
					}
					if err := st.SendMsg(&b); err != nil {
						return err
					}
				}
				return status.Error(codes.FailedPrecondition, statusMsg)
			}})
			cc := dialGo(t, addr)
			s, err := goStream(context.Background(), cc, testPath)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first {
				echoRoundTrips(t, func(b *[]byte) error { return s.SendMsg(b) }, func(b *[]byte) error { return s.RecvMsg(b) }, []int{10})
			}
			var b []byte
			err = within(t, "RecvMsg", func() error { return s.RecvMsg(&b) })
			wantStatus(t, "RecvMsg", err, codes.FailedPrecondition, statusMsg)
		})
	}
}

func TestGoClientWireServerUnimplemented(t *testing.T) {
	called := make(chan struct{}, 1)
	_, addr := startWire(t, ServerOptions{Handler: func(*ServerStream) error { called <- struct{}{}; return nil }})
	cc := dialGo(t, addr)
	_, err := goCall(context.Background(), cc, "/test.Echo/Other", []byte("x"))
	wantStatus(t, "wrong path", err, codes.Unimplemented, "*")
	if len(called) != 0 {
		t.Fatal("the handler ran for a wrong path")
	}
}

func TestGoClientWireServerUnauthenticated(t *testing.T) {
	called := make(chan struct{}, 1)
	_, addr := startWire(t, ServerOptions{
		Authorize: func(md metadata.MD) error {
			if len(md.Get("authorization")) == 0 {
				return status.Error(codes.Unauthenticated, "no token")
			}
			return nil
		},
		Handler: func(*ServerStream) error { called <- struct{}{}; return nil },
	})
	cc := dialGo(t, addr)
	_, err := goCall(context.Background(), cc, testPath, []byte("x"))
	wantStatus(t, "no token", err, codes.Unauthenticated, "no token")
	if len(called) != 0 {
		t.Fatal("the handler ran for a refused stream")
	}
}

// A message over the server's MaxRecvMsgSize fails the stream with
// ResourceExhausted, which the client must see (as with grpc-go).
func TestGoClientWireServerMaxRecvMsgSize(t *testing.T) {
	handlerErr := make(chan error, 1)
	_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: 1024, Handler: func(st *ServerStream) error {
		err := wireEcho(st)
		handlerErr <- err
		return err
	}})
	cc := dialGo(t, addr)
	s, err := goStream(context.Background(), cc, testPath)
	if err != nil {
		t.Fatal(err)
	}
	// At the limit: fine.
	echoRoundTrips(t, func(b *[]byte) error { return s.SendMsg(b) }, func(b *[]byte) error { return s.RecvMsg(b) }, []int{1024})
	big := payload(7, 1025)
	if err := s.SendMsg(&big); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	wantStatus(t, "the handler's RecvMsg", await(t, handlerErr, "the handler"), codes.ResourceExhausted, "*")
	var b []byte
	err = within(t, "RecvMsg", func() error { return s.RecvMsg(&b) })
	wantStatus(t, "the client's RecvMsg", err, codes.ResourceExhausted, "*")
}

func TestGoClientWireServerCancel(t *testing.T) {
	got := make(chan struct{})
	type result struct {
		recvErr, ctxErr error
	}
	res := make(chan result, 1)
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		var b []byte
		if err := st.RecvMsg(&b); err != nil {
			return err
		}
		close(got)
		err := st.RecvMsg(&b)
		<-st.Context().Done() // the hang guard is the test's await on res
		res <- result{err, st.Context().Err()}
		return err
	}})
	cc := dialGo(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := goStream(ctx, cc, testPath)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("hello")
	if err := s.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	await(t, got, "the handler's first message")
	cancel()
	r := await(t, res, "the handler to see the cancellation")
	wantStatus(t, "the handler's RecvMsg", r.recvErr, codes.Canceled, "*")
	if r.ctxErr == nil {
		t.Fatal("the handler's context is not cancelled")
	}
	err = within(t, "RecvMsg", func() error { return s.RecvMsg(&b) })
	wantStatus(t, "the client's RecvMsg", err, codes.Canceled, "*")
}

// A handler blocked in SendMsg on flow control (the client reads nothing)
// must get out of it when the stream ends: when the client cancels (the
// grpc-go client resets the stream, RST_STREAM CANCEL, and keeps its
// connection; the grpcwire client resets it and closes the connection),
// and when the server itself fails the stream because a request message is
// over MaxRecvMsgSize (the connection stays open).
func TestGoClientWireServerStreamEndUnblocksSendMsg(t *testing.T) {
	const msg = 64 << 10
	for _, client := range []string{"grpc-go", "grpcwire"} {
		for _, how := range []string{"client-cancel", "oversized-request"} {
			t.Run(client+"/"+how, func(t *testing.T) {
				sending := make(chan struct{})
				sendErr := make(chan error, 1)
				_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: 1024, Handler: func(st *ServerStream) error {
					var b []byte
					if err := st.RecvMsg(&b); err != nil {
						return err
					}
					close(sending)
					for {
						if err := st.SendMsg(rawMsg(zeros[:msg])); err != nil {
							sendErr <- err
							return err
						}
					}
				}})
				var send func(any) error
				var cancel context.CancelFunc
				if client == "grpc-go" {
					// A static 64 KiB window (no BDP growth): the first
					// 64 KiB message cannot all go out while the client
					// does not read.
					cc := dialGo(t, addr, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
					var ctx context.Context
					ctx, cancel = context.WithCancel(context.Background())
					defer cancel()
					s, err := goStream(ctx, cc, testPath)
					if err != nil {
						t.Fatal(err)
					}
					send = s.SendMsg
				} else {
					// The client's window holds windowMessages messages of
					// its MaxRecvMsgSize: the next one waits.
					opts := wireOpts()
					opts.MaxRecvMsgSize = msg
					var cs *ClientStream
					cs, cancel = wireStream(t, addr, opts)
					send = cs.SendMsg
				}
				b := []byte("go")
				if err := send(&b); err != nil {
					t.Fatal(err)
				}
				await(t, sending, "the handler to start sending")
				if how == "client-cancel" {
					cancel()
				} else {
					big := payload(1, 2048)
					if err := send(&big); err != nil && err != io.EOF {
						t.Fatal(err)
					}
				}
				if err := await(t, sendErr, "the handler's SendMsg to fail once the stream has ended"); err == nil {
					t.Fatal("no error")
				}
			})
		}
	}
}

// ---- grpcwire client -> grpc-go server ----

func TestWireClientGoServerEcho(t *testing.T) {
	type seen struct {
		md  metadata.MD
		eof bool
	}
	handlerSaw := make(chan seen, 1)
	addr := startGo(t, func(ss grpc.ServerStream) error {
		var s seen
		s.md, _ = metadata.FromIncomingContext(ss.Context())
		defer func() { handlerSaw <- s }()
		for {
			var b []byte
			err := ss.RecvMsg(&b)
			if err == io.EOF {
				s.eof = true
				return nil
			}
			if err != nil {
				return err
			}
			if err := ss.SendMsg(&b); err != nil {
				return err
			}
		}
	})
	opts := wireOpts()
	opts.Metadata = map[string]string{"authorization": "Bearer tok", "X-Extra": "v1"}
	cs, _ := wireStream(t, addr, opts)
	echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, echoSizes)
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := await(t, handlerSaw, "the handler's end")
	if !got.eof {
		t.Fatal("the grpc-go handler's RecvMsg did not return io.EOF after CloseSend")
	}
	var b []byte
	if err := within(t, "final RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("RecvMsg after the handler returned nil: %v, want io.EOF", err)
	}
	if err := cs.SendMsg(&b); err != io.EOF {
		t.Fatalf("SendMsg after the stream ended: %v, want io.EOF", err)
	}
	if v := got.md.Get("authorization"); len(v) != 1 || v[0] != "Bearer tok" {
		t.Errorf("authorization = %q, want [Bearer tok]", v)
	}
	if v := got.md.Get("x-extra"); len(v) != 1 || v[0] != "v1" {
		t.Errorf("x-extra = %q, want [v1]", v)
	}
	if v := got.md.Get("content-type"); len(v) != 1 || v[0] != "application/grpc+"+testCodecName {
		t.Errorf("content-type = %q", v)
	}
}

func TestWireClientGoServerStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool
	}{{"trailers-only", false}, {"after-a-message", true}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startGo(t, func(ss grpc.ServerStream) error {
				if tc.first {
					var b []byte
					if err := ss.RecvMsg(&b); err != nil {
						return err
					}
					if err := ss.SendMsg(&b); err != nil {
						return err
					}
				}
				return status.Error(codes.FailedPrecondition, statusMsg)
			})
			cs, _ := wireStream(t, addr, wireOpts())
			if tc.first {
				echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{10})
			}
			var b []byte
			err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
			wantStatus(t, "RecvMsg", err, codes.FailedPrecondition, statusMsg)
			// The status stays.
			wantStatus(t, "RecvMsg again", cs.RecvMsg(&b), codes.FailedPrecondition, statusMsg)
		})
	}
}

func TestWireClientGoServerUnimplemented(t *testing.T) {
	addr := startGo(t, goEcho)
	opts := wireOpts()
	opts.Path = "/test.Echo/Other"
	cs, _ := wireStream(t, addr, opts)
	var b []byte
	err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
	wantStatus(t, "wrong path", err, codes.Unimplemented, "*")
}

func TestWireClientGoServerInterceptor(t *testing.T) {
	addr := startGo(t, goEcho, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer tok" {
			return status.Error(codes.Unauthenticated, "missing token")
		}
		return h(srv, ss)
	}))
	t.Run("without", func(t *testing.T) {
		cs, _ := wireStream(t, addr, wireOpts())
		b := []byte("x")
		_ = cs.SendMsg(&b)
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "no metadata", err, codes.Unauthenticated, "missing token")
	})
	t.Run("with", func(t *testing.T) {
		opts := wireOpts()
		opts.Metadata = map[string]string{"authorization": "Bearer tok"}
		cs, _ := wireStream(t, addr, opts)
		echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{5})
	})
}

func TestWireClientGoServerMaxRecvMsgSize(t *testing.T) {
	addr := startGo(t, goEcho, grpc.MaxRecvMsgSize(1024))
	cs, _ := wireStream(t, addr, wireOpts())
	echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{1024})
	big := payload(3, 4096)
	if err := cs.SendMsg(&big); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	var b []byte
	err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
	wantStatus(t, "RecvMsg", err, codes.ResourceExhausted, "*")
}

// The client's own MaxRecvMsgSize: a bigger message from the server fails
// the stream with ResourceExhausted, and the server's handler sees the
// stream end.
func TestWireClientMaxRecvMsgSize(t *testing.T) {
	handlerDone := make(chan error, 1)
	addr := startGo(t, func(ss grpc.ServerStream) error {
		big := payload(4, 2048)
		if err := ss.SendMsg(&big); err != nil {
			handlerDone <- err
			return err
		}
		<-ss.Context().Done()
		handlerDone <- ss.Context().Err()
		return nil
	})
	opts := wireOpts()
	opts.MaxRecvMsgSize = 1024
	cs, _ := wireStream(t, addr, opts)
	var b []byte
	err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
	wantStatus(t, "RecvMsg", err, codes.ResourceExhausted, "*")
	if err := await(t, handlerDone, "the handler to see the stream end"); err == nil {
		t.Fatal("the handler's SendMsg/context saw no end")
	}
}

func TestWireClientDialClosedPort(t *testing.T) {
	lis := listen(t)
	addr := lis.Addr().String()
	_ = lis.Close()
	err := within(t, "NewStream", func() error {
		cs, err := NewStream(context.Background(), addr, wireOpts())
		if err == nil {
			var b []byte
			err = cs.RecvMsg(&b)
		}
		return err
	})
	wantStatus(t, "NewStream to a closed port", err, codes.Unavailable, "*")
}

func TestWireClientGoServerCancel(t *testing.T) {
	got := make(chan struct{})
	handlerCtx := make(chan error, 1)
	addr := startGo(t, func(ss grpc.ServerStream) error {
		var b []byte
		if err := ss.RecvMsg(&b); err != nil {
			return err
		}
		close(got)
		<-ss.Context().Done()
		handlerCtx <- ss.Context().Err()
		return nil
	})
	cs, cancel := wireStream(t, addr, wireOpts())
	b := []byte("hello")
	if err := cs.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	await(t, got, "the handler's first message")
	cancel()
	err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
	wantStatus(t, "RecvMsg after cancel", err, codes.Canceled, "*")
	if err := await(t, handlerCtx, "the handler's context to be cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context error %v, want Canceled", err)
	}
	if err := cs.SendMsg(&b); err != io.EOF {
		t.Fatalf("SendMsg after cancel: %v, want io.EOF", err)
	}
	if cs.Context().Err() == nil {
		t.Fatal("Context() is not the cancelled context")
	}
}

// ---- grpcwire client -> grpcwire server ----

func TestWireToWireEcho(t *testing.T) {
	authMD := make(chan metadata.MD, 1)
	type seen struct {
		md   metadata.MD
		peer *peer.Peer
		eof  bool
	}
	handlerSaw := make(chan seen, 1)
	_, addr := startWire(t, ServerOptions{
		Authorize: func(md metadata.MD) error { authMD <- md.Copy(); return nil },
		Handler: func(st *ServerStream) error {
			var s seen
			s.md, _ = metadata.FromIncomingContext(st.Context())
			s.peer, _ = peer.FromContext(st.Context())
			defer func() { handlerSaw <- s }()
			for {
				var b []byte
				err := st.RecvMsg(&b)
				if err == io.EOF {
					s.eof = true
					return nil
				}
				if err != nil {
					return err
				}
				if err := st.SendMsg(&b); err != nil {
					return err
				}
			}
		},
	})
	opts := wireOpts()
	opts.Metadata = map[string]string{"authorization": "Bearer tok"}
	cs, _ := wireStream(t, addr, opts)
	echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, append(echoSizes, 8<<20))
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := await(t, handlerSaw, "the handler's end")
	if !got.eof {
		t.Fatal("the handler's RecvMsg did not return io.EOF after CloseSend")
	}
	var b []byte
	if err := within(t, "final RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("RecvMsg after the handler returned nil: %v, want io.EOF", err)
	}
	if err := cs.RecvMsg(&b); err != io.EOF {
		t.Fatalf("second RecvMsg after the end: %v, want io.EOF", err)
	}
	if err := cs.SendMsg(&b); err != io.EOF {
		t.Fatalf("SendMsg after the stream ended: %v, want io.EOF", err)
	}
	md := await(t, authMD, "Authorize")
	for _, m := range []metadata.MD{md, got.md} {
		if v := m.Get("authorization"); len(v) != 1 || v[0] != "Bearer tok" {
			t.Errorf("authorization = %q, want [Bearer tok]", v)
		}
		if v := m.Get("content-type"); len(v) != 1 || v[0] != "application/grpc+"+testCodecName {
			t.Errorf("content-type = %q", v)
		}
	}
	if got.peer == nil {
		t.Fatal("no peer in the handler's context")
	}
	pa, ok := got.peer.Addr.(*net.TCPAddr)
	if !ok || !pa.IP.Equal(net.IPv4(127, 0, 0, 1)) || pa.Port == 0 || pa.String() == addr {
		t.Errorf("peer address %v: want the client's 127.0.0.1 address", got.peer.Addr)
	}
}

func TestWireToWireStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool
	}{{"trailers-only", false}, {"after-a-message", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
				if tc.first {
					var b []byte
					if err := st.RecvMsg(&b); err != nil {
						return err
					}
					if err := st.SendMsg(&b); err != nil {
						return err
					}
				}
				return status.Error(codes.FailedPrecondition, statusMsg)
			}})
			cs, _ := wireStream(t, addr, wireOpts())
			if tc.first {
				echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{10})
			}
			var b []byte
			err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
			wantStatus(t, "RecvMsg", err, codes.FailedPrecondition, statusMsg)
		})
	}
	t.Run("unimplemented", func(t *testing.T) {
		_, addr := startWire(t, ServerOptions{Handler: wireEcho})
		opts := wireOpts()
		opts.Path = "/test.Echo/Other"
		cs, _ := wireStream(t, addr, opts)
		var b []byte
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "wrong path", err, codes.Unimplemented, "*")
	})
	t.Run("unauthenticated", func(t *testing.T) {
		_, addr := startWire(t, ServerOptions{
			Authorize: func(metadata.MD) error { return status.Error(codes.Unauthenticated, statusMsg) },
			Handler:   wireEcho,
		})
		cs, _ := wireStream(t, addr, wireOpts())
		var b []byte
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "refused", err, codes.Unauthenticated, statusMsg)
	})
	t.Run("long-message", func(t *testing.T) {
		// A status message longer than a frame: CONTINUATION or not, it
		// arrives (cut at the package's bound, 4 KiB).
		long := strings.Repeat("é", 3000) // 6000 bytes, 18000 encoded
		_, addr := startWire(t, ServerOptions{Handler: func(*ServerStream) error { return status.Error(codes.Aborted, long) }})
		cs, _ := wireStream(t, addr, wireOpts())
		var b []byte
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "long message", err, codes.Aborted, long[:4096])
	})
}

func TestWireToWireMaxRecvMsgSize(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		handlerErr := make(chan error, 1)
		_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: 1024, Handler: func(st *ServerStream) error {
			err := wireEcho(st)
			handlerErr <- err
			return err
		}})
		cs, _ := wireStream(t, addr, wireOpts())
		echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{1024})
		big := payload(9, 1<<20)
		if err := cs.SendMsg(&big); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		wantStatus(t, "the handler's RecvMsg", await(t, handlerErr, "the handler"), codes.ResourceExhausted, "*")
		var b []byte
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "the client's RecvMsg", err, codes.ResourceExhausted, "*")
	})
	t.Run("client", func(t *testing.T) {
		handlerCtx := make(chan error, 1)
		_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
			big := payload(10, 1<<20)
			if err := st.SendMsg(&big); err != nil {
				handlerCtx <- err
				return err
			}
			<-st.Context().Done()
			handlerCtx <- st.Context().Err()
			return nil
		}})
		opts := wireOpts()
		opts.MaxRecvMsgSize = 1024
		cs, _ := wireStream(t, addr, opts)
		var b []byte
		err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) })
		wantStatus(t, "RecvMsg", err, codes.ResourceExhausted, "*")
		if err := await(t, handlerCtx, "the handler to see the stream end"); err == nil {
			t.Fatal("the handler saw no end")
		}
	})
}

func TestWireToWireCancel(t *testing.T) {
	got := make(chan struct{})
	type result struct{ recvErr, ctxErr error }
	res := make(chan result, 1)
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		var b []byte
		if err := st.RecvMsg(&b); err != nil {
			return err
		}
		close(got)
		err := st.RecvMsg(&b)
		<-st.Context().Done()
		res <- result{err, st.Context().Err()}
		return err
	}})
	cs, cancel := wireStream(t, addr, wireOpts())
	b := []byte("hello")
	if err := cs.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	await(t, got, "the handler's first message")
	cancel()
	var rb []byte
	err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&rb) })
	wantStatus(t, "the client's RecvMsg", err, codes.Canceled, "*")
	r := await(t, res, "the handler to see the cancellation")
	wantStatus(t, "the handler's RecvMsg", r.recvErr, codes.Canceled, "*")
	if r.ctxErr == nil {
		t.Fatal("the handler's context is not cancelled")
	}
}

// Many messages each way at once, each side with a sending and a receiving
// goroutine: content and order checked.
func TestWireToWirePipelined(t *testing.T) {
	const count = 200
	size := func(i int) int { return 64<<10 + (i*7919)%(1<<20-64<<10+1) }
	send := func(dir uint64, sendMsg func(any) error) error {
		for i := range count {
			if err := sendMsg(rawMsg(slab(dir<<32|uint64(i), size(i)))); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
		}
		return nil
	}
	recv := func(dir uint64, recvMsg func(any) error) error {
		for i := range count {
			m := checkMsg{want: slab(dir<<32|uint64(i), size(i))}
			if err := recvMsg(&m); err != nil {
				return fmt.Errorf("recv %d: %w", i, err)
			}
			if !m.ok {
				return fmt.Errorf("message %d (dir %d): %d bytes, not the %d sent", i, dir, m.n, len(m.want))
			}
		}
		return nil
	}
	serverErrs := make(chan error, 2)
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		sent := make(chan error, 1)
		go func() { sent <- send(2, st.SendMsg) }()
		err := recv(1, st.RecvMsg)
		if err == nil {
			var b []byte
			if err = st.RecvMsg(&b); err == io.EOF {
				err = nil
			} else {
				err = fmt.Errorf("after the last message: %v, want io.EOF", err)
			}
		}
		serverErrs <- err
		// The handler returns once its sender is done too.
		err = <-sent
		serverErrs <- err
		return err
	}})
	cs, _ := wireStream(t, addr, wireOpts())
	clientErrs := make(chan error, 2)
	go func() {
		err := send(1, cs.SendMsg)
		if err == nil {
			err = cs.CloseSend()
		}
		clientErrs <- err
	}()
	go func() {
		err := recv(2, cs.RecvMsg)
		if err == nil {
			var b []byte
			if err = cs.RecvMsg(&b); err != io.EOF {
				err = fmt.Errorf("after the last message: %v, want io.EOF", err)
			} else {
				err = nil
			}
		}
		clientErrs <- err
	}()
	for range 2 {
		if err := await(t, clientErrs, "the client's goroutines"); err != nil {
			t.Errorf("client: %v", err)
		}
	}
	for range 2 {
		if err := await(t, serverErrs, "the server's goroutines"); err != nil {
			t.Errorf("server: %v", err)
		}
	}
}

// Stop with a stream open: the handler's context is cancelled, the client's
// RecvMsg fails (no hang), Stop and Serve return.
func TestWireServerStop(t *testing.T) {
	running := make(chan struct{})
	handlerCtx := make(chan error, 1)
	srv, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		close(running)
		<-st.Context().Done()
		handlerCtx <- st.Context().Err()
		return st.Context().Err()
	}})
	cs, _ := wireStream(t, addr, wireOpts())
	b := []byte("x")
	if err := cs.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	await(t, running, "the handler")
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	if err := await(t, handlerCtx, "the handler's context to be cancelled by Stop"); err == nil {
		t.Fatal("no context error")
	}
	err := within(t, "RecvMsg after Stop", func() error { return cs.RecvMsg(&b) })
	if err == nil || err == io.EOF {
		t.Fatalf("RecvMsg after Stop: %v, want an error", err)
	}
	wantStatus(t, "RecvMsg after Stop", err, codes.Unavailable, "*")
	await(t, stopped, "Stop to return")
	// The port is closed now.
	if _, err := NewStream(context.Background(), addr, wireOpts()); status.Code(err) != codes.Unavailable {
		t.Fatalf("NewStream after Stop: %v, want Unavailable", err)
	}
}

// GracefulStop closes the listener at once but returns only after the
// running handler has returned, and that handler's stream ends normally.
func TestWireServerGracefulStop(t *testing.T) {
	running := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	srv, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		close(running)
		select {
		case <-release:
		case <-st.Context().Done():
			return st.Context().Err()
		}
		b := []byte("bye")
		err := st.SendMsg(&b)
		returned.Store(true)
		return err
	}})
	cs, _ := wireStream(t, addr, wireOpts())
	b := []byte("x")
	if err := cs.SendMsg(&b); err != nil {
		t.Fatal(err)
	}
	await(t, running, "the handler")
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	// Wait until the listener is closed: new connections are refused.
	for i := 0; ; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		_ = nc.Close()
		if i > 10000 {
			t.Fatal("the listener stays open after GracefulStop")
		}
		select {
		case <-stopped:
			t.Fatal("GracefulStop returned while the handler runs")
		default:
		}
	}
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned while the handler runs")
	default:
	}
	close(release)
	await(t, stopped, "GracefulStop to return")
	if !returned.Load() {
		t.Fatal("GracefulStop returned before the handler did")
	}
	var got []byte
	if err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&got) }); err != nil || string(got) != "bye" {
		t.Fatalf("RecvMsg: %q, %v; want the handler's last message", got, err)
	}
	if err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&got) }); err != io.EOF {
		t.Fatalf("RecvMsg after the handler returned nil: %v, want io.EOF", err)
	}
}

// zeros backs bulk messages: sent without a copy, and never written.
var zeros = make([]byte, 1<<20)

// Cancelling a client stream must end a SendMsg blocked on flow control:
// the handler never reads, so windowMessages messages of the server's
// MaxRecvMsgSize fill its window (stream and connection) and the next
// message waits for a WINDOW_UPDATE that never comes.
//
// The short wait only checks that the send does block; a correct
// implementation passes whatever the timing.
func TestWireClientCancelUnblocksBlockedSend(t *testing.T) {
	const maxMsg = 256 << 10
	_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
		<-st.Context().Done()
		return nil
	}})
	cs, cancel := wireStream(t, addr, wireOpts())
	for i := range windowMessages {
		if err := within(t, "SendMsg within the window", func() error { return cs.SendMsg(rawMsg(zeros[:maxMsg])) }); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	sendErr := make(chan error, 1)
	go func() { sendErr <- cs.SendMsg(rawMsg("x")) }()
	select {
	case err := <-sendErr:
		t.Fatalf("a SendMsg past the window of a peer that reads nothing returned %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	var b []byte
	err := within(t, "RecvMsg after cancel", func() error { return cs.RecvMsg(&b) })
	wantStatus(t, "RecvMsg after cancel", err, codes.Canceled, "*")
	if err := await(t, sendErr, "the blocked SendMsg to return after cancel"); err != io.EOF {
		t.Fatalf("SendMsg after cancel: %v, want io.EOF", err)
	}
}

// The handler's context is cancelled when the client cancels, also while
// the handler is not receiving and unread messages fill the stream's
// window (grpc-go cancels it whatever the handler does): a window's worth
// of full-size messages, or many tiny ones (far fewer bytes than the
// window, far more messages than it holds of full-size ones). Both
// clients: grpc-go's resets the stream and keeps the connection,
// grpcwire's resets it and closes the connection.
func TestWireServerContextCancelledWithUnreadMessages(t *testing.T) {
	const maxMsg = 64 << 10
	win := wantWindow(maxMsg)
	loads := []struct {
		name  string
		count int
		msg   rawMsg
	}{
		{"window-of-full-messages", windowMessages, rawMsg(zeros[:maxMsg])},
		// 6 window bytes each: a tenth of the window.
		{"tiny-messages", int(win / 60), rawMsg("x")},
	}
	for _, client := range []string{"grpc-go", "grpcwire"} {
		for _, load := range loads {
			t.Run(client+"/"+load.name, func(t *testing.T) {
				running := make(chan struct{})
				handlerCtx := make(chan error, 1)
				_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
					close(running)
					<-st.Context().Done() // a handler busy elsewhere, watching its context
					handlerCtx <- st.Context().Err()
					return nil
				}})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var send func(any) error
				if client == "grpc-go" {
					s, err := goStream(ctx, dialGo(t, addr), testPath)
					if err != nil {
						t.Fatal(err)
					}
					send = s.SendMsg
				} else {
					cs, err := NewStream(ctx, addr, wireOpts())
					if err != nil {
						t.Fatal(err)
					}
					send = cs.SendMsg
				}
				err := within(t, "the sends within the window", func() error {
					for i := range load.count {
						if err := send(load.msg); err != nil {
							return fmt.Errorf("send %d: %w", i, err)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				await(t, running, "the handler")
				cancel()
				if err := await(t, handlerCtx, "the handler's context to be cancelled (the server's reader does not see the reset)"); err == nil {
					t.Fatal("no context error")
				}
			})
		}
	}
}

// Both directions push many windows' worth of data at once while both
// receivers read slowly: each sender keeps running out of window and
// waits for WINDOW_UPDATEs, which the receiving side queues while its own
// sender may be writing. Nothing may deadlock; content and order are
// checked. With a grpcwire peer on both ends, and against grpc-go's
// client and server (whose flow control must understand grpcwire's
// window and updates, and the other way round).
func TestBidiWindowUpdates(t *testing.T) {
	const (
		maxMsg  = 256 << 10
		windows = 8
	)
	win := wantWindow(maxMsg)
	rng := rand.New(rand.NewPCG(1, 2))
	var sizes []int
	for total := 0; total < windows*int(win); {
		n := 1 + rng.IntN(maxMsg)
		sizes = append(sizes, n)
		total += 5 + n
	}
	send := func(dir uint64, sendMsg func(any) error) error {
		for i, n := range sizes {
			if err := sendMsg(rawMsg(slab(dir<<32|uint64(i), n))); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
		}
		return nil
	}
	// recv reads slowly, then wants io.EOF (the peer's half-close, or
	// status OK).
	recv := func(dir uint64, recvMsg func(any) error) error {
		for i, n := range sizes {
			m := checkMsg{want: slab(dir<<32|uint64(i), n)}
			if err := recvMsg(&m); err != nil {
				return fmt.Errorf("recv %d: %w", i, err)
			}
			if !m.ok {
				return fmt.Errorf("message %d (dir %d): %d bytes, not the %d sent", i, dir, m.n, n)
			}
			time.Sleep(time.Millisecond)
		}
		var n int
		if err := recvMsg(&n); err != io.EOF {
			return fmt.Errorf("after the last message: %v, want io.EOF", err)
		}
		return nil
	}
	// serve is the handler: it sends and receives at once.
	serve := func(sendMsg, recvMsg func(any) error) error {
		sent := make(chan error, 1)
		go func() { sent <- send(2, sendMsg) }()
		err := recv(1, recvMsg)
		if serr := <-sent; err == nil {
			err = serr
		}
		return err
	}
	for _, pair := range []string{"grpcwire-grpcwire", "grpc-go-client", "grpc-go-server"} {
		t.Run(pair, func(t *testing.T) {
			serverErr := make(chan error, 1)
			var addr string
			if pair == "grpc-go-server" {
				addr = startGo(t, func(ss grpc.ServerStream) error {
					err := serve(ss.SendMsg, ss.RecvMsg)
					serverErr <- err
					return err
				})
			} else {
				_, addr = startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
					err := serve(st.SendMsg, st.RecvMsg)
					serverErr <- err
					return err
				}})
			}
			var sendMsg, recvMsg func(any) error
			var closeSend func() error
			if pair == "grpc-go-client" {
				s, err := goStream(context.Background(), dialGo(t, addr), testPath)
				if err != nil {
					t.Fatal(err)
				}
				sendMsg, recvMsg, closeSend = s.SendMsg, s.RecvMsg, s.CloseSend
			} else {
				opts := wireOpts()
				opts.MaxRecvMsgSize = maxMsg
				cs, _ := wireStream(t, addr, opts)
				sendMsg, recvMsg, closeSend = cs.SendMsg, cs.RecvMsg, cs.CloseSend
			}
			clientErrs := make(chan error, 2)
			go func() {
				err := send(1, sendMsg)
				if err == nil {
					err = closeSend()
				}
				clientErrs <- err
			}()
			go func() { clientErrs <- recv(2, recvMsg) }()
			for range 2 {
				if err := await(t, clientErrs, "the client's sender and receiver (deadlock?)"); err != nil {
					t.Errorf("client: %v", err)
				}
			}
			if err := await(t, serverErr, "the handler (deadlock?)"); err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
}

// A peer that ignores flow control and sends DATA past the window the
// server advertised (a raw HTTP/2 client) gets the connection closed with
// GOAWAY FLOW_CONTROL_ERROR, and the handler's context cancelled; exactly
// the window is fine. The advertised window is windowMessages messages of
// MaxRecvMsgSize (at least minWindow), stream and connection alike.
func TestWireServerFlowControlViolation(t *testing.T) {
	for _, maxMsg := range []int{1024, 256 << 10} {
		t.Run(fmt.Sprint(maxMsg), func(t *testing.T) {
			handlerCtx := make(chan error, 1)
			_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
				<-st.Context().Done() // never reads: no window comes back
				handlerCtx <- st.Context().Err()
				return nil
			}})
			rc := newRawClient(t, addr)
			if want := wantWindow(maxMsg); rc.strWin != want || rc.connWin != want {
				t.Fatalf("advertised windows: stream %d, connection %d; want %d", rc.strWin, rc.connWin, want)
			}
			win := int(rc.strWin)
			// Messages of maxMsg bytes back to back, win+1 bytes of them.
			msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(maxMsg))
			msg = append(msg, zeros[:maxMsg]...)
			var body []byte
			for len(body) <= win {
				body = append(body, msg...)
			}
			rc.data(body[:win])
			rc.sync() // the server has read the window's worth and is still there
			rc.data(body[win : win+1])
			got := readUntilClosed(t, rc.nc)
			if code, ok := goAwayIn(t, got); !ok || code != http2.ErrCodeFlowControl {
				t.Fatalf("GOAWAY %v (sent: %v), want FLOW_CONTROL_ERROR", code, ok)
			}
			if err := await(t, handlerCtx, "the handler's context to be cancelled"); err == nil {
				t.Fatal("no context error")
			}
		})
	}
}

// A flood of empty messages, all within the flow-control window, while
// the handler first reads nothing, then reads them all: they all arrive,
// in order (every 1000th carries its index), and while they wait the
// server holds them in memory bounded by the window (each costs 5 window
// bytes; a queue entry for each would cost about ten times the window).
func TestWireEmptyMessageFlood(t *testing.T) {
	const (
		maxMsg = 32 << 10
		count  = 100_000
		mark   = 1000
	)
	win := wantWindow(maxMsg)
	if int(win/5)-mark >= count {
		t.Fatalf("a window of %d bytes holds all %d messages: lower maxMsg", win, count)
	}
	early := int(win/5) - mark // sent before the handler reads: within the window
	ready := make(chan struct{})
	resume := make(chan struct{})
	growth := make(chan int64, 1)
	handlerErr := make(chan error, 1)
	_, addr := startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
		base := liveHeap()
		close(ready)
		select {
		case <-resume:
		case <-st.Context().Done():
			return st.Context().Err()
		}
		growth <- liveHeap() - base
		err := func() error {
			for i := range count {
				var b []byte
				if err := st.RecvMsg(&b); err != nil {
					return fmt.Errorf("recv %d: %w", i, err)
				}
				if i%mark != mark-1 {
					if len(b) != 0 {
						return fmt.Errorf("message %d: %d bytes, want an empty one", i, len(b))
					}
				} else if len(b) != 8 || binary.LittleEndian.Uint64(b) != uint64(i) {
					return fmt.Errorf("message %d: %x, want its index", i, b)
				}
			}
			var b []byte
			if err := st.RecvMsg(&b); err != io.EOF {
				return fmt.Errorf("after the last message: %v, want io.EOF", err)
			}
			return nil
		}()
		handlerErr <- err
		return err
	}})
	cs, _ := wireStream(t, addr, wireOpts())
	await(t, ready, "the handler")
	sendErr := make(chan error, 1)
	go func() {
		for i := range count {
			m := rawMsg(nil)
			if i%mark == mark-1 {
				m = binary.LittleEndian.AppendUint64(nil, uint64(i))
			}
			if err := cs.SendMsg(m); err != nil {
				sendErr <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			if i == early {
				// The server's reader gets a moment to take in what it will.
				time.Sleep(100 * time.Millisecond)
				close(resume)
			}
		}
		sendErr <- cs.CloseSend()
	}()
	g := await(t, growth, "the handler to resume (the first sends, within the window, block?)")
	t.Logf("live heap growth with %d empty messages unread: %d bytes (window %d)", early, g, win)
	if limit := 4 * win; g > limit {
		t.Errorf("the server's live heap grew by %d bytes holding %d unread empty messages (%d window bytes); want under %d", g, early, 5*early, limit)
	}
	if err := await(t, sendErr, "the client's sends"); err != nil {
		t.Fatal(err)
	}
	if err := await(t, handlerErr, "the handler to read every message"); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := within(t, "final RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("final RecvMsg: %v, want io.EOF", err)
	}
}

// One side floods the other with tiny messages (far within the window)
// and then reads; the other first sends more than its peer's window holds
// and only then reads the flood. That is correct gRPC use (a grpc-go
// receiver takes it), and it needs the flooded side's reader to go on
// reading while its application does not: the sender's window comes back
// in a WINDOW_UPDATE queued behind the flood. A reader that stops at a
// full queue of tiny messages never sees it, and both sides wait forever.
func TestTinyMessageFloodDoesNotStopReader(t *testing.T) {
	const maxMsg = 64 << 10
	win := wantWindow(maxMsg)
	flood := int(win / 64) // 5 window bytes each: under a tenth of the window
	// sendFirst sends windowMessages+1 messages of maxMsg bytes (one more
	// than the flooding side's window holds), then reads the flood.
	sendFirst := func(sendMsg, recvMsg func(any) error) error {
		for i := range windowMessages + 1 {
			if err := sendMsg(rawMsg(zeros[:maxMsg])); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
		}
		for i := range flood {
			var n int
			if err := recvMsg(&n); err != nil {
				return fmt.Errorf("recv %d: %w", i, err)
			}
		}
		return nil
	}
	// floodFirst sends the flood, then reads the other side's messages.
	floodFirst := func(sendMsg, recvMsg func(any) error) error {
		for i := range flood {
			if err := sendMsg(rawMsg(nil)); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
		}
		for i := range windowMessages + 1 {
			var n int
			if err := recvMsg(&n); err != nil {
				return fmt.Errorf("recv %d: %w", i, err)
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		goPeer  bool // the server is grpc-go's
		flooder string
	}{
		{"grpcwire-server-flooded", false, "client"},
		{"grpcwire-client-flooded", false, "server"},
		{"grpc-go-server-flooded", true, "client"}, // the control: grpc-go's reader
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := sendFirst, floodFirst
			if tc.flooder == "server" {
				server, client = floodFirst, sendFirst
			}
			serverErr := make(chan error, 1)
			var addr string
			if tc.goPeer {
				addr = startGo(t, func(ss grpc.ServerStream) error {
					err := server(ss.SendMsg, ss.RecvMsg)
					serverErr <- err
					return err
				})
			} else {
				_, addr = startWire(t, ServerOptions{MaxRecvMsgSize: maxMsg, Handler: func(st *ServerStream) error {
					err := server(st.SendMsg, st.RecvMsg)
					serverErr <- err
					return err
				}})
			}
			opts := wireOpts()
			opts.MaxRecvMsgSize = maxMsg
			cs, _ := wireStream(t, addr, opts)
			clientErr := make(chan error, 1)
			go func() { clientErr <- client(cs.SendMsg, cs.RecvMsg) }()
			if err := await(t, clientErr, "the client (deadlock: the flooded reader waits for its application, which waits for a WINDOW_UPDATE behind the flood)"); err != nil {
				t.Fatalf("client: %v", err)
			}
			if err := cs.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if err := await(t, serverErr, "the handler"); err != nil {
				t.Fatalf("server: %v", err)
			}
			var b []byte
			if err := within(t, "final RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
				t.Fatalf("final RecvMsg: %v, want io.EOF", err)
			}
		})
	}
}

// ---- TLS ----

func TestTLSGoClientWireServer(t *testing.T) {
	pki := newPKI(t)
	for _, tc := range []struct {
		name       string
		clientAuth bool // the server requires a client certificate
		creds      credentials.TransportCredentials
		ok         bool
	}{
		{"tls", false, credentials.NewTLS(pki.clientTLS(false)), true},
		{"plaintext-client", false, insecure.NewCredentials(), false},
		{"mtls-without-client-cert", true, credentials.NewTLS(pki.clientTLS(false)), false},
		{"mtls", true, credentials.NewTLS(pki.clientTLS(true)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startWire(t, ServerOptions{TLS: pki.serverTLS(tc.clientAuth), Handler: wireEcho})
			cc := dialGo(t, addr, grpc.WithTransportCredentials(tc.creds))
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			want := payload(1, 100<<10)
			got, err := goCall(ctx, cc, testPath, want)
			if !tc.ok {
				wantStatus(t, "the call", err, codes.Unavailable, "*")
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("echo over TLS: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestTLSWireClientGoServer(t *testing.T) {
	pki := newPKI(t)
	tlsAddr := startGo(t, goEcho, grpc.Creds(credentials.NewTLS(pki.serverTLS(true))))
	plainAddr := startGo(t, goEcho)
	for _, tc := range []struct {
		name string
		addr string
		tls  *tls.Config
		ok   bool
	}{
		{"mtls", tlsAddr, pki.clientTLS(true), true},
		{"without-client-cert", tlsAddr, pki.clientTLS(false), false},
		{"plaintext-client", tlsAddr, nil, false},
		{"tls-client-plaintext-server", plainAddr, pki.clientTLS(true), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			opts := wireOpts()
			opts.TLS = tc.tls
			want := payload(2, 100<<10)
			var got []byte
			err := within(t, "the call", func() error {
				cs, err := NewStream(ctx, tc.addr, opts)
				if err != nil {
					return err
				}
				if err := cs.SendMsg(&want); err != nil && err != io.EOF {
					return err
				}
				return cs.RecvMsg(&got)
			})
			if !tc.ok {
				if ctx.Err() != nil {
					t.Fatalf("the call failed only at the hang guard: %v", err)
				}
				wantStatus(t, "the call", err, codes.Unavailable, "*")
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("echo over TLS: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestTLSWireToWire(t *testing.T) {
	pki := newPKI(t)
	peers := make(chan *peer.Peer, 1)
	_, addr := startWire(t, ServerOptions{TLS: pki.serverTLS(true), Handler: func(st *ServerStream) error {
		p, _ := peer.FromContext(st.Context())
		peers <- p
		return wireEcho(st)
	}})
	opts := wireOpts()
	opts.TLS = pki.clientTLS(true)
	cs, _ := wireStream(t, addr, opts)
	echoRoundTrips(t, func(b *[]byte) error { return cs.SendMsg(b) }, func(b *[]byte) error { return cs.RecvMsg(b) }, []int{0, 1, 16385, 1 << 20, 3<<20 + 7})
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := within(t, "final RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("final RecvMsg: %v, want io.EOF", err)
	}
	if p := await(t, peers, "the handler"); p == nil || p.Addr == nil {
		t.Fatal("no peer address over TLS")
	}
}

// ---- robustness ----

// rawConn dials addr with a read deadline as the hang guard.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	return nc
}

// readUntilClosed reads what the server sends until it closes the
// connection and returns it; the hang guard fails the test.
func readUntilClosed(t *testing.T, nc net.Conn) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server did not close the connection within %v (read %d bytes)", hangGuard, len(got))
			}
			return got
		}
	}
}

// goAwayIn parses server frames; it returns the GOAWAY's code, if any.
func goAwayIn(t *testing.T, b []byte) (http2.ErrCode, bool) {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, false
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			return ga.ErrCode, true
		}
	}
}

func TestWireServerRejectsBadClients(t *testing.T) {
	_, addr := startWire(t, ServerOptions{Handler: wireEcho})
	settings := func() []byte {
		var b bytes.Buffer
		if err := http2.NewFramer(&b, nil).WriteSettings(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	ping := func() []byte {
		var b bytes.Buffer
		if err := http2.NewFramer(&b, nil).WritePing(false, [8]byte{1}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name      string
		send      []byte
		halfClose bool
		goAway    int // -1: nothing may be sent; -2: anything; else the GOAWAY's code
	}{
		{"http1", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), false, -1},
		{"garbage", bytes.Repeat([]byte{0xff, 0x00, 0x17}, 100), false, -1},
		{"wrong-preface", []byte("PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n"), false, -1},
		{"short-then-eof", []byte("PRI * HTTP"), true, -1},
		{"preface-then-eof", []byte(clientPreface), true, -2},
		{"ping-before-settings", append([]byte(clientPreface), ping()...), false, int(http2.ErrCodeProtocol)},
		{"data-on-stream-0", append(append([]byte(clientPreface), settings()...), 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'), false, int(http2.ErrCodeProtocol)},
		{"continuation-outside-block", append(append([]byte(clientPreface), settings()...), 0, 0, 0, 9, 4, 0, 0, 0, 1), false, int(http2.ErrCodeProtocol)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := rawConn(t, addr)
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.halfClose {
				_ = nc.(*net.TCPConn).CloseWrite()
			}
			got := readUntilClosed(t, nc)
			switch tc.goAway {
			case -1: // closed before anything was sent
				if len(got) != 0 {
					t.Fatalf("the server sent %d bytes to a client without the preface", len(got))
				}
			case -2: // whatever, but closed
			default:
				code, ok := goAwayIn(t, got)
				if !ok || code != http2.ErrCode(tc.goAway) {
					t.Fatalf("GOAWAY %v (sent: %v), want %v", code, ok, http2.ErrCode(tc.goAway))
				}
			}
		})
	}
	// The server still serves.
	cc := dialGo(t, addr)
	want := payload(5, 1000)
	got, err := goCall(context.Background(), cc, testPath, want)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a good client after the bad ones: %d bytes, %v", len(got), err)
	}
}

// A connection that sent its preface and SETTINGS but no request is closed
// by Stop at once (not after the handshake timeout).
func TestWireServerStopClosesIdleConnection(t *testing.T) {
	srv, addr := startWire(t, ServerOptions{Handler: wireEcho})
	nc := rawConn(t, addr)
	var b bytes.Buffer
	b.WriteString(clientPreface)
	if err := http2.NewFramer(&b, nil).WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS: it has taken the connection.
	fr := http2.NewFramer(nil, nc)
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first server frame %v, want SETTINGS", f.Header())
	}
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	readUntilClosed(t, nc)
	select {
	case <-stopped:
	case <-time.After(handshakeTimeout / 2):
		t.Fatal("Stop waits for an idle connection's handshake timeout")
	}
}

// The server serves one stream per connection: a second one is refused
// with REFUSED_STREAM while the first goes on. Spoken with a raw HTTP/2
// framer.
func TestWireServerRefusesSecondStream(t *testing.T) {
	_, addr := startWire(t, ServerOptions{Handler: wireEcho})
	nc := rawConn(t, addr)
	if _, err := nc.Write([]byte(clientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	headers := func(sid uint32) {
		hb.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: testPath},
			{Name: ":authority", Value: addr}, {Name: "content-type", Value: "application/grpc+" + testCodecName}, {Name: "te", Value: "trailers"},
		} {
			_ = enc.WriteField(f)
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	headers(1)
	headers(3)
	msg := append([]byte{0, 0, 0, 0, 5}, "hello"...)
	if err := fr.WriteData(1, true, msg); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	var refused, echoed bool
	var grpcStatus string
	for grpcStatus == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's frames: %v (refused %v, echoed %v)", err, refused, echoed)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("RST_STREAM on %d with %v, want stream 3 REFUSED_STREAM", f.StreamID, f.ErrCode)
			}
			refused = true
		case *http2.DataFrame:
			if f.StreamID != 1 || !bytes.Equal(f.Data(), msg) {
				t.Fatalf("DATA on %d: %q, want the echo on 1", f.StreamID, f.Data())
			}
			echoed = true
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == "grpc-status" {
					grpcStatus = hf.Value
				}
			}
		}
	}
	if !refused || !echoed || grpcStatus != "0" {
		t.Fatalf("refused %v, echoed %v, grpc-status %q", refused, echoed, grpcStatus)
	}
}

// GracefulStop waits for streams, not for connections that have none: one
// that sent its preface and SETTINGS but no request is closed at once (as
// grpc-go's GracefulStop closes idle connections), not left to the
// handshake timeout.
func TestWireServerGracefulStopClosesIdleConnection(t *testing.T) {
	srv, addr := startWire(t, ServerOptions{Handler: wireEcho})
	nc := rawConn(t, addr)
	var b bytes.Buffer
	b.WriteString(clientPreface)
	if err := http2.NewFramer(&b, nil).WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nil, nc)
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first server frame %v, want SETTINGS", f.Header())
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(handshakeTimeout / 2):
		t.Fatal("GracefulStop waits for a connection without a stream until the handshake timeout")
	}
}

// Binary metadata ("-bin" keys) travels base64-encoded; a server hands the
// decoded bytes to the handler, as grpc-go does.
func TestGoClientWireServerBinaryMetadata(t *testing.T) {
	mds := make(chan metadata.MD, 1)
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		md, _ := metadata.FromIncomingContext(st.Context())
		mds <- md
		return nil
	}})
	cc := dialGo(t, addr)
	const bin = "\x00\xff binary \x80"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "trace-bin", bin)
	if _, err := goCall(ctx, cc, testPath, nil); err != io.EOF {
		t.Fatalf("call: %v, want io.EOF", err)
	}
	md := await(t, mds, "the handler")
	if v := md.Get("trace-bin"); len(v) != 1 || v[0] != bin {
		t.Fatalf("trace-bin = %q, want [%q]", v, bin)
	}
}

// The client side of binary metadata: StreamOptions.Metadata values are
// what the server's handler must see; a "-bin" value goes base64-encoded.
func TestWireClientGoServerBinaryMetadata(t *testing.T) {
	mds := make(chan metadata.MD, 1)
	addr := startGo(t, func(ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		mds <- md
		return nil
	})
	const bin = "\x00\xff binary \x80"
	opts := wireOpts()
	opts.Metadata = map[string]string{"trace-bin": bin}
	cs, _ := wireStream(t, addr, opts)
	var b []byte
	if err := within(t, "RecvMsg", func() error { return cs.RecvMsg(&b) }); err != io.EOF {
		t.Fatalf("RecvMsg: %v, want io.EOF", err)
	}
	md := await(t, mds, "the handler")
	if v := md.Get("trace-bin"); len(v) != 1 || v[0] != bin {
		t.Fatalf("trace-bin = %q, want [%q]", v, bin)
	}
}

// A handler that returns (OK) without reading the whole request: the client
// keeps sending; its SendMsg turns io.EOF and RecvMsg gives io.EOF.
func TestWireServerHandlerReturnsEarly(t *testing.T) {
	handler := func(st *ServerStream) error {
		var b []byte
		if err := st.RecvMsg(&b); err != nil {
			return err
		}
		return st.SendMsg(&b)
	}
	for _, client := range []string{"grpc-go", "grpcwire"} {
		t.Run(client, func(t *testing.T) {
			_, addr := startWire(t, ServerOptions{Handler: handler})
			var send, recv func(any) error
			if client == "grpc-go" {
				s, err := goStream(context.Background(), dialGo(t, addr), testPath)
				if err != nil {
					t.Fatal(err)
				}
				send, recv = s.SendMsg, s.RecvMsg
			} else {
				cs, _ := wireStream(t, addr, wireOpts())
				send, recv = cs.SendMsg, cs.RecvMsg
			}
			echoRoundTrips(t, func(b *[]byte) error { return send(b) }, func(b *[]byte) error { return recv(b) }, []int{10})
			var b []byte
			if err := within(t, "RecvMsg", func() error { return recv(&b) }); err != io.EOF {
				t.Fatalf("RecvMsg after the handler returned nil: %v, want io.EOF", err)
			}
			// The stream is over: sends end in io.EOF (at once for
			// grpcwire, after the transport has seen the end for grpc-go).
			err := within(t, "SendMsg after the end", func() error {
				for i := 0; i < 1000; i++ {
					m := payload(uint64(i), 1<<10)
					if err := send(&m); err != nil {
						return err
					}
				}
				return nil
			})
			if err != io.EOF {
				t.Fatalf("SendMsg after the stream ended: %v, want io.EOF", err)
			}
		})
	}
}

// Cancellation ends a client stream whatever state the server left it in:
// before dialing, during a TLS handshake the server never answers, and
// waiting for a response that never comes.
func TestWireClientCancelWithSilentServer(t *testing.T) {
	t.Run("already-cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := NewStream(ctx, "127.0.0.1:1", wireOpts())
		wantStatus(t, "NewStream", err, codes.Canceled, "*")
	})
	// A listener that accepts and then neither reads nor writes.
	lis := listen(t)
	t.Cleanup(func() { _ = lis.Close() })
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			_ = c.Close()
		}
	})
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Run("tls-handshake", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		opts := wireOpts()
		opts.TLS = &tls.Config{InsecureSkipVerify: true}
		errc := make(chan error, 1)
		go func() { _, err := NewStream(ctx, lis.Addr().String(), opts); errc <- err }()
		held = append(held, await(t, accepted, "the connection"))
		cancel()
		wantStatus(t, "NewStream", await(t, errc, "NewStream to return after cancel"), codes.Canceled, "*")
	})
	t.Run("no-response", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cs, err := NewStream(ctx, lis.Addr().String(), wireOpts())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, await(t, accepted, "the connection"))
		if err := cs.SendMsg(rawMsg("x")); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { var b []byte; errc <- cs.RecvMsg(&b) }()
		cancel()
		wantStatus(t, "RecvMsg", await(t, errc, "RecvMsg to return after cancel"), codes.Canceled, "*")
	})
}

// TryRecvMsg, Ready and Ended let one goroutine receive without waiting in
// RecvMsg: nothing queued, then messages in order after Ready, then the end
// (once Ended is closed) after the messages queued before it.
func TestTryRecvMsgReadyEnded(t *testing.T) {
	got := make(chan *ServerStream, 1)
	release := make(chan struct{})
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		got <- st
		<-release
		return nil
	}})
	defer close(release)
	cs, _ := wireStream(t, addr, wireOpts())
	first := payload(1, 100)
	if err := cs.SendMsg(&first); err != nil {
		t.Fatal(err)
	}
	st := await(t, got, "the handler")
	// drain polls until n messages have come (waiting on Ready between
	// polls) and then expects nothing queued.
	drain := func(n int, seed uint64) {
		t.Helper()
		for i := 0; i < n; {
			var b []byte
			ok, err := st.TryRecvMsg(&b)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !ok {
				await(t, st.Ready(), "Ready")
				continue
			}
			if want := payload(seed+uint64(i), 100+i); !bytes.Equal(b, want) {
				t.Fatalf("message %d: %d bytes differ from the %d sent", i, len(b), len(want))
			}
			i++
		}
		var b []byte
		if ok, err := st.TryRecvMsg(&b); ok || err != nil {
			t.Fatalf("TryRecvMsg with nothing sent: ok %v, err %v", ok, err)
		}
	}
	drain(1, 1)
	for i := range 5 {
		m := payload(10+uint64(i), 100+i)
		if err := cs.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	drain(5, 10)
	select {
	case <-st.Ended():
		t.Fatal("Ended closed before the client half-closed")
	default:
	}
	last := payload(20, 100)
	if err := cs.SendMsg(&last); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	await(t, st.Ended(), "Ended after CloseSend")
	var b []byte
	if ok, err := st.TryRecvMsg(&b); !ok || err != nil || !bytes.Equal(b, last) {
		t.Fatalf("after Ended: ok %v, err %v, %d bytes: want the message sent before the half-close", ok, err, len(b))
	}
	for range 2 { // the end stays
		if ok, err := st.TryRecvMsg(&b); !ok || err != io.EOF {
			t.Fatalf("after the last message: ok %v, err %v; want true, io.EOF", ok, err)
		}
	}
}
