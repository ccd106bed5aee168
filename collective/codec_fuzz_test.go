package collective

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hjepa-go/hjepa/collective/grpcwire"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// Fuzz targets for the ring's message codec: what a peer sends is decoded
// by inMsg.unmarshal (RingRequest), parseHead (a large RingRequest's head,
// for placement) and ackMsg.unmarshal (RingResponse). The properties: no
// panic; limits (payload, run id, ack error) checked before anything is
// taken or allocated, and no transport buffer held after an error; the
// protobuf library reads the same message where both accept it; and
// decode(encode(x)) == x.

// pieceSize is how the transport split a message: k cut to [1, n].
func pieceSize(k uint16, n int) int { return int(k)%max(n, 1) + 1 }

func FuzzRingRequest(f *testing.F) {
	h := testHeader()
	good := (&outMsg{h: h, raw: []byte{1, 2, 3, 4, 5, 6, 7, 8}}).marshal()
	wire := good.Materialize()
	good.Free()
	f.Add(wire, uint16(0), uint16(64))
	f.Add(wire, uint16(3), uint16(4)) // payload over the limit
	pb, _ := proto.Marshal(&hjepav1.RingRequest{RunId: "r", Payload: []byte{9, 9}, Length: 2, Chunk: -1})
	f.Add(pb, uint16(1), uint16(16))
	f.Add(append(append([]byte{}, pb...), 0x62, 1, 0), uint16(5), uint16(16)) // payload twice
	f.Add([]byte{0x0a, 0xff, 0x7f}, uint16(0), uint16(16))                    // run id too long
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(2), uint16(16))
	f.Add([]byte{0x15, 0, 0, 0, 0}, uint16(0), uint16(16))
	f.Add([]byte{0xf8, 0xff, 0xff, 0xff, 0x0f, 1}, uint16(0), uint16(16)) // field number past proto's maximum
	f.Fuzz(func(t *testing.T, data []byte, k, maxPayload uint16) {
		m := &inMsg{maxPayload: int(maxPayload)}
		err := m.unmarshal(split(data, pieceSize(k, len(data))))
		if err != nil {
			if len(m.refs) != 0 || len(m.parts) != 0 || m.size != 0 {
				t.Fatalf("%v, yet %d buffers held", err, len(m.refs))
			}
			return
		}
		defer m.release()
		if m.size > m.maxPayload || len(m.runID) > maxRunIDBytes {
			t.Fatalf("payload of %d bytes (limit %d), run id of %d bytes accepted", m.size, m.maxPayload, len(m.runID))
		}
		n := 0
		for _, p := range m.parts {
			n += len(p)
		}
		if n != m.size {
			t.Fatalf("payload parts hold %d bytes, size %d", n, m.size)
		}
		got := m.h
		got.runID = string(m.runID)
		var pb hjepav1.RingRequest
		if proto.Unmarshal(data, &pb) == nil {
			want := header{runID: pb.RunId, generation: pb.Generation, sender: pb.SenderRank, op: pb.Op, step: pb.Step,
				seq: pb.Seq, bucket: pb.Bucket, ringStep: pb.RingStep, chunk: pb.Chunk, offset: pb.Offset, length: pb.Length}
			if got != want || !bytes.Equal(m.payload(), pb.Payload) {
				t.Fatalf("decoded %+v with %d payload bytes; proto reads %+v with %d", got, m.size, want, len(pb.Payload))
			}
		}
		// A Placer sees the head: where it finds the payload, it is this one.
		head := data[:min(len(data), grpcwire.PlaceHeadBytes)]
		ph, runID, at, plen, ok := parseHead(head)
		if !ok {
			return
		}
		if at > len(head) || plen != m.size || at+plen > len(data) || !bytes.Equal(data[at:at+plen], m.payload()) {
			t.Fatalf("parseHead: payload at %d, %d bytes; unmarshal: %d bytes", at, plen, m.size)
		}
		if at+plen == len(data) { // the payload is the last field: the headers agree
			ph.runID = string(runID)
			if ph != got {
				t.Fatalf("parseHead: %+v, unmarshal: %+v", ph, got)
			}
		}
	})
}

