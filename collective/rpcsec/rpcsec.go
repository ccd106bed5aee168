// Package rpcsec is the security of a job's gRPC traffic (coordinator and
// collective): a job token checked on every RPC, on its headers before any
// request body is read, optional TLS or mutual TLS, and (Listen) bounds on
// what a server holds for connections that have not authenticated.
// DESIGN.md section 6, "Security".
package rpcsec

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// TokenEnv is the environment variable a token may come from.
const TokenEnv = "HJEPA_JOB_TOKEN"

// Options say how a process authenticates and encrypts its RPCs.
type Options struct {
	// Token is the job token; every RPC must carry it. Empty turns the
	// check off (tests of the check itself, and nothing else).
	Token string
	// CertFile and KeyFile turn on TLS (the server's certificate, or the
	// client's for mutual TLS).
	CertFile, KeyFile string
	// CAFile verifies the other side: a client verifies the server with it,
	// and a server given one requires client certificates signed by it
	// (mutual TLS).
	CAFile string
	// ServerName is the name a client expects in the server's certificate
	// (default: the host of the address it dials).
	ServerName string
}

// NewToken returns a random token (128 bits, hex).
func NewToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// LoadToken picks the job token: the flag's value, else the file's first
// line, else $HJEPA_JOB_TOKEN. It returns "" when none is set.
func LoadToken(flagValue, file string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("job token file: %w (pass --token-file with the file the coordinator wrote, or --token)", err)
		}
		tok := strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
		if tok == "" {
			return "", fmt.Errorf("job token file %s is empty", file)
		}
		return tok, nil
	}
	return os.Getenv(TokenEnv), nil
}

// WriteToken writes tok to path, readable by the owner only. It writes a
// new file and renames it over path: a file already at path keeps its mode
// when rewritten in place (a 0644 file would expose the token), and a worker
// reading the file meanwhile sees the old token or the new one, never an
// empty file.
func WriteToken(path, tok string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("write job token: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write job token: %w", err)
	}
	return nil
}

// ServerOptions returns the options of a gRPC server that checks the token
// on every RPC, speaks TLS when configured, and refuses any message larger
// than maxRecvBytes (so a peer cannot make it allocate more). The token is
// checked on the RPC's headers (a tap handle), before the server reads or
// buffers its request; the interceptors check it again. A server that
// faces untrusted networks also wants Listen's connection bounds.
func (o Options) ServerOptions(maxRecvBytes int) ([]grpc.ServerOption, error) {
	return o.serverOptions(maxRecvBytes, nil)
}

func (o Options) serverOptions(maxRecvBytes int, guard *Listener) ([]grpc.ServerOption, error) {
	cfg, err := o.ServerTLS()
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvBytes),
		grpc.InTapHandle(o.tap(guard)),
		grpc.ChainUnaryInterceptor(o.unaryCheck),
		grpc.ChainStreamInterceptor(o.streamCheck),
	}
	if cfg == nil {
		return opts, nil
	}
	return append(opts, grpc.Creds(credentials.NewTLS(cfg))), nil
}

// ServerTLS returns the server's TLS configuration (nil: plaintext); with
// a CA file it requires client certificates signed by it.
func (o Options) ServerTLS() (*tls.Config, error) {
	if err := o.checkKeyPair(); err != nil {
		return nil, err
	}
	if o.CertFile == "" {
		if o.CAFile != "" {
			return nil, errors.New("tls: a CA file without a certificate: set the certificate and key too (or neither)")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if o.CAFile != "" {
		pool, err := loadCA(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// DialOptions returns the options of a client: the token on every RPC and
// TLS when configured.
func (o Options) DialOptions() ([]grpc.DialOption, error) {
	cfg, err := o.ClientTLS()
	if err != nil {
		return nil, err
	}
	var opts []grpc.DialOption
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token: o.Token, secure: cfg != nil}))
	}
	if cfg == nil {
		return append(opts, grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	return append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg))), nil
}

// ClientTLS returns the client's TLS configuration (nil: plaintext).
func (o Options) ClientTLS() (*tls.Config, error) {
	if err := o.checkKeyPair(); err != nil {
		return nil, err
	}
	if o.CertFile == "" && o.CAFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: o.ServerName}
	if o.CAFile != "" {
		pool, err := loadCA(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// RequestMetadata is what a client sends with every RPC (the token).
func (o Options) RequestMetadata() map[string]string {
	if o.Token == "" {
		return nil
	}
	return tokenCreds{token: o.Token}.metadata()
}

// checkKeyPair refuses a key without a certificate: TLS would silently stay
// off.
func (o Options) checkKeyPair() error {
	if o.KeyFile != "" && o.CertFile == "" {
		return fmt.Errorf("tls: a key file (%s) without a certificate: set the certificate too (or neither)", o.KeyFile)
	}
	return nil
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls CA %s: no PEM certificate in the file", file)
	}
	return pool, nil
}

// tokenCreds attaches "authorization: Bearer <token>" to every RPC.
type tokenCreds struct {
	token  string
	secure bool
}

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return c.metadata(), nil
}

func (c tokenCreds) metadata() map[string]string {
	return map[string]string{"authorization": "Bearer " + c.token}
}

func (c tokenCreds) RequireTransportSecurity() bool { return c.secure }

// tap checks an RPC's token on its headers, before grpc-go reads its body
// or starts its handler, and marks its connection authenticated in guard
// (when not nil).
func (o Options) tap(guard *Listener) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if err := o.CheckMetadata(info.Header); err != nil {
			return ctx, err
		}
		if p, ok := peer.FromContext(ctx); ok && guard != nil {
			guard.authenticated(p.Addr)
		}
		return ctx, nil
	}
}

func (o Options) unaryCheck(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := o.check(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (o Options) streamCheck(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := o.check(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// check compares the RPC's token with the job's in constant time.
func (o Options) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	return o.CheckMetadata(md)
}

// CheckMetadata checks an RPC's metadata for the job token (constant
// time); the error is an Unauthenticated status saying what to fix.
func (o Options) CheckMetadata(md metadata.MD) error {
	if o.Token == "" {
		return nil
	}
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "no job token: pass the job's token (--token, --token-file or $"+TokenEnv+")")
	}
	got, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(o.Token)) != 1 {
		return status.Error(codes.Unauthenticated, "wrong job token: this process belongs to another job, or its --token/--token-file/$"+TokenEnv+" is stale")
	}
	return nil
}
