package collective

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPeerCrash: rank 1's endpoint dies (streams cut, nothing said) while
// the ranks loop over all-reduces. The others fail with an error naming
// rank 1, from the broken streams: the ring's 10-minute timeout plays no
// part.
func TestPeerCrash(t *testing.T) {
	const n = 3
	eps, rings := newRing(t, n, ringOpts{timeout: 10 * time.Minute, chunkBytes: 64 << 10})
	var iters atomic.Int64
	results := make([]chan error, n)
	for r := range n {
		results[r] = make(chan error, 1)
		go func() {
			data := rankData(1, r, 1<<20)
			for step := int64(0); ; step++ {
				if err := rings[r].AllReduceSum(context.Background(), step, 0, data); err != nil {
					results[r] <- err
					return
				}
				iters.Add(1)
			}
		}()
	}
	for iters.Load() < 2*n {
		time.Sleep(5 * time.Millisecond)
	}
	eps[1].crash()
	for r := range n {
		err := waitErr(t, results[r], time.Minute, "all-reduce after the crash")
		if err == nil {
			t.Fatalf("rank %d: all-reduce succeeded after a crash", r)
		}
		if r != 1 && !strings.Contains(err.Error(), "rank 1") {
			t.Errorf("rank %d: error %q does not name rank 1", r, err)
		}
	}
}

func TestTimeout(t *testing.T) {
	_, rings := newRing(t, 2, ringOpts{timeout: time.Second})
	err := rings[0].AllReduceSum(context.Background(), 12, 3, make([]float32, 100))
	if err == nil {
		t.Fatal("all-reduce succeeded with rank 1 absent")
	}
	want := "all-reduce step 12 bucket 3: nothing from rank 1 ("
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ") for 1s") {
		t.Fatalf("error %q, want one like %q...) for 1s", err, want)
	}
	// Rank 1 learns of the abort and why.
	if err := waitAborted(t, rings[1]); !strings.Contains(err.Error(), "nothing from rank 1") {
		t.Fatalf("rank 1 aborted with %q", err)
	}
	if err := rings[1].Barrier(context.Background(), 12); err == nil {
		t.Fatal("rank 1's Barrier succeeded on an aborted ring")
	}
}

func TestAbortUnblocks(t *testing.T) {
	_, rings := newRing(t, 2, ringOpts{timeout: 10 * time.Minute})
	cause := errors.New("coordinator aborted generation 1")
	done := make(chan error, 1)
	go func() { done <- rings[0].AllReduceSum(context.Background(), 1, 0, make([]float32, 1000)) }()
	time.Sleep(50 * time.Millisecond) // usually blocked by now (not required)
	rings[0].Abort(cause)
	err := waitErr(t, done, time.Minute, "all-reduce after Abort")
	if !errors.Is(err, cause) {
		t.Fatalf("error %v does not wrap the abort cause", err)
	}
	if err := rings[0].Barrier(context.Background(), 2); !errors.Is(err, cause) {
		t.Fatalf("later collective: %v, want one wrapping the abort cause", err)
	}
	// Rank 1 hears of it from rank 0's streams.
	if err := waitAborted(t, rings[1]); !strings.Contains(err.Error(), cause.Error()) {
		t.Fatalf("rank 1 aborted with %q", err)
	}
}

func TestContextCancel(t *testing.T) {
	_, rings := newRing(t, 2, ringOpts{timeout: 10 * time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rings[0].AllReduceSum(ctx, 1, 0, make([]float32, 1000)) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	err := waitErr(t, done, time.Minute, "all-reduce after cancel")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not wrap context.Canceled", err)
	}
	if err := rings[1].Barrier(context.Background(), 1); err == nil {
		t.Fatal("rank 1's Barrier succeeded on an aborted ring")
	}
}

// TestCloseWhileBusy: Close of one rank while the other waits in a
// collective fails that collective promptly.
func TestCloseWhileBusy(t *testing.T) {
	_, rings := newRing(t, 2, ringOpts{timeout: 10 * time.Minute})
	done := make(chan error, 1)
	go func() { done <- rings[0].AllReduceSum(context.Background(), 1, 0, make([]float32, 1000)) }()
	_ = rings[1].Close()
	err := waitErr(t, done, time.Minute, "all-reduce after the peer's Close")
	if err == nil || !strings.Contains(err.Error(), "rank 1") {
		t.Fatalf("error %v does not name rank 1", err)
	}
}

// waitAborted waits until r has been aborted and returns why.
func waitAborted(t *testing.T, r *Ring) error {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := r.abortErr(); err != nil {
			return err
		}
	}
	t.Fatal("ring not aborted within a minute")
	return nil
}

// stallPlacer stands for a successor that stops reading (a stopped
// process): its stream's reader waits in Place until released.
type stallPlacer struct{ release chan struct{} }

func (p stallPlacer) Place([]byte, int) (int, []byte) { <-p.release; return 0, nil }
func (p stallPlacer) Placed()                         {}

// A send that cannot finish (the successor's socket is full and nobody
// reads it) fails the collective within the timeout instead of hanging on
// the write.
func TestStalledSuccessor(t *testing.T) {
	const chunk = 32 << 20 // more than the loopback socket buffers hold
	_, rings := newRing(t, 2, ringOpts{timeout: time.Second, chunkBytes: chunk})
	release := make(chan struct{})
	rings[1].in.SetPlacer(stallPlacer{release})
	defer close(release)
	done := make(chan error, 1)
	go func() { done <- rings[0].AllReduceSum(context.Background(), 1, 0, make([]float32, 2*chunk/4)) }()
	err := waitErr(t, done, time.Minute, "all-reduce to a stalled successor")
	if err == nil || !strings.Contains(err.Error(), "a send to rank 1") || !strings.Contains(err.Error(), "has not finished within 1s") {
		t.Fatalf("error %v, want one saying the send to rank 1 has not finished within 1s", err)
	}
}
