package parallel

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestForCoversEveryIndexOnce(t *testing.T) {
	for _, size := range []int{1, 2, 3, 8} {
		p := New(size)
		for _, n := range []int{0, 1, 2, 7, 100, 1001} {
			for _, grain := range []int{0, 1, 3, 64} {
				hits := make([]int32, n)
				var bad atomic.Bool
				p.For(n, grain, func(w, lo, hi int) {
					if w < 0 || w >= size {
						bad.Store(true)
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&hits[i], 1)
					}
				})
				if bad.Load() {
					t.Fatalf("size %d: worker number out of range", size)
				}
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("size %d n %d grain %d: index %d ran %d times", size, n, grain, i, h)
					}
				}
			}
		}
		seen := make([]int32, size)
		p.ForEachWorker(func(w int) { atomic.AddInt32(&seen[w], 1) })
		for w, s := range seen {
			if s != 1 {
				t.Fatalf("ForEachWorker: worker %d ran %d times", w, s)
			}
		}
		p.Close()
	}
}

// Workers must never run the same per-worker scratch concurrently.
func TestWorkerScratchIsExclusive(t *testing.T) {
	p := New(4)
	defer p.Close()
	busy := make([]atomic.Int32, 4)
	for rep := 0; rep < 200; rep++ {
		p.For(64, 1, func(w, lo, hi int) {
			if busy[w].Add(1) != 1 {
				t.Errorf("worker %d entered twice", w)
			}
			busy[w].Add(-1)
		})
	}
}

// Loops with idle gaps shorter and longer than spinFor: helpers are found
// spinning, parked, or parking just as the loop begins, and every index
// still runs once, on a worker that is not running another chunk.
func TestForAcrossSpinAndPark(t *testing.T) {
	for _, size := range []int{2, 3} {
		p := New(size)
		gaps := []time.Duration{0, spinFor / 2, spinFor, 2 * spinFor, 5 * time.Microsecond}
		busy := make([]atomic.Int32, size)
		for rep := 0; rep < 200; rep++ {
			time.Sleep(gaps[rep%len(gaps)])
			n := 1 + rep%7
			hits := make([]int32, n)
			p.For(n, 1, func(w, lo, hi int) {
				if busy[w].Add(1) != 1 {
					t.Errorf("worker %d entered twice", w)
				}
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&hits[i], 1)
				}
				busy[w].Add(-1)
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("size %d rep %d: index %d ran %d times", size, rep, i, h)
				}
			}
		}
		p.Close()
	}
}
