// Package grpcwire is a lean gRPC transport for one bidirectional-streaming
// RPC per HTTP/2 connection: the collective's Ring stream (DESIGN.md
// section 6). It speaks standard gRPC over HTTP/2 (connection preface,
// SETTINGS, HPACK headers, length-prefixed messages in DATA frames, flow
// control, grpc-status trailers, TLS with ALPN "h2"), so grpc-go clients and
// servers talk to it, but its data path is built for bulk tensors:
//
//   - it advertises SETTINGS_MAX_FRAME_SIZE = 16 MiB - 1 and 1 GiB flow
//     windows, so a peer of its own sends a 1 MiB chunk as one DATA frame,
//     where grpc-go cuts every message into 16 KiB frames;
//   - a message goes out with one writev of the frame header, the message's
//     header bytes and the caller's payload: no copy in user space (grpc-go
//     copies every byte into its write buffer);
//   - a message comes in straight from the socket into one pooled buffer
//     (grpc-go reads through a buffered reader and copies into 16 KiB frame
//     buffers), or, when a Placer claims it, into its final place.
//
// On the 2-core bench machine that cut an all-reduce's CPU by 40-50% (the
// allreduce_busbw benchmarks). Each connection carries exactly one stream;
// the server advertises SETTINGS_MAX_CONCURRENT_STREAMS = 1, refuses a
// second stream, and ends the connection when its stream ends.
//
// A connection whose request is not yet authenticated
// (ServerOptions.Authorize) holds the server for at most 10 s
// (handshakeTimeout), whether or not the peer reads; every write has a deadline; and floods of frames that
// want an answer (PING, SETTINGS, streams to refuse) get GOAWAY
// ENHANCE_YOUR_CALM and a close, as from grpc-go (see floodLimits).
//
// Messages are encoded by an encoding.CodecV2, as in grpc-go: Marshal's
// buffers are written as they are and freed once written (a zero-copy
// payload learns through its pool's Put that the transport is done with
// it); Unmarshal gets the message as one buffer and Refs what it keeps.
package grpcwire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

const (
	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// maxFrameSize is the largest frame this side accepts (the HTTP/2
	// maximum).
	maxFrameSize = 1<<24 - 1
	// windowMessages is how many messages of the largest size this side
	// accepts the flow-control window holds (stream and connection alike):
	// what a peer can make it hold unread. The window is given back as
	// RecvMsg consumes messages, so the reader never stops reading (it sees
	// a reset or a closed connection at once).
	windowMessages = 8
	// PlaceHeadBytes is how much of a large message a Placer sees before it
	// decides where the rest goes.
	PlaceHeadBytes = 512
	// placeMinBytes is the smallest message offered to a Placer.
	placeMinBytes = 64 << 10
	// minWindow is the smallest window this side advertises.
	minWindow = 64 << 10
	// defaultWindow and defaultFrameSize are HTTP/2's until the peer's
	// SETTINGS say otherwise.
	defaultWindow    = 65535
	defaultFrameSize = 16384
	// maxHeaderBytes bounds a header block (all HEADERS and CONTINUATION
	// fragments) and the decoded header list.
	maxHeaderBytes = 16 << 10
	// maxStatusMessage bounds grpc-message in trailers this side writes.
	maxStatusMessage = 4 << 10
	// readBufferBytes is the socket reader's buffer: frame headers and small
	// frames go through it, large payloads are read past it.
	readBufferBytes = 64 << 10
	// handshakeTimeout bounds a new connection's life until its stream's
	// request is authenticated (ServerOptions.Authorize): the TLS
	// handshake, the preface, and every read and write until then; when
	// it passes the socket is closed, whatever this side is blocked in.
	handshakeTimeout = 10 * time.Second
	// maxPreAuthConns caps a server's connections that have not yet been
	// authenticated: a ring port has one legitimate caller per generation
	// (its predecessor), so 64 leaves ample room for reconnects while an
	// unauthenticated flood holds at most 64 sockets and goroutines (each
	// for at most handshakeTimeout). A connection beyond the cap closes the
	// oldest unauthenticated one: a real peer, which authenticates within
	// a round trip, is never the oldest for long.
	maxPreAuthConns = 64
	// writeTimeout bounds each write once the stream is authenticated (and
	// every write of a client). A peer's reader never stops reading for
	// long (grpcwire's and grpc-go's read whatever the application does,
	// flow control bounds what they hold), so a write blocked this long is
	// to a dead or hostile peer; the ring's own send watchdog (its
	// Timeout, 60 s by default) normally fails such a stream first.
	writeTimeout = 2 * time.Minute
	// lingerTimeout bounds how long a connection whose stream has ended
	// waits for the peer to close, so that the last frames are read
	// rather than reset.
	lingerTimeout = 2 * time.Second
)

// Flood limits. A PING or SETTINGS frame makes this side write an ack, a
// stream it refuses a RST_STREAM: they cost the peer nothing, and one that
// never reads the answers would have this side queue them or block writing
// them. As grpc-go's server does, the reader counts such frames since this
// side last sent DATA or HEADERS (a peer with a reason to ping, such as
// grpc-go's BDP estimator, pings after receiving data) and answers a flood
// with GOAWAY ENHANCE_YOUR_CALM and closes the connection.
const (
	// pingMinInterval and maxPingStrikes are grpc-go's keepalive
	// enforcement defaults (keepalive.EnforcementPolicy.MinTime, and its
	// server's maxPingStrikes): a PING sooner than pingMinInterval after
	// the previous one, with no DATA or HEADERS sent in between, is a
	// strike; more than maxPingStrikes end the connection. grpc-go's own
	// pings (keepalive at most every 5 minutes unless configured against
	// grpc-go servers' defaults, BDP pings after data) stay within it.
	pingMinInterval = 5 * time.Minute
	maxPingStrikes  = 2
	// maxSettingsWithoutData bounds SETTINGS frames (not acks) between two
	// of this side's DATA or HEADERS frames: a peer sends one at the
	// start and one when a setting changes (grpc-go: its window, which
	// grows only as it receives data).
	maxSettingsWithoutData = 10
	// maxRefusedStreams bounds the streams refused on a connection that
	// serves one: a grpc-go client respects MAX_CONCURRENT_STREAMS = 1 and
	// opens another only before it has read the server's SETTINGS.
	maxRefusedStreams = 16
	// maxQueuedControlBytes bounds the control frames (acks, window
	// updates, resets) queued for a peer while another write holds the
	// socket, ~3600 PING acks (x/net/http2's server allows 10000 frames):
	// beyond it the peer is not reading what it asks for, and the
	// connection is closed.
	maxQueuedControlBytes = 64 << 10
)

