//go:build linux

package launch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The children of these tests are this test binary, run again with
// HJEPA_LAUNCH_HELPER naming what it does (TestHelperProcess).

// patience bounds every wait of a test for something to happen; generous,
// since the 2 cores are shared and the race detector is on. A test never
// needs it to pass.
const patience = 2 * time.Minute

// forever is a grace or delay a passing test never reaches.
const forever = 10 * time.Minute

func helper(name, mode string, env ...string) Proc {
	return Proc{
		Name: name,
		Path: os.Args[0],
		Args: []string{"-test.run=^TestHelperProcess$"},
		Env:  append([]string{"HJEPA_LAUNCH_HELPER=" + mode, raceNoExitSleep}, env...),
	}
}

// raceNoExitSleep spares each child of a -race test binary the race
// runtime's 1 s sleep at exit.
var raceNoExitSleep = strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")

// TestHelperProcess is the child processes, not a test.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("HJEPA_LAUNCH_HELPER")
	if mode == "" {
		t.Skip("a child process of the other tests")
	}
	os.Exit(helperMain(mode))
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

// helperMain is a child's behaviour; it returns the exit code.
//
//	lines        prints HELPER_LINES numbered lines (stdout, buffered so that
//	             writes cut lines) and a few on stderr, exits HELPER_EXIT
//	crash-once   exits 3 when HELPER_MARKER is missing (after creating it), else
//	             creates HELPER_RELEASE (if set) and exits 0
//	crash        appends a line to HELPER_COUNT, exits 3
//	wait-file    exits HELPER_EXIT once HELPER_RELEASE exists
//	wait-term    prints "ready", exits HELPER_EXIT on SIGTERM or SIGINT
//	ignore-term  ignores SIGTERM and SIGINT, prints "ready", sleeps
//	partial      prints a line longer than maxLine, then one without newline
//	self-kill    dies by SIGKILL
//	spawn        starts a grandchild (ignore-term), prints its pid, exits 0
//	evict        (a coordinator) waits for HELPER_PIDFILE, writes evictions
//	             of pid 1, of another host's worker, a garbage line and of
//	             the file's pid on EvictFD, then exits once HELPER_RELEASE exists
//	hang-once    (a worker) when HELPER_MARKER is missing creates it, writes
//	             its pid to HELPER_PIDFILE and hangs (ignoring SIGTERM);
//	             else creates HELPER_RELEASE and exits 0
//	launcher     runs Run with a wait-term coordinator and two wait-term
//	             workers, output to stdout
func helperMain(mode string) int {
	code := envInt("HELPER_EXIT", 0)
	name := os.Getenv("HELPER_NAME")
	switch mode {
	case "lines":
		w := bufio.NewWriterSize(os.Stdout, 4096+7)
		pad := strings.Repeat("x", envInt("HELPER_PAD", 50))
		for i := range envInt("HELPER_LINES", 0) {
			fmt.Fprintf(w, "%s seq=%d %s\n", name, i, pad)
			if i%100 == 0 {
				fmt.Fprintf(os.Stderr, "%s stderr %d\n", name, i)
			}
		}
		_ = w.Flush()
		return code
	case "crash-once":
		marker := os.Getenv("HELPER_MARKER")
		if _, err := os.Stat(marker); err != nil {
			_ = os.WriteFile(marker, nil, 0o600)
			fmt.Println("crashing")
			return 3
		}
		fmt.Println("recovered")
		if r := os.Getenv("HELPER_RELEASE"); r != "" {
			_ = os.WriteFile(r, nil, 0o600)
		}
		return 0
	case "crash":
		f, err := os.OpenFile(os.Getenv("HELPER_COUNT"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintln(f, os.Getpid())
			_ = f.Close()
		}
		fmt.Println("crashing")
		return 3
	case "wait-file":
		for {
			if _, err := os.Stat(os.Getenv("HELPER_RELEASE")); err == nil {
				return code
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "wait-term":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		fmt.Printf("ready pid=%d\n", os.Getpid())
		fmt.Printf("got %v\n", <-ch)
		return code
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
		fmt.Printf("ready pid=%d\n", os.Getpid())
		select {}
	case "partial":
		fmt.Print(strings.Repeat("a", 2*maxLine+100) + "\n")
		fmt.Print("no newline at the end")
		return 0
	case "self-kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "spawn":
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "HJEPA_LAUNCH_HELPER=ignore-term")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Printf("grandchild pid=%d\n", cmd.Process.Pid)
		return 0
	case "evict":
		var pid []byte
		for len(pid) == 0 || pid[len(pid)-1] != '\n' {
			time.Sleep(10 * time.Millisecond)
			pid, _ = os.ReadFile(os.Getenv("HELPER_PIDFILE"))
		}
		f := os.NewFile(EvictFD, "evict")
		fmt.Fprintf(f, "{\"pid\":1,\"rank\":0}\nnot json\n{\"pid\":%s,\"host\":\"elsewhere.invalid\",\"rank\":0}\n", bytes.TrimSpace(pid))
		fmt.Fprintf(f, "{\"pid\":%s,\"rank\":0,\"reason\":\"silent\"}\n", bytes.TrimSpace(pid))
		for {
			if _, err := os.Stat(os.Getenv("HELPER_RELEASE")); err == nil {
				return code
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "hang-once":
		if _, err := os.Stat(os.Getenv("HELPER_MARKER")); err != nil {
			signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
			_ = os.WriteFile(os.Getenv("HELPER_MARKER"), nil, 0o600)
			_ = os.WriteFile(os.Getenv("HELPER_PIDFILE"), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o600)
			fmt.Println("hanging")
			select {}
		}
		fmt.Println("replacement")
		_ = os.WriteFile(os.Getenv("HELPER_RELEASE"), nil, 0o600)
		return 0
	case "launcher":
		spec := Spec{
			Coordinator: helper("coordinator", "wait-term"),
			Workers:     []Proc{helper("rank 0", "wait-term"), helper("rank 1", "wait-term")},
			StopGrace:   forever,
		}
		code, err := Run(context.Background(), spec, nil)
		if err != nil {
			fmt.Println(err)
		}
		return code
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// recorder is a test's Output: it keeps every Write and checks that no two
// overlap.
type recorder struct {
	busy   atomic.Int32
	mu     sync.Mutex
	writes []string
	change chan struct{} // closed and replaced on every Write
}

func newRecorder() *recorder { return &recorder{change: make(chan struct{})} }

func (r *recorder) Write(p []byte) (int, error) {
	if r.busy.Add(1) != 1 {
		panic("concurrent Writes to Output")
	}
	defer r.busy.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	close(r.change)
	r.change = make(chan struct{})
	return len(p), nil
}

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// count returns how many lines satisfy ok and a channel closed at the next
// Write.
func (r *recorder) count(ok func(string) bool) (int, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, w := range r.writes {
		if ok(w) {
			n++
		}
	}
	return n, r.change
}

// waitFor waits until n lines contain sub.
func (r *recorder) waitFor(t *testing.T, sub string, n int) {
	t.Helper()
	deadline := time.After(patience)
	for {
		got, change := r.count(func(w string) bool { return strings.Contains(w, sub) })
		if got >= n {
			return
		}
		select {
		case <-change:
		case <-deadline:
			t.Fatalf("waited %v for %d lines containing %q; output:\n%s", patience, n, sub, strings.Join(r.lines(), ""))
		}
	}
}

func (r *recorder) has(line string) bool {
	n, _ := r.count(func(w string) bool { return w == line })
	return n > 0
}

// job is one Run of a test, in the background.
type job struct {
	out  *recorder
	logs *observer.ObservedLogs
	sigs chan os.Signal
	stop context.CancelFunc
	done chan struct{}
	code int
	err  error
}

func startJob(t *testing.T, spec Spec) *job {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	j := &job{out: newRecorder(), logs: logs, sigs: make(chan os.Signal, 4), done: make(chan struct{})}
	spec.Output, spec.Logger = j.out, zap.New(core)
	if spec.RestartDelay == 0 {
		spec.RestartDelay = 10 * time.Millisecond
	}
	if spec.StopGrace == 0 {
		spec.StopGrace = forever
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.stop = cancel
	go func() {
		defer close(j.done)
		j.code, j.err = Run(ctx, spec, j.sigs)
	}()
	t.Cleanup(func() {
		cancel()
		<-j.done
	})
	return j
}

// wait waits for Run to return, then checks that every child it started is
// gone.
func (j *job) wait(t *testing.T) (int, error) {
	t.Helper()
	select {
	case <-j.done:
	case <-time.After(patience):
		t.Fatalf("Run did not return within %v; output:\n%s", patience, strings.Join(j.out.lines(), ""))
	}
	for _, e := range j.logs.FilterMessage("started").All() {
		pid := int(e.ContextMap()["pid"].(int64))
		if alive(pid) {
			t.Errorf("%s (pid %d) outlived Run", e.ContextMap()["name"], pid)
		}
	}
	return j.code, j.err
}

// waitLog waits until n entries with message msg were logged.
func (j *job) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for j.logs.FilterMessage(msg).Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %d log entries %q", patience, n, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exits returns the exit_code of each "exited" entry for name, in order.
func (j *job) exits(name string) []int64 {
	var codes []int64
	for _, e := range j.logs.All() {
		m := e.ContextMap()
		if strings.Contains(e.Message, "exited") || strings.Contains(e.Message, "died") {
			if m["name"] == name {
				codes = append(codes, m["exit_code"].(int64))
			}
		}
	}
	return codes
}

// alive says whether pid is a process that has not exited. A zombie counts
// as gone: an orphan's reaper (PID 1 in a container) may never collect it.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// waitGone waits until pid has exited.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs %v later", what, pid, patience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two chatty workers and a chatty coordinator: every line arrives whole,
// once, in its child's order, under its child's prefix.
func TestOutputLines(t *testing.T) {
	const n = 3000
	env := func(name string) []string {
		return []string{"HELPER_NAME=" + name, "HELPER_LINES=" + strconv.Itoa(n), "HELPER_PAD=97"}
	}
	names := []string{"coordinator", "rank 0", "rank 1"}
	j := startJob(t, Spec{
		Coordinator: helper("coordinator", "lines", env("c")...),
		Workers:     []Proc{helper("", "lines", env("w0")...), helper("", "lines", env("w1")...)},
	})
	if code, err := j.wait(t); code != 0 || err != nil {
		t.Fatalf("Run = %d, %v", code, err)
	}
	next := map[string]int{}
	stderr := map[string]int{}
	for _, w := range j.out.lines() {
		name, rest, ok := strings.Cut(strings.TrimPrefix(w, "["), "] ")
		if !strings.HasPrefix(w, "[") || !ok || !strings.HasSuffix(w, "\n") || strings.Count(w, "\n") != 1 {
			t.Fatalf("write %q is not one prefixed line", w)
		}
		short := map[string]string{"coordinator": "c", "rank 0": "w0", "rank 1": "w1"}[name]
		if short == "" {
			t.Fatalf("unknown prefix in %q", w)
		}
		if strings.HasPrefix(rest, short+" stderr ") {
			stderr[name]++
			continue
		}
		want := fmt.Sprintf("%s seq=%d %s\n", short, next[name], strings.Repeat("x", 97))
		if rest != want {
			t.Fatalf("%s: line %q, want %q", name, rest, want)
		}
		next[name]++
	}
	for _, name := range names {
		if next[name] != n || stderr[name] != n/100 {
			t.Errorf("%s: %d stdout lines, %d stderr lines; want %d, %d", name, next[name], stderr[name], n, n/100)
		}
	}
}

// A line longer than maxLine is cut into prefixed lines; a last line without
// newline is written, with the prefix, when the child exits.
func TestOutputLongAndPartialLines(t *testing.T) {
	j := startJob(t, Spec{Coordinator: helper("coordinator", "partial")})
	if code, err := j.wait(t); code != 0 || err != nil {
		t.Fatalf("Run = %d, %v", code, err)
	}
	lines := j.out.lines()
	var long strings.Builder
	for _, w := range lines[:len(lines)-1] {
		body, ok := strings.CutPrefix(w, "[coordinator] ")
		if !ok || !strings.HasSuffix(body, "\n") || len(body) > maxLine+1 {
			t.Fatalf("write %.40q... (%d bytes) is not a prefixed line of at most maxLine", w, len(w))
		}
		long.WriteString(strings.TrimSuffix(body, "\n"))
	}
	if want := strings.Repeat("a", 2*maxLine+100); long.String() != want {
		t.Errorf("the long line came back as %d bytes, want %d", long.Len(), len(want))
	}
	if last := lines[len(lines)-1]; last != "[coordinator] no newline at the end\n" {
		t.Errorf("last write %q", last)
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		name  string
		coord Proc
		want  int
	}{
		{"zero", helper("", "lines", "HELPER_LINES=1"), 0},
		{"three", helper("", "lines", "HELPER_EXIT=3"), 3},
		{"42", helper("", "lines", "HELPER_EXIT=42"), 42},
		{"killed by SIGKILL", helper("", "self-kill"), 128 + 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The workers end on their own, with codes of their own that
			// do not matter.
			j := startJob(t, Spec{
				Coordinator: tc.coord,
				Workers:     []Proc{helper("", "lines", "HELPER_EXIT=0"), helper("", "lines", "HELPER_EXIT=5")},
			})
			code, err := j.wait(t)
			if code != tc.want || err != nil {
				t.Fatalf("Run = %d, %v; want %d, nil", code, err, tc.want)
			}
			if got := j.exits("coordinator"); len(got) != 1 || got[0] != int64(tc.want) {
				t.Errorf("coordinator's logged exits %v", got)
			}
		})
	}
}

// A worker that crashes while the coordinator runs is started again; its
// second life releases the coordinator.
func TestRestartCrashedWorker(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	j := startJob(t, Spec{
		Coordinator: helper("", "wait-file", "HELPER_RELEASE="+release),
		Workers: []Proc{
			helper("", "crash-once", "HELPER_MARKER="+filepath.Join(dir, "marker"), "HELPER_RELEASE="+release),
			helper("", "wait-file", "HELPER_RELEASE="+release),
		},
		MaxRestarts: 5,
	})
	if code, err := j.wait(t); code != 0 || err != nil {
		t.Fatalf("Run = %d, %v", code, err)
	}
	for _, l := range []string{"[rank 0] crashing\n", "[rank 0] recovered\n"} {
		if !j.out.has(l) {
			t.Errorf("no line %q", l)
		}
	}
	restarts := j.logs.FilterMessage("worker died; restarting").All()
	if len(restarts) != 1 {
		t.Fatalf("%d restarts, want 1", len(restarts))
	}
	m := restarts[0].ContextMap()
	if m["name"] != "rank 0" || m["exit_code"] != int64(3) || m["restarts_left"] != int64(4) {
		t.Errorf("restart logged with %v", m)
	}
	var pids []int64
	for _, e := range j.logs.FilterMessage("started").FilterField(zap.String("name", "rank 0")).All() {
		pids = append(pids, e.ContextMap()["pid"].(int64))
	}
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Errorf("rank 0 started as pids %v, want two processes", pids)
	}
	if got := j.exits("rank 0"); fmt.Sprint(got) != "[3 0]" {
		t.Errorf("rank 0 exits %v, want [3 0]", got)
	}
}

// TestEvictedWorkerKilledAndRestarted: a worker the coordinator evicts (a
// hung process) is killed and started again; evictions of processes that
// are not its live workers, or of another host's, are ignored.
func TestEvictedWorkerKilledAndRestarted(t *testing.T) {
	dir := t.TempDir()
	release, pidFile := filepath.Join(dir, "release"), filepath.Join(dir, "pid")
	j := startJob(t, Spec{
		Coordinator: helper("", "evict", "HELPER_PIDFILE="+pidFile, "HELPER_RELEASE="+release),
		Workers:     []Proc{helper("", "hang-once", "HELPER_MARKER="+filepath.Join(dir, "marker"), "HELPER_PIDFILE="+pidFile, "HELPER_RELEASE="+release)},
		MaxRestarts: 1,
		Evictions:   true,
	})
	if code, err := j.wait(t); code != 0 || err != nil {
		t.Fatalf("Run = %d, %v", code, err)
	}
	for _, l := range []string{"[rank 0] hanging\n", "[rank 0] replacement\n"} {
		if !j.out.has(l) {
			t.Errorf("no line %q", l)
		}
	}
	if n := j.logs.FilterMessage("the coordinator declared the worker lost: SIGKILL, then a restart").Len(); n != 1 {
		t.Errorf("%d kills, want 1", n)
	}
	if n := j.logs.FilterMessage("unreadable eviction from the coordinator").Len(); n != 1 {
		t.Errorf("%d unreadable evictions logged, want 1", n)
	}
	if got := j.exits("rank 0"); fmt.Sprint(got) != "[137 0]" {
		t.Errorf("rank 0 exits %v, want [137 0]", got)
	}
}

// MaxRestarts bounds the restarts of all workers together; then the
// coordinator decides.
func TestMaxRestarts(t *testing.T) {
	dir := t.TempDir()
	count, release := filepath.Join(dir, "count"), filepath.Join(dir, "release")
	j := startJob(t, Spec{
		Coordinator: helper("", "wait-file", "HELPER_RELEASE="+release, "HELPER_EXIT=7"),
		Workers:     []Proc{helper("", "crash", "HELPER_COUNT="+count), helper("", "crash", "HELPER_COUNT="+count)},
		MaxRestarts: 3,
	})
	// 2 first lives + 3 restarts, all crashing; the last two find no
	// restarts left.
	j.waitLog(t, "worker died; no restarts left, the coordinator decides", 2)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := j.wait(t); code != 7 || err != nil {
		t.Fatalf("Run = %d, %v; want 7, nil", code, err)
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	if runs := strings.Count(string(b), "\n"); runs != 5 {
		t.Errorf("workers ran %d times, want 5", runs)
	}
	if n := j.logs.FilterMessage("worker died; restarting").Len(); n != 3 {
		t.Errorf("%d restarts logged, want 3", n)
	}
	var left []int64
	for _, e := range j.logs.FilterMessage("worker died; restarting").All() {
		left = append(left, e.ContextMap()["restarts_left"].(int64))
	}
	if fmt.Sprint(left) != "[2 1 0]" {
		t.Errorf("restarts_left %v, want [2 1 0]", left)
	}
}

// SIGTERM and SIGINT reach every child; workers that exit non-zero on them
// are not restarted.
func TestForwardSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			j := startJob(t, Spec{
				Coordinator: helper("", "wait-term", "HELPER_EXIT=0"),
				Workers:     []Proc{helper("", "wait-term", "HELPER_EXIT=1"), helper("", "wait-term", "HELPER_EXIT=1")},
				MaxRestarts: 5,
			})
			j.out.waitFor(t, "ready pid=", 3)
			j.sigs <- sig
			if code, err := j.wait(t); code != 0 || err != nil {
				t.Fatalf("Run = %d, %v", code, err)
			}
			for _, name := range []string{"coordinator", "rank 0", "rank 1"} {
				if l := fmt.Sprintf("[%s] got %v\n", name, sig); !j.out.has(l) {
					t.Errorf("no line %q", l)
				}
			}
			if n := j.logs.FilterMessage("worker died; restarting").Len(); n != 0 {
				t.Errorf("%d restarts after a forwarded signal", n)
			}
		})
	}
}

// Cancelling ctx: SIGTERM to every child; those that exit on it are not
// killed.
func TestCancelTerminates(t *testing.T) {
	j := startJob(t, Spec{
		Coordinator: helper("", "wait-term", "HELPER_EXIT=0"),
		Workers:     []Proc{helper("", "wait-term", "HELPER_EXIT=0"), helper("", "wait-term", "HELPER_EXIT=1")},
		MaxRestarts: 5,
	})
	j.out.waitFor(t, "ready pid=", 3)
	j.stop()
	code, err := j.wait(t)
	if code != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %d, %v; want 0, context.Canceled", code, err)
	}
	for _, name := range []string{"coordinator", "rank 0", "rank 1"} {
		if l := fmt.Sprintf("[%s] got terminated\n", name); !j.out.has(l) {
			t.Errorf("no line %q", l)
		}
	}
	if n := j.logs.FilterMessage("still running after the grace: SIGKILL").Len(); n != 0 {
		t.Errorf("%d children killed", n)
	}
	if n := j.logs.FilterMessage("worker died; restarting").Len(); n != 0 {
		t.Errorf("%d restarts after cancel", n)
	}
}

// Cancelling ctx: children that ignore SIGTERM get SIGKILL after the grace.
func TestCancelKillsAfterGrace(t *testing.T) {
	j := startJob(t, Spec{
		Coordinator: helper("", "ignore-term"),
		Workers:     []Proc{helper("", "ignore-term"), helper("", "ignore-term")},
		StopGrace:   100 * time.Millisecond,
	})
	j.out.waitFor(t, "ready pid=", 3)
	j.stop()
	code, err := j.wait(t)
	if code != 128+9 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %d, %v; want 137, context.Canceled", code, err)
	}
	for _, name := range []string{"coordinator", "rank 0", "rank 1"} {
		if got := j.exits(name); fmt.Sprint(got) != "[137]" {
			t.Errorf("%s exits %v, want [137]", name, got)
		}
	}
	if n := j.logs.FilterMessage("still running after the grace: SIGKILL").Len(); n != 3 {
		t.Errorf("%d children killed, want 3", n)
	}
	// SIGTERM went first.
	msgs := fmt.Sprint(j.logs.All())
	if i, k := strings.Index(msgs, "cancelled: SIGTERM"), strings.Index(msgs, "still running"); i < 0 || i > k {
		t.Errorf("SIGTERM not sent before SIGKILL: %s", msgs)
	}
}

