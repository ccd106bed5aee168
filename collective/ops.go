package collective

import (
	"context"
	"fmt"
	"io"
	"time"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// item is one chunk of a collective: a send to the successor or a receive
// from the predecessor.
type item struct {
	ringStep, chunk int32
	// off and n locate the chunk in the collective's buffer, in elements
	// (float32; for a gather, bytes: off is block*MaxGatherBytes and n of
	// a receive is -1, any length up to MaxGatherBytes).
	off, n int
	// block is the rank whose block a gather chunk carries.
	block int
	// dep orders the chunk against the other direction. For a send: the
	// index of the receive that must have been consumed first (the data it
	// sends). For a receive: the index of the send that must have been
	// handed to gRPC first (the data it overwrites). -1: none.
	dep int
	// reduce: a receive adds into the buffer (else it copies).
	reduce bool
}

// collective is one collective call in flight.
type collective struct {
	op     hjepav1.Op
	step   int64
	seq    int32
	bucket int32
	root   int
	data   []float32 // reductions and broadcasts
	blocks [][]byte  // gathers: one block per rank
	sends  []item
	recvs  []item
}

func (c *collective) name() string {
	switch c.op {
	case hjepav1.Op_OP_ALL_REDUCE:
		return fmt.Sprintf("all-reduce step %d bucket %d", c.step, c.bucket)
	case hjepav1.Op_OP_BROADCAST:
		return fmt.Sprintf("broadcast step %d root %d", c.step, c.root)
	case hjepav1.Op_OP_ALL_GATHER:
		return fmt.Sprintf("all-gather step %d", c.step)
	case hjepav1.Op_OP_BARRIER:
		return fmt.Sprintf("barrier step %d", c.step)
	}
	return fmt.Sprintf("%v step %d", c.op, c.step)
}

func (c *collective) gather() bool {
	return c.op == hjepav1.Op_OP_ALL_GATHER || c.op == hjepav1.Op_OP_BARRIER
}

// AllReduceSum replaces data, on every rank, with the elementwise sum of
// every rank's data (same length everywhere). bucket tags the chunks (the
// Reducer's bucket index; any value otherwise).
func (r *Ring) AllReduceSum(ctx context.Context, step int64, bucket int, data []float32) error {
	c := &collective{op: hjepav1.Op_OP_ALL_REDUCE, step: step, bucket: int32(bucket), data: data}
	return r.run(ctx, c, r.planAllReduce)
}

// Broadcast replaces data on every rank with root's (same length
// everywhere). Chunks are pipelined: each rank forwards a chunk as soon as it
// has it.
func (r *Ring) Broadcast(ctx context.Context, step int64, root int, data []float32) error {
	c := &collective{op: hjepav1.Op_OP_BROADCAST, step: step, root: root, data: data}
	if root < 0 || root >= r.n {
		return fmt.Errorf("%s: root %d out of range [0, %d)", c.name(), root, r.n)
	}
	return r.run(ctx, c, r.planBroadcast)
}

// AllGather returns every rank's block, indexed by rank (mine at Rank()).
// Blocks may differ in length; each is at most MaxGatherBytes.
func (r *Ring) AllGather(ctx context.Context, step int64, mine []byte) ([][]byte, error) {
	c := &collective{op: hjepav1.Op_OP_ALL_GATHER, step: step, blocks: make([][]byte, r.n)}
	if len(mine) > MaxGatherBytes {
		return nil, fmt.Errorf("%s: block of %d bytes, at most %d", c.name(), len(mine), MaxGatherBytes)
	}
	c.blocks[r.rank] = append([]byte{}, mine...)
	if err := r.run(ctx, c, r.planGather); err != nil {
		return nil, err
	}
	return c.blocks, nil
}

// Barrier returns once every rank has entered it.
func (r *Ring) Barrier(ctx context.Context, step int64) error {
	c := &collective{op: hjepav1.Op_OP_BARRIER, step: step, blocks: make([][]byte, r.n)}
	return r.run(ctx, c, r.planGather)
}

func mod(x, n int) int { return ((x % n) + n) % n }

// planAllReduce: reduce-scatter then all-gather over N segments whose sizes
// differ by at most one element. At ring step k < N-1 rank r sends segment
// r-k and adds segment r-k-1 into its own; at all-gather step j = k-(N-1) it
// sends segment r+1-j (reduced) and copies segment r-j over its own.
func (r *Ring) planAllReduce(c *collective) {
	n, N, ce := len(c.data), r.n, r.chunkElems
	base, rem := n/N, n%N
	segOff := func(s int) int { return s*base + min(s, rem) }
	segLen := func(s int) int {
		if s < rem {
			return base + 1
		}
		return base
	}
	steps := 2 * (N - 1)
	sendStart, recvStart := make([]int, steps), make([]int, steps)
	for k := range steps {
		var sseg, rseg int
		if k < N-1 {
			sseg, rseg = mod(r.rank-k, N), mod(r.rank-k-1, N)
		} else {
			j := k - (N - 1)
			sseg, rseg = mod(r.rank+1-j, N), mod(r.rank-j, N)
		}
		sendStart[k] = len(c.sends)
		for off, ci := 0, 0; off < segLen(sseg); off, ci = off+ce, ci+1 {
			dep := -1
			if k > 0 { // the segment received at the previous step
				dep = recvStart[k-1] + ci
			}
			c.sends = append(c.sends, item{ringStep: int32(k), chunk: int32(ci), off: segOff(sseg) + off, n: min(ce, segLen(sseg)-off), dep: dep})
		}
		recvStart[k] = len(c.recvs)
		for off, ci := 0, 0; off < segLen(rseg); off, ci = off+ce, ci+1 {
			it := item{ringStep: int32(k), chunk: int32(ci), off: segOff(rseg) + off, n: min(ce, segLen(rseg)-off), dep: -1, reduce: k < N-1}
			if k >= N-1 { // overwrites what reduce-scatter step j sent
				it.dep = sendStart[k-(N-1)] + ci
			}
			c.recvs = append(c.recvs, it)
		}
	}
}

// planBroadcast: the root sends its chunks to root+1; every other rank
// receives each chunk (ring step = sender's distance from the root) and
// forwards it unless its successor is the root.
func (r *Ring) planBroadcast(c *collective) {
	dist := mod(r.rank-c.root, r.n)
	for off, ci := 0, 0; off < len(c.data); off, ci = off+r.chunkElems, ci+1 {
		n := min(r.chunkElems, len(c.data)-off)
		if dist > 0 {
			c.recvs = append(c.recvs, item{ringStep: int32(dist - 1), chunk: int32(ci), off: off, n: n, dep: -1})
		}
		if dist < r.n-1 {
			dep := -1
			if dist > 0 {
				dep = len(c.recvs) - 1
			}
			c.sends = append(c.sends, item{ringStep: int32(dist), chunk: int32(ci), off: off, n: n, dep: dep})
		}
	}
}

// planGather: at ring step k rank r sends block r-k (its own, then the one
// it received at step k-1) and receives block r-k-1.
func (r *Ring) planGather(c *collective) {
	for k := range r.n - 1 {
		sb, rb := mod(r.rank-k, r.n), mod(r.rank-k-1, r.n)
		c.sends = append(c.sends, item{ringStep: int32(k), off: sb * MaxGatherBytes, block: sb, dep: k - 1})
		c.recvs = append(c.recvs, item{ringStep: int32(k), off: rb * MaxGatherBytes, n: -1, block: rb, dep: -1})
	}
}

// run runs one collective: it numbers it within its step, plans its chunks,
// then drives sends, receives and acks until all are done, the ring is
// aborted, ctx ends, or the peer it waits on has been silent for Timeout.
// Any failure aborts the ring: the ranks are no longer in step.
func (r *Ring) run(ctx context.Context, c *collective, plan func(*collective)) (err error) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if err := r.usable(); err != nil {
		return fmt.Errorf("%s: %w", c.name(), err)
	}
	if !r.hasStep || c.step != r.opStep {
		r.opStep, r.opSeq, r.hasStep = c.step, 0, true
	}
	c.seq = r.opSeq
	r.opSeq++
	if r.n == 1 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return r.opFail(c, err)
	}
	c.sends, c.recvs = r.sends[:0], r.recvs[:0]
	plan(c)
	r.sends, r.recvs = c.sends, c.recvs
	r.startPlacing(c)
	defer r.stopPlacing() // before the caller has its buffer back
	defer r.watchSends()()

	timeout := r.cfg.Timeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	start := time.Now()
	lastIn, lastAck := start, start
	nS, nR := len(c.sends), len(c.recvs)
	if r.outEnd != nil && nS > 0 {
		return r.opFail(c, r.outEnd)
	}
	// Everything happens on this goroutine: sends are written here (send),
	// and chunks and acks are taken from the streams' queues as their
	// readers announce them (Ready), so a chunk costs no hand-off between
	// goroutines beyond the reader's.
	outOver := r.outEnd != nil // the successor's end has been taken
	var issued, acked, consumed int
	var pending *inMsg // received, waiting for the send it overwrites
	spare := r.getMsg()
	a := &r.gotAck
	defer func() {
		if pending != nil {
			r.putMsg(pending)
		}
		r.putMsg(spare)
	}()
	for {
		for issued < nS && issued-acked < sendWindow {
			it := &c.sends[issued]
			if it.dep >= consumed {
				break
			}
			if issued == acked {
				lastAck = time.Now() // the ack clock starts with the first unacked chunk
			}
			if err := r.send(r.fillSend(c, it, &r.outSlots[issued%sendWindow])); err != nil {
				if err == io.EOF { // the stream has ended: its status says why
					return r.opFail(c, r.successorEnd())
				}
				return r.opFail(c, fmt.Errorf("send to %s: %w", r.peerNext(), err))
			}
			issued++
		}
		if pending != nil && c.recvs[consumed].dep < issued {
			if err := r.consume(c, &c.recvs[consumed], pending); err != nil {
				return r.opFail(c, err)
			}
			pending = nil
			consumed++
			continue
		}
		if consumed == nR && acked == nS {
			return nil
		}
		progress := false
		if pending == nil && consumed < nR {
			ok, err := r.in.TryRecvMsg(spare)
			if ok {
				progress = true
				lastIn = time.Now()
				m := spare
				spare = r.getMsg()
				switch {
				case err != nil:
					r.putMsg(m)
					return r.opFail(c, r.inBroken(err))
				case m.h.op == hjepav1.Op_OP_ABORT:
					r.fail(fmt.Errorf("%s aborted the ring: %s", r.peerPrev(), m.payload()))
					r.putMsg(m)
					return fmt.Errorf("%s: %w", c.name(), r.usable())
				}
				it := &c.recvs[consumed]
				if err := r.check(c, it, m); err != nil {
					r.putMsg(m)
					return r.opFail(c, err)
				}
				if it.dep >= issued {
					pending = m
					continue
				}
				if err := r.consume(c, it, m); err != nil {
					return r.opFail(c, err)
				}
				consumed++
			}
		}
		if !outOver {
			ok, err := r.out.TryRecvMsg(a)
			if ok {
				progress = true
				lastAck = time.Now()
				switch {
				case err == io.EOF:
					r.outEnd, outOver = r.outBroken(err), true
					if acked < nS { // chunks still to be acked: they never will
						return r.opFail(c, r.outEnd)
					}
				case err != nil:
					return r.opFail(c, r.outBroken(err))
				case a.err != "":
					r.fail(fmt.Errorf("%s aborted the ring: %s", r.peerNext(), a.err))
					return fmt.Errorf("%s: %w", c.name(), r.usable())
				case acked >= issued:
					return r.opFail(c, fmt.Errorf("ack from %s with no chunk in flight", r.peerNext()))
				default:
					it := &c.sends[acked]
					if a.seq != c.seq || a.ringStep != it.ringStep || a.chunk != it.chunk {
						return r.opFail(c, fmt.Errorf("ack from %s: expected seq %d ring_step %d chunk %d, got seq %d ring_step %d chunk %d",
							r.peerNext(), c.seq, it.ringStep, it.chunk, a.seq, a.ringStep, a.chunk))
					}
					acked++
				}
			}
		}
		if progress {
			continue
		}
		var inReady, outReady <-chan struct{}
		if pending == nil && consumed < nR {
			inReady = r.in.Ready()
		}
		if !outOver {
			outReady = r.out.Ready()
		}
		select {
		case <-inReady:
		case <-outReady:
		case <-r.done:
			return fmt.Errorf("%s: %w", c.name(), r.usable())
		case <-ctx.Done():
			return r.opFail(c, ctx.Err())
		case now := <-timer.C:
			waitIn := consumed < nR
			waitAck := acked < issued
			if waitIn && now.Sub(lastIn) >= timeout {
				return r.opFail(c, fmt.Errorf("nothing from %s for %v", r.peerPrev(), timeout))
			}
			if waitAck && now.Sub(lastAck) >= timeout {
				return r.opFail(c, fmt.Errorf("no ack from %s for %v", r.peerNext(), timeout))
			}
			next := timeout
			if waitIn {
				next = min(next, timeout-now.Sub(lastIn))
			}
			if waitAck {
				next = min(next, timeout-now.Sub(lastAck))
			}
			timer.Reset(max(next, time.Millisecond))
		}
	}
}