// floodLimits are the limits above (tests turn them off to reach the
// deadlines behind them).
type floodLimits struct {
	pingMinInterval    time.Duration
	pingStrikes        int
	settings           int
	refusedStreams     int
	queuedControlBytes int
}

var defaultFloodLimits = floodLimits{
	pingMinInterval:    pingMinInterval,
	pingStrikes:        maxPingStrikes,
	settings:           maxSettingsWithoutData,
	refusedStreams:     maxRefusedStreams,
	queuedControlBytes: maxQueuedControlBytes,
}

// conn is one HTTP/2 connection and its only stream.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	isServer bool
	codec    codecV2
	pool     mem.BufferPool
	maxRecv  int

	// Deadlines (see handshakeTimeout and writeTimeout). Until authed, every
	// write's deadline is handshakeDeadline (the server's read deadline is
	// too) and expire will close the socket then; after, each write's is
	// writeTimeout from its start. ending: the connection is going, its
	// last writes get lingerTimeout.
	authed            atomic.Bool
	ending            atomic.Bool
	handshakeDeadline time.Time
	expire            *time.Timer
	onAuth            func() bool // the server's: false when this socket was evicted before it authenticated
	writeTimeout      time.Duration
	limits            floodLimits
	// sentData is set when this side writes DATA or HEADERS; the reader
	// clears it and its flood counts.
	sentData atomic.Bool

	wmu  sync.Mutex // one frame (or header block) at a time on the wire
	werr error
	// ctl holds control frames (acks, window updates, resets) owed to the
	// peer; whoever holds wmu writes them, so the reader never waits behind
	// a data write that waits for the peer's reader (which could be
	// waiting the same way).
	ctlMu sync.Mutex
	ctl   []byte
	whdr  [9 + 5]byte
	wbufs net.Buffers
	henc  *hpack.Encoder
	hbuf  headerBuffer
	hdec  *hpack.Decoder

	fmu         sync.Mutex
	fcond       *sync.Cond
	sendConnWin int64
	sendStrWin  int64
	peerFrame   int // the peer's SETTINGS_MAX_FRAME_SIZE
	peerInitWin int64
	closed      bool  // no more frames will be written or read
	closeErr    error // why
	sendEnded   error // the stream can send no more (reset, status sent, cancelled)
	recvWin     int64 // this side's window
	recvUnacked int64 // DATA bytes read and not yet given back (connection = stream)
	recvCredit  int64 // bytes consumed since the last WINDOW_UPDATE

	streamID uint32
	active   atomic.Bool // server: a request arrived (GracefulStop waits for it)
	placer   atomic.Pointer[Placer]
	asm      assembler
	raw      syscall.RawConn // the TCP socket, for SO_RCVLOWAT (nil: not TCP)
	lowat    int
	// queue holds whole messages in order (guarded by fmu); final is the
	// stream's end once known (io.EOF: the peer half-closed or, client
	// side, ended with status OK), returned after the queued messages.
	queue    []recvItem
	queued   chan struct{} // cap 1: a message or the end was queued
	ended    chan struct{} // closed when final is set
	final    error
	halfIn   bool          // the peer has ended its side (guarded by fmu)
	halfOut  bool          // this side has ended its side (guarded by wmu)
	stop     chan struct{} // closed by shutdown: the reader stops blocking
	stopOnce sync.Once
}

// codecV2 is the part of encoding.CodecV2 this package uses.
type codecV2 interface {
	Marshal(v any) (mem.BufferSlice, error)
	Unmarshal(data mem.BufferSlice, v any) error
}

type recvItem struct {
	msg    mem.Buffer // nil: empties empty messages in a row
	placed mem.Buffer // the rest of the message, where a Placer put it
	credit int64      // window bytes it took (each empty one: 5)
	empty  int
}

type headerBuffer struct{ b []byte }

func (h *headerBuffer) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

func newConn(nc net.Conn, isServer bool, codec codecV2, pool mem.BufferPool, maxRecv int) *conn {
	if pool == nil {
		pool = mem.DefaultBufferPool()
	}
	c := &conn{
		nc:          nc,
		br:          bufio.NewReaderSize(nc, readBufferBytes),
		isServer:    isServer,
		codec:       codec,
		pool:        pool,
		maxRecv:     maxRecv,
		sendConnWin: defaultWindow,
		sendStrWin:  defaultWindow,
		peerFrame:   defaultFrameSize,
		peerInitWin: defaultWindow,
		recvWin:     min(max(minWindow, windowMessages*(int64(maxRecv)+5)), 1<<31-1),
		queued:      make(chan struct{}, 1),
		ended:       make(chan struct{}),
		stop:        make(chan struct{}),
		// A client's stream is its own: no handshake deadline.
		writeTimeout: writeTimeout,
		limits:       defaultFloodLimits,
	}
	c.authed.Store(!isServer)
	c.fcond = sync.NewCond(&c.fmu)
	if tc, ok := nc.(*net.TCPConn); ok {
		c.raw, _ = tc.SyscallConn()
	}
	c.lowat = 1
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = newHeaderDecoder()
	return c
}

