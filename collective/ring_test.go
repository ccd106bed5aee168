package collective

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllReduceSum(t *testing.T) {
	for n := 2; n <= 5; n++ {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			t.Parallel()
			_, rings := newRing(t, n, ringOpts{})
			sizes := []int{0, 1, 2, n - 1, n + 1, 1000003, DefaultChunkBytes/4 + 7, 1<<20 + 7}
			for si, size := range sizes {
				inputs := make([][]float32, n)
				for r := range inputs {
					inputs[r] = rankData(uint64(100*n+si), r, size)
				}
				first := allReduceOnce(t, rings, int64(2*si), inputs)
				second := allReduceOnce(t, rings, int64(2*si+1), inputs)
				checkSum(t, first[0], inputs)
				for r := range n {
					if !sameBits(first[r], first[0]) {
						t.Fatalf("size %d: rank %d's result differs from rank 0's", size, r)
					}
					if !sameBits(second[r], first[r]) {
						t.Fatalf("size %d: rank %d's result differs between two runs", size, r)
					}
				}
			}
			if placedChunks(rings) == 0 {
				t.Fatal("no all-gather chunk was received in place (place.go)")
			}
		})
	}
}

// placedChunks counts the chunks the rings' readers received in place.
func placedChunks(rings []*Ring) int {
	n := 0
	for _, r := range rings {
		r.placeMu.Lock()
		n += r.placedChunks
		r.placeMu.Unlock()
	}
	return n
}

// TestBroadcastInPlace: 1 MiB chunks of a broadcast land straight in the
// receivers' buffers, with the root's bits.
func TestBroadcastInPlace(t *testing.T) {
	const n, size = 3, 3<<18 + 5 // 3 MiB and a bit: four chunks
	_, rings := newRing(t, n, ringOpts{})
	bufs := make([][]float32, n)
	for r := range bufs {
		bufs[r] = rankData(9, r, size)
	}
	want := append([]float32(nil), bufs[1]...)
	noErrors(t, onAll(n, func(r int) error { return rings[r].Broadcast(context.Background(), 3, 1, bufs[r]) }))
	for r := range n {
		if !sameBits(bufs[r], want) {
			t.Fatalf("rank %d differs from the root's data", r)
		}
	}
	// Up to 8 (4 chunks on each of 2 receivers); a chunk that arrives
	// before its receiver's Broadcast has started is received as usual.
	if got := placedChunks(rings); got == 0 || got > 8 {
		t.Fatalf("%d chunks received in place, want 1 to 8", got)
	}
}

// TestAllReduceSmallChunks runs many chunks per segment (4 KiB chunks),
// where a chunk of the next ring step overtakes the current one's acks,
// and checks the result is the same bits as with 1 MiB chunks.
func TestAllReduceSmallChunks(t *testing.T) {
	const n, size = 3, 300007
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = rankData(9, r, size)
	}
	_, small := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
	_, big := newRing(t, n, ringOpts{})
	a := allReduceOnce(t, small, 1, inputs)
	b := allReduceOnce(t, big, 1, inputs)
	checkSum(t, a[0], inputs)
	for r := range n {
		if !sameBits(a[r], b[0]) {
			t.Fatalf("rank %d: 4 KiB chunks and 1 MiB chunks give different bits", r)
		}
	}
}

func TestAllReduce100MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB buffers: not in -short")
	}
	const size = 100 << 20 / 4 // 26214400 floats, not divisible by 3
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			_, rings := newRing(t, n, ringOpts{timeout: 5 * time.Minute})
			inputs := make([][]float32, n)
			for r := range inputs {
				inputs[r] = rankData(uint64(n), r, size)
			}
			out := allReduceOnce(t, rings, 1, inputs)
			checkSum(t, out[0], inputs)
			want := digest(out[0])
			for r := range n {
				if got := digest(out[r]); got != want {
					t.Fatalf("rank %d: digest %s, rank 0 %s", r, got, want)
				}
			}
			out = nil
			again := allReduceOnce(t, rings, 2, inputs)
			for r := range n {
				if got := digest(again[r]); got != want {
					t.Fatalf("second run, rank %d: digest %s, first run %s", r, got, want)
				}
			}
		})
	}
}

