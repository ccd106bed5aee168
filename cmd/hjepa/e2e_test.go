package main

// End-to-end tests: the hjepa binary, built once per test process, run as a
// real process on configs/synthetic-test.yaml in temporary directories.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// hjepaBin is the binary TestMain builds; syntheticCfg the absolute path of
// configs/synthetic-test.yaml.
var hjepaBin, syntheticCfg string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hjepa-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Traversable by the unprivileged user the unreadable-config case runs as.
	_ = os.Chmod(dir, 0o755)
	hjepaBin = filepath.Join(dir, "hjepa")
	build := exec.Command("go", "build", "-o", hjepaBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1
	}
	if syntheticCfg, err = filepath.Abs(filepath.Join("..", "..", "configs", "synthetic-test.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// result is a finished hjepa process.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, tail(r.stdout, 4000), tail(r.stderr, 4000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// hjepaCmd is an exec.Cmd for the binary with captured output and an
// environment free of HJEPA_* variables (unless added with env).
func hjepaCmd(dir string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	c := exec.Command(hjepaBin, args...)
	c.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HJEPA_") {
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, env...)
	var so, se bytes.Buffer
	c.Stdout, c.Stderr = &so, &se
	return c, &so, &se
}

// wait waits for a started command and returns its result; a kill by a
// signal gives code -1.
func wait(t *testing.T, c *exec.Cmd, so, se *bytes.Buffer) result {
	t.Helper()
	err := c.Wait()
	r := result{stdout: so.String(), stderr: se.String()}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s: %v", c.Args, err)
		}
	}
	r.code = c.ProcessState.ExitCode()
	return r
}

// hjepa runs the binary to completion in dir.
func hjepa(t *testing.T, dir string, args ...string) result {
	t.Helper()
	c, so, se := hjepaCmd(dir, nil, args...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return wait(t, c, so, se)
}

// mustSucceed runs hjepa and fails the test unless it exits 0.
func mustSucceed(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := hjepa(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("hjepa %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// trainArgs is `train --config synthetic-test.yaml` with sets and the output.
func trainArgs(out string, sets ...string) []string {
	args := []string{"train", "--config", syntheticCfg, "--out", out}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

// metricRow is one line of metrics.jsonl, numbers as float64 (JSON numbers
// written by encoding/json from float64 round-trip exactly).
type metricRow map[string]float64

func (r metricRow) step() int64   { return int64(r["step"]) }
func (r metricRow) isTrain() bool { _, ok := r["loss"]; return ok }
func (r metricRow) isVal() bool   { _, ok := r["val_loss"]; return ok && !r.isTrain() }

func readMetrics(t *testing.T, path string) []metricRow {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []metricRow
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		var r metricRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s:%d: %v: %q", path, n, err, sc.Text())
		}
		rows = append(rows, r)
	}
	return rows
}

// trainRows indexes the training rows by step and fails on a duplicate.
func trainRows(t *testing.T, rows []metricRow, what string) map[int64]metricRow {
	t.Helper()
	out := map[int64]metricRow{}
	for _, r := range rows {
		if !r.isTrain() {
			continue
		}
		if _, dup := out[r.step()]; dup {
			t.Errorf("%s: step %d has more than one training row in metrics.jsonl", what, r.step())
		}
		out[r.step()] = r
	}
	return out
}

// logLine is one zap JSON line of logs/train.log.
type logLine map[string]any

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logLine
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var m logLine
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%s: not JSON: %q", path, l)
		}
		out = append(out, m)
	}
	return out
}

func (l logLine) msg() string { s, _ := l["msg"].(string); return s }

// stateStep reads the step of dir/state.json; ok is false while it is not
// (yet) there or not complete.
func stateStep(dir string) (int64, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, checkpoint.StateFile))
	if err != nil {
		return 0, false
	}
	var st struct {
		Step int64 `json:"step"`
	}
	if json.Unmarshal(raw, &st) != nil {
		return 0, false
	}
	return st.Step, true
}

// sameTensors fails unless a and b hold the same tensors, bit for bit.
func sameTensors(t *testing.T, what string, a, b []checkpoint.Tensor) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("%s: %d tensors vs %d", what, len(a), len(b))
		return
	}
	byName := map[string]checkpoint.Tensor{}
	for _, x := range b {
		byName[x.Name] = x
	}
	bad := 0
	for _, x := range a {
		y, ok := byName[x.Name]
		if !ok {
			t.Errorf("%s: tensor %q missing", what, x.Name)
			continue
		}
		if fmt.Sprint(x.Shape) != fmt.Sprint(y.Shape) || len(x.Data) != len(y.Data) {
			t.Errorf("%s: tensor %q shape %v vs %v", what, x.Name, x.Shape, y.Shape)
			continue
		}
		for i := range x.Data {
			if math.Float32bits(x.Data[i]) != math.Float32bits(y.Data[i]) {
				if bad++; bad <= 5 {
					t.Errorf("%s: tensor %q[%d] = %v vs %v", what, x.Name, i, x.Data[i], y.Data[i])
				}
				break
			}
		}
	}
}

