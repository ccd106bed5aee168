package grpcwire

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// hangGuard bounds every wait in these tests. It is only a guard against a
// hang: nothing here depends on how fast a machine is.
const hangGuard = 10 * time.Second

const (
	testCodecName = "grpcwire-test"
	testService   = "test.Echo"
	testPath      = "/test.Echo/Bidi"
)

// testCodec encodes *[]byte as its raw bytes (copied, as a real codec
// would). rawMsg is sent without a copy, *int receives only a message's
// length and *checkMsg compares a message with what it should be without
// copying it: the bulk tests use them to keep their CPU cost (under -race,
// every byte copied in Go costs) down.
type testCodec struct{}

type rawMsg []byte

type checkMsg struct {
	want []byte
	ok   bool
	n    int
}

func (testCodec) Name() string { return testCodecName }

func (testCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(bytes.Clone(*m))}, nil
	case rawMsg:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return nil, fmt.Errorf("testCodec: cannot marshal %T", v)
}

func (testCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *[]byte:
		*m = data.Materialize()
	case *int:
		*m = data.Len()
	case *checkMsgRaw:
		m.data = data.Materialize()
		m.lastPart = nil
		if len(data) > 0 {
			m.lastPart = data[len(data)-1].ReadOnlyData()
		}
	case *checkMsg:
		m.n = data.Len()
		m.ok = m.n == len(m.want)
		rest := m.want
		for _, b := range data {
			d := b.ReadOnlyData()
			if !m.ok || len(d) > len(rest) || !bytes.Equal(d, rest[:len(d)]) {
				m.ok = false
				break
			}
			rest = rest[len(d):]
		}
	default:
		return fmt.Errorf("testCodec: cannot unmarshal into %T", v)
	}
	return nil
}

func init() { encoding.RegisterCodecV2(testCodec{}) }

// patternBase is random bytes that payloads are cut from.
var patternBase = func() []byte {
	b := make([]byte, 9<<20)
	_, _ = rand.NewChaCha8([32]byte{1, 2, 3}).Read(b)
	return b
}()

// payload is a deterministic n-byte message distinct for each seed.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	if n > len(patternBase) {
		for i := range b {
			b[i] = byte(seed + uint64(i)*131)
		}
	} else {
		off := int((seed * 7919) % uint64(len(patternBase)-n+1))
		copy(b, patternBase[off:off+n])
	}
	if n >= 8 {
		binary.LittleEndian.PutUint64(b, seed)
	}
	return b
}

// slab is a message cut from patternBase without a copy: distinct (random)
// content for distinct (seed, n).
func slab(seed uint64, n int) []byte {
	off := int((seed * 104729) % uint64(len(patternBase)-n+1))
	return patternBase[off : off+n : off+n]
}

// echoSizes are the message sizes every echo test sends: empty, tiny,
// around grpc-go's 16 KiB frame, and multi-frame.
var echoSizes = []int{0, 1, 100, 16383, 16384, 16385, 1 << 20, 3<<20 + 7}

// await waits for ch (the hang guard fails the test).
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("timed out (%v) waiting for %s", hangGuard, what)
		panic("unreachable")
	}
}

// within runs f in a goroutine and returns its error; a hang fails the
// test.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return await(t, ch, what)
}