// newHeaderDecoder is the HPACK decoder of a connection's header blocks.
func newHeaderDecoder() *hpack.Decoder {
	d := hpack.NewDecoder(4096, nil)
	d.SetMaxStringLength(maxHeaderBytes)
	return d
}

// decodeHeaderBlock decodes a complete header block. The decoded list is
// bounded as this side's SETTINGS_MAX_HEADER_LIST_SIZE says (each field
// counts its name and value and 32 bytes, RFC 9113 section 6.5.2), not
// just the block: a block may name the dynamic table's entries (up to 4
// KiB each) again and again, a 16 KiB block ~60 MiB of fields. Past the
// bound d keeps decoding (its table must stay in step with the peer's
// encoder) but nothing is kept.
func decodeHeaderBlock(d *hpack.Decoder, block []byte) ([]hpack.HeaderField, error) {
	var fields []hpack.HeaderField
	size := 0
	d.SetEmitEnabled(true)
	d.SetEmitFunc(func(f hpack.HeaderField) {
		if size += int(f.Size()); size > maxHeaderBytes {
			d.SetEmitEnabled(false)
			fields = nil
			return
		}
		fields = append(fields, f)
	})
	_, err := d.Write(block)
	if err == nil {
		err = d.Close()
	}
	d.SetEmitFunc(nil)
	d.SetEmitEnabled(true)
	if err != nil {
		return nil, connError{http2.ErrCodeCompression, err.Error()}
	}
	if size > maxHeaderBytes {
		return nil, connError{http2.ErrCodeEnhanceYourCalm, fmt.Sprintf("header list over %d bytes", maxHeaderBytes)}
	}
	return fields, nil
}

// writeSettings sends this side's SETTINGS and opens the connection window.
func (c *conn) writeSettings() error {
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.recvWin)},
		{ID: http2.SettingMaxFrameSize, Val: maxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderBytes},
	}
	if c.isServer {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	if err := c.writeFrame(http2.FrameSettings, 0, 0, appendSettings(nil, settings)); err != nil {
		return err
	}
	if c.recvWin > defaultWindow {
		return c.writeWindowUpdate(0, c.recvWin-defaultWindow)
	}
	return nil
}

// appendSettings appends a SETTINGS frame's payload.
func appendSettings(p []byte, settings []http2.Setting) []byte {
	for _, s := range settings {
		p = binary.BigEndian.AppendUint16(p, uint16(s.ID))
		p = binary.BigEndian.AppendUint32(p, s.Val)
	}
	return p
}

// writeFrame writes one frame whose payload is the concatenation of parts.
func (c *conn) writeFrame(typ http2.FrameType, flags http2.Flags, sid uint32, parts ...[]byte) error {
	c.wmu.Lock()
	defer c.unlockW()
	return c.writeFrameLocked(typ, flags, sid, parts...)
}

// unlockW writes the control frames owed, then releases wmu; a control
// frame queued after the flush is written by whoever takes wmu next (or by
// this call, if wmu is free again).
func (c *conn) unlockW() {
	for {
		c.flushControlLocked()
		c.wmu.Unlock()
		c.ctlMu.Lock()
		pending := len(c.ctl) > 0
		c.ctlMu.Unlock()
		if !pending || !c.wmu.TryLock() {
			return
		}
	}
}

func (c *conn) flushControlLocked() {
	c.ctlMu.Lock()
	b := c.ctl
	c.ctl = nil
	c.ctlMu.Unlock()
	if len(b) == 0 || c.werr != nil {
		return
	}
	c.armWrite()
	if _, err := c.nc.Write(b); err != nil {
		c.writeFailed(err)
	}
}

// armWrite sets the deadline of the next write (wmu held).
func (c *conn) armWrite() {
	now := time.Now()
	d := now.Add(c.writeTimeout)
	if c.ending.Load() {
		d = now.Add(lingerTimeout)
	}
	if !c.authed.Load() && c.handshakeDeadline.Before(d) {
		d = c.handshakeDeadline
	}
	_ = c.nc.SetWriteDeadline(d)
}

// writeFailed records a write's error (wmu held). A write past its
// deadline is to a peer that does not read, and may have left part of a
// frame on the wire: the socket is closed at once (the reader then ends
// the connection). Other errors mean the socket is broken already, or was
// half-closed by linger, which still reads.
func (c *conn) writeFailed(err error) {
	c.werr = fmt.Errorf("write to %s: %w", c.nc.RemoteAddr(), err)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		abortClose(c.nc)
	}
}

// abortClose closes nc with a reset, dropping what the peer has not read:
// for a peer that does not read (a deadline passed, a flood). A plain
// close would leave the kernel holding the socket, its unsent bytes and
// its FIN for as long as the peer keeps its window shut.
func abortClose(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = nc.Close()
}

// queueControl queues a small frame for the peer without waiting for wmu.
func (c *conn) queueControl(typ http2.FrameType, flags http2.Flags, sid uint32, payload []byte) {
	var h [9]byte
	putFrameHeader(h[:], len(payload), typ, flags, sid)
	c.ctlMu.Lock()
	if len(c.ctl)+len(h)+len(payload) > c.limits.queuedControlBytes {
		c.ctlMu.Unlock()
		abortClose(c.nc) // the peer does not read what it asks for
		return
	}
	c.ctl = append(append(c.ctl, h[:]...), payload...)
	c.ctlMu.Unlock()
	if c.wmu.TryLock() {
		c.unlockW()
	}
}