// Workers that outstay the coordinator by StopGrace are killed, not
// restarted; the job's status is the coordinator's.
func TestWorkersKilledAfterCoordinator(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	j := startJob(t, Spec{
		Coordinator: helper("", "wait-file", "HELPER_RELEASE="+release, "HELPER_EXIT=4"),
		Workers:     []Proc{helper("", "ignore-term"), helper("", "ignore-term")},
		StopGrace:   100 * time.Millisecond,
		MaxRestarts: 5,
	})
	j.out.waitFor(t, "ready pid=", 2)
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := j.wait(t); code != 4 || err != nil {
		t.Fatalf("Run = %d, %v; want 4, nil", code, err)
	}
	for _, name := range []string{"rank 0", "rank 1"} {
		if got := j.exits(name); fmt.Sprint(got) != "[137]" {
			t.Errorf("%s exits %v, want [137]", name, got)
		}
	}
	if n := j.logs.FilterMessage("started").Len(); n != 3 {
		t.Errorf("%d starts, want 3 (no restarts)", n)
	}
}

// When a child exits, the rest of its process group goes with it (and its
// output pipe is closed).
func TestGrandchildKilled(t *testing.T) {
	j := startJob(t, Spec{Coordinator: helper("", "spawn")})
	if code, err := j.wait(t); code != 0 || err != nil {
		t.Fatalf("Run = %d, %v", code, err)
	}
	var pid int
	for _, w := range j.out.lines() {
		if _, err := fmt.Sscanf(w, "[coordinator] grandchild pid=%d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("no grandchild pid in %q", j.out.lines())
	}
	waitGone(t, pid, "the grandchild")
}

func TestStartErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-binary")
	t.Run("coordinator", func(t *testing.T) {
		j := startJob(t, Spec{Coordinator: Proc{Path: missing}})
		code, err := j.wait(t)
		if code != 1 || err == nil || !strings.Contains(err.Error(), "start coordinator") {
			t.Fatalf("Run = %d, %v", code, err)
		}
	})
	t.Run("worker", func(t *testing.T) {
		// The coordinator and the worker already started get SIGTERM.
		j := startJob(t, Spec{
			Coordinator: helper("", "wait-term"),
			Workers:     []Proc{helper("", "wait-term"), {Path: missing}},
		})
		// The status is the coordinator's (143 when the SIGTERM came before
		// its handler), and never 0.
		code, err := j.wait(t)
		if code == 0 || err == nil || !strings.Contains(err.Error(), "start rank 1") {
			t.Fatalf("Run = %d, %v", code, err)
		}
	})
	t.Run("no coordinator", func(t *testing.T) {
		if _, err := Run(context.Background(), Spec{}, nil); err == nil {
			t.Fatal("no error")
		}
	})
}

