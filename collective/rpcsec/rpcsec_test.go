package rpcsec

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The messages check() returns; a change to them is a change users see.
const (
	msgNoToken    = "no job token: pass the job's token (--token, --token-file or $HJEPA_JOB_TOKEN)"
	msgWrongToken = "wrong job token: this process belongs to another job, or its --token/--token-file/$HJEPA_JOB_TOKEN is stale"
)

// rpcTimeout bounds every RPC of the tests; generous, since the 2 cores are
// shared and the race detector is on.
const rpcTimeout = 30 * time.Second

// serve starts a gRPC server on 127.0.0.1 with the health service (unary
// Check, server-streaming Watch) behind o's ServerOptions and returns its
// address.
func serve(t *testing.T, o Options, maxRecvBytes int) string {
	t.Helper()
	opts, err := o.ServerOptions(maxRecvBytes)
	if err != nil {
		t.Fatalf("ServerOptions: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// client dials addr with extra options appended to o's DialOptions.
func client(t *testing.T, addr string, o Options, extra ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	opts, err := o.DialOptions()
	if err != nil {
		t.Fatalf("DialOptions: %v", err)
	}
	conn, err := grpc.NewClient(addr, append(opts, extra...)...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// unary calls Check; the empty service name is the server's overall health.
func unary(ctx context.Context, c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// stream opens Watch and reads its first message; an interceptor's refusal
// surfaces at the first Recv.
func stream(ctx context.Context, c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	_, err = w.Recv()
	return err
}

type call struct {
	name string
	do   func(context.Context, healthpb.HealthClient) error
}

var calls = []call{{"unary", unary}, {"stream", stream}}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code {
		t.Fatalf("code %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if msg != "" && st.Message() != msg {
		t.Fatalf("message %q, want %q", st.Message(), msg)
	}
}

func TestToken(t *testing.T) {
	const tok = "0123456789abcdef"
	addr := serve(t, Options{Token: tok}, 1<<20)
	bearer := func(v string) grpc.DialOption {
		return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return inv(metadata.AppendToOutgoingContext(ctx, "authorization", v), method, req, reply, cc, opts...)
		})
	}
	bearerStream := func(v string) grpc.DialOption {
		return grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return s(metadata.AppendToOutgoingContext(ctx, "authorization", v), desc, cc, method, opts...)
		})
	}
	cases := []struct {
		name  string
		opts  Options
		extra []grpc.DialOption
		code  codes.Code
		msg   string
	}{
		{name: "right token", opts: Options{Token: tok}, code: codes.OK},
		{name: "no token", opts: Options{}, code: codes.Unauthenticated, msg: msgNoToken},
		{name: "wrong token", opts: Options{Token: "fedcba9876543210"}, code: codes.Unauthenticated, msg: msgWrongToken},
		{name: "prefix of the token", opts: Options{Token: tok[:8]}, code: codes.Unauthenticated, msg: msgWrongToken},
		{name: "token without Bearer", extra: []grpc.DialOption{bearer(tok), bearerStream(tok)}, code: codes.Unauthenticated, msg: msgWrongToken},
		{name: "empty Bearer", extra: []grpc.DialOption{bearer("Bearer "), bearerStream("Bearer ")}, code: codes.Unauthenticated, msg: msgWrongToken},
	}
	for _, tc := range cases {
		for _, c := range calls {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				cl := client(t, addr, tc.opts, tc.extra...)
				err := c.do(t.Context(), cl)
				if tc.code == codes.OK {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				wantCode(t, err, tc.code, tc.msg)
			})
		}
	}
}

// An empty Token turns the check off.
func TestNoTokenNoCheck(t *testing.T) {
	addr := serve(t, Options{}, 1<<20)
	for _, c := range calls {
		if err := c.do(t.Context(), client(t, addr, Options{Token: "anything"})); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if err := c.do(t.Context(), client(t, addr, Options{})); err != nil {
			t.Errorf("%s without a token: %v", c.name, err)
		}
	}
}

func TestMaxRecvMsgSize(t *testing.T) {
	const bound = 1024
	addr := serve(t, Options{Token: "t"}, bound)
	cl := client(t, addr, Options{Token: "t"})
	check := func(service string) error {
		ctx, cancel := context.WithTimeout(t.Context(), rpcTimeout)
		defer cancel()
		_, err := cl.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return err
	}
	// Under the bound the request reaches the handler, which does not know
	// the service.
	wantCode(t, check(strings.Repeat("s", bound/2)), codes.NotFound, "")
	wantCode(t, check(strings.Repeat("s", 2*bound)), codes.ResourceExhausted, "")
	// The connection survives the refusal.
	wantCode(t, check("x"), codes.NotFound, "")

	w, err := cl.Watch(t.Context(), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 2*bound)})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, err, codes.ResourceExhausted, "")
}