// poll calls cond every interval until it holds or the deadline passes.
func poll(t *testing.T, deadline time.Duration, cond func() bool) bool {
	t.Helper()
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return cond()
}

// resumeSteps is the length of the runs of TestResumeAfterSIGKILLIsExact:
// four epochs of the synthetic set (32 steps each), so the resumed run
// crosses epoch boundaries, validations and periodic checkpoints.
const resumeSteps = 128

// TestResumeAfterSIGKILLIsExact: a run killed with SIGKILL after its
// step-20 checkpoint and resumed gives the same per-step losses and final
// weights as an uninterrupted run, bit for bit (CPU, threads=1).
func TestResumeAfterSIGKILLIsExact(t *testing.T) {
	root := t.TempDir()
	sets := []string{fmt.Sprintf("training.max_steps=%d", resumeSteps), "logging.every_steps=1", "threads=1"}
	a, b := filepath.Join(root, "A"), filepath.Join(root, "B")

	mustSucceed(t, root, trainArgs(a, sets...)...)

	setsB := append(append([]string(nil), sets...), "checkpoint.every_steps=10")
	c, so, se := hjepaCmd(root, nil, trainArgs(b, setsB...)...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	latest := filepath.Join(b, "checkpoints", checkpoint.LatestName)
	reached := poll(t, 30*time.Second, func() bool {
		s, ok := stateStep(latest)
		return ok && s >= 20
	})
	// Let it run a few steps past the checkpoint, so metrics.jsonl holds
	// rows the resumed run must drop and redo.
	if reached {
		poll(t, 200*time.Millisecond, func() bool {
			rows, _ := os.ReadFile(filepath.Join(b, "metrics.jsonl"))
			return bytes.Contains(rows, []byte(`"step":25,`))
		})
	}
	_ = c.Process.Kill()
	first := wait(t, c, so, se)
	if first.code == 0 {
		t.Fatalf("run B finished before it could be killed (make resumeSteps larger): %s", first)
	}
	if !reached {
		t.Logf("run B was killed before its step-20 checkpoint; resuming from whatever it left")
	}
	k, ok := stateStep(latest)
	if !ok {
		// Killed in the middle of an exchange: the checkpoint package
		// recovers on the next read; --resume must cope either way.
		t.Logf("no readable %s right after the kill", latest)
	}
	var logged int64
	for _, row := range readMetrics(t, filepath.Join(b, "metrics.jsonl")) {
		if row.isTrain() {
			logged = max(logged, row.step())
		}
	}
	t.Logf("killed run B after step %d was logged; latest checkpoint at step %d (ok=%v); the resumed run must redo steps %d..%d", logged, k, ok, k+1, logged)

	resumed := mustSucceed(t, root, append(trainArgs(b, setsB...), "--resume")...)
	if !strings.Contains(resumed.stderr, "resumed") {
		t.Errorf("resumed run does not log that it resumed:\n%s", tail(resumed.stderr, 3000))
	}

	ra := trainRows(t, readMetrics(t, filepath.Join(a, "metrics.jsonl")), "A")
	rb := trainRows(t, readMetrics(t, filepath.Join(b, "metrics.jsonl")), "B")
	for s := int64(1); s <= resumeSteps; s++ {
		x, okA := ra[s]
		y, okB := rb[s]
		if !okA || !okB {
			t.Errorf("step %d: training row in A %v, in B %v (want exactly one in each)", s, okA, okB)
			continue
		}
		for _, key := range sortedKeys(x) {
			if key == "step_ms" {
				continue
			}
			if math.Float64bits(x[key]) != math.Float64bits(y[key]) {
				after := ""
				if s > k {
					after = " (after the resume point)"
				}
				t.Errorf("step %d%s: %s = %v uninterrupted, %v killed and resumed", s, after, key, x[key], y[key])
			}
		}
	}
	if len(rb) != resumeSteps {
		t.Errorf("B's metrics.jsonl has %d training rows, want %d", len(rb), resumeSteps)
	}

	ckA, err := checkpoint.Read(filepath.Join(a, "checkpoints", checkpoint.LatestName))
	if err != nil {
		t.Fatal(err)
	}
	ckB, err := checkpoint.Read(latest)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "model.safetensors", ckA.Model, ckB.Model)
	sameTensors(t, "optimizer.safetensors", ckA.Optimizer, ckB.Optimizer)
	if s, _ := stateStep(latest); s != resumeSteps {
		t.Errorf("B's final checkpoint is at step %d, want %d", s, resumeSteps)
	}
}

