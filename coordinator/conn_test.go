package coordinator

import (
	"errors"
	"flag"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// idleConns is how many unauthenticated idle connections
// TestIdleConnectionsClosed opens, and idlePreAuth the coordinator's
// pre-auth deadline there: `go test ./coordinator -run
// TestIdleConnectionsClosed -idle-conns 2000 -idle-preauth 10s -v` is issue
// 14's check (it logs the process's peak RSS: client and server sockets).
var (
	idleConns   = flag.Int("idle-conns", 200, "unauthenticated idle connections TestIdleConnectionsClosed opens")
	idlePreAuth = flag.Duration("idle-preauth", time.Second, "the coordinator's pre-auth deadline in TestIdleConnectionsClosed")
)

// http2Preface is what an HTTP/2 client sends first: the connection
// preface and an empty SETTINGS frame.
var http2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// TestIdleConnectionsClosed: sockets that never authenticate (half of them
// silent, half sending an HTTP/2 preface and nothing else) are all closed
// within the pre-auth deadline, and a job started meanwhile completes
// (issue 14).
func TestIdleConnectionsClosed(t *testing.T) {
	preAuth := *idlePreAuth
	cfg := testConfig(t, 2)
	cfg.Conns.PreAuthTimeout = preAuth
	j := startJob(t, cfg)
	n := *idleConns
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	opened := time.Now()
	for i := range n {
		c, err := net.Dial("tcp", j.srv.Addr())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			if _, err := c.Write(http2Preface); err != nil {
				t.Fatalf("connection %d: preface: %v", i, err)
			}
		}
		conns = append(conns, c)
	}
	t.Logf("%d connections opened in %v", n, time.Since(opened).Round(time.Millisecond))

	// A real job meanwhile.
	ws := workers(t, j, "a", "b")
	registerAll(t, ws, nil) // and their heartbeats

	// Every idle socket is closed by the server, while the job runs: a read ends (EOF or reset)
	// rather than timing out. The deadline allows for a loaded machine.
	deadline := opened.Add(preAuth + 5*time.Second)
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
	if len(open) > 0 {
		t.Fatalf("%d of %d unauthenticated connections still open %v after they were opened (first: %v)", len(open), n, time.Since(opened).Round(time.Millisecond), open[:min(len(open), 10)])
	}
	st := j.srv.lis.Stats()
	t.Logf("all %d closed within %v; peak RSS %s; listener %+v", n, time.Since(opened).Round(time.Millisecond), peakRSS(), st)
	if st.Open != st.Authenticated {
		t.Errorf("the listener still holds %d unauthenticated connections", st.Open-st.Authenticated)
	}
	finishAll(t, ws, hjepav1.Outcome_OUTCOME_COMPLETED, 10)
	j.wantExit(0, "completed at step 10")
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
