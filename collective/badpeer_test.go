package collective

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// rawStream opens a Ring stream to addr the way a (possibly hostile) peer
// could, with this package's codec.
func rawStream(t *testing.T, addr, token string) (grpc.ClientStream, func()) {
	t.Helper()
	opts, err := rpcsec.Options{Token: token}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := hjepav1.NewCollectiveServiceClient(conn).Ring(ctx, grpc.CallContentSubtype(codecName), grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	return s, func() { cancel(); _ = conn.Close() }
}

// rawSend sends m as the first message of a raw stream and returns the
// server's verdict (nil: an ack came back).
func rawSend(t *testing.T, addr, token string, m *outMsg) error {
	t.Helper()
	s, done := rawStream(t, addr, token)
	defer done()
	_ = s.SendMsg(m)
	var a ackMsg
	return s.RecvMsg(&a)
}

func rawHello(t *testing.T, addr, token, run string, gen uint64, sender int32) error {
	t.Helper()
	return rawSend(t, addr, token, &outMsg{h: header{runID: run, generation: gen, sender: sender, op: hjepav1.Op_OP_HELLO}})
}

// wantStatus checks err is a gRPC status with that code whose message says
// every one of want.
func wantStatus(t *testing.T, err error, code string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %s", code)
	}
	st, _ := status.FromError(err)
	if st.Code().String() != code {
		t.Errorf("code %v (%q), want %s", st.Code(), st.Message(), code)
	}
	for _, w := range want {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("message %q does not say %q", st.Message(), w)
		}
	}
}

func reserveAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func stillWorks(t *testing.T, rings []*Ring) {
	t.Helper()
	n := len(rings)
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = rankData(77, r, 100003)
	}
	out := allReduceOnce(t, rings, 99, inputs)
	checkSum(t, out[n-1], inputs)
}

func TestWrongToken(t *testing.T) {
	eps, rings := newRing(t, 2, ringOpts{})
	wantStatus(t, rawHello(t, eps[0].Addr(), "not-the-token", "run-test", 1, 1), "Unauthenticated", "wrong job token")
	wantStatus(t, rawHello(t, eps[0].Addr(), "", "run-test", 1, 1), "Unauthenticated", "no job token")
	stillWorks(t, rings)
}

func TestBadHello(t *testing.T) {
	eps, rings := newRing(t, 3, ringOpts{run: "run-test", generation: 4})
	addr := eps[1].Addr() // rank 1 accepts only rank 0
	cases := []struct {
		name   string
		run    string
		gen    uint64
		sender int32
		code   string
		want   []string
	}{
		{"wrong run", "other-run", 4, 0, "PermissionDenied", []string{`run "other-run"`, `serves run "run-test"`}},
		{"stale generation", "run-test", 3, 0, "FailedPrecondition", []string{"generation 3", "stale generation", "at generation 4"}},
		{"wrong sender", "run-test", 4, 2, "PermissionDenied", []string{"sender rank 2", "only its predecessor, rank 0"}},
		{"impostor of the predecessor", "run-test", 4, 0, "FailedPrecondition", []string{"already has its predecessor connected"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, rawHello(t, addr, testToken, c.run, c.gen, c.sender), c.code, c.want...)
		})
	}
	t.Run("not a hello", func(t *testing.T) {
		err := rawSend(t, addr, testToken, &outMsg{h: header{runID: "run-test", generation: 4, op: hjepav1.Op_OP_ALL_REDUCE}})
		wantStatus(t, err, "InvalidArgument", "must be OP_HELLO", "OP_ALL_REDUCE")
	})
	t.Run("proto content-type", func(t *testing.T) {
		opts, _ := rpcsec.Options{Token: testToken}.DialOptions()
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s, err := hjepav1.NewCollectiveServiceClient(conn).Ring(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Send(&hjepav1.RingRequest{RunId: "run-test", Generation: 4, Op: hjepav1.Op_OP_HELLO})
		_, err = s.Recv()
		wantStatus(t, err, "InvalidArgument", codecName)
	})
	stillWorks(t, rings)
}

func TestOversizedChunk(t *testing.T) {
	eps, rings := newRing(t, 2, ringOpts{})
	addr := eps[0].Addr()
	// Larger than the server takes at all: refused from the length prefix,
	// before the message is read.
	big := &outMsg{h: header{runID: "run-test", generation: 1, sender: 1, op: hjepav1.Op_OP_HELLO}, raw: make([]byte, DefaultChunkBytes+headerSlack+1)}
	wantStatus(t, rawSend(t, addr, testToken, big), "ResourceExhausted", "larger than max")
	// Within the message limit, but a hello carries no payload: refused by
	// the codec before anything is allocated for it.
	fat := &outMsg{h: header{runID: "run-test", generation: 1, sender: 1, op: hjepav1.Op_OP_HELLO}, raw: make([]byte, 1000)}
	wantStatus(t, rawSend(t, addr, testToken, fat), "Internal", "payload of 1000 bytes exceeds the limit of 0 bytes")
	stillWorks(t, rings)
}

// TestMisTaggedChunk: rank 0 tags one chunk wrongly; the collective fails
// on every rank, each error naming the field, and the ring is aborted.
func TestMisTaggedChunk(t *testing.T) {
	cases := []struct {
		field  string
		tamper func(h *header)
		want   string
	}{
		{"bucket", func(h *header) { h.bucket = 9 }, "bucket: expected 2, got 9"},
		{"step", func(h *header) { h.step++ }, "step: expected 5, got 6"},
		{"offset", func(h *header) { h.offset += 4 }, "offset: expected"},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			const n = 3
			_, rings := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
			rings[0].tamper = func(h *header) {
				if h.ringStep == 1 && h.chunk == 0 {
					c.tamper(h)
				}
			}
			data := make([][]float32, n)
			for r := range data {
				data[r] = rankData(3, r, 10000)
			}
			errs := onAll(n, func(r int) error {
				return rings[r].AllReduceSum(context.Background(), 5, 2, data[r])
			})
			for r, err := range errs {
				if err == nil {
					t.Fatalf("rank %d: all-reduce succeeded", r)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("rank %d: error %q does not say %q", r, err, c.want)
				}
			}
			// The ring is aborted: the next collective fails at once.
			for r, err := range onAll(n, func(r int) error { return rings[r].Barrier(context.Background(), 6) }) {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("rank %d: Barrier after the failure: %v", r, err)
				}
			}
		})
	}
}