// successorEnd returns why the stream to the successor ended, once a send
// found it ended (its end is then known): the acks queued before it are
// dropped, the collective fails anyway.
func (r *Ring) successorEnd() error {
	var a ackMsg
	for {
		ok, err := r.out.TryRecvMsg(&a)
		switch {
		case !ok:
			return fmt.Errorf("the stream to %s has ended", r.peerNext())
		case err != nil:
			return r.outBroken(err)
		case a.err != "":
			return fmt.Errorf("%s aborted the ring: %s", r.peerNext(), a.err)
		}
	}
}

// opFail aborts the ring because collective c failed with err. If the ring
// was already aborted, err is a consequence: the first cause is returned.
func (r *Ring) opFail(c *collective, err error) error {
	err = fmt.Errorf("%s: %w", c.name(), err)
	if !r.fail(err) {
		if cause := r.usable(); cause != nil {
			return fmt.Errorf("%s: %w", c.name(), cause)
		}
	}
	return err
}

// fillSend writes send item it of c into m and returns m.
func (r *Ring) fillSend(c *collective, it *item, m *outMsg) *outMsg {
	select { // the release of m's last send
	case <-m.released:
	default:
	}
	m.h = r.header(c.op, c.step, c.seq, c.bucket)
	m.h.ringStep, m.h.chunk, m.h.offset = it.ringStep, it.chunk, int64(it.off)
	if c.gather() {
		m.f32, m.raw = nil, c.blocks[it.block]
		m.h.length = int64(len(m.raw))
	} else {
		m.f32, m.raw = c.data[it.off:it.off+it.n], nil
		m.h.length = int64(it.n)
	}
	if r.tamper != nil {
		r.tamper(&m.h)
	}
	return m
}