func TestBroadcast(t *testing.T) {
	for n := 2; n <= 4; n++ {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			t.Parallel()
			_, rings := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
			for root := range n {
				for _, size := range []int{0, 1, 1024, 10007} {
					bufs := make([][]float32, n)
					for r := range bufs {
						bufs[r] = rankData(uint64(size), r, size)
					}
					want := append([]float32(nil), bufs[root]...)
					noErrors(t, onAll(n, func(r int) error {
						return rings[r].Broadcast(context.Background(), 7, root, bufs[r])
					}))
					for r := range n {
						if !sameBits(bufs[r], want) {
							t.Fatalf("root %d size %d: rank %d differs from the root's data", root, size, r)
						}
					}
				}
			}
		})
	}
}

func TestAllGather(t *testing.T) {
	for n := 2; n <= 4; n++ {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			t.Parallel()
			_, rings := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
			blocks := make([][]byte, n)
			rng := rand.New(rand.NewPCG(uint64(n), 0))
			lens := []int{0, 1, MaxGatherBytes, 5000}
			for r := range blocks {
				blocks[r] = make([]byte, lens[r%len(lens)])
				for i := range blocks[r] {
					blocks[r][i] = byte(rng.Uint32())
				}
			}
			got := make([][][]byte, n)
			noErrors(t, onAll(n, func(r int) error {
				var err error
				got[r], err = rings[r].AllGather(context.Background(), 3, blocks[r])
				return err
			}))
			for r := range n {
				if len(got[r]) != n {
					t.Fatalf("rank %d: %d blocks, want %d", r, len(got[r]), n)
				}
				for o := range n {
					if !bytes.Equal(got[r][o], blocks[o]) {
						t.Fatalf("rank %d: block of rank %d: %d bytes, want %d (or different bytes)", r, o, len(got[r][o]), len(blocks[o]))
					}
				}
			}
			// A block over the limit is refused locally, before any traffic.
			if _, err := rings[0].AllGather(context.Background(), 4, make([]byte, MaxGatherBytes+1)); err == nil {
				t.Fatal("AllGather of MaxGatherBytes+1 bytes succeeded")
			}
		})
	}
}

// TestBarrier: no rank leaves the barrier before the last one has entered.
func TestBarrier(t *testing.T) {
	const n = 3
	_, rings := newRing(t, n, ringOpts{})
	for round := range 3 {
		late := round % n
		var entered atomic.Bool
		errs := onAll(n, func(r int) error {
			if r == late {
				time.Sleep(100 * time.Millisecond) // the others are inside already (not required)
				entered.Store(true)
			}
			if err := rings[r].Barrier(context.Background(), int64(round)); err != nil {
				return err
			}
			if !entered.Load() {
				return fmt.Errorf("left the barrier before rank %d entered", late)
			}
			return nil
		})
		noErrors(t, errs)
	}
}

// TestMixedSequence runs collectives of every kind in one step: each one's
// seq numbers it, and all ranks agree.
func TestMixedSequence(t *testing.T) {
	const n = 3
	_, rings := newRing(t, n, ringOpts{chunkBytes: minChunkBytes})
	inputs := make([][]float32, n)
	for r := range inputs {
		inputs[r] = rankData(5, r, 5000)
	}
	noErrors(t, onAll(n, func(r int) error {
		ctx := context.Background()
		for step := int64(0); step < 3; step++ {
			buf := append([]float32(nil), inputs[r]...)
			if err := rings[r].AllReduceSum(ctx, step, 0, buf); err != nil {
				return err
			}
			if err := rings[r].Barrier(ctx, step); err != nil {
				return err
			}
			if err := rings[r].Broadcast(ctx, step, 1, buf); err != nil {
				return err
			}
			if _, err := rings[r].AllGather(ctx, step, []byte(digest(buf))); err != nil {
				return err
			}
			if err := rings[r].AllReduceSum(ctx, step, 1, buf[:10]); err != nil {
				return err
			}
		}
		return nil
	}))
}

