// Package launch is the process supervisor behind `hjepa launch --nproc N`,
// the torchrun of this project: it starts the coordinator and the workers on
// this host, merges their output line by line under a "[name] " prefix,
// forwards signals, restarts workers that die while the coordinator runs,
// kills the workers the coordinator evicts (declared lost while perhaps
// still alive: frozen, hung) so that they are restarted too, and leaves no
// child behind. Which processes to start, with which arguments, is
// the caller's business. DESIGN.md section 6.
package launch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Proc is one process to start.
type Proc struct {
	Name string // "coordinator", "rank 0", ...: the log prefix "[rank 0] "; default "coordinator" / "rank i"
	Path string // executable
	Args []string
	Env  []string // added to os.Environ(); a later entry wins
	Dir  string
	// Bar: the child's stderr carries a progress bar (text ended by '\r'
	// redraws rather than '\n'): Output, a terminal, shows it as the last
	// line, below every child's log lines.
	Bar bool
}

// Spec is a job: one coordinator and its workers.
type Spec struct {
	Coordinator Proc
	Workers     []Proc
	// Output gets every child's stdout and stderr, one Write per line, each
	// line prefixed with "[Name] ". Lines never interleave, those of one
	// child's stdout and stderr included (each stream has its own pipe); a
	// line longer than 64 KiB is cut into lines of 64 KiB. Default
	// os.Stdout. An *Output (NewOutput) can carry the caller's own log too.
	Output io.Writer
	// MaxRestarts is how many times in total (all workers together) a worker
	// that died (non-zero exit or a signal) while the coordinator runs is
	// started again.
	MaxRestarts int
	// RestartDelay is the wait before a restart (<= 0: 1 s).
	RestartDelay time.Duration
	// StopGrace is how long workers get to exit after the coordinator exited,
	// and every child after ctx is cancelled, before SIGKILL (<= 0: 30 s).
	StopGrace time.Duration
	// Evictions: the coordinator gets the write end of a pipe as file
	// descriptor EvictFD and writes there one JSON Eviction per line for
	// each worker it declares lost while the process may still be alive.
	// Run kills (SIGKILL, its process group) the live worker with that pid,
	// when it is one of its own on this host; it is then restarted like any
	// worker that died.
	Evictions bool
	Logger    *zap.Logger // default: no logs
}

// EvictFD is the coordinator's file descriptor for evictions
// (Spec.Evictions): its first extra file.
const EvictFD = 3

// Eviction is one line the coordinator writes on EvictFD.
type Eviction struct {
	PID    int    `json:"pid"`
	Host   string `json:"host,omitempty"` // the worker's hostname; empty: this host
	Worker string `json:"worker,omitempty"`
	Rank   int    `json:"rank"`
	Reason string `json:"reason,omitempty"`
}

const (
	defaultRestartDelay = time.Second
	defaultStopGrace    = 30 * time.Second
	// maxLine is the longest line written whole; longer ones are cut.
	maxLine = 64 << 10
	// outputDrain bounds the wait for a child's output once it exited and
	// its process group was killed: a descendant that left the group
	// (setsid) may hold the pipe open forever.
	outputDrain = 5 * time.Second
)

