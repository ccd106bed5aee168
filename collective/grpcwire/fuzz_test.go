package grpcwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// Fuzz targets for every parser of a peer's bytes: frames as the reader
// takes them (FuzzFrames), SETTINGS payloads (FuzzSettings), header blocks
// and what the server and client read in them (FuzzHeaderBlock), and the
// gRPC messages cut out of DATA frames by their 5-byte prefixes, on both
// ends (FuzzMessageFraming, FuzzMessageRoundTrip). Each drives the real
// reader over a fake socket; the properties are no panic, limits checked
// before anything is allocated, and decode(encode(x)) == x where this
// package encodes.

// fuzzMaxRecv is the message size limit in these targets: small, so that
// inputs declare larger messages often.
const fuzzMaxRecv = 64

// fuzzConn is a socket that reads r and keeps what is written.
type fuzzConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (f *fuzzConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fuzzConn) Write(p []byte) (int, error)      { return f.w.Write(p) }
func (f *fuzzConn) Close() error                     { return nil }
func (f *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (f *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// limitPool hands out buffers and notes the largest asked for.
type limitPool struct{ largest int }

func (p *limitPool) Get(n int) *[]byte {
	p.largest = max(p.largest, n)
	b := make([]byte, n)
	return &b
}

func (p *limitPool) Put(*[]byte) {}

// recordHandler is a frameHandler that checks and records what the reader
// hands it. Its abort ends the stream as both real ends do.
type recordHandler struct {
	t       *testing.T
	c       *conn
	blocks  int
	aborted error
}

func (h *recordHandler) headers(fields []hpack.HeaderField, endStream bool) error {
	size := 0
	for _, f := range fields {
		size += int(f.Size())
	}
	if size > maxHeaderBytes {
		h.t.Fatalf("a header list of %d bytes reached the handler (at most %d)", size, maxHeaderBytes)
	}
	h.blocks++
	checkHeaderFields(h.t, fields)
	return nil
}

func (h *recordHandler) reset(http2.ErrCode) {}

func (h *recordHandler) broken(error) {}

func (h *recordHandler) abort(err error) {
	if h.aborted == nil {
		h.aborted = err
	}
	h.c.finish(err)
}

// fuzzReader is one end's connection reading in (which starts after the
// preface); stream 1 is open on it when open is set.
func fuzzReader(t *testing.T, isServer, open bool, in []byte) (*conn, *recordHandler, *limitPool) {
	pool := &limitPool{}
	c := newConn(&fuzzConn{r: bytes.NewReader(in)}, isServer, testCodec{}, pool, fuzzMaxRecv)
	if open || !isServer {
		c.streamID = 1
	}
	return c, &recordHandler{t: t, c: c}, pool
}

// drain receives every queued message, then the stream's end (nil if it
// has not ended).
func drain(t *testing.T, c *conn) (msgs [][]byte, end error) {
	for {
		var b []byte
		ok, err := c.tryRecvMsg(&b)
		if !ok {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, b)
		if len(msgs) > 1<<20 {
			t.Fatal("more messages than the input could hold")
		}
	}
}

// frameBytes is one frame as a peer would write it.
func frameBytes(typ http2.FrameType, flags http2.Flags, sid uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	putFrameHeader(b, len(payload), typ, flags, sid)
	return append(b, payload...)
}

// grpcMsg is a message with its 5-byte prefix.
func grpcMsg(p []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(p))), p...)
}

func requestBlock(extra ...hpack.HeaderField) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: testPath},
		{Name: ":authority", Value: "x"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...) {
		_ = enc.WriteField(f)
	}
	return b.Bytes()
}

// amplifiedBlock adds a 3 KiB field to the dynamic table and names it n
// times more: a small block, a large header list.
func amplifiedBlock(n int) []byte {
	var b bytes.Buffer
	_ = hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 3<<10)})
	// Literal with incremental indexing went to index 62; 0x80|62 names it.
	return append(b.Bytes(), bytes.Repeat([]byte{0x80 | 62}, n)...)
}