// wantStatus checks err is a gRPC status with code (and msg unless "*").
func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("%s: got %v, want status %v", what, err, code)
	}
	s, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: %v (%T) is not a gRPC status, want %v", what, err, err, code)
	}
	if s.Code() != code {
		t.Fatalf("%s: code %v (%q), want %v", what, s.Code(), s.Message(), code)
	}
	if msg != "*" && s.Message() != msg {
		t.Fatalf("%s: message %q, want %q", what, s.Message(), msg)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// startWire serves opts (Path, Codec and MaxRecvMsgSize defaulted) on a
// fresh 127.0.0.1 port; the test's cleanup stops it.
func startWire(t *testing.T, opts ServerOptions) (*Server, string) {
	t.Helper()
	return startWireTuned(t, opts, nil)
}

// startWireTuned is startWire with tune (if not nil) applied to the server
// before it serves: tests shorten its deadlines or change its limits.
func startWireTuned(t *testing.T, opts ServerOptions, tune func(*Server)) (*Server, string) {
	t.Helper()
	if opts.Path == "" {
		opts.Path = testPath
	}
	if opts.Codec == nil {
		opts.Codec = testCodec{}
	}
	if opts.MaxRecvMsgSize == 0 {
		opts.MaxRecvMsgSize = 64 << 20
	}
	lis := listen(t)
	srv := NewServer(opts)
	if tune != nil {
		tune(srv)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		stopped := make(chan struct{})
		go func() { srv.Stop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(hangGuard):
			t.Errorf("Server.Stop did not return within %v", hangGuard)
			return
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Stop, want nil", err)
			}
		case <-time.After(hangGuard):
			t.Errorf("Serve did not return after Stop")
		}
	})
	return srv, lis.Addr().String()
}

// wireEcho is a handler echoing every message until the client half-closes.
func wireEcho(st *ServerStream) error {
	for {
		var b []byte
		if err := st.RecvMsg(&b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := st.SendMsg(&b); err != nil {
			return err
		}
	}
}

// startGo serves the test.Echo/Bidi stream with handler on a grpc-go server.
func startGo(t *testing.T, handler func(grpc.ServerStream) error, opts ...grpc.ServerOption) string {
	t.Helper()
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: testService,
		Streams: []grpc.StreamDesc{{
			StreamName:    "Bidi",
			ServerStreams: true,
			ClientStreams: true,
			Handler:       func(_ any, ss grpc.ServerStream) error { return handler(ss) },
		}},
	}, nil)
	lis := listen(t)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// goEcho is wireEcho's grpc-go twin.
func goEcho(ss grpc.ServerStream) error {
	for {
		var b []byte
		if err := ss.RecvMsg(&b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
	}
}

// dialGo is a grpc-go client of addr (plaintext unless opts say otherwise).
func dialGo(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func goStream(ctx context.Context, cc *grpc.ClientConn, path string) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, path, grpc.CallContentSubtype(testCodecName))
}

// goCall opens a grpc-go stream, sends msg (if not nil) and returns what the
// first RecvMsg returns (or the error that came first).
func goCall(ctx context.Context, cc *grpc.ClientConn, path string, msg []byte) ([]byte, error) {
	s, err := goStream(ctx, cc, path)
	if err != nil {
		return nil, err
	}
	if msg != nil {
		if err := s.SendMsg(&msg); err != nil && err != io.EOF {
			return nil, err
		}
	}
	var got []byte
	err = s.RecvMsg(&got)
	return got, err
}

// wireOpts are client options for the test method and codec.
func wireOpts() StreamOptions {
	return StreamOptions{Path: testPath, ContentSubtype: testCodecName, Codec: testCodec{}, MaxRecvMsgSize: 64 << 20}
}

// wireStream opens a grpcwire client stream; the test's cleanup cancels it.
func wireStream(t *testing.T, addr string, opts StreamOptions) (*ClientStream, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var cs *ClientStream
	err := within(t, "NewStream", func() (err error) {
		cs, err = NewStream(ctx, addr, opts)
		return err
	})
	if err != nil {
		t.Fatalf("NewStream(%s): %v", addr, err)
	}
	return cs, cancel
}