// Run runs the job and returns its exit status: the coordinator's exit code,
// 128+n when signal n killed it.
//
// It starts the coordinator, then the workers, each in its own process group
// (a terminal's Ctrl-C reaches the launcher alone, which forwards it) and,
// on Linux, with SIGKILL as parent-death signal (no child outlives a
// launcher that was killed). Every signal received on sigs (SIGINT, SIGTERM)
// is forwarded to every live child's process group, and from then on no
// worker is restarted. A worker that dies while the coordinator runs is
// started again after RestartDelay, up to MaxRestarts times in all; after
// that the coordinator decides the job's fate. Once the coordinator exited,
// the workers get StopGrace to exit before SIGKILL. When ctx is cancelled,
// every child gets SIGTERM, then SIGKILL after StopGrace. When a child exits,
// whatever is left of its process group is killed with it.
//
// err is non-nil when a process could not be started (exitCode is then at
// least 1) or when ctx was cancelled (exitCode is still the coordinator's).
// Run returns once every child has been reaped and its output written.
func Run(ctx context.Context, spec Spec, sigs <-chan os.Signal) (exitCode int, err error) {
	if spec.Coordinator.Path == "" {
		return 1, errors.New("launch: no coordinator executable")
	}
	if err := ctx.Err(); err != nil {
		return 1, err
	}
	s := newSupervisor(spec)
	defer close(s.done)
	if err := s.start(-1); err != nil {
		return 1, err
	}
	for slot := range s.spec.Workers {
		if err := s.start(slot); err != nil {
			s.log.Error("stopping the job: a worker did not start", zap.Error(err))
			s.stop(err)
			break
		}
	}
	s.loop(ctx, sigs)
	if s.err != nil && s.code == 0 {
		s.code = 1
	}
	if s.err == nil {
		s.err = s.ctxErr
	}
	return s.code, s.err
}

// supervisor is Run's state; only Run's goroutine touches it.
type supervisor struct {
	spec Spec
	log  *zap.Logger
	out  *lineWriter

	exits    chan exited   // from each child's goroutine
	restarts chan int      // from restart timers: the worker slot
	evicts   chan Eviction // from the coordinator's eviction pipe
	done     chan struct{} // closed when Run returns
	hostname string

	coord        *child
	workers      []*child // the live incarnation of each worker, nil when none
	incarnation  []int    // how many times each worker was started
	live         int      // children started and not yet reaped
	restartsLeft int
	pending      map[int]*time.Timer // restart timers by slot

	coordExited bool
	code        int  // the coordinator's exit status
	stopping    bool // no more restarts
	killTimer   *time.Timer
	err         error // the launcher's own failure
	ctxErr      error
}

func newSupervisor(spec Spec) *supervisor {
	if spec.Output == nil {
		spec.Output = os.Stdout
	}
	if spec.RestartDelay <= 0 {
		spec.RestartDelay = defaultRestartDelay
	}
	if spec.StopGrace <= 0 {
		spec.StopGrace = defaultStopGrace
	}
	if spec.Logger == nil {
		spec.Logger = zap.NewNop()
	}
	if spec.Coordinator.Name == "" {
		spec.Coordinator.Name = "coordinator"
	}
	host, _ := os.Hostname()
	spec.Workers = append([]Proc(nil), spec.Workers...)
	for i := range spec.Workers {
		if spec.Workers[i].Name == "" {
			spec.Workers[i].Name = fmt.Sprintf("rank %d", i)
		}
	}
	return &supervisor{
		spec:         spec,
		log:          spec.Logger,
		out:          outputOf(spec.Output),
		exits:        make(chan exited),
		restarts:     make(chan int),
		evicts:       make(chan Eviction),
		done:         make(chan struct{}),
		workers:      make([]*child, len(spec.Workers)),
		incarnation:  make([]int, len(spec.Workers)),
		restartsLeft: max(spec.MaxRestarts, 0),
		pending:      make(map[int]*time.Timer),
		hostname:     host,
	}
}

// loop handles events until every child has been reaped.
func (s *supervisor) loop(ctx context.Context, sigs <-chan os.Signal) {
	ctxDone := ctx.Done()
	var kill <-chan time.Time
	for s.live > 0 {
		if s.killTimer != nil && kill == nil {
			kill = s.killTimer.C
		}
		select {
		case sig, ok := <-sigs:
			if !ok {
				sigs = nil
				continue
			}
			ss, ok := sig.(syscall.Signal)
			if !ok {
				continue
			}
			s.log.Info("forwarding signal to every child; no more restarts", zap.Stringer("signal", ss))
			s.noRestarts()
			s.signalAll(ss)
		case <-ctxDone:
			ctxDone = nil
			s.ctxErr = ctx.Err()
			s.log.Info("cancelled: SIGTERM to every child", zap.Duration("grace", s.spec.StopGrace))
			s.noRestarts()
			s.signalAll(syscall.SIGTERM)
			s.armKill()
		case <-kill:
			kill = nil
			for _, c := range s.children() {
				s.log.Warn("still running after the grace: SIGKILL", zap.String("name", c.name), zap.Int("pid", c.pid), zap.Duration("grace", s.spec.StopGrace))
				c.signal(syscall.SIGKILL)
			}
		case slot := <-s.restarts:
			delete(s.pending, slot)
			if s.stopping {
				continue
			}
			if err := s.start(slot); err != nil {
				s.log.Error("restart failed", zap.String("name", s.spec.Workers[slot].Name), zap.Error(err))
			}
		case e := <-s.exits:
			s.exited(e)
		case ev := <-s.evicts:
			s.evict(ev)
		}
	}
	if s.killTimer != nil {
		s.killTimer.Stop()
	}
}