func FuzzFrames(f *testing.F) {
	settings := frameBytes(http2.FrameSettings, 0, 0, appendSettings(nil, []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 1 << 20}}))
	req := requestBlock(hpack.HeaderField{Name: "k-bin", Value: encodeBinHeader("\x00\xff")})
	seqs := [][]byte{
		settings,
		bytes.Join([][]byte{settings, frameBytes(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, req),
			frameBytes(http2.FrameData, 0, 1, grpcMsg([]byte("hello"))), frameBytes(http2.FrameData, http2.FlagDataEndStream, 1, grpcMsg(nil))}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameHeaders, 0, 1, req[:3]), frameBytes(http2.FrameContinuation, http2.FlagHeadersEndHeaders, 1, req[3:])}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded|http2.FlagHeadersPriority, 1,
			append(append([]byte{2, 0, 0, 0, 0, 16}, req...), 0, 0))}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameData, http2.FlagDataPadded, 1, append([]byte{3}, append(grpcMsg([]byte("ab")), 0, 0, 0)...))}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameData, 0, 1, grpcMsg(make([]byte, fuzzMaxRecv+1)))}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameData, 0, 1, []byte{1, 0, 0, 0, 1, 'z'})}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FramePing, 0, 0, make([]byte, 8)), frameBytes(http2.FramePing, http2.FlagPingAck, 0, make([]byte, 8)),
			frameBytes(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 1, 0}), frameBytes(http2.FrameWindowUpdate, 0, 1, []byte{0, 0, 1, 0}),
			frameBytes(http2.FrameSettings, http2.FlagSettingsAck, 0, nil), frameBytes(http2.FramePriority, 0, 1, make([]byte, 5)),
			frameBytes(0xfa, 0, 0, []byte("unknown")), frameBytes(http2.FrameRSTStream, 0, 1, []byte{0, 0, 0, 8}),
			frameBytes(http2.FrameGoAway, 0, 0, []byte{0, 0, 0, 1, 0, 0, 0, 0, 'b', 'y', 'e'})}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, req), frameBytes(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 3, req)}, nil),
		bytes.Join([][]byte{settings, frameBytes(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, amplifiedBlock(4000))}, nil),
	}
	for _, s := range seqs {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, isServer bool) {
		c, h, pool := fuzzReader(t, isServer, false, in)
		err := c.readFrames(h)
		if err == nil {
			t.Fatal("readFrames returned nil")
		}
		if pool.largest > fuzzMaxRecv {
			t.Fatalf("a %d-byte buffer was taken for a message (at most %d)", pool.largest, fuzzMaxRecv)
		}
		msgs, _ := drain(t, c)
		n := 0
		for _, m := range msgs {
			n += len(m)
		}
		if n > len(in) {
			t.Fatalf("%d message bytes from %d input bytes", n, len(in))
		}
	})
}

// checkHeaderFields reads fields as the server and the client do and
// checks the round trips of the encodings in them.
func checkHeaderFields(t *testing.T, fields []hpack.HeaderField) {
	req := parseRequest(fields)
	if req.badBin == nil {
		for _, f := range fields {
			if strings.HasSuffix(f.Name, "-bin") && !strings.HasPrefix(f.Name, ":") {
				if _, err := decodeBinHeader(f.Value); err != nil {
					t.Fatalf("%s: %q is not base64, yet accepted", f.Name, f.Value)
				}
			}
		}
	}
	resp := parseResponse(fields)
	_ = grpcErr(resp.grpcStatus, resp.grpcMessage)
	_ = httpCode(resp.httpStatus)
	for _, f := range fields {
		v := f.Value
		want := v[:min(len(v), maxStatusMessage)]
		if got := decodeGrpcMessage(encodeGrpcMessage(v)); got != want {
			t.Fatalf("grpc-message round trip of %q: %q", want, got)
		}
		if got, err := decodeBinHeader(encodeBinHeader(v)); err != nil || string(got) != v {
			t.Fatalf("binary metadata round trip of %q: %q, %v", v, got, err)
		}
	}
}

