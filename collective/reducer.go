package collective

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Range is a span of a flat float32 arena, in elements.
type Range struct{ Off, Len int }

// PlanBuckets splits a gradient arena of n float32 into DDP buckets.
// Gradients become final from the start of the arena toward its end: the
// model lays its parameters out in reverse declaration order, so backward,
// which runs from the last layers, finishes a growing prefix (jepa.Model's
// GradsReady). Bucket 0 is the first firstBytes of the arena, bucket 1 the
// bucketBytes after it, and so on; the last bucket, ending at n, may be
// shorter. firstBytes <= 0 means bucketBytes; bucketBytes <= 0 means one
// bucket for everything after the first.
func PlanBuckets(n int, firstBytes, bucketBytes int64) []Range {
	if n <= 0 {
		return nil
	}
	if firstBytes <= 0 {
		firstBytes = bucketBytes
	}
	elems := func(bytes int64) int {
		if bytes <= 0 || bytes/4 >= int64(n) {
			return n
		}
		return max(1, int(bytes/4))
	}
	var plan []Range
	off, size := 0, elems(firstBytes)
	for off < n {
		end := min(n, off+size)
		plan = append(plan, Range{Off: off, Len: end - off})
		off, size = end, elems(bucketBytes)
	}
	return plan
}

// Reducer all-reduces a flat gradient arena bucket by bucket while backward
// is still producing it (DDP's overlap of communication with computation).
// One step at a time: Start, MarkReady as gradients become final, Wait.
type Reducer struct {
	ring    *Ring
	plan    []Range
	average bool

	mu       sync.Mutex
	ready    int // data[:ready] is final
	lastMark time.Time
	wake     chan struct{}
	done     chan struct{}
	running  bool
	n        int // the arena's length
	exposed  time.Duration
	total    time.Duration
	err      error

	// onBucket, when set (tests), is called before each bucket's reduction.
	onBucket func(b int)
}

// NewReducer returns a Reducer over plan (from PlanBuckets). average divides
// the sums by the world size.
func (r *Ring) NewReducer(plan []Range, average bool) *Reducer {
	return &Reducer{ring: r, plan: append([]Range(nil), plan...), average: average}
}

// Start begins one step's reduction over data. Buckets are all-reduced in
// index order on a goroutine, each as soon as MarkReady has covered it. The
// previous step must have been waited for.
func (rd *Reducer) Start(ctx context.Context, step int64, data []float32) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.running {
		panic("collective: Reducer.Start before Wait of the previous step")
	}
	rd.running = true
	rd.ready, rd.lastMark, rd.n = 0, time.Time{}, len(data)
	rd.wake = make(chan struct{}, 1)
	rd.done = make(chan struct{})
	rd.exposed, rd.total, rd.err = 0, 0, nil
	for b, rg := range rd.plan {
		if rg.Off < 0 || rg.Len < 0 || rg.Off+rg.Len > len(data) {
			rd.err = fmt.Errorf("reducer step %d: bucket %d [%d, %d) outside the arena of %d", step, b, rg.Off, rg.Off+rg.Len, len(data))
			close(rd.done)
			return
		}
	}
	go rd.run(ctx, step, data, rd.wake, rd.done)
}

// MarkReady says data[:upTo] is final. Backward calls it with growing upTo,
// and MarkReady(len(data)) at its end.
func (rd *Reducer) MarkReady(upTo int) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.running {
		return
	}
	if upTo > rd.ready { // only a mark that finalizes something ends backward
		rd.lastMark = time.Now()
		rd.ready = min(upTo, rd.n)
		select {
		case rd.wake <- struct{}{}:
		default:
		}
	}
}

// Wait marks the whole arena ready (if backward has not), waits until every
// bucket is reduced or one failed, and returns the first error. exposed is
// how long the reduction ran after the last MarkReady that finalized
// something (the part not hidden behind backward); total is the time the
// bucket all-reduces ran.
func (rd *Reducer) Wait() (exposed, total time.Duration, err error) {
	rd.mu.Lock()
	if !rd.running {
		rd.mu.Unlock()
		return 0, 0, fmt.Errorf("reducer: Wait without Start")
	}
	done, n := rd.done, rd.n
	rd.mu.Unlock()
	rd.MarkReady(n)
	<-done
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.running = false
	return rd.exposed, rd.total, rd.err
}

func (rd *Reducer) run(ctx context.Context, step int64, data []float32, wake <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var busy time.Duration
	var err error
	scale := float32(rd.ring.WorldSize())
	for b, rg := range rd.plan {
		if err = rd.waitReady(ctx, step, b, rg.Off+rg.Len, wake); err != nil {
			break
		}
		if rd.onBucket != nil {
			rd.onBucket(b)
		}
		t0 := time.Now()
		bucket := data[rg.Off : rg.Off+rg.Len]
		if err = rd.ring.AllReduceSum(ctx, step, b, bucket); err != nil {
			break
		}
		if rd.average && scale != 1 {
			for i := range bucket {
				bucket[i] /= scale
			}
		}
		busy += time.Since(t0)
	}
	end := time.Now()
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.total, rd.err = busy, err
	if !rd.lastMark.IsZero() && end.After(rd.lastMark) {
		rd.exposed = end.Sub(rd.lastMark)
	}
}

// waitReady blocks until MarkReady has covered data[:end].
func (rd *Reducer) waitReady(ctx context.Context, step int64, b, end int, wake <-chan struct{}) error {
	for {
		rd.mu.Lock()
		ok := rd.ready >= end
		rd.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			err := fmt.Errorf("reducer step %d bucket %d: %w", step, b, ctx.Err())
			rd.ring.fail(err) // the other ranks are waiting for this bucket
			return err
		case <-rd.ring.done:
			return fmt.Errorf("reducer step %d bucket %d: %w", step, b, rd.ring.usable())
		}
	}
}