// start starts the coordinator (slot -1) or worker slot.
func (s *supervisor) start(slot int) error {
	p := s.spec.Coordinator
	if slot >= 0 {
		p = s.spec.Workers[slot]
	}
	var extra []*os.File
	var evictions *os.File
	if slot < 0 && s.spec.Evictions {
		r, w, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("start %s: eviction pipe: %w", p.Name, err)
		}
		extra, evictions = []*os.File{w}, r
	}
	c, err := startChild(p, slot, extra, s.out, s.exits)
	closeAll(extra...) // the child holds its own copy
	if err != nil {
		closeAll(evictions)
		return err
	}
	if evictions != nil {
		go s.readEvictions(evictions) // ends when the coordinator exits (EOF)
	}
	s.live++
	fields := []zap.Field{zap.String("name", c.name), zap.Int("pid", c.pid)}
	if slot < 0 {
		s.coord = c
	} else {
		s.workers[slot] = c
		s.incarnation[slot]++
		if n := s.incarnation[slot] - 1; n > 0 {
			fields = append(fields, zap.Int("restart", n), zap.Int("restarts_left", s.restartsLeft))
		}
	}
	s.log.Info("started", fields...)
	return nil
}

func (s *supervisor) exited(e exited) {
	s.live--
	c := e.c
	code, fields := exitStatus(e)
	fields = append([]zap.Field{zap.String("name", c.name), zap.Int("pid", c.pid)}, fields...)
	if c.slot < 0 {
		s.coordExited, s.code = true, code
		s.noRestarts()
		if s.live > 0 {
			s.armKill()
			fields = append(fields, zap.Int("workers_left", s.live), zap.Duration("grace", s.spec.StopGrace))
		}
		s.log.Info("coordinator exited", fields...)
		return
	}
	s.workers[c.slot] = nil
	switch {
	case code == 0:
		s.log.Info("worker exited", fields...)
	case s.stopping:
		s.log.Info("worker exited while stopping", fields...)
	case s.restartsLeft == 0:
		s.log.Warn("worker died; no restarts left, the coordinator decides", append(fields, zap.Int("restarts_left", 0))...)
	default:
		s.restartsLeft--
		s.log.Warn("worker died; restarting", append(fields, zap.Int("restarts_left", s.restartsLeft), zap.Duration("delay", s.spec.RestartDelay))...)
		slot := c.slot
		s.pending[slot] = time.AfterFunc(s.spec.RestartDelay, func() {
			select {
			case s.restarts <- slot:
			case <-s.done:
			}
		})
	}
}

// readEvictions passes the coordinator's evictions to the loop until the
// pipe ends or Run returns.
func (s *supervisor) readEvictions(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev Eviction
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			s.log.Warn("unreadable eviction from the coordinator", zap.ByteString("line", sc.Bytes()), zap.Error(err))
			continue
		}
		select {
		case s.evicts <- ev:
		case <-s.done:
			return
		}
	}
}

// evict kills the live worker the coordinator evicted; its exit restarts
// it. An eviction of a process that is not (or no longer) one of this
// launcher's live workers, or of another host's, is ignored.
func (s *supervisor) evict(ev Eviction) {
	if ev.PID <= 0 || (ev.Host != "" && s.hostname != "" && ev.Host != s.hostname) {
		return
	}
	for _, c := range s.workers {
		if c != nil && c.pid == ev.PID {
			s.log.Warn("the coordinator declared the worker lost: SIGKILL, then a restart", zap.String("name", c.name), zap.Int("pid", c.pid),
				zap.Int("rank", ev.Rank), zap.String("reason", ev.Reason))
			c.signal(syscall.SIGKILL)
			return
		}
	}
}

