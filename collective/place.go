package collective

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hjepa-go/hjepa/collective/grpcwire"
)

// Placement: a chunk that a receive copies (all-gather steps of an
// all-reduce, broadcast) is read from the socket straight into the
// collective's buffer instead of a message buffer it would be copied from
// (Gloo receives in place too). The transport's reader shows the ring each
// large message's head (Place); the ring places it only when every header
// field equals what the running collective expects of one of its receives
// still to come, and the receive copies rather than adds. Anything else is
// received as usual, and the collective's own check then accepts or
// refuses it: placement never lets a chunk land where the check would not
// have put it.
//
// A placed region is one the collective does not touch until it consumes
// that receive (the all-gather overwrites a region the reduce-scatter sent
// earlier, and the chunk arriving proves that send complete: its data went
// into the sum the chunk carries). run stops placement before it returns
// and waits for a placement in progress, so the caller's buffer is the
// caller's again.

var _ grpcwire.Placer = (*Ring)(nil)

// Place implements grpcwire.Placer.
func (r *Ring) Place(head []byte, size int) (int, []byte) {
	h, runID, at, plen, ok := parseHead(head)
	if !ok || plen != size-at || !littleEndian {
		return 0, nil
	}
	r.placeMu.Lock()
	defer r.placeMu.Unlock()
	c := r.placeC
	if c == nil || c.gather() || r.placing {
		return 0, nil
	}
	w := r.header(c.op, c.step, c.seq, c.bucket)
	if string(runID) != w.runID || h.generation != w.generation || h.sender != int32(r.prev) ||
		h.op != w.op || h.step != w.step || h.seq != w.seq || h.bucket != w.bucket {
		return 0, nil
	}
	for i := r.placeNext; i < len(c.recvs); i++ {
		it := &c.recvs[i]
		if it.ringStep != h.ringStep || it.chunk != h.chunk {
			continue
		}
		if it.reduce || h.offset != int64(it.off) || h.length != int64(it.n) || plen != 4*it.n {
			return 0, nil
		}
		r.placeNext, r.placing = i+1, true
		return at, float32Bytes(c.data[it.off : it.off+it.n])
	}
	return 0, nil
}

// Placed implements grpcwire.Placer.
func (r *Ring) Placed() {
	r.placeMu.Lock()
	r.placing = false
	r.placedChunks++
	r.placeCond.Broadcast()
	r.placeMu.Unlock()
}

// startPlacing lets the reader place c's chunks.
func (r *Ring) startPlacing(c *collective) {
	r.placeMu.Lock()
	r.placeC, r.placeNext = c, 0
	r.placeMu.Unlock()
}

// stopPlacing ends placement into c's buffer and waits for one in
// progress (bounded: a stream that broke mid-chunk ends it).
func (r *Ring) stopPlacing() {
	r.placeMu.Lock()
	r.placeC = nil
	for r.placing {
		r.placeCond.Wait()
	}
	r.placeMu.Unlock()
}

// inPlace reports whether a message's payload is already where dst is.
func inPlace(dst []float32, parts [][]byte) bool {
	return len(dst) > 0 && len(parts) == 1 && len(parts[0]) == 4*len(dst) && &parts[0][0] == &float32Bytes(dst)[0]
}

// parseHead reads a RingRequest's header from the start of a message, up
// to its payload: at is where the payload starts and plen its length.
func parseHead(b []byte) (h header, runID []byte, at, plen int, ok bool) {
	i := 0
	for i < len(b) {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return h, nil, 0, 0, false
		}
		i += n
		switch {
		case typ == protowire.BytesType && (num == fRunID || num == fPayload):
			v, n := protowire.ConsumeVarint(b[i:])
			if n < 0 {
				return h, nil, 0, 0, false
			}
			i += n
			if num == fPayload {
				return h, runID, i, int(min(v, 1<<31)), true
			}
			if v > uint64(len(b)-i) || v > maxRunIDBytes {
				return h, nil, 0, 0, false
			}
			runID = b[i : i+int(v)]
			i += int(v)
		case typ == protowire.VarintType && num >= fGeneration && num <= fLength:
			v, n := protowire.ConsumeVarint(b[i:])
			if n < 0 {
				return h, nil, 0, 0, false
			}
			i += n
			h.set(num, v)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b[i:])
			if n < 0 {
				return h, nil, 0, 0, false
			}
			i += n
		}
	}
	return h, nil, 0, 0, false
}
