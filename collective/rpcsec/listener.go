package rpcsec

import (
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what a gRPC server holds for its connections, above all for
// those that have not authenticated (sent an RPC with the job's token): an
// idle socket must cost bounded time, memory and file descriptors, and
// never lock real clients out. Zero fields take the defaults.
type Limits struct {
	// MaxConns caps the simultaneous connections (default DefaultMaxConns).
	// A connection beyond the cap closes the oldest one that has not
	// authenticated; when every one has, the newcomer is closed.
	MaxConns int
	// PreAuthTimeout is how long a connection may stay open without an
	// authenticated RPC, handshakes (TLS, HTTP/2) included (default
	// DefaultPreAuthTimeout).
	PreAuthTimeout time.Duration
	// MaxConnectionIdle closes an authenticated connection that has had no
	// RPC in flight for this long, gracefully (GOAWAY): its client
	// reconnects when it needs to (default DefaultMaxConnectionIdle).
	MaxConnectionIdle time.Duration
	// MaxConcurrentStreams caps the RPCs in flight on one connection
	// (default DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
}

// The defaults of Limits. 512 connections stay well under the usual
// open-files limit of 1024; 10 s is ample for a client on another host to
// finish its handshakes and send its first RPC.
const (
	DefaultMaxConns             = 512
	DefaultPreAuthTimeout       = 10 * time.Second
	DefaultMaxConnectionIdle    = 5 * time.Minute
	DefaultMaxConcurrentStreams = 32
)

const (
	// keepaliveMinTime: clients may ping this often (with or without RPCs
	// in flight) to notice a dead server sooner; faster pings close the
	// connection (ENHANCE_YOUR_CALM).
	keepaliveMinTime = time.Second
	// keepaliveTime and keepaliveTimeout: the server pings a connection
	// silent for keepaliveTime and closes it when no answer comes within
	// keepaliveTimeout (a client host that vanished).
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxHeaderListBytes bounds an RPC's headers (the token is ~100 bytes);
	// grpc-go's default is 16 MiB.
	maxHeaderListBytes = 16 << 10
)

func (lim *Limits) setDefaults() {
	if lim.MaxConns <= 0 {
		lim.MaxConns = DefaultMaxConns
	}
	if lim.PreAuthTimeout <= 0 {
		lim.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if lim.MaxConnectionIdle <= 0 {
		lim.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	if lim.MaxConcurrentStreams == 0 {
		lim.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
}

// Listen wraps l so that it holds at most lim.MaxConns connections and
// closes those that have not authenticated within lim.PreAuthTimeout, and
// returns the options of the gRPC server to serve it with: ServerOptions'
// plus the handshake deadline, keepalive enforcement, idle and stream
// limits. The server must be given these options: its token check is what
// marks a connection authenticated.
func (o Options) Listen(l net.Listener, lim Limits, maxRecvBytes int) (*Listener, []grpc.ServerOption, error) {
	lim.setDefaults()
	g := &Listener{Listener: l, lim: lim, conns: map[string]*guardedConn{}}
	opts, err := o.serverOptions(maxRecvBytes, g)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts,
		grpc.ConnectionTimeout(lim.PreAuthTimeout),
		grpc.MaxConcurrentStreams(lim.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: lim.MaxConnectionIdle, Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	)
	return g, opts, nil
}

// Listener is a net.Listener that bounds its connections (Listen).
type Listener struct {
	net.Listener
	lim Limits

	mu     sync.Mutex
	conns  map[string]*guardedConn // open connections by remote address
	closed bool
	stats  ConnStats
}

// ConnStats counts a Listener's connections.
type ConnStats struct {
	Open          int // open now
	Authenticated int // open now and authenticated
	Accepted      int // in all
	Expired       int // closed for not authenticating within PreAuthTimeout
	Evicted       int // closed to make room for a newer one
	Refused       int // closed on arrival: every connection had authenticated
}

// Stats returns the listener's counts.
func (l *Listener) Stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.Open = len(l.conns)
	for _, c := range l.conns {
		if c.authed {
			st.Authenticated++
		}
	}
	return st
}

// Accept returns the next connection the cap admits.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g := l.admit(c); g != nil {
			return g, nil
		}
	}
}

// admit tracks c, making room when the cap is reached; nil: c was refused
// (and closed).
func (l *Listener) admit(c net.Conn) *guardedConn {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return nil
	}
	var victim *guardedConn
	if len(l.conns) >= l.lim.MaxConns {
		for _, x := range l.conns {
			if !x.authed && (victim == nil || x.accepted.Before(victim.accepted)) {
				victim = x
			}
		}
		if victim == nil {
			l.stats.Refused++
			l.mu.Unlock()
			_ = c.Close()
			return nil
		}
		l.stats.Evicted++
		l.forget(victim)
	}
	g := &guardedConn{Conn: c, l: l, key: c.RemoteAddr().String(), accepted: time.Now()}
	if old := l.conns[g.key]; old != nil {
		l.forget(old) // cannot happen for TCP while old is open; be safe
	}
	l.conns[g.key] = g
	l.stats.Accepted++
	g.timer = time.AfterFunc(l.lim.PreAuthTimeout, g.expire)
	l.mu.Unlock()
	if victim != nil {
		_ = victim.Conn.Close()
	}
	return g
}

// forget stops tracking c; l.mu is held.
func (l *Listener) forget(c *guardedConn) {
	if l.conns[c.key] == c {
		delete(l.conns, c.key)
	}
	c.timer.Stop()
}

// authenticated marks the connection from addr authenticated: its
// pre-auth deadline no longer applies.
func (l *Listener) authenticated(addr net.Addr) {
	if addr == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.conns[addr.String()]; c != nil && !c.authed {
		c.authed = true
		c.timer.Stop()
	}
}

// Close stops accepting and closes the connections that have not
// authenticated (a handshake in progress would hold a graceful stop for
// its whole deadline); the server closes the others.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	var pre []*guardedConn
	for _, c := range l.conns {
		if !c.authed {
			pre = append(pre, c)
			l.forget(c)
		}
	}
	l.mu.Unlock()
	for _, c := range pre {
		_ = c.Conn.Close()
	}
	return err
}

// guardedConn is a connection a Listener tracks.
type guardedConn struct {
	net.Conn
	l        *Listener
	key      string
	accepted time.Time
	timer    *time.Timer // the pre-auth deadline
	authed   bool        // under l.mu
}

func (c *guardedConn) Close() error {
	c.l.mu.Lock()
	c.l.forget(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// expire closes c when it has not authenticated by its deadline.
func (c *guardedConn) expire() {
	c.l.mu.Lock()
	if c.authed || c.l.conns[c.key] != c {
		c.l.mu.Unlock()
		return
	}
	c.l.stats.Expired++
	c.l.forget(c)
	c.l.mu.Unlock()
	_ = c.Conn.Close()
}