func TestWorldSizeOne(t *testing.T) {
	e := newEndpoint(t, 0)
	r, err := e.Join(context.Background(), RingConfig{RunID: "solo", Generation: 1, Rank: 0, WorldSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	data := []float32{1, 2, 3}
	if err := r.AllReduceSum(ctx, 0, 0, data); err != nil || data[0] != 1 || data[2] != 3 {
		t.Fatalf("AllReduceSum: %v %v", data, err)
	}
	if err := r.Broadcast(ctx, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	got, err := r.AllGather(ctx, 0, []byte("me"))
	if err != nil || len(got) != 1 || string(got[0]) != "me" {
		t.Fatalf("AllGather: %q %v", got, err)
	}
	if err := r.Barrier(ctx, 0); err != nil {
		t.Fatal(err)
	}
	rd := r.NewReducer(PlanBuckets(3, 4, 4), true)
	rd.Start(ctx, 1, data)
	rd.MarkReady(len(data))
	if _, _, err := rd.Wait(); err != nil || data[1] != 2 {
		t.Fatalf("Reducer: %v %v", data, err)
	}
	_ = r.Close()
	if err := r.Barrier(ctx, 1); err == nil {
		t.Fatal("Barrier after Close succeeded")
	}
}

// TestNextGeneration: a ring is closed and the same endpoints join the next
// generation; a hello for the old generation is then refused as stale.
func TestNextGeneration(t *testing.T) {
	const n = 3
	eps, rings := newRing(t, n, ringOpts{generation: 1})
	inputs := [][]float32{{1, 2, 3, 4}, {10, 20, 30, 40}, {100, 200, 300, 400}}
	allReduceOnce(t, rings, 0, inputs)
	closeAll(rings)
	if err := rings[0].Barrier(context.Background(), 1); err == nil {
		t.Fatal("Barrier on a closed ring succeeded")
	}
	rings2 := joinRing(t, eps, ringOpts{generation: 2})
	out := allReduceOnce(t, rings2, 0, inputs)
	if out[2][3] != 444 {
		t.Fatalf("generation 2: got %v", out[2])
	}
	err := rawHello(t, eps[1].Addr(), testToken, "run-test", 1, 0)
	wantStatus(t, err, "FailedPrecondition", "stale generation")
}

// TestSuccessorStartsLater: Join retries until the successor's endpoint
// exists.
func TestSuccessorStartsLater(t *testing.T) {
	e0 := newEndpoint(t, 0)
	addr := reserveAddr(t)
	joined := make(chan error, 1)
	var r0 *Ring
	go func() {
		var err error
		r0, err = e0.Join(context.Background(), RingConfig{RunID: "late", Generation: 1, Rank: 0, WorldSize: 2, Next: addr, Timeout: 30 * time.Second})
		joined <- err
	}()
	time.Sleep(300 * time.Millisecond) // rank 0 is dialing a closed port meanwhile (not required)
	e1, err := Listen(EndpointOptions{Listen: addr, Security: e0.opts.Security, Logger: testLogger()})
	if err != nil {
		t.Skipf("reserved port taken meanwhile: %v", err)
	}
	defer e1.Close()
	r1, err := e1.Join(context.Background(), RingConfig{RunID: "late", Generation: 1, Rank: 1, WorldSize: 2, Next: e0.Addr(), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, joined, time.Minute, "rank 0 Join"); err != nil {
		t.Fatal(err)
	}
	defer closeAll([]*Ring{r0, r1})
	allReduceOnce(t, []*Ring{r0, r1}, 0, [][]float32{{1}, {2}})
}

func TestJoinTimeout(t *testing.T) {
	e0 := newEndpoint(t, 0)
	e1 := newEndpoint(t, 0) // up, but rank 1 never joins
	_, err := e0.Join(context.Background(), RingConfig{RunID: "lonely", Generation: 1, Rank: 0, WorldSize: 2, Next: e1.Addr(), Timeout: time.Second})
	if err == nil {
		t.Fatal("Join succeeded without rank 1")
	}
	for _, want := range []string{"no hello from rank 1", "rank 1 at " + e1.Addr()} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestJoinConfigErrors(t *testing.T) {
	e := newEndpoint(t, 0)
	_, err := e.Join(context.Background(), RingConfig{RunID: "x", Rank: 3, WorldSize: 2, ChunkBytes: 2 * DefaultChunkBytes})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"rank 3", "next", "chunk bytes"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}
