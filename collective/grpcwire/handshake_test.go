package grpcwire

import (
	"bytes"
	"errors"
	"math"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// Before its stream is authenticated a connection holds the server's time,
// memory and goroutines only until the handshake deadline, whatever the
// peer does (DESIGN.md section 6). These tests shorten the deadline; none
// depends on how fast the machine is beyond the hang guard.

// noFloodLimits lifts every flood limit.
var noFloodLimits = floodLimits{
	pingStrikes:        math.MaxInt,
	settings:           math.MaxInt,
	refusedStreams:     math.MaxInt,
	queuedControlBytes: math.MaxInt,
}

// connsHeld is how many connections the server holds; one leaves the set
// when its goroutine returns.
func connsHeld(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// waitReleased waits until the server holds no connection.
func waitReleased(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for connsHeld(s) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds %d connection(s) after %v", connsHeld(s), hangGuard)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frames is the preface, the client's SETTINGS and n copies of what write
// writes.
func frames(t *testing.T, n int, write func(*http2.Framer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(clientPreface)
	fr := http2.NewFramer(&b, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := write(fr); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func writePing(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{7}) }

func writeSettings(fr *http2.Framer) error { return fr.WriteSettings() }

// floodUnread writes the preface, SETTINGS and then PINGs until a write
// fails, and never reads. It returns the error that ended it (a timeout:
// the hang guard passed, the server never let go) and whether the writes
// stalled first (the server stopped reading: its reader was blocked
// writing acks).
func floodUnread(t *testing.T, nc net.Conn) (stalled bool, err error) {
	t.Helper()
	if _, err := nc.Write(frames(t, 0, nil)); err != nil {
		return false, err
	}
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	for b.Len() < 64<<10 {
		if err := writePing(fr); err != nil {
			t.Fatal(err)
		}
	}
	guard := time.Now().Add(hangGuard)
	for p := b.Bytes(); ; {
		d := time.Now().Add(100 * time.Millisecond)
		if d.After(guard) {
			d = guard
		}
		_ = nc.SetWriteDeadline(d)
		n, err := nc.Write(p)
		p = p[n:]
		if len(p) == 0 {
			p = b.Bytes()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(guard) {
			stalled = true
			continue
		}
		if err != nil {
			return stalled, err
		}
	}
}

// A client that sends the preface and floods PINGs without ever reading
// the acks is cut off, its socket closed and the server's goroutine for it
// gone: by the flood limit (GOAWAY ENHANCE_YOUR_CALM) or, with the limits
// off, by the handshake deadline, though the server's write of an ack is
// blocked then. The client's writes fail (the deadline's close is a reset:
// a plain close would leave the server's kernel holding the socket and its
// unsent acks while the client's window stays shut).
func TestWireServerUnreadPingFlood(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*Server)
	}{
		{"limits", func(s *Server) { s.handshakeTimeout = time.Hour }},
		{"deadline", func(s *Server) { s.handshakeTimeout, s.limits = 2*time.Second, noFloodLimits }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, tc.tune)
			nc := rawConn(t, addr)
			_ = nc.(*net.TCPConn).SetReadBuffer(4 << 10) // the server's acks back up soon
			stalled, err := floodUnread(t, nc)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a flooding client that never reads is still connected %v later (handshake timeout %v): %v", hangGuard, srv.handshakeTimeout, err)
			}
			if tc.name == "deadline" && !stalled {
				// A slow machine: the deadline came before the acks backed
				// up; only the read deadline was tested.
				t.Logf("the server closed the connection before its writes blocked")
			}
			waitReleased(t, srv)
		})
	}
}

// PING and SETTINGS floods before the request are answered with GOAWAY
// ENHANCE_YOUR_CALM and the connection closed, as grpc-go's server does
// ("too_many_pings"), long before the handshake deadline.
func TestWireServerControlFloodGoAway(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(*http2.Framer) error
	}{
		{"ping", writePing},
		{"settings", writeSettings},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, func(s *Server) { s.handshakeTimeout = time.Hour })
			nc := rawConn(t, addr)
			if _, err := nc.Write(frames(t, 200, tc.write)); err != nil {
				t.Fatal(err)
			}
			got := readUntilClosed(t, nc)
			if code, ok := goAwayIn(t, got); !ok || code != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v (sent: %v) after 200 frames, want ENHANCE_YOUR_CALM", code, ok)
			}
			waitReleased(t, srv)
		})
	}
}

// A client that trickles frames that need no answer, never sending its
// request, is closed at the handshake deadline.
func TestWireServerTrickleBeforeRequest(t *testing.T) {
	srv, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, func(s *Server) { s.handshakeTimeout = 300 * time.Millisecond })
	nc := rawConn(t, addr)
	if _, err := nc.Write(frames(t, 0, nil)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan []byte, 1)
	go func() { closed <- readUntilClosed(t, nc) }()
	// An unknown frame type every 20 ms until the server closes.
	unknown := []byte{0, 0, 1, 0xfa, 0, 0, 0, 0, 0, 'x'}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			waitReleased(t, srv)
			return
		case <-tick.C:
			_, _ = nc.Write(unknown)
		}
	}
}

// Pings are fine on a stream that carries data: the flood limits count
// only those since this side last sent DATA or HEADERS. And once the
// request is authenticated the handshake deadline no longer applies: the
// stream may sit idle past it.
func TestWireServerPingsWithDataAndIdleAfterHandshake(t *testing.T) {
	const hs = 200 * time.Millisecond
	_, addr := startWireTuned(t, ServerOptions{Handler: wireEcho}, func(s *Server) { s.handshakeTimeout = hs })
	rc := newRawClient(t, addr)
	msg := append([]byte{0, 0, 0, 0, 5}, "hello"...)
	echo := func() {
		t.Helper()
		rc.data(msg)
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			if _, ok := f.(*http2.DataFrame); ok {
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				t.Fatalf("GOAWAY %v from the server", ga.ErrCode)
			}
		}
	}
	for range 50 {
		echo()
		rc.sync()
		rc.sync()
	}
	time.Sleep(3 * hs)
	echo()
	rc.sync()
}