func (c *conn) writeFrameLocked(typ http2.FrameType, flags http2.Flags, sid uint32, parts ...[]byte) error {
	if c.werr != nil {
		return c.werr
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	h := c.whdr[:9]
	putFrameHeader(h, n, typ, flags, sid)
	c.wbufs = append(c.wbufs[:0], h)
	for _, p := range parts {
		if len(p) > 0 {
			c.wbufs = append(c.wbufs, p)
		}
	}
	bufs := c.wbufs // WriteTo consumes its receiver
	c.armWrite()
	if _, err := bufs.WriteTo(c.nc); err != nil {
		c.writeFailed(err)
		clear(c.wbufs)
		return c.werr
	}
	clear(c.wbufs) // drop references to the caller's payload
	if typ == http2.FrameData || typ == http2.FrameHeaders {
		c.sentData.Store(true)
	}
	return nil
}

func putFrameHeader(h []byte, n int, typ http2.FrameType, flags http2.Flags, sid uint32) {
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
	h[3], h[4] = byte(typ), byte(flags)
	binary.BigEndian.PutUint32(h[5:], sid&(1<<31-1))
}

func (c *conn) writeWindowUpdate(sid uint32, incr int64) error {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(incr))
	return c.writeFrame(http2.FrameWindowUpdate, 0, sid, p[:])
}

// sendRST queues a RST_STREAM (it never waits for a data write).
func (c *conn) sendRST(code http2.ErrCode) {
	c.queueControl(http2.FrameRSTStream, 0, c.streamID, binary.BigEndian.AppendUint32(nil, uint32(code)))
}

func (c *conn) sendGoAway(code http2.ErrCode, debug string) {
	p := binary.BigEndian.AppendUint32(nil, c.streamID)
	p = binary.BigEndian.AppendUint32(p, uint32(code))
	c.queueControl(http2.FrameGoAway, 0, 0, append(p, debug...))
}

// writeHeaders encodes fields and writes them as HEADERS (and CONTINUATION
// frames if the block exceeds the peer's frame size).
func (c *conn) writeHeaders(fields []hpack.HeaderField, endStream bool) error {
	c.wmu.Lock()
	defer c.unlockW()
	if endStream {
		if c.halfOut {
			return nil
		}
		c.halfOut = true
	}
	c.hbuf.b = c.hbuf.b[:0]
	for _, f := range fields {
		if err := c.henc.WriteField(f); err != nil {
			return err
		}
	}
	block := c.hbuf.b
	c.fmu.Lock()
	frame := c.peerFrame
	c.fmu.Unlock()
	typ, flags := http2.FrameHeaders, http2.Flags(0)
	if endStream {
		flags |= http2.FlagHeadersEndStream
	}
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), frame)
		f := flags
		if n == len(block) {
			f |= http2.FlagHeadersEndHeaders // same bit in CONTINUATION
		}
		if err := c.writeFrameLocked(typ, f, c.streamID, block[:n]); err != nil {
			return err
		}
		block = block[n:]
		typ, flags = http2.FrameContinuation, 0
	}
	return nil
}

// writeMsg sends one length-prefixed message in DATA frames, within the
// peer's frame size and flow-control windows. bufs is freed once written.
func (c *conn) writeMsg(bufs mem.BufferSlice) error {
	defer bufs.Free()
	size := bufs.Len()
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(size))
	segs := make([][]byte, 0, 1+len(bufs))
	segs = append(segs, prefix[:])
	for _, b := range bufs {
		if d := b.ReadOnlyData(); len(d) > 0 {
			segs = append(segs, d)
		}
	}
	left := 5 + size
	var frame [][]byte
	for left > 0 {
		n, err := c.reserve(left)
		if err != nil {
			return err
		}
		// Take n bytes off the front of segs.
		frame = frame[:0]
		for k := n; k > 0; {
			s := segs[0]
			if len(s) <= k {
				frame = append(frame, s)
				segs, k = segs[1:], k-len(s)
				continue
			}
			frame = append(frame, s[:k])
			segs[0], k = s[k:], 0
		}
		c.wmu.Lock()
		if c.halfOut { // the status (or END_STREAM) went out meanwhile
			err = errSendEnded
		} else {
			err = c.writeFrameLocked(http2.FrameData, 0, c.streamID, frame...)
		}
		c.unlockW()
		if err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// reserve waits until the windows allow sending and takes up to want bytes
// (at most one frame) from them.
func (c *conn) reserve(want int) (int, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	for !c.closed && c.sendEnded == nil && (c.sendConnWin <= 0 || c.sendStrWin <= 0) {
		c.fcond.Wait()
	}
	if c.closed {
		return 0, c.closeErr
	}
	if c.sendEnded != nil {
		return 0, c.sendEnded
	}
	n := int(min(int64(want), int64(c.peerFrame), c.sendConnWin, c.sendStrWin))
	c.sendConnWin -= int64(n)
	c.sendStrWin -= int64(n)
	return n, nil
}

// endStream half-closes this side with an empty DATA frame.
func (c *conn) endStream() error {
	c.wmu.Lock()
	defer c.unlockW()
	if c.halfOut {
		return nil
	}
	c.halfOut = true
	return c.writeFrameLocked(http2.FrameData, http2.FlagDataEndStream, c.streamID)
}

var errSendEnded = errors.New("grpcwire: the stream has ended")

// endSending makes sends fail from now on (a waiting one at once).
func (c *conn) endSending(err error) {
	c.fmu.Lock()
	if c.sendEnded == nil {
		c.sendEnded = err
	}
	c.fcond.Broadcast()
	c.fmu.Unlock()
}

// shutdown marks the connection closed with err, wakes every waiter and
// closes the socket.
func (c *conn) shutdown(err error) {
	c.fmu.Lock()
	if !c.closed {
		c.closed, c.closeErr = true, err
	}
	c.fcond.Broadcast()
	c.fmu.Unlock()
	c.stopOnce.Do(func() { close(c.stop) })
	_ = c.nc.Close()
}

// linger ends a connection whose stream is over: GOAWAY, a half-close of
// the socket, and a wait (bounded) for the peer to close its side, so that
// it reads the last frames instead of a reset.
func (c *conn) linger(readerDone <-chan struct{}) {
	c.ending.Store(true)
	c.sendGoAway(http2.ErrCodeNo, "")
	c.wmu.Lock() // the GOAWAY is out (or the socket is broken) before the half-close
	c.unlockW()
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	select {
	case <-readerDone:
	case <-time.After(lingerTimeout):
	}
	c.shutdown(errStreamOver)
}

var errStreamOver = errors.New("grpcwire: the stream is over")

// finish records the stream's end (once); RecvMsg returns it after the
// messages already queued.
func (c *conn) finish(err error) {
	c.fmu.Lock()
	first := c.final == nil
	if first {
		c.final = err
	}
	c.fmu.Unlock()
	c.notify()
	if first {
		close(c.ended)
	}
}

func (c *conn) notify() {
	select {
	case c.queued <- struct{}{}:
	default:
	}
}

// recvMsg returns the next message decoded into m, or the stream's end.
// Consuming a message gives its bytes back to the peer's window.
func (c *conn) recvMsg(m any) error {
	for {
		if ok, err := c.tryRecvMsg(m); ok {
			return err
		}
		<-c.queued
	}
}

// tryRecvMsg is recvMsg without the wait: ok is false when no message is
// queued and the stream has not ended.
func (c *conn) tryRecvMsg(m any) (ok bool, err error) {
	c.fmu.Lock()
	if len(c.queue) > 0 {
		it := c.queue[0]
		if it.msg == nil && it.empty > 1 {
			c.queue[0].empty--
		} else {
			c.queue[0] = recvItem{}
			c.queue = c.queue[1:]
			if len(c.queue) == 0 {
				c.queue = c.queue[:0:0] // let a flood's backing array go
			}
		}
		c.fmu.Unlock()
		c.giveBack(it.credit)
		var bufs mem.BufferSlice
		if it.msg != nil {
			bufs = mem.BufferSlice{it.msg}
		}
		if it.placed != nil {
			bufs = append(bufs, it.placed)
		}
		err := c.codec.Unmarshal(bufs, m)
		bufs.Free()
		if err != nil {
			return true, status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return true, nil
	}
	final := c.final
	c.fmu.Unlock()
	return final != nil, final
}

// giveBack returns consumed bytes to the peer's windows, in WINDOW_UPDATEs
// of at least half the window (one per four 1 MiB chunks on the ring:
// fewer small writes and wake-ups than one per chunk).
func (c *conn) giveBack(n int64) {
	c.fmu.Lock()
	c.recvUnacked -= n
	c.recvCredit += n
	var incr int64
	if c.recvCredit >= c.recvWin/2 {
		incr, c.recvCredit = c.recvCredit, 0
	}
	ended := c.halfIn || c.closed
	c.fmu.Unlock()
	if incr == 0 {
		return
	}
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(incr))
	c.queueControl(http2.FrameWindowUpdate, 0, 0, p[:])
	if !ended {
		c.queueControl(http2.FrameWindowUpdate, 0, c.streamID, p[:])
	}
}

func (c *conn) finalErr() error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return c.final
}