// stop begins the job's end after a failure of the launcher itself.
func (s *supervisor) stop(err error) {
	s.err = err
	s.noRestarts()
	s.signalAll(syscall.SIGTERM)
	s.armKill()
}

func (s *supervisor) noRestarts() {
	s.stopping = true
	for slot, t := range s.pending {
		t.Stop() // a timer that already fired is ignored by loop
		delete(s.pending, slot)
	}
}

// armKill starts the grace before SIGKILL, unless it already runs.
func (s *supervisor) armKill() {
	if s.killTimer == nil {
		s.killTimer = time.NewTimer(s.spec.StopGrace)
	}
}

// children returns the live children.
func (s *supervisor) children() []*child {
	var cs []*child
	if s.coord != nil && !s.coordExited {
		cs = append(cs, s.coord)
	}
	for _, c := range s.workers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

func (s *supervisor) signalAll(sig syscall.Signal) {
	for _, c := range s.children() {
		c.signal(sig)
	}
}

// exitStatus returns a process's exit status in the shell's convention
// (128+n for signal n) and the log fields saying how it ended.
func exitStatus(e exited) (int, []zap.Field) {
	ps := e.state
	if ps == nil {
		return 1, []zap.Field{zap.NamedError("wait_error", e.err)}
	}
	if ws, ok := ps.Sys().(interface {
		Signaled() bool
		Signal() syscall.Signal
	}); ok && ws.Signaled() {
		sig := ws.Signal()
		return 128 + int(sig), []zap.Field{zap.Int("exit_code", 128+int(sig)), zap.Stringer("signal", sig)}
	}
	return ps.ExitCode(), []zap.Field{zap.Int("exit_code", ps.ExitCode())}
}

// child is one started process.
type child struct {
	name string
	slot int // -1: the coordinator
	pid  int
	cmd  *exec.Cmd

	mu     sync.Mutex // orders signals before the reaping (the pid is then free for reuse)
	reaped bool
}

// exited is a child's end, sent once its output has been written.
type exited struct {
	c     *child
	state *os.ProcessState // nil when Wait failed
	err   error
}

// startChild starts p and returns once it runs (or failed to start); a
// goroutine then copies its output to out, reaps it and sends its end on
// exits.
//
// That goroutine keeps its OS thread from the start to the reaping: Linux
// sends the parent-death signal when the thread that forked the child ends,
// not the process (golang/go#27505), and the Go runtime ends a thread when a
// goroutine locked to it returns.
func startChild(p Proc, slot int, extra []*os.File, out *lineWriter, exits chan<- exited) (*child, error) {
	// A pipe for each stream: a child's buffered stdout and unbuffered
	// stderr would cut each other's lines in a shared one.
	var readers, writers [2]*os.File
	for i := range readers {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(readers[:i]...)
			closeAll(writers[:i]...)
			return nil, fmt.Errorf("start %s: %w", p.Name, err)
		}
		readers[i], writers[i] = r, w
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = sysProcAttr()
	c := &child{name: p.Name, slot: slot, cmd: cmd}

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		closeAll(writers[:]...) // the child holds its own copies
		if err != nil {
			closeAll(readers[:]...)
			started <- err
			return
		}
		c.pid = cmd.Process.Pid
		started <- nil

		var copying sync.WaitGroup
		copying.Go(func() { copyLines(out, "["+p.Name+"] ", readers[0]) })
		if p.Bar {
			copying.Go(func() { copyBarLines(out, "["+p.Name+"] ", readers[1]) })
		} else {
			copying.Go(func() { copyLines(out, "["+p.Name+"] ", readers[1]) })
		}
		copied := make(chan struct{})
		go func() {
			copying.Wait()
			close(copied)
		}()
		state, werr := c.reap()
		select {
		case <-copied:
		case <-time.After(outputDrain):
			closeAll(readers[:]...) // ends copyLines
			<-copied
		}
		closeAll(readers[:]...)
		exits <- exited{c: c, state: state, err: werr}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", p.Name, p.Path, err)
	}
	return c, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// lineWriter writes lines of every child to one writer, one Write per line
// under a lock, so lines never interleave. A progress bar (Proc.Bar) stays
// below them: each line blanks it first and draws it again after.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	bar string // the bar's line as shown, "" when none
}