func sortedKeys(m metricRow) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestSIGTERMWritesCheckpointAndExitsZero: SIGTERM mid-run writes
// checkpoint_latest at the current step, exits 0, and --resume continues
// from that step.
func TestSIGTERMWritesCheckpointAndExitsZero(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "run")
	c, so, se := hjepaCmd(root, nil, trainArgs(out, "training.max_steps=100000", "logging.every_steps=1", "threads=1")...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	metrics := filepath.Join(out, "metrics.jsonl")
	if !poll(t, 30*time.Second, func() bool {
		raw, _ := os.ReadFile(metrics)
		return bytes.Count(raw, []byte("\n")) >= 5
	}) {
		_ = c.Process.Kill()
		t.Fatalf("no 5 steps logged in 30 s: %s", wait(t, c, so, se))
	}
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
		}
	}()
	r := wait(t, c, so, se)
	close(done)
	if r.code != 0 {
		t.Fatalf("after SIGTERM: %s", r)
	}
	if !strings.Contains(r.stdout, "interrupted") || !strings.Contains(r.stdout, "--resume") {
		t.Errorf("summary does not say the run was interrupted and how to continue:\n%s", r.stdout)
	}
	latest := filepath.Join(out, "checkpoints", checkpoint.LatestName)
	if err := checkpoint.Verify(latest); err != nil {
		t.Fatalf("checkpoint after SIGTERM: %v", err)
	}
	step, ok := stateStep(latest)
	if !ok {
		t.Fatalf("no state.json step in %s", latest)
	}
	var last int64
	for _, row := range readMetrics(t, metrics) {
		if row.isTrain() {
			last = max(last, row.step())
		}
	}
	if step < last || step == 0 {
		t.Fatalf("checkpoint after SIGTERM is at step %d, but step %d was logged", step, last)
	}
	t.Logf("SIGTERM: checkpoint at step %d, last logged step %d", step, last)

	// Continue for a few more steps (max_steps changes, so the schedule
	// differs from the interrupted run's; the point is where it starts).
	end := step + 6
	mustSucceed(t, root, append(trainArgs(out, fmt.Sprintf("training.max_steps=%d", end), "logging.every_steps=1", "threads=1"), "--resume")...)
	var from int64 = -1
	for _, l := range readLog(t, filepath.Join(out, "logs", "train.log")) {
		if l.msg() == "resumed" {
			from = int64(l["step"].(float64))
		}
	}
	if from != step {
		t.Errorf("--resume continued from step %d, want %d", from, step)
	}
	rows := trainRows(t, readMetrics(t, metrics), "after resume")
	for s := int64(1); s <= end; s++ {
		if _, ok := rows[s]; !ok && (s > step || s <= last) {
			t.Errorf("metrics.jsonl has no training row for step %d", s)
		}
	}
	if s, _ := stateStep(latest); s != end {
		t.Errorf("after --resume the latest checkpoint is at step %d, want %d", s, end)
	}
}

// collapseRun trains steps steps with validation every 50 and returns the
// validation rows and the collapse-alarm log lines.
func collapseRun(t *testing.T, steps int, sets ...string) (val []metricRow, alarms []logLine, r result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	base := []string{fmt.Sprintf("training.max_steps=%d", steps), "evaluation.every_steps=50", "logging.every_steps=50", "threads=1"}
	r = mustSucceed(t, filepath.Dir(out), trainArgs(out, append(base, sets...)...)...)
	for _, row := range readMetrics(t, filepath.Join(out, "metrics.jsonl")) {
		if row.isVal() {
			val = append(val, row)
		}
	}
	for _, l := range readLog(t, filepath.Join(out, "logs", "train.log")) {
		if strings.HasPrefix(l.msg(), "collapse alarm") {
			alarms = append(alarms, l)
		}
	}
	if len(val) == 0 {
		t.Fatalf("no validation rows in metrics.jsonl")
	}
	return val, alarms, r
}

func describeVal(rows []metricRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  step %d: feature_std %.4g rankme %.3g (%.3g of D) val_loss %.3g alarm %v",
			r.step(), r["feature_std"], r["rankme"], r["rankme_frac"], r["val_loss"], r["collapse_alarm"])
	}
	return b.String()
}

