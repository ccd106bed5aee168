// Package parallel is the CPU backend's fixed worker pool: Size goroutines
// (the caller is one of them) started once, woken per parallel loop, so
// kernels split work over cores without starting goroutines per call.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs parallel loops on a fixed set of workers. A loop body receives the
// worker number in [0, Size()), which indexes per-worker scratch buffers.
// Loops must not be nested: a body must not call For on the same pool.
//
// A helper that finishes a loop spins for up to spinFor, watching for the
// next loop, before it parks on its channel. Waking a parked goroutine
// means waking an idle core, and on a virtual machine an idle vCPU is
// halted: measured on a 2-vCPU Zen 3 guest, the helper started 60-80 us
// after For woke it, so in a loop shorter than that the caller did all the
// work (a 256^3 GEMM on two workers ran at 1.45x one worker). Training runs
// loops back to back, a few microseconds apart, so the spin is almost
// always rewarded; OpenBLAS and OpenMP runtimes spin the same way.
type Pool struct {
	size int
	mu   sync.Mutex // one loop at a time
	wake []chan struct{}
	// parked[w] is set by helper w before it blocks on wake[w]; For clears
	// it and sends, so a spinning helper is never sent to.
	parked []atomic.Bool
	// loop is the current loop's number << 16 | its helper count (the
	// helpers 1..count take part), closedLoop after Close. The loop's
	// fields below are written before loop is stored and stay fixed until
	// every taking-part helper is done.
	loop  atomic.Uint64
	wg    sync.WaitGroup
	job   func(worker, lo, hi int)
	n     int
	grain int
	next  atomic.Int64
}

// spinFor is how long an idle helper watches for the next loop before it
// parks: a few times the measured wake-up latency.
const spinFor = 200 * time.Microsecond

const closedLoop = ^uint64(0)

// New starts a pool of n workers (n <= 0 means runtime.GOMAXPROCS(0)).
// At most 65535 workers.
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	n = min(n, 1<<16-1)
	p := &Pool{size: n, wake: make([]chan struct{}, n), parked: make([]atomic.Bool, n)}
	for w := 1; w < n; w++ {
		p.wake[w] = make(chan struct{}, 1)
		go p.worker(w)
	}
	return p
}

// Size is the number of workers, including the calling goroutine.
func (p *Pool) Size() int { return p.size }

func (p *Pool) worker(w int) {
	seen := uint64(0)
	for {
		cur := p.awaitLoop(w, seen)
		if cur == closedLoop {
			return
		}
		seen = cur
		if uint64(w) <= cur&(1<<16-1) {
			p.drain(w)
			p.wg.Done()
		}
	}
}

// awaitLoop returns the first loop word after seen: spinning for up to
// spinFor, then parked on helper w's channel.
func (p *Pool) awaitLoop(w int, seen uint64) uint64 {
	deadline := time.Now().Add(spinFor)
	for i := 0; ; i++ {
		if cur := p.loop.Load(); cur != seen {
			return cur
		}
		if i%64 == 63 && time.Now().After(deadline) {
			break
		}
	}
	p.parked[w].Store(true)
	if cur := p.loop.Load(); cur != seen {
		// A loop began after the spin: take back the parked flag, or, if
		// For took it first, take the wake-up it sent.
		if !p.parked[w].CompareAndSwap(true, false) {
			<-p.wake[w]
		}
		return cur
	}
	if _, ok := <-p.wake[w]; !ok {
		return closedLoop
	}
	return p.loop.Load()
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
	p.loop.Store((p.loop.Load()>>16+1)<<16 | uint64(helpers))
	for w := 1; w <= helpers; w++ {
		if p.parked[w].CompareAndSwap(true, false) {
			p.wake[w] <- struct{}{}
		}
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
	p.loop.Store(closedLoop) // spinning helpers see it, parked ones the closed channel
	for w := 1; w < p.size; w++ {
		close(p.wake[w])
	}
}