// frameHandler is what differs between the two ends: what HEADERS mean.
type frameHandler interface {
	// headers is a complete header block on the stream.
	headers(fields []hpack.HeaderField, endStream bool) error
	// reset is a RST_STREAM from the peer.
	reset(code http2.ErrCode)
	// broken is the connection failing with err before the stream ended.
	broken(err error)
	// abort ends the stream with err (a gRPC status) on this side's
	// initiative: a received message this side refuses.
	abort(err error)
}

// connError is an HTTP/2 connection error: GOAWAY with code, then close.
type connError struct {
	code http2.ErrCode
	msg  string
}

func (e connError) Error() string { return fmt.Sprintf("http2 %v: %s", e.code, e.msg) }

// readLoop reads frames until the connection ends. Server side, the first
// frame (after the preface) has been checked to be SETTINGS by the caller
// only in the sense that readLoop requires it: first is true then.
func (c *conn) readLoop(h frameHandler) {
	err := c.readFrames(h)
	c.asm.placed() // a message cut short: its Placer's dst is free again
	var ce connError
	if errors.As(err, &ce) {
		// Out before the socket closes, if the peer reads it soon: a write
		// in progress gets the same bound.
		c.ending.Store(true)
		_ = c.nc.SetWriteDeadline(time.Now().Add(lingerTimeout))
		c.sendGoAway(ce.code, ce.msg)
		c.wmu.Lock()
		c.unlockW()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		abortClose(c.nc) // the handshake deadline passed
	}
	h.broken(err)
	c.shutdown(err)
}