// pki is a CA and the files of certificates it signed, in a temp dir.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

var serial int64

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &pki{dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, p.file, "CERTIFICATE", der)
	return p
}

// issue writes a certificate for 127.0.0.1 signed by the CA and its key and
// returns their paths.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	const tok = "tls-token"
	ca, other := newCA(t, "job"), newCA(t, "other")
	srvCert, srvKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	addr := serve(t, Options{Token: tok, CertFile: srvCert, KeyFile: srvKey}, 1<<20)

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: ca.file})); err != nil {
				t.Fatalf("client trusting the CA: %v", err)
			}
			// The token is still checked under TLS.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: "wrong", CAFile: ca.file})), codes.Unauthenticated, msgWrongToken)
			wantCode(t, c.do(t.Context(), client(t, addr, Options{CAFile: ca.file})), codes.Unauthenticated, msgNoToken)
			// A client that trusts another CA does not get through the handshake.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: other.file})), codes.Unavailable, "")
			// Nor does a client expecting another name.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: ca.file, ServerName: "coordinator.example"})), codes.Unavailable, "")
			// Nor a plaintext client.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{})), codes.Unavailable, "")
		})
	}
}

func TestMutualTLS(t *testing.T) {
	const tok = "mtls-token"
	ca, other := newCA(t, "job"), newCA(t, "other")
	srvCert, srvKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, "worker", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := other.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	addr := serve(t, Options{Token: tok, CertFile: srvCert, KeyFile: srvKey, CAFile: ca.file}, 1<<20)

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			ok := Options{Token: tok, CAFile: ca.file, CertFile: cliCert, KeyFile: cliKey}
			if err := c.do(t.Context(), client(t, addr, ok)); err != nil {
				t.Fatalf("client with a certificate signed by the CA: %v", err)
			}
			ok.Token = "wrong"
			wantCode(t, c.do(t.Context(), client(t, addr, ok)), codes.Unauthenticated, msgWrongToken)

			// Without a client certificate: the server ends the connection
			// after the handshake (TLS 1.3 verifies the client last).
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: ca.file})), codes.Unavailable, "")
			// A certificate from another CA.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: ca.file, CertFile: strangerCert, KeyFile: strangerKey})), codes.Unavailable, "")
			// A client that trusts another CA.
			wantCode(t, c.do(t.Context(), client(t, addr, Options{Token: tok, CAFile: other.file, CertFile: cliCert, KeyFile: cliKey})), codes.Unavailable, "")
		})
	}
}