// writeLine writes prefix+line, adding the newline a partial line lacks.
func (l *lineWriter) writeLine(prefix string, line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = l.buf[:0]
	if l.bar != "" {
		l.buf = append(append(append(l.buf, '\r'), strings.Repeat(" ", len(l.bar))...), '\r')
	}
	l.buf = append(append(l.buf, prefix...), line...)
	if line[len(line)-1] != '\n' {
		l.buf = append(l.buf, '\n')
	}
	if l.bar != "" {
		l.buf = append(append(l.buf, '\r'), l.bar...)
	}
	// A failing Output loses lines, but the reading goes on: a child must
	// never block on a full pipe.
	_, _ = l.w.Write(l.buf)
}

// Output is a Spec.Output that launch's own log can share: its lines, like
// the children's, go above the progress bar (Proc.Bar).
type Output struct{ l *lineWriter }

// NewOutput wraps w; pass it as Spec.Output and write the launcher's own
// log lines to it.
func NewOutput(w io.Writer) *Output { return &Output{l: &lineWriter{w: w}} }

// Write writes p's lines (a partial last line gets its newline).
func (o *Output) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		o.l.writeLine("", line)
		rest = rest[len(line):]
	}
	return len(p), nil
}

func outputOf(w io.Writer) *lineWriter {
	if o, ok := w.(*Output); ok {
		return o.l
	}
	return &lineWriter{w: w}
}

// keepBar leaves the bar's last state on its line, as a line.
func (l *lineWriter) keepBar() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != "" {
		_, _ = l.w.Write([]byte("\r" + l.bar + "\n"))
		l.bar = ""
	}
}

// setBar shows text as the bar ("" takes it away).
func (l *lineWriter) setBar(text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pad := max(0, len(l.bar)-len(text))
	l.buf = append(append(append(l.buf[:0], '\r'), text...), strings.Repeat(" ", pad)...)
	if text == "" {
		l.buf = append(l.buf, '\r')
	}
	l.bar = text
	_, _ = l.w.Write(l.buf)
}

// copyBarLines is copyLines for a stream that also carries a progress bar
// (progress.Console's output): text ended by '\n' is a line; text between
// two '\r's, or left after a read, is the bar's new state (blank text is
// the bar being cleared for a line). The bar goes when r ends.
func copyBarLines(out *lineWriter, prefix string, r io.Reader) {
	defer out.setBar("")
	buf := make([]byte, 32<<10)
	var seg []byte
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			switch c {
			case '\n':
				if len(seg) == 0 {
					out.keepBar() // the bar's end: its last state stays as a line
				} else {
					out.writeLine(prefix, append(seg, '\n'))
				}
				seg = seg[:0]
			case '\r':
				if text := strings.TrimSpace(string(seg)); text != "" {
					out.setBar(prefix + text)
				}
				seg = seg[:0]
			default:
				if len(seg) < maxLine {
					seg = append(seg, c)
				}
			}
		}
		if text := strings.TrimSpace(string(seg)); text != "" && n > 0 && buf[n-1] != '\n' && bytes.LastIndexByte(buf[:n], '\r') >= 0 {
			out.setBar(prefix + text) // the bar as drawn; its next redraw starts with '\r'
			seg = seg[:0]
		}
		if err != nil {
			if len(seg) > 0 {
				out.writeLine(prefix, seg)
			}
			return
		}
	}
}

// copyLines writes r's lines to out until r ends or fails.
func copyLines(out *lineWriter, prefix string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out.writeLine(prefix, line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