func (c *conn) readFrames(h frameHandler) error {
	var (
		hdr         [9]byte
		block       []byte // header block being assembled
		blockEnd    bool   // END_STREAM of the HEADERS that started it
		inBlock     bool
		sawSettings bool
		// Flood counts (see floodLimits), since this side last sent DATA
		// or HEADERS.
		lastPing    time.Time
		pingStrikes int
		settings    int
		refused     int
	)
	asm := &c.asm
	asm.c, asm.h = c, h
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return err
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
		sid := binary.BigEndian.Uint32(hdr[5:]) & (1<<31 - 1)
		if n > maxFrameSize {
			return connError{http2.ErrCodeFrameSize, fmt.Sprintf("frame of %d bytes", n)}
		}
		if !sawSettings {
			if typ != http2.FrameSettings || flags.Has(http2.FlagSettingsAck) {
				return connError{http2.ErrCodeProtocol, fmt.Sprintf("first frame is %v, want SETTINGS", typ)}
			}
			sawSettings = true
		}
		if inBlock && typ != http2.FrameContinuation {
			return connError{http2.ErrCodeProtocol, fmt.Sprintf("%v inside a header block", typ)}
		}
		switch typ {
		case http2.FrameData:
			if sid == 0 {
				return connError{http2.ErrCodeProtocol, "DATA on stream 0"}
			}
			if err := c.account(n); err != nil {
				return err
			}
			if sid != c.streamID || c.peerEnded() {
				if _, err := c.br.Discard(n); err != nil {
					return err
				}
				c.credit(n)
				continue
			}
			if err := asm.data(n, flags); err != nil {
				return err
			}
			if flags.Has(http2.FlagDataEndStream) {
				if err := c.peerHalfClose(asm.pending()); err != nil {
					return err
				}
			}
		case http2.FrameHeaders, http2.FrameContinuation:
			p, err := c.readPayload(n)
			if err != nil {
				return err
			}
			if typ == http2.FrameHeaders {
				if sid == 0 || sid%2 == 0 {
					return connError{http2.ErrCodeProtocol, fmt.Sprintf("HEADERS on stream %d", sid)}
				}
				if p, err = headersFragment(p, flags); err != nil {
					return err
				}
				block, blockEnd, inBlock = append(block[:0], p...), flags.Has(http2.FlagHeadersEndStream), true
			} else {
				if !inBlock {
					return connError{http2.ErrCodeProtocol, "CONTINUATION outside a header block"}
				}
				block = append(block, p...)
			}
			if len(block) > maxHeaderBytes {
				return connError{http2.ErrCodeEnhanceYourCalm, fmt.Sprintf("header block over %d bytes", maxHeaderBytes)}
			}
			if !flags.Has(http2.FlagHeadersEndHeaders) {
				continue
			}
			inBlock = false
			fields, err := decodeHeaderBlock(c.hdec, block)
			if err != nil {
				return err
			}
			if c.streamID != 0 && sid != c.streamID {
				// One stream per connection.
				if refused++; refused > c.limits.refusedStreams {
					return connError{http2.ErrCodeEnhanceYourCalm, fmt.Sprintf("more than %d streams refused", c.limits.refusedStreams)}
				}
				c.queueControl(http2.FrameRSTStream, 0, sid, binary.BigEndian.AppendUint32(nil, uint32(http2.ErrCodeRefusedStream)))
				continue
			}
			if c.streamID == 0 { // the server's first stream; the writers start after this
				c.streamID = sid
			}
			if err := h.headers(fields, blockEnd); err != nil {
				return err
			}
			if blockEnd && !c.isServer {
				c.setPeerEnded()
			} else if blockEnd {
				if err := c.peerHalfClose(asm.pending()); err != nil {
					return err
				}
			}
		case http2.FrameSettings:
			if c.sentData.Swap(false) {
				pingStrikes, settings = 0, 0
			}
			if !flags.Has(http2.FlagSettingsAck) {
				if settings++; settings > c.limits.settings {
					return connError{http2.ErrCodeEnhanceYourCalm, fmt.Sprintf("more than %d SETTINGS without data", c.limits.settings)}
				}
			}
			if err := c.readSettings(n, flags); err != nil {
				return err
			}
		case http2.FramePing:
			if n != 8 {
				return connError{http2.ErrCodeFrameSize, "PING of other than 8 bytes"}
			}
			p, err := c.readPayload(8)
			if err != nil {
				return err
			}
			if flags.Has(http2.FlagPingAck) {
				continue // this side sends none: nothing to do
			}
			now := time.Now()
			if c.sentData.Swap(false) {
				pingStrikes, settings = 0, 0
			} else if !lastPing.IsZero() && now.Sub(lastPing) < c.limits.pingMinInterval {
				pingStrikes++
			}
			lastPing = now
			if pingStrikes > c.limits.pingStrikes {
				return connError{http2.ErrCodeEnhanceYourCalm, "too_many_pings"}
			}
			c.queueControl(http2.FramePing, http2.FlagPingAck, 0, p)
		case http2.FrameWindowUpdate:
			if n != 4 {
				return connError{http2.ErrCodeFrameSize, "WINDOW_UPDATE of other than 4 bytes"}
			}
			p, err := c.readPayload(4)
			if err != nil {
				return err
			}
			c.windowUpdate(sid, int64(binary.BigEndian.Uint32(p)&(1<<31-1)))
		case http2.FrameRSTStream:
			if n != 4 {
				return connError{http2.ErrCodeFrameSize, "RST_STREAM of other than 4 bytes"}
			}
			p, err := c.readPayload(4)
			if err != nil {
				return err
			}
			if sid == c.streamID && sid != 0 {
				h.reset(http2.ErrCode(binary.BigEndian.Uint32(p)))
				c.setPeerEnded()
				c.fmu.Lock()
				c.fcond.Broadcast()
				c.fmu.Unlock()
			}
		case http2.FrameGoAway:
			if _, err := c.readPayload(n); err != nil {
				return err
			}
			// The stream, if any, goes on until it ends or the peer closes.
		default: // PRIORITY, PUSH_PROMISE (refused by SETTINGS), unknown: skip
			if _, err := c.br.Discard(n); err != nil {
				return err
			}
		}
	}
}

// headersFragment strips a HEADERS frame's padding and priority fields.
func headersFragment(p []byte, flags http2.Flags) ([]byte, error) {
	if flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return nil, connError{http2.ErrCodeProtocol, "bad HEADERS padding"}
		}
		p = p[1 : len(p)-int(p[0])]
	}
	if flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, connError{http2.ErrCodeProtocol, "short HEADERS priority"}
		}
		p = p[5:]
	}
	return p, nil
}