func FuzzHeaderBlock(f *testing.F) {
	f.Add(requestBlock(), uint16(0))
	f.Add(requestBlock(hpack.HeaderField{Name: "authorization", Value: "Bearer t"}, hpack.HeaderField{Name: "x-bin", Value: "AAE"}), uint16(7))
	var trailers bytes.Buffer
	enc := hpack.NewEncoder(&trailers)
	for _, hf := range []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "grpc-status", Value: "13"}, {Name: "grpc-message", Value: encodeGrpcMessage(statusMsg)}} {
		_ = enc.WriteField(hf)
	}
	f.Add(trailers.Bytes(), uint16(5))
	f.Add(amplifiedBlock(4000), uint16(0))
	f.Add(amplifiedBlock(4000), uint16(3000))
	f.Add([]byte{0x3f, 0xe1, 0x1f}, uint16(0)) // dynamic table size update
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		if len(in) > maxHeaderBytes {
			return // the reader refuses larger blocks before decoding
		}
		// Two blocks on one decoder: the second may name the first's
		// dynamic table entries.
		k := 0
		if len(in) > 0 {
			k = int(cut) % (len(in) + 1)
		}
		d := newHeaderDecoder()
		for _, block := range [][]byte{in[:k], in[k:]} {
			fields, err := decodeHeaderBlock(d, block)
			if err != nil {
				var ce connError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v is not a connection error", err)
				}
				return // the connection ends
			}
			size := 0
			for _, hf := range fields {
				size += int(hf.Size())
			}
			if size > maxHeaderBytes {
				t.Fatalf("a header list of %d bytes decoded (at most %d)", size, maxHeaderBytes)
			}
			checkHeaderFields(t, fields)
			// Round trip through an encoder and a fresh decoder.
			var b bytes.Buffer
			enc := hpack.NewEncoder(&b)
			for _, hf := range fields {
				if err := enc.WriteField(hf); err != nil {
					t.Fatal(err)
				}
			}
			again, err := decodeHeaderBlock(newHeaderDecoder(), b.Bytes())
			if err != nil {
				t.Fatalf("re-encoded block: %v", err)
			}
			if len(again) != len(fields) {
				t.Fatalf("re-encoded block: %d fields, want %d", len(again), len(fields))
			}
			for i := range fields {
				if again[i] != fields[i] {
					t.Fatalf("re-encoded field %d: %+v, want %+v", i, again[i], fields[i])
				}
			}
		}
	})
}

func FuzzSettings(f *testing.F) {
	f.Add(appendSettings(nil, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 30}, {ID: http2.SettingMaxFrameSize, Val: maxFrameSize}}), false)
	f.Add(appendSettings(nil, []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 100}}), false)
	f.Add(appendSettings(nil, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 31}}), false)
	f.Add(appendSettings(nil, []http2.Setting{{ID: http2.SettingEnablePush, Val: 0}, {ID: 0xff, Val: 7}}), false)
	f.Add([]byte{0, 4, 0, 0}, false)
	f.Add([]byte{}, true)
	f.Add([]byte{0, 0, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, p []byte, ack bool) {
		// Reference: what the payload should do.
		wantErr := false
		wantFrame, wantWin := defaultFrameSize, int64(defaultWindow)
		switch {
		case ack:
			wantErr = len(p) != 0
		case len(p)%6 != 0 || len(p) > maxHeaderBytes+64:
			wantErr = true
		default:
			for q := p; len(q) > 0 && !wantErr; q = q[6:] {
				id, v := http2.SettingID(binary.BigEndian.Uint16(q)), binary.BigEndian.Uint32(q[2:])
				switch {
				case id == http2.SettingInitialWindowSize && v > 1<<31-1:
					wantErr = true
				case id == http2.SettingInitialWindowSize:
					wantWin = int64(v)
				case id == http2.SettingMaxFrameSize && (v < defaultFrameSize || v > maxFrameSize):
					wantErr = true
				case id == http2.SettingMaxFrameSize:
					wantFrame = int(v)
				}
			}
		}
		var flags http2.Flags
		if ack {
			flags = http2.FlagSettingsAck
		}
		c, _, _ := fuzzReader(t, true, true, p)
		err := c.readSettings(len(p), flags)
		if (err != nil) != wantErr {
			t.Fatalf("readSettings: %v, want an error: %v", err, wantErr)
		}
		if err == nil && (c.peerFrame != wantFrame || c.peerInitWin != wantWin || c.sendStrWin != wantWin) {
			t.Fatalf("frame size %d, initial window %d, stream window %d; want %d, %d, %d", c.peerFrame, c.peerInitWin, c.sendStrWin, wantFrame, wantWin, wantWin)
		}
		// x/net's parser agrees: what it accepts, this side applies alike.
		fr := http2.NewFramer(nil, bytes.NewReader(frameBytes(http2.FrameSettings, flags, 0, p)))
		if xf, xerr := fr.ReadFrame(); xerr == nil && err != nil {
			if xerr = xf.(*http2.SettingsFrame).ForeachSetting(func(s http2.Setting) error { return s.Valid() }); xerr == nil {
				t.Fatalf("x/net accepts %v, readSettings: %v", xf, err)
			}
		}
		if ack {
			return
		}
		// Round trip: these settings, made valid, encoded and read back.
		var settings []http2.Setting
		wantFrame, wantWin = defaultFrameSize, defaultWindow
		for q := p; len(q) >= 6; q = q[6:] {
			s := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(q)), Val: binary.BigEndian.Uint32(q[2:])}
			switch s.ID {
			case http2.SettingInitialWindowSize:
				s.Val &= 1<<31 - 1
				wantWin = int64(s.Val)
			case http2.SettingMaxFrameSize:
				s.Val = min(max(s.Val, defaultFrameSize), maxFrameSize)
				wantFrame = int(s.Val)
			}
			settings = append(settings, s)
		}
		enc := appendSettings(nil, settings)
		if len(enc) > maxHeaderBytes {
			return
		}
		c, _, _ = fuzzReader(t, false, true, enc)
		if err := c.readSettings(len(enc), 0); err != nil {
			t.Fatalf("valid settings %v: %v", settings, err)
		}
		if c.peerFrame != wantFrame || c.peerInitWin != wantWin {
			t.Fatalf("settings %v: frame size %d, initial window %d", settings, c.peerFrame, c.peerInitWin)
		}
	})
}

