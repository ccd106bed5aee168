package grpcwire

import (
	"bytes"
	"sync"
	"testing"
)

// testPlacer places messages whose first byte is 'P' into dst (from
// message byte 8 on); it declines the others.
type testPlacer struct {
	mu      sync.Mutex
	dsts    [][]byte // every dst handed out
	placing bool
	placed  int
	heads   []int // len(head) of each offer
}

func (p *testPlacer) Place(head []byte, size int) (int, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heads = append(p.heads, len(head))
	if head[0] != 'P' || p.placing {
		return 0, nil
	}
	p.placing = true
	dst := make([]byte, size-8)
	p.dsts = append(p.dsts, dst)
	return 8, dst
}

// isDst reports whether b starts where a dst handed out starts.
func (p *testPlacer) isDst(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.dsts {
		if len(b) > 0 && len(d) > 0 && &b[0] == &d[0] {
			return true
		}
	}
	return false
}

func (p *testPlacer) Placed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.placing = false
	p.placed++
}

// A Placer gets the head of every large message (PlaceHeadBytes, or the
// whole message if shorter) and nothing smaller; a placed message arrives
// whole through RecvMsg with its tail a view of the Placer's dst, written
// across frames; a declined one arrives as usual; a message cut short by a
// broken stream ends its placement.
func TestPlacer(t *testing.T) {
	p := &testPlacer{}
	got := make(chan [][]byte, 1)
	views := make(chan bool, 8)
	placerSet := make(chan struct{})
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		st.SetPlacer(p)
		close(placerSet)
		var msgs [][]byte
		for range 4 {
			var b checkMsgRaw
			if err := st.RecvMsg(&b); err != nil {
				return err
			}
			msgs = append(msgs, b.data)
			views <- p.isDst(b.lastPart)
		}
		got <- msgs
		var b checkMsgRaw
		return st.RecvMsg(&b) // the cut-short message: an error
	}})
	cs, cancel := wireStream(t, addr, wireOpts())
	small := payload(1, 1000)
	declined := payload(2, 3<<20)
	placedMsg := append([]byte("PLACE-ME"), payload(3, 5<<20)...)
	short := append([]byte("P"), payload(4, placeMinBytes)...)
	for i, m := range [][]byte{small, declined, placedMsg, short} {
		if err := cs.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The handler starts with the stream; the large messages must
			// not reach the connection before it has set its Placer (the
			// 3 MiB one was once read while the placer was still unset,
			// and so never offered).
			await(t, placerSet, "the handler's SetPlacer")
		}
	}
	msgs := await(t, got, "the four messages")
	for i, want := range [][]byte{small, declined, placedMsg, short} {
		if !bytes.Equal(msgs[i], want) {
			t.Fatalf("message %d: %d bytes differ from the %d sent", i, len(msgs[i]), len(want))
		}
	}
	if v := []bool{<-views, <-views, <-views, <-views}; v[0] || v[1] || !v[2] || !v[3] {
		t.Fatalf("payloads that are views of a Placer's dst: %v, want [false false true true]", v)
	}
	p.mu.Lock()
	heads, placed := append([]int(nil), p.heads...), p.placed
	p.mu.Unlock()
	if len(heads) != 3 || heads[0] != PlaceHeadBytes || heads[1] != PlaceHeadBytes || heads[2] != PlaceHeadBytes {
		t.Fatalf("offers with heads %v: want 3 of %d bytes (the 1000-byte message is below the threshold)", heads, PlaceHeadBytes)
	}
	if placed != 2 {
		t.Fatalf("Placed called %d times, want 2", placed)
	}
	cancel()
}

// A placed message cut short (the client goes away mid-message, 16 KiB
// frames as grpc-go sends them) ends its placement: Placed is called and
// the handler's RecvMsg fails.
func TestPlacerStreamBreaks(t *testing.T) {
	p := &testPlacer{}
	recvErr := make(chan error, 1)
	_, addr := startWire(t, ServerOptions{Handler: func(st *ServerStream) error {
		st.SetPlacer(p)
		var b checkMsgRaw
		err := st.RecvMsg(&b)
		recvErr <- err
		return err
	}})
	rc := newRawClient(t, addr)
	msg := append([]byte("P"), payload(5, 1<<20)...)
	framed := append([]byte{0, byte(len(msg) >> 24), byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}, msg...)
	rc.data(framed[:len(framed)/2])
	rc.sync() // the server has read half the message into the Placer's dst
	_ = rc.nc.Close()
	if err := await(t, recvErr, "RecvMsg after the client went away"); err == nil {
		t.Fatal("RecvMsg returned a message cut short")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.placed != 1 || p.placing {
		t.Fatalf("Placed called %d times (placing %v), want once", p.placed, p.placing)
	}
}

// checkMsgRaw keeps the message bytes and its last buffer (not copied).
type checkMsgRaw struct {
	data     []byte
	lastPart []byte
}