// readPayload reads a small frame payload (valid until the next read).
func (c *conn) readPayload(n int) ([]byte, error) {
	if n > maxHeaderBytes+64 {
		return nil, connError{http2.ErrCodeFrameSize, fmt.Sprintf("control frame of %d bytes", n)}
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return p, err
}

func (c *conn) readSettings(n int, flags http2.Flags) error {
	if flags.Has(http2.FlagSettingsAck) {
		if n != 0 {
			return connError{http2.ErrCodeFrameSize, "SETTINGS ack with a payload"}
		}
		return nil
	}
	if n%6 != 0 {
		return connError{http2.ErrCodeFrameSize, "SETTINGS payload not a multiple of 6"}
	}
	p, err := c.readPayload(n)
	if err != nil {
		return err
	}
	if err := c.applySettings(p); err != nil {
		return err
	}
	c.queueControl(http2.FrameSettings, http2.FlagSettingsAck, 0, nil)
	return nil
}

// applySettings applies a SETTINGS payload (a multiple of 6 bytes): the
// peer's window and frame size are what this side's sends obey.
func (c *conn) applySettings(p []byte) error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	defer c.fcond.Broadcast()
	for ; len(p) >= 6; p = p[6:] {
		id, v := http2.SettingID(binary.BigEndian.Uint16(p)), binary.BigEndian.Uint32(p[2:])
		switch id {
		case http2.SettingInitialWindowSize:
			if v > 1<<31-1 {
				return connError{http2.ErrCodeFlowControl, "INITIAL_WINDOW_SIZE over 2^31-1"}
			}
			c.sendStrWin += int64(v) - c.peerInitWin
			c.peerInitWin = int64(v)
		case http2.SettingMaxFrameSize:
			if v < defaultFrameSize || v > maxFrameSize {
				return connError{http2.ErrCodeProtocol, fmt.Sprintf("MAX_FRAME_SIZE %d", v)}
			}
			c.peerFrame = int(v)
		}
	}
	return nil
}

func (c *conn) windowUpdate(sid uint32, incr int64) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	switch sid {
	case 0:
		c.sendConnWin += incr
	case c.streamID:
		c.sendStrWin += incr
	}
	c.fcond.Broadcast()
}

// account charges n DATA bytes to this side's window; a peer that sends
// past it breaks HTTP/2 flow control.
func (c *conn) account(n int) error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	c.recvUnacked += int64(n)
	if c.recvUnacked > c.recvWin {
		return connError{http2.ErrCodeFlowControl, fmt.Sprintf("peer sent %d bytes past the %d-byte window", c.recvUnacked-c.recvWin, c.recvWin)}
	}
	return nil
}

func (c *conn) peerEnded() bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return c.halfIn
}

func (c *conn) setPeerEnded() {
	c.fmu.Lock()
	c.halfIn = true
	c.fmu.Unlock()
}

// peerHalfClose is the peer's END_STREAM: a message cut short is an error;
// otherwise the server's RecvMsg sees io.EOF. (The client's end comes with
// the trailers, in headers.)
func (c *conn) peerHalfClose(midMessage bool) error {
	c.setPeerEnded()
	if midMessage {
		c.finish(status.Error(codes.Internal, "grpc: the peer ended the stream in the middle of a message"))
		return nil
	}
	if c.isServer {
		c.finish(io.EOF)
	} else {
		c.finish(status.Error(codes.Internal, "grpc: the server ended the stream without sending trailers"))
	}
	return nil
}

// deliver queues a complete message that took credit window bytes. It
// never waits: the reader must keep reading (resets, pings, the peer's
// window updates) whatever the application does. Memory is bounded as in
// grpc-go, by the flow-control window: what a peer can have queued is at
// most the window's bytes plus a record of ~60 bytes per message of at
// least 6 window bytes (a flood of 1-byte messages: ~10x the window; empty
// messages in a row share one record).
func (c *conn) deliver(b, placed mem.Buffer, credit int64) error {
	c.fmu.Lock()
	if c.closed {
		c.fmu.Unlock()
		b.Free()
		return errStreamOver
	}
	if placed != nil {
		c.queue = append(c.queue, recvItem{msg: b, placed: placed, credit: credit})
	} else if b.Len() == 0 { // empty messages in a row share one record
		b.Free()
		if n := len(c.queue); n > 0 && c.queue[n-1].msg == nil {
			c.queue[n-1].empty++
		} else {
			c.queue = append(c.queue, recvItem{credit: credit, empty: 1})
		}
	} else {
		c.queue = append(c.queue, recvItem{msg: b, credit: credit})
	}
	c.fmu.Unlock()
	c.notify()
	return nil
}

// maxLowat bounds SO_RCVLOWAT: the reader wakes for at least this much of a
// large payload rather than for every segment the kernel queues.
const maxLowat = 256 << 10

// setLowat makes the socket readable (for the poller) only once n bytes
// (at most maxLowat) are queued; n is what will certainly come (the rest of
// the message being read), so a wait never outlasts the data.
func (c *conn) setLowat(n int) {
	n = min(max(n, 1), maxLowat)
	if c.raw == nil || n == c.lowat {
		return
	}
	c.lowat = n
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	})
}