// dataFrames cuts stream into DATA frames on stream 1: each byte of cuts
// is a frame's size (its low 7 bits) and whether it is padded (its high
// bit, 0-7 bytes of padding); the rest goes in one last frame, which ends
// the stream when end is set.
func dataFrames(stream, cuts []byte, end bool) []byte {
	out := frameBytes(http2.FrameSettings, 0, 0, nil)
	ended := false
	for i := 0; len(stream) > 0; i++ {
		n, pad := len(stream), -1
		if i < len(cuts) {
			n = min(int(cuts[i]&0x7f), len(stream))
			if cuts[i]&0x80 != 0 {
				pad = int(cuts[i] & 7)
			}
		}
		var flags http2.Flags
		if n == len(stream) && end {
			flags, ended = http2.FlagDataEndStream, true
		}
		payload := stream[:n]
		if pad >= 0 {
			flags |= http2.FlagDataPadded
			payload = append(append([]byte{byte(pad)}, payload...), make([]byte, pad)...)
		}
		out = append(out, frameBytes(http2.FrameData, flags, 1, payload)...)
		stream = stream[n:]
	}
	if end && !ended {
		out = append(out, frameBytes(http2.FrameData, http2.FlagDataEndStream, 1, nil)...)
	}
	return out
}

func FuzzMessageFraming(f *testing.F) {
	two := append(grpcMsg([]byte("first")), grpcMsg(nil)...)
	for _, tc := range []struct {
		stream, cuts []byte
	}{
		{two, nil},
		{two, []byte{1, 2, 3, 0, 0x85, 4}},
		{append(two, grpcMsg(make([]byte, fuzzMaxRecv))...), []byte{0x83, 7}},
		{append(two, grpcMsg(make([]byte, fuzzMaxRecv+1))...), []byte{9}},
		{append(two, 1, 0, 0, 0, 0), nil},
		{append(two, 0, 0, 0), nil},
		{append(two, 0, 0, 0, 0, 9, 1, 2), []byte{2}},
		{[]byte{0, 0xff, 0xff, 0xff, 0xff}, nil},
	} {
		for _, isServer := range []bool{true, false} {
			f.Add(tc.stream, tc.cuts, isServer, true)
			f.Add(tc.stream, tc.cuts, isServer, false)
		}
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte, isServer, end bool) {
		if len(stream) > 32<<10 {
			return // within the flow-control window
		}
		// Reference: the messages, and why the stream ends.
		var want [][]byte
		var refused codes.Code // OK: not refused
		rest := stream
		for len(rest) >= 5 {
			n := int(binary.BigEndian.Uint32(rest[1:5]))
			if rest[0] != 0 {
				refused = codes.Internal
				break
			}
			if n > fuzzMaxRecv {
				refused = codes.ResourceExhausted
				break
			}
			if len(rest)-5 < n {
				break
			}
			want = append(want, rest[5:5+n])
			rest = rest[5+n:]
		}
		partial := refused == codes.OK && len(rest) > 0

		c, h, pool := fuzzReader(t, isServer, true, dataFrames(stream, cuts, end))
		if err := c.readFrames(h); err != io.EOF {
			t.Fatalf("readFrames: %v, want EOF", err)
		}
		if pool.largest > fuzzMaxRecv {
			t.Fatalf("a %d-byte buffer was taken for a message (at most %d)", pool.largest, fuzzMaxRecv)
		}
		got, final := drain(t, c)
		if len(got) != len(want) {
			t.Fatalf("%d messages, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("message %d: %q, want %q", i, got[i], want[i])
			}
		}
		switch {
		case refused != codes.OK:
			if status.Code(h.aborted) != refused || status.Code(final) != refused {
				t.Fatalf("refused with %v (stream end %v), want %v", h.aborted, final, refused)
			}
		case h.aborted != nil:
			t.Fatalf("refused with %v", h.aborted)
		case !end:
			if final != nil {
				t.Fatalf("the stream ended (%v) without END_STREAM", final)
			}
		case partial:
			if status.Code(final) != codes.Internal {
				t.Fatalf("END_STREAM in a message: %v, want Internal", final)
			}
		case isServer:
			if final != io.EOF {
				t.Fatalf("END_STREAM: %v, want EOF", final)
			}
		default: // a client wants trailers
			if status.Code(final) != codes.Internal {
				t.Fatalf("END_STREAM without trailers: %v, want Internal", final)
			}
		}
	})
}