func TestOptionErrors(t *testing.T) {
	ca := newCA(t, "job")
	cert, key := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := []struct {
		name   string
		o      Options
		server bool // ServerOptions, else DialOptions
		want   string
	}{
		{"server CA without certificate", Options{CAFile: ca.file}, true, "a CA file without a certificate"},
		{"server key without certificate", Options{KeyFile: key}, true, "without a certificate"},
		{"client key without certificate", Options{KeyFile: key, CAFile: ca.file}, false, "without a certificate"},
		{"server certificate without key", Options{CertFile: cert}, true, "tls certificate"},
		{"client certificate without key", Options{CertFile: cert, CAFile: ca.file}, false, "tls certificate"},
		{"server key is not the certificate's", Options{CertFile: cert, KeyFile: cert}, true, "tls certificate"},
		{"server CA file not PEM", Options{CertFile: cert, KeyFile: key, CAFile: notPEM}, true, "no PEM certificate"},
		{"client CA file not PEM", Options{CAFile: notPEM}, false, "no PEM certificate"},
		{"server CA file missing", Options{CertFile: cert, KeyFile: key, CAFile: missing}, true, "tls CA"},
		{"client CA file missing", Options{CAFile: missing}, false, "tls CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.server {
				_, err = tc.o.ServerOptions(1 << 20)
			} else {
				_, err = tc.o.DialOptions()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("token", "  from-file \nsecond line\n")
	empty := write("empty", "")
	blank := write("blank", "\n\nfrom-third-line\n")
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name        string
		flag, file  string
		env         string
		want, error string
	}{
		{name: "flag over file and env", flag: "from-flag", file: file, env: "from-env", want: "from-flag"},
		{name: "flag over a missing file", flag: "from-flag", file: missing, want: "from-flag"},
		{name: "file over env", file: file, env: "from-env", want: "from-file"},
		{name: "env", env: "from-env", want: "from-env"},
		{name: "none", want: ""},
		{name: "missing file", file: missing, env: "from-env", error: "job token file"},
		{name: "empty file", file: empty, env: "from-env", error: "is empty"},
		{name: "empty first line", file: blank, error: "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(TokenEnv, tc.env)
			got, err := LoadToken(tc.flag, tc.file)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("LoadToken = %q, %v; want an error containing %q", got, err, tc.error)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("LoadToken = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestWriteToken(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 32 {
		t.Fatalf("token %q: want 32 hex digits", tok)
	}
	if again, _ := NewToken(); again == tok {
		t.Fatal("two tokens alike")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		existing os.FileMode // 0: no file before
	}{{"new file", 0}, {"over a world-readable file", 0o644}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.existing != 0 {
				if err := os.WriteFile(path, []byte("old-token\n"), tc.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.existing); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			if err := WriteToken(path, tok); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
			}
			got, err := LoadToken("", path)
			if err != nil || got != tok {
				t.Fatalf("LoadToken = %q, %v; want %q", got, err, tok)
			}
		})
	}
	// No temporary file is left beside the token.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files %v, want the two tokens", names)
	}
	if err := WriteToken(filepath.Join(dir, "no-such-dir", "token"), tok); err == nil {
		t.Fatal("WriteToken into a missing directory: no error")
	}
}

// TestTokenCheckedBeforeBody: a call without the token is refused on its
// headers alone; the server does not wait for (and buffer) a request body
// first (issue 14).
func TestTokenCheckedBeforeBody(t *testing.T) {
	addr := serve(t, Options{Token: "secret"}, 1<<20)
	opts, err := Options{}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers only: a client stream that never sends its request message.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/grpc.health.v1.Health/Check")
	if err != nil {
		t.Fatal(err)
	}
	err = s.RecvMsg(&healthpb.HealthCheckResponse{})
	wantCode(t, err, codes.Unauthenticated, msgNoToken)
}

// TestListenLimits: a connection that authenticated outlives the pre-auth
// deadline, one that did not is closed by it, and past the cap a new
// connection evicts the oldest unauthenticated one.
func TestListenLimits(t *testing.T) {
	o := Options{Token: "secret"}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const preAuth = 300 * time.Millisecond
	lis, opts, err := o.Listen(tcp, Limits{MaxConns: 3, PreAuthTimeout: preAuth}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	c := client(t, addr, o)
	if err := unary(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	raw := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	// closed reads (the server's SETTINGS) until the connection ends.
	closed := func(conn net.Conn, within time.Duration) bool {
		_ = conn.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 512)
		for {
			_, err := conn.Read(buf)
			var ne net.Error
			if err != nil {
				return !(errors.As(err, &ne) && ne.Timeout())
			}
		}
	}
	first, second := raw(), raw()
	time.Sleep(50 * time.Millisecond) // accepted in order
	third := raw()                    // the cap: evicts first
	if !closed(first, preAuth/2) {
		t.Errorf("the oldest unauthenticated connection was not evicted")
	}
	if !closed(second, 5*time.Second) || !closed(third, 5*time.Second) {
		t.Errorf("unauthenticated connections outlived the pre-auth deadline")
	}
	time.Sleep(preAuth)
	if err := unary(context.Background(), c); err != nil {
		t.Fatalf("the authenticated connection after the pre-auth deadline: %v", err)
	}
	st := lis.Stats()
	// The two others expired, or reached grpc-go's handshake deadline (the
	// same) first.
	if st.Evicted != 1 || st.Open != 1 || st.Authenticated != 1 {
		t.Errorf("stats %+v, want 1 evicted, 1 open and authenticated", st)
	}
}
