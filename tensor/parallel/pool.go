// Package parallel is the CPU backend's fixed worker pool: Size goroutines
// (the caller is one of them) started once, woken per parallel loop, so
// kernels split work over cores without starting goroutines per call.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool runs parallel loops on a fixed set of workers. A loop body receives the
// worker number in [0, Size()), which indexes per-worker scratch buffers.
// Loops must not be nested: a body must not call For on the same pool.
type Pool struct {
	size  int
	mu    sync.Mutex // one loop at a time
	wake  []chan struct{}
	wg    sync.WaitGroup
	job   func(worker, lo, hi int)
	n     int
	grain int
	next  atomic.Int64
}

// New starts a pool of n workers (n <= 0 means runtime.GOMAXPROCS(0)).
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{size: n, wake: make([]chan struct{}, n)}
	for w := 1; w < n; w++ {
		p.wake[w] = make(chan struct{}, 1)
		go p.worker(w)
	}
	return p
}

// Size is the number of workers, including the calling goroutine.
func (p *Pool) Size() int { return p.size }

func (p *Pool) worker(w int) {
	for range p.wake[w] {
		p.drain(w)
		p.wg.Done()
	}
}

func (p *Pool) drain(w int) {
	for {
		lo := int(p.next.Add(int64(p.grain))) - p.grain
		if lo >= p.n {
			return
		}
		p.job(w, lo, min(lo+p.grain, p.n))
	}
}

// For splits [0, n) into chunks of at most grain items and runs body on them
// across the workers, returning when all are done. Chunks are handed out
// dynamically, so which worker runs which chunk varies; bodies must write
// disjoint outputs. grain <= 0 picks about four chunks per worker.
func (p *Pool) For(n, grain int, body func(worker, lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain <= 0 {
		grain = max(1, (n+4*p.size-1)/(4*p.size))
	}
	if p.size == 1 || n <= grain {
		body(0, 0, n)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.job, p.n, p.grain = body, n, grain
	p.next.Store(0)
	helpers := min(p.size-1, (n+grain-1)/grain-1)
	p.wg.Add(helpers)
	for w := 1; w <= helpers; w++ {
		p.wake[w] <- struct{}{}
	}
	p.drain(0)
	p.wg.Wait()
	p.job = nil
}

// ForEachWorker runs body(i) once for each i in [0, Size()), concurrently; i
// may index per-worker scratch. For loops that split work statically.
func (p *Pool) ForEachWorker(body func(worker int)) {
	p.For(p.size, 1, func(w, lo, hi int) {
		for i := lo; i < hi; i++ {
			body(i)
		}
	})
}

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	for w := 1; w < p.size; w++ {
		close(p.wake[w])
	}
}