func FuzzMessageRoundTrip(f *testing.F) {
	f.Add([]byte("hello, world"), []byte{5, 0, 3}, uint8(0), true)
	f.Add([]byte("hello, world"), []byte{12}, uint8(4), false)
	f.Add(bytes.Repeat([]byte{7}, 200), []byte{64, 64, 0, 64}, uint8(2), true)
	f.Fuzz(func(t *testing.T, data, sizes []byte, frame uint8, isServer bool) {
		// The messages: data cut at sizes (each at most fuzzMaxRecv).
		var msgs [][]byte
		for i := 0; len(data) > 0 || i < len(sizes); i++ {
			n := min(len(data), fuzzMaxRecv)
			if i < len(sizes) {
				n = min(len(data), int(sizes[i])%(fuzzMaxRecv+1))
			}
			msgs = append(msgs, data[:n])
			data = data[n:]
			if i > 4096 {
				return
			}
		}
		// The writer is the other end, with tiny frames and open windows.
		wc := &fuzzConn{r: bytes.NewReader(nil)}
		w := newConn(wc, !isServer, testCodec{}, nil, fuzzMaxRecv)
		w.streamID, w.peerFrame = 1, 1+int(frame)
		w.sendConnWin, w.sendStrWin = 1<<40, 1<<40
		for _, m := range msgs {
			// In two buffers, as a codec may marshal it.
			k := len(m) / 2
			if err := w.writeMsg(mem.BufferSlice{mem.SliceBuffer(m[:k]), mem.SliceBuffer(m[k:])}); err != nil {
				t.Fatal(err)
			}
		}
		in := append(frameBytes(http2.FrameSettings, 0, 0, nil), wc.w.Bytes()...)
		c, h, _ := fuzzReader(t, isServer, true, in)
		if err := c.readFrames(h); err != io.EOF {
			t.Fatalf("readFrames: %v", err)
		}
		got, final := drain(t, c)
		if final != nil || h.aborted != nil {
			t.Fatalf("the stream ended: %v (refused: %v)", final, h.aborted)
		}
		if len(got) != len(msgs) {
			t.Fatalf("%d messages, want %d", len(got), len(msgs))
		}
		for i := range got {
			if !bytes.Equal(got[i], msgs[i]) {
				t.Fatalf("message %d: %q, want %q", i, got[i], msgs[i])
			}
		}
	})
}

// The header list a block decodes to is bounded, not only the block: a
// block naming a 3 KiB dynamic table entry 4000 times (12 MiB of fields)
// is refused with ENHANCE_YOUR_CALM, and the decoder still reads the next
// block.
func TestHeaderListBounded(t *testing.T) {
	d := newHeaderDecoder()
	_, err := decodeHeaderBlock(d, amplifiedBlock(4000))
	var ce connError
	if !errors.As(err, &ce) || ce.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("decoding an amplified block: %v, want ENHANCE_YOUR_CALM", err)
	}
	fields, err := decodeHeaderBlock(d, requestBlock())
	if err != nil || len(fields) != 6 {
		t.Fatalf("the next block: %d fields, %v", len(fields), err)
	}
}