func FuzzRingRequestRoundTrip(f *testing.F) {
	h := testHeader()
	f.Add(h.runID, h.generation, h.sender, int32(h.op), h.step, h.seq, h.bucket, h.ringStep, h.chunk, h.offset, h.length, []byte{0, 0, 0xc0, 0x3f}, true, uint16(0))
	f.Add("", uint64(0), int32(-1), int32(-7), int64(-1), int32(0), int32(-2), int32(1), int32(0), int64(-5), int64(0), []byte(nil), false, uint16(2))
	f.Add(string(make([]byte, maxRunIDBytes+1)), uint64(1), int32(0), int32(0), int64(0), int32(0), int32(0), int32(0), int32(0), int64(0), int64(0), []byte("x"), false, uint16(9))
	f.Fuzz(func(t *testing.T, runID string, gen uint64, sender, op int32, step int64, seq, bucket, ringStep, chunk int32, offset, length int64, payload []byte, asFloats bool, k uint16) {
		h := header{runID: runID, generation: gen, sender: sender, op: hjepav1.Op(op), step: step, seq: seq, bucket: bucket,
			ringStep: ringStep, chunk: chunk, offset: offset, length: length}
		out := &outMsg{h: h, raw: payload}
		if asFloats && len(payload)%4 == 0 {
			out.raw, out.f32 = nil, append([]float32(nil), floatView(payload)...)
		}
		bufs := out.marshal()
		wire := bufs.Materialize()
		bufs.Free()
		m := &inMsg{maxPayload: len(payload)}
		err := m.unmarshal(split(wire, pieceSize(k, len(wire))))
		if len(runID) > maxRunIDBytes {
			if err == nil {
				t.Fatalf("a run id of %d bytes accepted", len(runID))
			}
			return
		}
		if err != nil {
			t.Fatalf("decoding what marshal wrote: %v", err)
		}
		got := m.h
		got.runID = string(m.runID)
		if got != h || !bytes.Equal(m.payload(), payload) {
			t.Fatalf("round trip: %+v with %x, want %+v with %x", got, m.payload(), h, payload)
		}
		m.release()
	})
}

func FuzzRingAck(f *testing.F) {
	a := ackMsg{seq: 1, ringStep: -2, chunk: 3, err: "boom"}
	f.Add(a.appendTo(nil), uint16(0), a.seq, a.ringStep, a.chunk, a.err)
	f.Add([]byte{0x22, 0xff, 0xff, 0x03}, uint16(1), int32(0), int32(0), int32(0), string(make([]byte, maxAckErrorBytes+1)))
	f.Add([]byte{0x0a, 0x01, 0x00, 0x10}, uint16(2), int32(-1), int32(1<<30), int32(0), "")
	f.Fuzz(func(t *testing.T, data []byte, k uint16, seq, ringStep, chunk int32, e string) {
		var got ackMsg
		if err := got.unmarshal(split(data, pieceSize(k, len(data)))); err == nil {
			if len(got.err) > maxAckErrorBytes {
				t.Fatalf("an error of %d bytes accepted", len(got.err))
			}
			var pb hjepav1.RingResponse
			if proto.Unmarshal(data, &pb) == nil {
				want := ackMsg{seq: pb.Seq, ringStep: pb.RingStep, chunk: pb.Chunk, err: pb.Error}
				if got != want {
					t.Fatalf("decoded %+v; proto reads %+v", got, want)
				}
			}
		}
		// Round trip.
		want := ackMsg{seq: seq, ringStep: ringStep, chunk: chunk, err: e}
		wire := want.appendTo(nil)
		var back ackMsg
		err := back.unmarshal(split(wire, pieceSize(k, len(wire))))
		if len(e) > maxAckErrorBytes {
			if err == nil {
				t.Fatalf("an error of %d bytes accepted", len(e))
			}
			return
		}
		if err != nil || back != want {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, want)
		}
	})
}
