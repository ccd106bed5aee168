package grpcwire

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleConns and idleHandshake size TestIdleConnectionsClosed: `go test
// ./collective/grpcwire -run TestIdleConnectionsClosed -idle-conns 2000
// -idle-handshake 10s -v` is the ring port's 2,000-connection check (it logs
// the process's peak RSS, client and server sockets together).
var (
	idleConns     = flag.Int("idle-conns", 200, "unauthenticated idle connections TestIdleConnectionsClosed opens")
	idleHandshake = flag.Duration("idle-handshake", time.Second, "the server's handshake deadline in TestIdleConnectionsClosed")
)

// TestIdleConnectionsClosed: sockets that never authenticate (half of them
// silent, half sending the HTTP/2 preface and SETTINGS and nothing else)
// are all closed within the handshake deadline, and a real stream opened
// meanwhile still works.
func TestIdleConnectionsClosed(t *testing.T) {
	hs := *idleHandshake
	srv, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, func(s *Server) { s.handshakeTimeout = hs })
	n := *idleConns
	opened := time.Now()
	conns := dialIdle(t, addr, n)
	t.Logf("%d connections opened in %v", n, time.Since(opened).Round(time.Millisecond))

	// A real stream meanwhile: authenticated, it outlives the deadline.
	cs, cancel := wireStream(t, addr, wireOpts())
	defer cancel()
	msg := []byte("ping")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := cs.RecvMsg(&got); err != nil || string(got) != "ping" {
		t.Fatalf("echo before the deadline: %q, %v", got, err)
	}

	open := stillOpen(conns, opened.Add(hs+5*time.Second)) // allows for a loaded machine
	if len(open) > 0 {
		t.Fatalf("%d of %d unauthenticated connections still open %v after they were opened (first: %v)", len(open), n, time.Since(opened).Round(time.Millisecond), open[:min(len(open), 10)])
	}
	t.Logf("all %d closed within %v; peak RSS %s", n, time.Since(opened).Round(time.Millisecond), peakRSS())
	msg = []byte("pong")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&got); err != nil || string(got) != "pong" {
		t.Fatalf("echo after the deadline: %q, %v", got, err)
	}
	_ = cs.CloseSend()
	deadlineCtx, stop := context.WithTimeout(context.Background(), hangGuard)
	defer stop()
	for connsHeld(srv) > 1 && deadlineCtx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if h := connsHeld(srv); h > 1 {
		t.Errorf("the server still holds %d connections", h)
	}
}

// dialIdle opens n connections to addr that never authenticate: the even
// ones silent, the odd ones sending the HTTP/2 preface and SETTINGS and
// nothing else. They are closed at the test's end.
func dialIdle(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	preface := frames(t, 0, nil)
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			if _, err := c.Write(preface); err != nil {
				t.Fatalf("connection %d: preface: %v", i, err)
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// stillOpen reads each connection until the server closes it or deadline
// passes, and returns the indices of those still open then.
func stillOpen(conns []net.Conn, deadline time.Time) []int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []int
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			buf := make([]byte, 4096)
			for {
				_, err := c.Read(buf)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					mu.Lock()
					open = append(open, i)
					mu.Unlock()
					return
				}
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return open
}

// peakRSS is the process's peak resident set size (VmHWM), "?" when unknown.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestPreAuthConnectionsCapped: with the handshake deadline far away, the
// server holds at most maxPreAuth unauthenticated connections, closing the
// oldest to admit a newer one, and a real stream opened after the flood is
// still served.
func TestPreAuthConnectionsCapped(t *testing.T) {
	const limit, n = 8, 40
	srv, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, func(s *Server) {
		s.handshakeTimeout = time.Minute
		s.maxPreAuth = limit
	})
	conns := dialIdle(t, addr, n)
	// The server accepts in order: the first n-limit are evicted; the
	// handshake deadline is a minute away, so only eviction closes them.
	if open := stillOpen(conns[:n-limit], time.Now().Add(hangGuard)); len(open) > 0 {
		t.Fatalf("%d of the %d oldest unauthenticated connections are still open (cap %d)", len(open), n-limit, limit)
	}
	srv.mu.Lock()
	pending, evicted := len(srv.pending), srv.evicted
	srv.mu.Unlock()
	if pending > limit || evicted < n-limit {
		t.Fatalf("the server holds %d pending connections (cap %d) and evicted %d", pending, limit, evicted)
	}

	cs, cancel := wireStream(t, addr, wireOpts())
	defer cancel()
	msg := []byte("ping")
	if err := cs.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := cs.RecvMsg(&got); err != nil || string(got) != "ping" {
		t.Fatalf("echo after the flood: %q, %v", got, err)
	}
	srv.mu.Lock()
	pending = len(srv.pending)
	srv.mu.Unlock()
	if pending > limit {
		t.Fatalf("%d pending connections after a stream authenticated (cap %d)", pending, limit)
	}
}