// echoRoundTrips sends each size and checks the echo, byte for byte.
func echoRoundTrips(t *testing.T, send func(*[]byte) error, recv func(*[]byte) error, sizes []int) {
	t.Helper()
	for i, n := range sizes {
		want := payload(uint64(i+1), n)
		if err := within(t, fmt.Sprintf("SendMsg of %d bytes", n), func() error { return send(&want) }); err != nil {
			t.Fatalf("SendMsg of %d bytes: %v", n, err)
		}
		var got []byte
		if err := within(t, fmt.Sprintf("RecvMsg of %d bytes", n), func() error { return recv(&got) }); err != nil {
			t.Fatalf("RecvMsg of the %d-byte echo: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("echo of %d bytes differs: got %d bytes", n, len(got))
		}
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files to a temp dir and loaded back.
type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "grpcwire test CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(crand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	caFile := writePEM("ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-24 * time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(crand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile := writePEM(name+".pem", "CERTIFICATE", der)
		keyFile := writePEM(name+"-key.pem", "PRIVATE KEY", keyDER)
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.pem")
	}
	return &testPKI{
		roots:  roots,
		server: leaf(2, "server", x509.ExtKeyUsageServerAuth),
		client: leaf(3, "client", x509.ExtKeyUsageClientAuth),
	}
}

func (p *testPKI) serverTLS(requireClientCert bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.roots
	}
	return cfg
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

// wantWindow is the flow-control window (stream and connection) a grpcwire
// peer with this MaxRecvMsgSize advertises: windowMessages messages of
// that size, at least minWindow, at most HTTP/2's maximum.
func wantWindow(maxRecv int) int64 {
	return min(max(minWindow, windowMessages*(int64(maxRecv)+5)), 1<<31-1)
}

// liveHeap is the heap in use after a collection (two: sync.Pools keep
// what they hold through one).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rawClient is a hand-driven HTTP/2 client with stream 1 open on the test
// method, for what a well-behaved client never does.
type rawClient struct {
	t       *testing.T
	nc      net.Conn
	fr      *http2.Framer
	strWin  int64 // the stream window the server advertised
	connWin int64 // the connection window the server opened
	pings   uint64
}

// newRawClient sends the preface, SETTINGS and the request's HEADERS, and
// reads the server's SETTINGS and connection WINDOW_UPDATE (sync: the
// server writes them before it reads anything).
func newRawClient(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc := rawConn(t, addr)
	rc := &rawClient{t: t, nc: nc, fr: http2.NewFramer(nc, nc), strWin: -1, connWin: 65535}
	if _, err := nc.Write([]byte(clientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: testPath},
		{Name: ":authority", Value: addr}, {Name: "content-type", Value: "application/grpc+" + testCodecName}, {Name: "te", Value: "trailers"},
	} {
		_ = enc.WriteField(f)
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	rc.sync()
	if rc.strWin < 0 {
		t.Fatal("no SETTINGS from the server")
	}
	return rc
}

// sync sends a PING and reads the server's frames until its ack: the
// server has read everything sent before. It notes the windows the server
// advertises; a GOAWAY, RST_STREAM or a closed connection fails the test.
func (rc *rawClient) sync() {
	rc.t.Helper()
	rc.pings++
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], rc.pings)
	if err := rc.fr.WritePing(false, data); err != nil {
		rc.t.Fatal(err)
	}
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatalf("reading the server's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.strWin = 65535
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					rc.strWin = int64(v)
				}
				if err := rc.fr.WriteSettingsAck(); err != nil {
					rc.t.Fatal(err)
				}
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				rc.connWin += int64(f.Increment)
			} else {
				rc.strWin += int64(f.Increment)
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data == data {
				return
			}
		case *http2.GoAwayFrame:
			rc.t.Fatalf("GOAWAY %v from the server", f.ErrCode)
		case *http2.RSTStreamFrame:
			rc.t.Fatalf("RST_STREAM %v from the server", f.ErrCode)
		}
	}
}

// data sends p on stream 1 in DATA frames of at most 16 KiB.
func (rc *rawClient) data(p []byte) {
	rc.t.Helper()
	for len(p) > 0 {
		n := min(len(p), 16384)
		if err := rc.fr.WriteData(1, false, p[:n]); err != nil {
			rc.t.Fatal(err)
		}
		p = p[n:]
	}
}
