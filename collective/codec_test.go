package collective

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/tensor"
)

func testHeader() header {
	return header{runID: "run-42", generation: 7, sender: 2, op: hjepav1.Op_OP_ALL_REDUCE, step: 123456789012,
		seq: 3, bucket: -1, ringStep: 4, chunk: 5, offset: 1 << 40, length: 3}
}

// split cuts b into pieces of at most k bytes, as HTTP/2 frames would.
func split(b []byte, k int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(k, len(b))
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return s
}

func TestCodecRegistered(t *testing.T) {
	if c := encoding.GetCodecV2(codecName); c == nil {
		t.Fatalf("no codec registered as %q", codecName)
	}
}

// TestCodecWire: our bytes decode as a RingRequest, and a RingRequest's
// bytes (split at every size) decode with our codec.
func TestCodecWire(t *testing.T) {
	h := testHeader()
	payload := []float32{1.5, -2, float32(math.Inf(1))}
	out := (&outMsg{h: h, f32: payload}).marshal()
	wire := out.Materialize()
	out.Free()

	var pb hjepav1.RingRequest
	if err := proto.Unmarshal(wire, &pb); err != nil {
		t.Fatal(err)
	}
	want := &hjepav1.RingRequest{RunId: h.runID, Generation: h.generation, SenderRank: h.sender, Op: h.op, Step: h.step,
		Seq: h.seq, Bucket: h.bucket, RingStep: h.ringStep, Chunk: h.chunk, Offset: h.offset, Length: h.length,
		Payload: []byte{0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0x80, 0x7f}}
	if !proto.Equal(&pb, want) {
		t.Fatalf("decoded as %v, want %v", &pb, want)
	}
	// proto.Marshal's output of the same message decodes identically.
	pbWire, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pbWire, wire) {
		t.Logf("our encoding differs from proto.Marshal's (field order): fine, both are valid")
	}
	for _, w := range [][]byte{wire, pbWire} {
		for k := 1; k <= len(w); k++ {
			m := &inMsg{maxPayload: 64}
			if err := m.unmarshal(split(w, k)); err != nil {
				t.Fatalf("pieces of %d: %v", k, err)
			}
			got := m.h
			got.runID = string(m.runID)
			if got != h {
				t.Fatalf("pieces of %d: header %+v, want %+v", k, got, h)
			}
			if !bytes.Equal(m.payload(), want.Payload) {
				t.Fatalf("pieces of %d: payload %v", k, m.payload())
			}
			f := make([]float32, 3)
			copyLE(f, m.parts)
			if !sameBits(f, payload) {
				t.Fatalf("pieces of %d: copyLE gives %v", k, f)
			}
			m.release()
		}
	}
}

// TestAddLE: the payload's floats may be split anywhere between frames.
func TestAddLE(t *testing.T) {
	src := rankData(1, 0, 37)
	dst0 := rankData(1, 1, 37)
	want := append([]float32(nil), dst0...)
	tensor.AddInto(want, src)
	raw := append([]byte{0}, float32Bytes(src)...)[1:] // misaligned copy
	for k := 1; k <= len(raw); k++ {
		var parts [][]byte
		for b := raw; len(b) > 0; {
			n := min(k, len(b))
			parts = append(parts, b[:n])
			b = b[n:]
		}
		dst := append([]float32(nil), dst0...)
		addLE(dst, parts)
		if !sameBits(dst, want) {
			t.Fatalf("parts of %d bytes: wrong sum", k)
		}
	}
}

func TestCodecAck(t *testing.T) {
	a := ackMsg{seq: 1, ringStep: -2, chunk: 3, err: "boom"}
	wire := a.appendTo(nil)
	var pb hjepav1.RingResponse
	if err := proto.Unmarshal(wire, &pb); err != nil {
		t.Fatal(err)
	}
	if pb.Seq != 1 || pb.RingStep != -2 || pb.Chunk != 3 || pb.Error != "boom" {
		t.Fatalf("decoded as %v", &pb)
	}
	var b ackMsg
	if err := b.unmarshal(split(wire, 1)); err != nil || b != a {
		t.Fatalf("round trip: %+v, %v", b, err)
	}
}

// TestCodecRefusesOversizedPayload: the payload's declared length is checked
// before a buffer is taken.
func TestCodecRefusesOversizedPayload(t *testing.T) {
	wire, err := proto.Marshal(&hjepav1.RingRequest{Op: hjepav1.Op_OP_ALL_REDUCE, Payload: make([]byte, 4100)})
	if err != nil {
		t.Fatal(err)
	}
	m := &inMsg{maxPayload: 4096}
	err = m.unmarshal(split(wire, 1<<20))
	if err == nil || !strings.Contains(err.Error(), "payload of 4100 bytes exceeds the limit of 4096 bytes") {
		t.Fatalf("error %v", err)
	}
	if len(m.refs) != 0 || len(m.parts) != 0 {
		t.Fatal("a transport buffer was held for a refused payload")
	}
}

func TestCodecMalformed(t *testing.T) {
	good, _ := proto.Marshal(&hjepav1.RingRequest{RunId: "r", Payload: []byte{1, 2, 3, 4}})
	twice := append(append([]byte{}, good...), good[len(good)-6:]...) // payload field again
	for name, w := range map[string][]byte{
		"truncated":     good[:len(good)-1],
		"payload twice": twice,
		"bad varint":    {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"wrong type":    {0x15, 0, 0, 0, 0}, // field 2 as fixed32
	} {
		m := &inMsg{maxPayload: 16}
		if err := m.unmarshal(split(w, 3)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestClassPool(t *testing.T) {
	for _, n := range []int{1, 4096, 4097, 1<<20 + 100} {
		b := wireBufs.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		wireBufs.Put(b)
	}
}

// TestAddIntoMisalignedSource: the all-reduce adds payloads where they lie
// in a message buffer, at any byte offset (tensor.AddInto's own test covers
// lengths, float alignments and special values).
func TestAddIntoMisalignedSource(t *testing.T) {
	// Misaligned by bytes, as a payload inside a message buffer is.
	raw := make([]byte, 4*1000+3)
	src := floatView(raw[3:])
	for i := range src {
		src[i] = float32(i) * 0.25
	}
	got := make([]float32, len(src))
	tensor.AddInto(got, src)
	for i := range got {
		if got[i] != float32(i)*0.25 {
			t.Fatalf("byte-misaligned source: element %d = %v", i, got[i])
		}
	}
}