// TestCollapseAlarmFires: with the target encoder equal to the context
// encoder (EMA momentum 0, the trivial solution the EMA exists to prevent),
// a high learning rate and no VICReg, the representation collapses within
// 200 steps and the alarm, at its default thresholds (relative to the run's
// own initial and peak values), must fire; a 2000-step run with the
// config's own EMA and lr must not raise it.
func TestCollapseAlarmFires(t *testing.T) {
	t.Run("collapsing", func(t *testing.T) {
		t.Parallel()
		val, alarms, r := collapseRun(t, 200, "model.ema.momentum=0", "model.ema.momentum_end=0",
			"training.lr=1e-2", "loss.vicreg.weight=0")
		t.Logf("collapsing run:%s", describeVal(val))
		if len(alarms) == 0 {
			t.Errorf("no \"collapse alarm\" warning in logs/train.log")
		}
		for _, a := range alarms {
			if a["level"] != "warn" {
				t.Errorf("collapse alarm logged at level %v, want warn", a["level"])
			}
		}
		if last := val[len(val)-1]; last["collapse_alarm"] != 1 {
			t.Errorf("final validation row has collapse_alarm %v, want 1", last["collapse_alarm"])
		}
		if !strings.Contains(r.stdout, "collapse alarms") || strings.Contains(r.stdout, "collapse alarms 0") {
			t.Errorf("summary does not count the collapse alarms:\n%s", r.stdout)
		}
	})
	t.Run("healthy", func(t *testing.T) {
		t.Parallel()
		val, alarms, _ := collapseRun(t, 2000)
		t.Logf("healthy run:%s", describeVal(val))
		for _, a := range alarms {
			t.Errorf("healthy run raised %q at step %v", a.msg(), a["step"])
		}
		for _, row := range val {
			if row["collapse_alarm"] != 0 {
				t.Errorf("healthy run: validation at step %d has collapse_alarm %v", row.step(), row["collapse_alarm"])
			}
		}
	})
}

// TestFinalValidationNotDuplicated: when the last step is also a validation
// step (evaluation.every_steps divides training.max_steps), the run
// validates once there, not twice: metrics.jsonl holds one validation row
// per step, as it holds one training row per step.
func TestFinalValidationNotDuplicated(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "run")
	mustSucceed(t, root, trainArgs(out, "training.max_steps=20", "evaluation.every_steps=10", "threads=1")...)
	seen := map[int64]int{}
	for _, row := range readMetrics(t, filepath.Join(out, "metrics.jsonl")) {
		if row.isVal() {
			seen[row.step()]++
		}
	}
	for _, s := range []int64{10, 20} {
		if seen[s] != 1 {
			t.Errorf("step %d has %d validation rows in metrics.jsonl, want 1", s, seen[s])
		}
	}
}

// --version names the release, the commit (or "unknown"), Go and whether the
// build can reach a GPU.
func TestVersion(t *testing.T) {
	c, so, se := hjepaCmd(t.TempDir(), nil, "--version")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r := wait(t, c, so, se)
	if r.code != 0 || !regexp.MustCompile(`^hjepa version \S+ \(commit \S+, go1\.\S+, linux/\w+, (cuda|nocuda)\)\n$`).MatchString(r.stdout) {
		t.Fatalf("hjepa --version: %s", r)
	}
}

// eval, embed and export read the model from the checkpoint: no --config,
// run from another directory, the data and evaluation keys from --set.
func TestEvalExportEmbedWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	run := func(args ...string) result {
		t.Helper()
		p := startProc(t, t.TempDir(), nil, args...)
		return p.wait(t, 2*time.Minute)
	}
	if r := run(trainArgs(out, "training.max_steps=4", "threads=1", "logging.progress=false")...); r.code != 0 {
		t.Fatalf("train: %s", r)
	}
	ck := filepath.Join(out, "checkpoints", "checkpoint_latest")
	r := run("eval", "--checkpoint", ck, "--threads", "1", "--set", "evaluation.train_limit=64", "--set", "evaluation.test_limit=32", "--out", filepath.Join(dir, "eval.json"))
	if r.code != 0 || !strings.Contains(r.stdout, "trained") || !strings.Contains(r.stdout, "[64 train / 32 test images") {
		t.Fatalf("eval without --config: %s", r)
	}
	exp := filepath.Join(dir, "enc.safetensors")
	if r := run("export", "--checkpoint", ck, "--out", exp); r.code != 0 || !strings.Contains(r.stdout, "fc_norm=False") {
		t.Fatalf("export without --config: %s", r)
	}
	if _, err := os.Stat(exp); err != nil {
		t.Fatal(err)
	}
	emb := filepath.Join(dir, "f.npy")
	if r := run("embed", "--checkpoint", ck, "--out", emb, "--limit", "16", "--threads", "1"); r.code != 0 {
		t.Fatalf("embed without --config: %s", r)
	}
	if _, err := os.Stat(emb); err != nil {
		t.Fatal(err)
	}
}