// readBulk fills p from the socket. For a large p the socket is made
// readable only once the rest of p (at most maxLowat) is queued, so the
// reader wakes a few times per megabyte instead of once per segment.
func (c *conn) readBulk(p []byte) error {
	if c.raw == nil || len(p) < 2*readBufferBytes {
		_, err := io.ReadFull(c.br, p)
		return err
	}
	defer c.setLowat(1)
	for got := 0; got < len(p); {
		c.setLowat(len(p) - got - c.br.Buffered())
		n, err := c.br.Read(p[got:])
		got += n
		if err != nil && got < len(p) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// credit gives back window bytes that never reach RecvMsg (padding, and
// the data of a stream that has ended).
func (c *conn) credit(n int) { c.giveBack(int64(n)) }

// assembler cuts DATA payloads into messages: a 5-byte prefix (compressed
// flag, big-endian length), then the message, read from the socket straight
// into a pooled buffer of exactly its size.
type assembler struct {
	c      *conn
	h      frameHandler
	prefix [5]byte
	np     int // prefix bytes so far
	buf    *[]byte
	got    int
	// A large message offered to a Placer: its head is read first
	// (headN bytes), then the rest goes to dst (message bytes from at on)
	// or, if the Placer declines, to buf.
	size    int
	head    [PlaceHeadBytes]byte
	headN   int
	inHead  bool
	at      int
	dst     []byte
	placing Placer // the Placer whose dst is being written
}

// A Placer lets a large received message's bulk go straight to its final
// place instead of a buffer it would be copied from.
type Placer interface {
	// Place is given the first min(size, PlaceHeadBytes) bytes of a message
	// of size bytes and returns where message bytes [at, size) go
	// (len(dst) == size-at), or a nil dst to receive the message as usual.
	// It runs on the connection's reader. Once it returns a dst, the
	// transport writes into it until it calls Placed.
	Place(head []byte, size int) (at int, dst []byte)
	// Placed says the transport no longer writes into the last dst: the
	// message is complete (RecvMsg will return it, its payload a view of
	// dst) or the stream broke.
	Placed()
}

// placed ends the current placement, if any.
func (a *assembler) placed() {
	if a.placing != nil {
		p := a.placing
		a.placing, a.dst = nil, nil
		p.Placed()
	}
}

func (a *assembler) pending() bool { return a.np > 0 }

// startBody gives the message's rest a destination once its head is in.
func (a *assembler) startBody() {
	c := a.c
	a.inHead = false
	if p := c.placer.Load(); p != nil {
		at, dst := (*p).Place(a.head[:a.headN], a.size)
		if dst != nil && at >= 0 && at <= a.headN && len(dst) == a.size-at {
			a.placing, a.at, a.dst = *p, at, dst
			copy(dst, a.head[at:a.headN])
			a.got = a.headN
			return
		}
	}
	a.buf = c.pool.Get(a.size)
	*a.buf = (*a.buf)[:a.size]
	a.got = copy(*a.buf, a.head[:a.headN])
}

func (a *assembler) data(n int, flags http2.Flags) error {
	c := a.c
	pad := 0
	if flags.Has(http2.FlagDataPadded) {
		if n < 1 {
			return connError{http2.ErrCodeProtocol, "padded DATA without a pad length"}
		}
		b, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		pad, n = int(b), n-1
		if pad > n {
			return connError{http2.ErrCodeProtocol, "DATA padding longer than the frame"}
		}
		n -= pad
	}
	for n > 0 {
		if a.buf == nil { // in the prefix
			k := min(n, 5-a.np)
			if _, err := io.ReadFull(c.br, a.prefix[a.np:a.np+k]); err != nil {
				return err
			}
			a.np, n = a.np+k, n-k
			if a.np < 5 {
				continue
			}
			var refuse error
			size := int(binary.BigEndian.Uint32(a.prefix[1:]))
			switch {
			case a.prefix[0] != 0:
				refuse = status.Error(codes.Internal, "grpc: compressed message, but no compression was negotiated")
			case size > c.maxRecv:
				refuse = status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, c.maxRecv)
			}
			if refuse != nil {
				// The stream ends here; what the peer still sends on it is
				// read and dropped.
				a.np = 0
				c.setPeerEnded()
				a.h.abort(refuse)
				_, err := c.br.Discard(n + pad)
				c.credit(n + pad)
				return err
			}
			a.size = size
			switch {
			case size >= placeMinBytes && c.placer.Load() != nil:
				a.inHead, a.headN, a.got = true, 0, 0
			case mem.IsBelowBufferPoolingThreshold(size):
				b := make([]byte, size) // mem.NewBuffer would not pool it back anyway
				a.buf = &b
				a.got = 0
			default:
				a.buf = c.pool.Get(size)
				*a.buf = (*a.buf)[:size]
				a.got = 0
			}
		}
		if a.inHead {
			want := min(a.size, PlaceHeadBytes)
			k := min(n, want-a.headN)
			if _, err := io.ReadFull(c.br, a.head[a.headN:a.headN+k]); err != nil {
				return err
			}
			a.headN, n = a.headN+k, n-k
			if a.headN < want {
				continue
			}
			a.startBody()
		}
		var into []byte
		if a.dst != nil {
			into = a.dst[a.got-a.at:]
		} else {
			into = (*a.buf)[a.got:]
		}
		k := min(n, len(into))
		if err := c.readBulk(into[:k]); err != nil {
			return err
		}
		a.got, n = a.got+k, n-k
		if a.got == a.size {
			credit := int64(a.size) + 5
			var b, placed mem.Buffer
			if a.dst != nil {
				b, placed = mem.SliceBuffer(append([]byte(nil), a.head[:a.at]...)), mem.SliceBuffer(a.dst)
				a.placed()
			} else {
				b = mem.NewBuffer(a.buf, c.pool)
			}
			a.buf, a.np = nil, 0
			if err := c.deliver(b, placed, credit); err != nil {
				return err
			}
		}
	}
	if pad > 0 {
		if _, err := c.br.Discard(pad); err != nil {
			return err
		}
	}
	if flags.Has(http2.FlagDataPadded) {
		c.credit(pad + 1)
	}
	return nil
}

// encodeGrpcMessage percent-encodes a status message as gRPC requires.
func encodeGrpcMessage(msg string) string {
	if len(msg) > maxStatusMessage {
		msg = msg[:maxStatusMessage]
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		ch := msg[i]
		if ch >= ' ' && ch <= '~' && ch != '%' {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	return b.String()
}

func decodeGrpcMessage(msg string) string {
	if !strings.Contains(msg, "%") {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] == '%' && i+2 < len(msg) {
			if v, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(msg[i])
	}
	return b.String()
}

// Binary metadata ("-bin" keys) is base64 on the wire; senders may pad or
// not.
func encodeBinHeader(v string) string { return base64.RawStdEncoding.EncodeToString([]byte(v)) }

func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// errFromContext is the status of a stream ended by its context.
func errFromContext(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }
