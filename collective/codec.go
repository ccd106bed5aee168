package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"unsafe"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
	"github.com/hjepa-go/hjepa/tensor"
)

// codecName is the content-subtype of Ring streams ("application/grpc+hjepa-ring").
// The client selects it with grpc.CallContentSubtype; the server picks the
// codec from the request's content-type.
const codecName = "hjepa-ring"

func init() { encoding.RegisterCodecV2(ringCodec{}) }

// RingRequest and RingResponse field numbers (proto/hjepa/v1/collective.proto).
const (
	fRunID      protowire.Number = 1
	fGeneration protowire.Number = 2
	fSenderRank protowire.Number = 3
	fOp         protowire.Number = 4
	fStep       protowire.Number = 5
	fSeq        protowire.Number = 6
	fBucket     protowire.Number = 7
	fRingStep   protowire.Number = 8
	fChunk      protowire.Number = 9
	fOffset     protowire.Number = 10
	fLength     protowire.Number = 11
	fPayload    protowire.Number = 12

	fAckSeq      protowire.Number = 1
	fAckRingStep protowire.Number = 2
	fAckChunk    protowire.Number = 3
	fAckError    protowire.Number = 4
)

// header is a RingRequest without its payload.
type header struct {
	runID      string
	generation uint64
	sender     int32
	op         hjepav1.Op
	step       int64
	seq        int32
	bucket     int32
	ringStep   int32
	chunk      int32
	offset     int64
	length     int64
}

// outMsg is a RingRequest on its way out. Marshal writes the header with
// protowire into a pooled buffer; the bytes decode as an ordinary
// hjepav1.RingRequest. The payload (f32 little-endian, or raw) is copied
// into the same buffer, except a large float32 payload on a little-endian
// machine of a message with a released channel: the transport then gets a
// view of f32 itself (no copy at all) and releases it, through released,
// once it has written it to the socket; f32 must not change until then.
// grpcwire writes before SendMsg returns, so the ring's sends are released
// by then; the signal keeps the view safe on a transport that writes later.
type outMsg struct {
	h        header
	f32      []float32
	raw      []byte
	released chan struct{} // cap 1; nil: always copy
	view     []byte
}

// zeroCopyMinBytes is the smallest payload sent without a copy (the view
// must be above gRPC's pooling threshold for it to be released at all).
const zeroCopyMinBytes = 16 << 10

// releaseSignal is the "pool" of a zero-copy payload: gRPC puts the view back
// when it is done with it, which tells the sender.
type releaseSignal chan struct{}

func (releaseSignal) Get(int) *[]byte { panic("collective: releaseSignal.Get") }

func (c releaseSignal) Put(*[]byte) { c <- struct{}{} }

// inMsg is a RingRequest on its way in. Unmarshal refuses a payload longer
// than maxPayload before it takes anything; then, rather than copying the
// payload out of the transport's buffers, it keeps references to them
// (parts are views of them, refs the buffers; grpcwire delivers each
// message as one buffer): the collective adds or
// copies straight from them into its own buffer and release gives them
// back to the pool. What a peer can make this rank hold is bounded by
// the messages in flight, each at most one chunk.
type inMsg struct {
	h          header // h.runID stays empty: see runID
	runID      []byte // reused across messages (no allocation per chunk)
	size       int    // payload bytes
	parts      [][]byte
	refs       []mem.Buffer
	maxPayload int // bytes
}

// release drops the message's hold on the transport's buffers.
func (m *inMsg) release() {
	for i, b := range m.refs {
		b.Free()
		m.refs[i] = nil
	}
	clear(m.parts)
	m.refs, m.parts, m.size = m.refs[:0], m.parts[:0], 0
}

// payload copies the payload out (small payloads: gathers, abort notices).
func (m *inMsg) payload() []byte {
	b := make([]byte, 0, m.size)
	for _, p := range m.parts {
		b = append(b, p...)
	}
	return b
}

// ackMsg is a RingResponse.
type ackMsg struct {
	seq, ringStep, chunk int32
	err                  string
}

// ringCodec is the Ring stream's codec. Messages other than ours (none
// today) go to the proto codec.
type ringCodec struct{}

func (ringCodec) Name() string { return codecName }

func (ringCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *outMsg:
		return m.marshal(), nil
	case *ackMsg:
		return mem.BufferSlice{mem.SliceBuffer(m.appendTo(nil))}, nil
	}
	return protoCodec().Marshal(v)
}

func (ringCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *inMsg:
		return m.unmarshal(data)
	case *ackMsg:
		return m.unmarshal(data)
	}
	return protoCodec().Unmarshal(data, v)
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(protocodec.Name) }

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 { // proto3: a zero scalar is not on the wire
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendHeader appends h as RingRequest fields 1..11. int32 and int64 are
// sign-extended as protobuf does, so negative values round-trip.
func appendHeader(b []byte, h *header) []byte {
	if h.runID != "" {
		b = protowire.AppendTag(b, fRunID, protowire.BytesType)
		b = protowire.AppendString(b, h.runID)
	}
	b = appendVarintField(b, fGeneration, h.generation)
	b = appendVarintField(b, fSenderRank, uint64(int64(h.sender)))
	b = appendVarintField(b, fOp, uint64(int64(h.op)))
	b = appendVarintField(b, fStep, uint64(h.step))
	b = appendVarintField(b, fSeq, uint64(int64(h.seq)))
	b = appendVarintField(b, fBucket, uint64(int64(h.bucket)))
	b = appendVarintField(b, fRingStep, uint64(int64(h.ringStep)))
	b = appendVarintField(b, fChunk, uint64(int64(h.chunk)))
	b = appendVarintField(b, fOffset, uint64(h.offset))
	return appendVarintField(b, fLength, uint64(h.length))
}

// maxHeaderBytes bounds appendHeader's output: ten varint fields of at most
// 1+10 bytes and the run id with its tag and length.
func maxHeaderBytes(runID string) int { return 10*11 + 1 + 3 + len(runID) }

func (m *outMsg) payloadBytes() int {
	if m.f32 != nil {
		return 4 * len(m.f32)
	}
	return len(m.raw)
}

func (m *outMsg) marshal() mem.BufferSlice {
	n := m.payloadBytes()
	if m.released != nil && m.f32 != nil && littleEndian && n >= zeroCopyMinBytes {
		bp := wireBufs.Get(maxHeaderBytes(m.h.runID) + 1 + binary.MaxVarintLen64)
		b := appendHeader((*bp)[:0], &m.h)
		b = protowire.AppendTag(b, fPayload, protowire.BytesType)
		*bp = protowire.AppendVarint(b, uint64(n))
		m.view = float32Bytes(m.f32)
		view := mem.NewBuffer(&m.view, releaseSignal(m.released))
		if _, pooled := view.(mem.SliceBuffer); !pooled { // else it would never be released
			return mem.BufferSlice{mem.NewBuffer(bp, wireBufs), view}
		}
		wireBufs.Put(bp)
	}
	size := maxHeaderBytes(m.h.runID) + 1 + binary.MaxVarintLen64 + n
	bp := wireBufs.Get(size)
	b := appendHeader((*bp)[:0], &m.h)
	if n > 0 {
		b = protowire.AppendTag(b, fPayload, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		at := len(b)
		b = b[:at+n]
		if m.f32 != nil {
			putFloat32sLE(b[at:], m.f32)
		} else {
			copy(b[at:], m.raw)
		}
	}
	*bp = b
	return mem.BufferSlice{mem.NewBuffer(bp, wireBufs)}
}

func (a *ackMsg) appendTo(b []byte) []byte {
	b = appendVarintField(b, fAckSeq, uint64(int64(a.seq)))
	b = appendVarintField(b, fAckRingStep, uint64(int64(a.ringStep)))
	b = appendVarintField(b, fAckChunk, uint64(int64(a.chunk)))
	if a.err != "" {
		b = protowire.AppendTag(b, fAckError, protowire.BytesType)
		b = protowire.AppendString(b, a.err)
	}
	return b
}

// cursor reads a mem.BufferSlice (the message as gRPC received it, possibly
// split across HTTP/2 frames) without first joining it into one slice.
type cursor struct {
	bufs mem.BufferSlice
	i    int
	cur  []byte
	left int
}

func newCursor(data mem.BufferSlice) cursor {
	c := cursor{bufs: data, i: -1, left: data.Len()}
	c.advance()
	return c
}

func (c *cursor) advance() {
	for len(c.cur) == 0 && c.i+1 < len(c.bufs) {
		c.i++
		c.cur = c.bufs[c.i].ReadOnlyData()
	}
}

var errTruncated = errors.New("truncated message")

func (c *cursor) byte() (byte, error) {
	if len(c.cur) == 0 {
		return 0, errTruncated
	}
	b := c.cur[0]
	c.cur = c.cur[1:]
	c.left--
	c.advance()
	return b, nil
}

func (c *cursor) varint() (uint64, error) {
	if len(c.cur) >= binary.MaxVarintLen64 { // fast path: all in this buffer
		v, n := protowire.ConsumeVarint(c.cur)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		c.cur, c.left = c.cur[n:], c.left-n
		c.advance()
		return v, nil
	}
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := c.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

// take appends views of the next n bytes to m.parts and holds their
// buffers in m.refs.
func (c *cursor) take(n int, m *inMsg) error {
	if n > c.left {
		return errTruncated
	}
	for n > 0 {
		k := min(n, len(c.cur))
		b := c.bufs[c.i]
		b.Ref()
		m.refs = append(m.refs, b)
		m.parts = append(m.parts, c.cur[:k])
		n, c.cur, c.left = n-k, c.cur[k:], c.left-k
		c.advance()
	}
	return nil
}

// read copies exactly len(dst) bytes.
func (c *cursor) read(dst []byte) error {
	if len(dst) > c.left {
		return errTruncated
	}
	for len(dst) > 0 {
		n := copy(dst, c.cur)
		dst, c.cur, c.left = dst[n:], c.cur[n:], c.left-n
		c.advance()
	}
	return nil
}

func (c *cursor) skip(n int) error {
	if n > c.left || n < 0 {
		return errTruncated
	}
	for n > 0 {
		k := min(n, len(c.cur))
		n, c.cur, c.left = n-k, c.cur[k:], c.left-k
		c.advance()
	}
	return nil
}

// skipField skips an unknown field's value.
func (c *cursor) skipField(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := c.varint()
		return err
	case protowire.Fixed32Type:
		return c.skip(4)
	case protowire.Fixed64Type:
		return c.skip(8)
	case protowire.BytesType:
		n, err := c.varint()
		if err != nil {
			return err
		}
		if n > uint64(c.left) {
			return errTruncated
		}
		return c.skip(int(n))
	}
	return fmt.Errorf("unsupported wire type %d", typ)
}

// tag reads a field tag.
func (c *cursor) tag() (protowire.Number, protowire.Type, error) {
	v, err := c.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber {
		return 0, 0, fmt.Errorf("invalid field number %d", num)
	}
	return num, typ, nil
}

// unmarshal decodes a RingRequest; on an error it holds no buffer.
func (m *inMsg) unmarshal(data mem.BufferSlice) (err error) {
	m.release()
	m.h, m.runID = header{}, m.runID[:0]
	defer func() {
		if err != nil {
			m.release()
		}
	}()
	c := newCursor(data)
	seenPayload := false
	for c.left > 0 {
		num, typ, err := c.tag()
		if err != nil {
			return fmt.Errorf("ring chunk: %w", err)
		}
		switch {
		case num == fRunID || num == fPayload:
			if typ != protowire.BytesType {
				return fmt.Errorf("ring chunk: field %d has wire type %d, want bytes", num, typ)
			}
			n64, err := c.varint()
			if err != nil {
				return fmt.Errorf("ring chunk: %w", err)
			}
			if n64 > uint64(c.left) {
				return fmt.Errorf("ring chunk: field %d: %w", num, errTruncated)
			}
			n := int(n64)
			if num == fRunID {
				if n > maxRunIDBytes {
					return fmt.Errorf("ring chunk: run_id of %d bytes (at most %d)", n, maxRunIDBytes)
				}
				m.runID = append(m.runID[:0], make([]byte, n)...)
				if err := c.read(m.runID); err != nil {
					return fmt.Errorf("ring chunk: run_id: %w", err)
				}
				continue
			}
			if seenPayload {
				return errors.New("ring chunk: payload field twice")
			}
			seenPayload = true
			// The size check comes before anything is taken from the pool.
			if n > m.maxPayload {
				return fmt.Errorf("ring chunk: payload of %d bytes exceeds the limit of %d bytes (one chunk)", n, m.maxPayload)
			}
			m.size = n
			if err := c.take(n, m); err != nil {
				return fmt.Errorf("ring chunk: payload: %w", err)
			}
		case num >= fGeneration && num <= fLength:
			if typ != protowire.VarintType {
				return fmt.Errorf("ring chunk: field %d has wire type %d, want varint", num, typ)
			}
			v, err := c.varint()
			if err != nil {
				return fmt.Errorf("ring chunk: %w", err)
			}
			m.h.set(num, v)
		default:
			if err := c.skipField(typ); err != nil {
				return fmt.Errorf("ring chunk: field %d: %w", num, err)
			}
		}
	}
	return nil
}

func (h *header) set(num protowire.Number, v uint64) {
	switch num {
	case fGeneration:
		h.generation = v
	case fSenderRank:
		h.sender = int32(v)
	case fOp:
		h.op = hjepav1.Op(int32(v))
	case fStep:
		h.step = int64(v)
	case fSeq:
		h.seq = int32(v)
	case fBucket:
		h.bucket = int32(v)
	case fRingStep:
		h.ringStep = int32(v)
	case fChunk:
		h.chunk = int32(v)
	case fOffset:
		h.offset = int64(v)
	case fLength:
		h.length = int64(v)
	}
}

func (a *ackMsg) unmarshal(data mem.BufferSlice) error {
	*a = ackMsg{}
	c := newCursor(data)
	for c.left > 0 {
		num, typ, err := c.tag()
		if err != nil {
			return fmt.Errorf("ring ack: %w", err)
		}
		switch {
		case num >= fAckSeq && num <= fAckChunk && typ == protowire.VarintType:
			v, err := c.varint()
			if err != nil {
				return fmt.Errorf("ring ack: %w", err)
			}
			switch num {
			case fAckSeq:
				a.seq = int32(v)
			case fAckRingStep:
				a.ringStep = int32(v)
			case fAckChunk:
				a.chunk = int32(v)
			}
		case num == fAckError && typ == protowire.BytesType:
			n, err := c.varint()
			if err != nil || n > maxAckErrorBytes || n > uint64(c.left) {
				return errors.New("ring ack: bad error field")
			}
			b := make([]byte, n)
			if err := c.read(b); err != nil {
				return fmt.Errorf("ring ack: %w", err)
			}
			a.err = string(b)
		default:
			if err := c.skipField(typ); err != nil {
				return fmt.Errorf("ring ack: field %d: %w", num, err)
			}
		}
	}
	return nil
}

// wireBufs recycles the buffers chunks are encoded into, and is the
// transport's pool for the messages it reads.
// Classes are powers of two from 4 KiB. The buffers are not zeroed (gRPC's
// default pool zeroes every frame buffer it hands out): every byte is
// written before it is read.
var wireBufs = &classPool{}

const (
	minClassShift = 12 // 4 KiB
	numClasses    = 16 // up to 128 MiB
)

type classPool struct{ classes [numClasses]sync.Pool }

func classOf(n int) int { // smallest class holding n bytes
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

func (p *classPool) Get(length int) *[]byte {
	c := classOf(length)
	if c >= numClasses {
		b := make([]byte, length)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:length]
		return v
	}
	b := make([]byte, length, 1<<(c+minClassShift))
	return &b
}

func (p *classPool) Put(b *[]byte) {
	n := cap(*b)
	if n < 1<<minClassShift {
		return
	}
	c := bits.Len(uint(n)) - 1 - minClassShift // largest class it can serve
	if c >= numClasses {
		return
	}
	p.classes[c].Put(b)
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// float32Bytes views f's storage as bytes.
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// putFloat32sLE writes src little-endian into dst (len 4*len(src)).
func putFloat32sLE(dst []byte, src []float32) {
	if littleEndian {
		copy(dst, float32Bytes(src))
		return
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], *(*uint32)(unsafe.Pointer(&v)))
	}
}

// unalignedFloatsOK says float32 loads from any address are fine (and
// fast) on this machine: the payload's floats sit at whatever offset the
// HTTP/2 frames put them.
var unalignedFloatsOK = littleEndian && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" || runtime.GOARCH == "386")

// floatView views b (len a multiple of 4, any alignment) as float32.
func floatView(b []byte) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

// addLE adds the little-endian float32s in parts (len(dst)*4 bytes in all,
// split anywhere, even inside a float) into dst.
func addLE(dst []float32, parts [][]byte) {
	var carry [4]byte
	nc, i := 0, 0
	for _, p := range parts {
		if nc > 0 { // a float split across two parts
			k := copy(carry[nc:], p)
			nc, p = nc+k, p[k:]
			if nc < 4 {
				continue
			}
			dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(carry[:]))
			i, nc = i+1, 0
		}
		n := len(p) / 4
		if unalignedFloatsOK {
			tensor.AddInto(dst[i:i+n], floatView(p[:4*n]))
		} else {
			for j := range n {
				dst[i+j] += math.Float32frombits(binary.LittleEndian.Uint32(p[4*j:]))
			}
		}
		i += n
		nc = copy(carry[:], p[4*n:])
	}
}

// copyLE copies the little-endian float32s in parts into dst.
func copyLE(dst []float32, parts [][]byte) {
	if littleEndian {
		b := float32Bytes(dst)
		for _, p := range parts {
			b = b[copy(b, p):]
		}
		return
	}
	var buf []byte
	for _, p := range parts {
		buf = append(buf, p...)
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
}