// A launcher killed by SIGKILL takes its children with it (Pdeathsig).
func TestLauncherKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "HJEPA_LAUNCH_HELPER=launcher")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pids := make(chan int, 8)
	go func() {
		defer close(pids)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "] ready pid="); ok {
				if pid, err := strconv.Atoi(rest); err == nil {
					pids <- pid
				}
			}
		}
	}()
	var got []int
	deadline := time.After(patience)
	for len(got) < 3 {
		select {
		case pid, ok := <-pids:
			if !ok {
				t.Fatalf("the launcher's output ended after %d children", len(got))
			}
			got = append(got, pid)
		case <-deadline:
			t.Fatalf("the launcher started %d children in %v", len(got), patience)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range got {
		waitGone(t, pid, "a child of the killed launcher")
	}
}

// A bar child's stream (progress.Console's output: bar redraws ended by
// '\r', log lines blanking the bar first) becomes prefixed log lines with
// the bar drawn below them, and the bar's last state stays as a line.
func TestBarLinesStayBelowLogLines(t *testing.T) {
	var out bytes.Buffer
	lw := &lineWriter{w: &out}
	stream := "\r1/10 [=>  ] 10%" + // a draw
		"\r              \rINFO validation\n\r1/10 [=>  ] 10%" + // a log line above it
		"\r5/10 [===>] 50%" + // a redraw
		"\n" // the bar's end
	copyBarLines(lw, "[rank 0] ", strings.NewReader(stream))
	lw.writeLine("[rank 1] ", []byte("INFO done\n"))
	screen := emulateTerminal(out.String())
	want := []string{"[rank 0] INFO validation", "[rank 0] 5/10 [===>] 50%", "[rank 1] INFO done", ""}
	if strings.Join(screen, "|") != strings.Join(want, "|") {
		t.Fatalf("screen:\n%q\nwant\n%q", screen, want)
	}
}

// emulateTerminal is what a terminal shows for s: '\r' returns to the
// line's start and later text overwrites; trailing blanks are trimmed.
func emulateTerminal(s string) []string {
	lines := []string{""}
	col := 0
	for _, r := range s {
		switch r {
		case '\n':
			lines = append(lines, "")
			col = 0
		case '\r':
			col = 0
		default:
			l := []rune(lines[len(lines)-1])
			if col < len(l) {
				l[col] = r
			} else {
				l = append(l, r)
			}
			lines[len(lines)-1] = string(l)
			col++
		}
	}
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return lines
}