// check compares a received chunk's header with what receive it expects.
func (r *Ring) check(c *collective, it *item, m *inMsg) error {
	w := r.header(c.op, c.step, c.seq, c.bucket)
	w.sender = int32(r.prev)
	g := &m.h
	bad := func(field string, want, got any) error {
		return fmt.Errorf("chunk from %s: %s: expected %v, got %v", r.peerPrev(), field, want, got)
	}
	switch {
	case string(m.runID) != w.runID:
		return bad("run_id", w.runID, string(m.runID))
	case g.generation != w.generation:
		return bad("generation", w.generation, g.generation)
	case g.sender != w.sender:
		return bad("sender_rank", w.sender, g.sender)
	case g.op != w.op:
		return bad("op", w.op, g.op)
	case g.step != w.step:
		return bad("step", w.step, g.step)
	case g.seq != w.seq:
		return bad("seq", w.seq, g.seq)
	case g.bucket != w.bucket:
		return bad("bucket", w.bucket, g.bucket)
	case g.ringStep != it.ringStep:
		return bad("ring_step", it.ringStep, g.ringStep)
	case g.chunk != it.chunk:
		return bad("chunk", it.chunk, g.chunk)
	case g.offset != int64(it.off):
		return bad("offset", it.off, g.offset)
	}
	elem := int64(4)
	if c.gather() {
		elem = 1
		if it.n < 0 && (g.length < 0 || g.length > MaxGatherBytes) {
			return bad("length", fmt.Sprintf("at most %d", MaxGatherBytes), g.length)
		}
		if c.op == hjepav1.Op_OP_BARRIER && g.length != 0 {
			return bad("length", 0, g.length)
		}
	}
	if it.n >= 0 && g.length != int64(it.n) {
		return bad("length", it.n, g.length)
	}
	if int64(m.size) != g.length*elem {
		return bad("payload size", g.length*elem, m.size)
	}
	return nil
}

// consume applies a checked chunk to c's buffer, acks it, and recycles m.
func (r *Ring) consume(c *collective, it *item, m *inMsg) error {
	if c.gather() {
		c.blocks[it.block] = m.payload()
	} else {
		dst := c.data[it.off : it.off+it.n]
		switch {
		case it.reduce:
			addLE(dst, m.parts)
		case inPlace(dst, m.parts): // the reader put it there (place.go)
		default:
			copyLE(dst, m.parts)
		}
	}
	r.putMsg(m)
	r.inMu.Lock()
	defer r.inMu.Unlock()
	if r.inEnded {
		return fmt.Errorf("stream from %s has ended", r.peerPrev())
	}
	r.ack = ackMsg{seq: c.seq, ringStep: it.ringStep, chunk: it.chunk}
	if err := r.in.SendMsg(&r.ack); err != nil {
		return fmt.Errorf("ack to %s: %w", r.peerPrev(), err)
	}
	return nil
}
