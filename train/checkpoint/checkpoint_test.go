package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// sample builds a checkpoint whose values depend on v, with the awkward
// cases: NaN payloads, -0, Inf, an empty and a scalar tensor.
func sample(v int, n int) *Checkpoint {
	w := make([]float32, n*4)
	for i := range w {
		w[i] = float32(v) + float32(i)*0.001
	}
	w[0] = math.Float32frombits(0x7fc00123) // NaN with payload
	w[1] = float32(math.Copysign(0, -1))
	w[2] = float32(math.Inf(-1))
	m := make([]float32, len(w))
	for i := range m {
		m[i] = float32(i*v) * 1e-7
	}
	return &Checkpoint{
		Model: []Tensor{
			{Name: "encoder.w", Shape: []int{n, 4}, Data: w},
			{Name: "encoder.b", Shape: []int{4}, Data: []float32{1, 2, 3, float32(v)}},
			{Name: "scalar", Shape: []int{}, Data: []float32{float32(v)}},
			{Name: "empty", Shape: []int{0, 3}, Data: nil},
		},
		Optimizer: []Tensor{
			{Name: "m/encoder.w", Shape: []int{n, 4}, Data: m},
			{Name: "v/encoder.w", Shape: []int{n, 4}, Data: slices.Clone(m)},
		},
		State: json.RawMessage(fmt.Sprintf(`{"step":%d,"epoch":1,"rng":[1,2,3]}`, v)),
	}
}

func modelShapes(ck *Checkpoint) (map[string][]int, map[string][]int) {
	mm, om := map[string][]int{}, map[string][]int{}
	for _, t := range ck.Model {
		mm[t.Name] = t.Shape
	}
	for _, t := range ck.Optimizer {
		om[t.Name] = t.Shape
	}
	return mm, om
}

func sameTensors(t *testing.T, what string, got, want []Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) || len(g.Data) != len(w.Data) {
			t.Fatalf("%s[%d]: got %q %v (%d), want %q %v (%d)", what, i, g.Name, g.Shape, len(g.Data), w.Name, w.Shape, len(w.Data))
		}
		for j := range w.Data {
			if math.Float32bits(g.Data[j]) != math.Float32bits(w.Data[j]) {
				t.Fatalf("%s %q[%d]: bits %08x, want %08x", what, w.Name, j, math.Float32bits(g.Data[j]), math.Float32bits(w.Data[j]))
			}
		}
	}
}

func sameCheckpoint(t *testing.T, got, want *Checkpoint) {
	t.Helper()
	sameTensors(t, "model", got.Model, want.Model)
	sameTensors(t, "optimizer", got.Optimizer, want.Optimizer)
	var a, b bytes.Buffer
	json.Compact(&a, got.State)
	json.Compact(&b, want.State)
	if a.String() != b.String() {
		t.Fatalf("state %s, want %s", a.String(), b.String())
	}
}

// sideDirs lists leftovers of the write protocol in dir.
func sideDirs(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if _, _, _, ok := parseSide(de.Name()); ok {
			out = append(out, de.Name())
		}
	}
	return out
}

// injected is the faults of a test: the real filesystem, stopped as if
// killed at one stage, without RENAME_EXCHANGE, or with files that fail.
type injected struct {
	crashAt    string // stage to stop at; "": none
	noExchange bool
	createFile func(name string) (fileWriter, error) // nil: osFiles'
	onStage    func(stage string)                    // called at every stage; nil: none
	crashed    bool                                  // it stopped at crashAt
}

func (f *injected) create(name string) (fileWriter, error) {
	if f.createFile != nil {
		return f.createFile(name)
	}
	return osFiles{}.create(name)
}

func (f *injected) crash(stage string) bool {
	if f.onStage != nil {
		f.onStage(stage)
	}
	if f.crashAt != "" && stage == f.crashAt {
		f.crashed = true
		return true
	}
	return false
}

func (f *injected) useExchange() bool { return !f.noExchange }

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run", "checkpoint_latest")
	ck := sample(7, 10)
	if err := Write(dir, ck); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, ck)
	mm, om := modelShapes(ck)
	if _, err := ReadExpect(dir, mm, om); err != nil {
		t.Fatal(err)
	}
	state, _ := os.ReadFile(filepath.Join(dir, StateFile))
	if !bytes.Contains(state, []byte("\n  \"step\": 7")) {
		t.Errorf("state.json not pretty-printed:\n%s", state)
	}
	if s := sideDirs(t, filepath.Dir(dir)); len(s) > 0 {
		t.Errorf("left behind %v", s)
	}
}

func TestReplaceKeepsOneVersion(t *testing.T) {
	t.Parallel()
	for _, exch := range []bool{true, false} {
		t.Run(fmt.Sprintf("exchange=%v", exch), func(t *testing.T) {
			t.Parallel()
			w := writer{&injected{noExchange: !exch}}
			parent := t.TempDir()
			dir := filepath.Join(parent, "checkpoint_latest")
			for v := 1; v <= 3; v++ {
				if err := w.write(dir, sample(v, 5)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			sameCheckpoint(t, got, sample(3, 5))
			des, _ := os.ReadDir(parent)
			if len(des) != 1 {
				t.Errorf("parent holds %d entries, want only the checkpoint", len(des))
			}
		})
	}
}

// TestCrashAtEveryStage stops a replace at every stage, as a kill would, and
// checks that Read then finds one complete version (old before the swap, new
// after) and that recovery leaves nothing behind.
func TestCrashAtEveryStage(t *testing.T) {
	t.Parallel()
	stages := []string{"tmp-created", "optimizer-written", "state-written", "model-written",
		"exchanged", "old-renamed", "new-renamed", "parent-synced", "renamed"}
	after := map[string]bool{"exchanged": true, "new-renamed": true, "parent-synced": true, "renamed": true}
	for _, exch := range []bool{true, false} {
		for _, prior := range []bool{true, false} {
			for _, stage := range stages {
				t.Run(fmt.Sprintf("exchange=%v/prior=%v/%s", exch, prior, stage), func(t *testing.T) {
					t.Parallel()
					parent := t.TempDir()
					dir := filepath.Join(parent, "checkpoint_latest")
					if prior {
						if err := (writer{&injected{noExchange: !exch}}).write(dir, sample(1, 5)); err != nil {
							t.Fatal(err)
						}
					}
					fx := &injected{crashAt: stage, noExchange: !exch}
					err := writer{fx}.write(dir, sample(2, 5))
					crashed := fx.crashed
					if crashed != errors.Is(err, errCrash) || (!crashed && err != nil) {
						t.Fatalf("crashed=%v err=%v", crashed, err)
					}
					got, err := Read(dir)
					switch {
					case !crashed || after[stage]:
						if err != nil {
							t.Fatal(err)
						}
						sameCheckpoint(t, got, sample(2, 5))
					case prior:
						if err != nil {
							t.Fatal(err)
						}
						sameCheckpoint(t, got, sample(1, 5))
					default:
						if err == nil || !strings.Contains(err.Error(), "no such checkpoint directory") {
							t.Fatalf("err = %v, want no such checkpoint", err)
						}
					}
					if s := sideDirs(t, parent); len(s) > 0 {
						t.Errorf("left behind after recovery: %v", s)
					}
				})
			}
		}
	}
}

// TestSwapHoldsOffRecoveryOfItsDirectory reads the checkpoint being replaced
// while its new version is written, which must leave the temporary directory
// alone, and from another goroutine in the middle of a two-rename swap, when
// the directory is missing and its previous version sits in .old-*, just as
// after a crash. The read's recovery must wait for the swap instead of
// renaming the old version back, also when it names the directory through a
// symbolic link; recovery of another directory must not wait.
func TestSwapHoldsOffRecoveryOfItsDirectory(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"same path", "symlink", "other directory"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "checkpoint_latest")
			if err := Write(dir, sample(1, 3)); err != nil {
				t.Fatal(err)
			}
			readDir := dir
			switch via {
			case "symlink":
				link := filepath.Join(t.TempDir(), "link")
				if err := os.Symlink(parent, link); err != nil {
					t.Skip(err)
				}
				readDir = filepath.Join(link, "checkpoint_latest")
			case "other directory":
				readDir = filepath.Join(t.TempDir(), "checkpoint_latest")
				if err := Write(readDir, sample(3, 3)); err != nil {
					t.Fatal(err)
				}
			}
			type result struct {
				ck  *Checkpoint
				err error
			}
			done := make(chan result, 1)
			fx := &injected{noExchange: true, onStage: func(stage string) {
				if stage == "state-written" && via != "other directory" {
					// The half-filled temporary directory is in flight, not
					// abandoned, however its directory is named.
					ck, err := Read(readDir)
					if err != nil {
						t.Fatal(err)
					}
					sameCheckpoint(t, ck, sample(1, 3))
				}
				if stage != "old-renamed" {
					return
				}
				go func() {
					ck, err := Read(readDir)
					done <- result{ck, err}
				}()
				if via == "other directory" {
					select {
					case r := <-done:
						done <- r
					case <-time.After(time.Minute):
						t.Error("recovery of another directory waited for the swap")
					}
					return
				}
				// The read cannot finish while the swap holds its lock; if the
				// lock were missing it would finish (wrongly) well within this.
				select {
				case r := <-done:
					t.Errorf("recovery ran during the swap: read %v", r.err)
					done <- r
				case <-time.After(100 * time.Millisecond):
				}
			}}
			if err := (writer{fx}).write(dir, sample(2, 3)); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			want := 2
			if via == "other directory" {
				want = 3
			}
			sameCheckpoint(t, r.ck, sample(want, 3))
			if ck, err := Read(dir); err != nil {
				t.Fatal(err)
			} else {
				sameCheckpoint(t, ck, sample(2, 3))
			}
			if s := sideDirs(t, parent); len(s) > 0 {
				t.Errorf("left behind %v", s)
			}
		})
	}
}

// deadPid is above Linux's largest pid_max, so no process has it.
const deadPid = 1<<22 + 17

func TestRecoverHandMadeCrashStates(t *testing.T) {
	t.Parallel()
	mk := func(t *testing.T, parent, name string, v int) {
		t.Helper()
		if err := Write(filepath.Join(parent, name), sample(v, 3)); err != nil {
			t.Fatal(err)
		}
	}
	tmpName := fmt.Sprintf(".tmp-checkpoint_latest-%d-0a0b", deadPid)
	oldName := fmt.Sprintf(".old-checkpoint_latest-%d-0c0d", deadPid)
	cases := []struct {
		name   string
		setup  func(t *testing.T, parent string)
		want   int // version Read must return; 0: no checkpoint
		manage bool
	}{
		{"only tmp", func(t *testing.T, p string) {
			mk(t, p, tmpName, 2)
			os.Remove(filepath.Join(p, tmpName, ModelFile)) // half written
		}, 0, false},
		{"old, dir missing", func(t *testing.T, p string) { mk(t, p, oldName, 1) }, 1, false},
		{"old and tmp, dir missing", func(t *testing.T, p string) {
			mk(t, p, oldName, 1)
			mk(t, p, tmpName, 2)
		}, 1, false},
		{"old and dir", func(t *testing.T, p string) {
			mk(t, p, oldName, 1)
			mk(t, p, "checkpoint_latest", 2)
		}, 2, false},
		{"old, dir missing, via Manager.Latest", func(t *testing.T, p string) {
			mk(t, p, oldName, 1)
			mk(t, p, tmpName, 2)
		}, 1, true},
		{"own pid tmp not in flight", func(t *testing.T, p string) {
			mk(t, p, "checkpoint_latest", 1)
			mk(t, p, fmt.Sprintf(".tmp-checkpoint_latest-%d-beef", os.Getpid()), 2)
		}, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			c.setup(t, parent)
			dir := filepath.Join(parent, "checkpoint_latest")
			if c.manage {
				m := &Manager{Dir: parent}
				got, ok, warn, err := m.Latest()
				if err != nil || !ok || got != dir || warn != "" {
					t.Fatalf("Latest = %q %v %q %v", got, ok, warn, err)
				}
			}
			ck, err := Read(dir)
			if c.want == 0 {
				if err == nil {
					t.Fatal("read a checkpoint that should not exist")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				sameCheckpoint(t, ck, sample(c.want, 3))
			}
			if s := sideDirs(t, parent); len(s) > 0 {
				t.Errorf("left behind: %v", s)
			}
		})
	}
}

func TestSideDirOfLiveProcessIsLeftAlone(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	name := fmt.Sprintf(".tmp-checkpoint_latest-%d-0001", os.Getppid())
	if err := os.Mkdir(filepath.Join(parent, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(parent, "checkpoint_latest"), sample(1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(parent, name)); err != nil {
		t.Errorf("another live process's temp dir was removed: %v", err)
	}
}

func TestBadCheckpoints(t *testing.T) {
	t.Parallel()
	good := sample(3, 6)
	mm, om := modelShapes(good)
	otherShape := map[string][]int{}
	for k, v := range mm {
		otherShape[k] = v
	}
	otherShape["encoder.w"] = []int{6, 8}
	otherShape["encoder.extra"] = []int{2}
	delete(otherShape, "scalar")

	cases := []struct {
		name    string
		damage  func(dir string) error
		model   map[string][]int
		wantAll []string
	}{
		{"truncated model", func(d string) error {
			return os.Truncate(filepath.Join(d, ModelFile), 200)
		}, nil, []string{ModelFile, "truncated", "damaged"}},
		{"truncated to nothing", func(d string) error {
			return os.Truncate(filepath.Join(d, ModelFile), 3)
		}, nil, []string{ModelFile, "truncated"}},
		{"flipped bit in model data", func(d string) error {
			return flipLastByte(filepath.Join(d, ModelFile))
		}, nil, []string{ModelFile, "checksum"}},
		{"flipped bit in optimizer data", func(d string) error {
			return flipLastByte(filepath.Join(d, OptimizerFile))
		}, nil, []string{OptimizerFile, "checksum"}},
		{"corrupt state.json", func(d string) error {
			return os.WriteFile(filepath.Join(d, StateFile), []byte(`{"step": 3,`), 0o644)
		}, nil, []string{StateFile, "not valid JSON"}},
		{"edited state.json", func(d string) error {
			return os.WriteFile(filepath.Join(d, StateFile), []byte(`{"step": 4}`), 0o644)
		}, nil, []string{StateFile, "checksum"}},
		{"missing optimizer", func(d string) error {
			return os.Remove(filepath.Join(d, OptimizerFile))
		}, nil, []string{OptimizerFile, "missing"}},
		{"missing state", func(d string) error {
			return os.Remove(filepath.Join(d, StateFile))
		}, nil, []string{StateFile, "missing"}},
		{"optimizer from another save", func(d string) error {
			other := filepath.Join(filepath.Dir(d), "other")
			if err := Write(other, sample(4, 6)); err != nil {
				return err
			}
			return os.Rename(filepath.Join(other, OptimizerFile), filepath.Join(d, OptimizerFile))
		}, nil, []string{OptimizerFile, "another save"}},
		{"missing directory", func(d string) error { return os.RemoveAll(d) }, nil, []string{"no such checkpoint directory"}},
		{"different model config", func(string) error { return nil }, otherShape, []string{
			ModelFile, `tensor "encoder.w" has shape [6 4], want [6 8]`,
			`unexpected tensor "scalar"`, `missing tensor "encoder.extra"`, "--config",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "checkpoint_latest")
			if err := Write(dir, good); err != nil {
				t.Fatal(err)
			}
			if err := c.damage(dir); err != nil {
				t.Fatal(err)
			}
			model := mm
			if c.model != nil {
				model = c.model
			}
			_, err := ReadExpect(dir, model, om)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.wantAll {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.model == nil && Verify(dir) == nil {
				t.Error("Verify accepted it")
			}
		})
	}
}

func flipLastByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b[len(b)-1] ^= 1
	return os.WriteFile(path, b, 0o644)
}

func TestRefusesToReplaceForeignDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "thesis.tex"), []byte("precious"), 0o644)
	err := Write(dir, sample(1, 2))
	if err == nil || !strings.Contains(err.Error(), "thesis.tex") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "thesis.tex")); string(b) != "precious" {
		t.Fatal("foreign file lost")
	}
	if s := sideDirs(t, filepath.Dir(dir)); len(s) > 0 {
		t.Errorf("left behind %v", s)
	}
}

func TestRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "c")
	bad := sample(1, 2)
	bad.State = json.RawMessage(`{"step":`)
	if err := Write(dir, bad); err == nil || !strings.Contains(err.Error(), StateFile) {
		t.Errorf("bad state: %v", err)
	}
	bad = sample(1, 2)
	bad.Model[0].Shape = []int{3, 4}
	if err := Write(dir, bad); err == nil || !strings.Contains(err.Error(), "encoder.w") {
		t.Errorf("bad shape: %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a failed write created the checkpoint")
	}
}

// enospcWriter fails like a full disk once budget bytes are spent.
type enospcWriter struct {
	f      *os.File
	budget *int
}

func (w enospcWriter) Write(p []byte) (int, error) {
	if len(p) > *w.budget {
		n, _ := w.f.Write(p[:*w.budget])
		*w.budget = 0
		return n, &os.PathError{Op: "write", Path: w.f.Name(), Err: syscall.ENOSPC}
	}
	*w.budget -= len(p)
	return w.f.Write(p)
}
func (w enospcWriter) Sync() error  { return w.f.Sync() }
func (w enospcWriter) Close() error { return w.f.Close() }

func TestFullDiskLeavesPreviousCheckpoint(t *testing.T) {
	t.Parallel()
	for _, budget := range []int{0, 100, 3000, 20000} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "checkpoint_latest")
			if err := Write(dir, sample(1, 500)); err != nil {
				t.Fatal(err)
			}
			left := budget
			full := writer{&injected{createFile: func(name string) (fileWriter, error) {
				f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				return enospcWriter{f, &left}, err
			}}}
			err := full.write(dir, sample(2, 500))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("err = %v, want ENOSPC", err)
			}
			for _, w := range []string{"checkpoint_latest", ".safetensors", "free disk space", "checkpoint.dir", "keep_last"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			got, err := Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			sameCheckpoint(t, got, sample(1, 500))
			if s := sideDirs(t, parent); len(s) > 0 {
				t.Errorf("left behind %v", s)
			}
		})
	}
}

// TestFullTmpfs fills a real 512 KiB filesystem (root on Linux only).
func TestFullTmpfs(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "checkpoints", "checkpoint_latest")
	small := sample(1, 4000) // ~64 KiB model + 128 KiB optimizer
	if err := Write(dir, small); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, f := range []string{ModelFile, OptimizerFile, StateFile} {
		before[f], _ = os.ReadFile(filepath.Join(dir, f))
	}
	free, err := FreeBytes(dir)
	if err != nil || free == 0 || free > 512<<10 {
		t.Fatalf("FreeBytes = %d, %v", free, err)
	}
	big := sample(2, 40000) // ~1.9 MiB
	if EstimateBytes(big) <= int64(free) {
		t.Fatalf("estimate %d fits in %d free", EstimateBytes(big), free)
	}
	err = Write(dir, big)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "free disk space") {
		t.Fatalf("err = %v, want ENOSPC with advice", err)
	}
	for f, b := range before {
		now, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Equal(now, b) {
			t.Errorf("%s changed or unreadable: %v", f, err)
		}
	}
	if _, err := Read(dir); err != nil {
		t.Fatal(err)
	}
	if s := sideDirs(t, filepath.Dir(dir)); len(s) > 0 {
		t.Errorf("left behind %v", s)
	}
	if after, _ := FreeBytes(dir); after != free {
		t.Errorf("free space %d after the failed write, %d before", after, free)
	}
}

func TestFreeBytesFreshPath(t *testing.T) {
	t.Parallel()
	n, err := FreeBytes(filepath.Join(t.TempDir(), "not", "yet", "made"))
	if err != nil || n == 0 {
		t.Fatalf("FreeBytes = %d, %v", n, err)
	}
}

func TestEstimateBytesBoundsSize(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "c")
	ck := sample(1, 3000)
	if err := Write(dir, ck); err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, f := range []string{ModelFile, OptimizerFile, StateFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	if est := EstimateBytes(ck); est < size || est > size+200<<10 {
		t.Errorf("estimate %d for %d bytes on disk", est, size)
	}
}

var _ io.Writer = enospcWriter{}

// A read-only Manager (the coordinator's, possibly on another host than
// the writer) finds the latest checkpoint without touching a temporary
// directory whose pid it cannot see alive; a normal one removes it.
func TestReadOnlyManagerLeavesWritesAlone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, LatestName), sample(1, 3)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".tmp-%s-%d-0a0b", LatestName, deadPid))
	if err := Write(tmp, sample(2, 3)); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, fmt.Sprintf(".old-step_9-%d-0c0d", deadPid))
	if err := Write(old, sample(3, 3)); err != nil {
		t.Fatal(err)
	}
	ro := &Manager{Dir: dir, ReadOnly: true}
	got, ok, _, err := ro.Latest()
	if err != nil || !ok || got != filepath.Join(dir, LatestName) {
		t.Fatalf("read-only Latest = %q, %v, %v", got, ok, err)
	}
	for _, p := range []string{tmp, old} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("read-only Latest touched %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "step_9")); err == nil {
		t.Fatal("read-only Latest restored an interrupted replace")
	}
	if _, _, _, err := (&Manager{Dir: dir}).Latest(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("a normal Latest left the abandoned %s (%v)", tmp, err)
	}
}

// TestLegacyTargetHeadsRefused: a checkpoint from before the targets became
// parameter-free (it holds EMA copies of the level heads) is refused with a
// message that says so and what to do, not as a generic shape mismatch.
func TestLegacyTargetHeadsRefused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "checkpoint_latest")
	ck := sample(3, 4)
	mm, om := modelShapes(ck)
	ck.Model = append(ck.Model, Tensor{Name: LegacyTargetPrefix + "0.proj.weight", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}})
	if err := Write(dir, ck); err != nil {
		t.Fatal(err)
	}
	_, err := ReadExpect(dir, mm, om)
	if err == nil {
		t.Fatal("legacy checkpoint accepted")
	}
	for _, want := range []string{"parameter-free", "target.heads.0.proj.weight", "train a new run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestTensorIndexChecked: the data checksums do not cover the safetensors
// header, so the manifest's index checksum must catch a same-size edit of a
// name or shape; format 1 checkpoints (no index checksum) still read, and a
// format 2 file does not pass for one by its version alone.
func TestTensorIndexChecked(t *testing.T) {
	t.Parallel()
	ck := sample(3, 2)
	edit := func(t *testing.T, file string, from, to string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "ck")
		if err := Write(dir, ck); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(from)) {
			t.Fatalf("%s lacks %s", file, from)
		}
		if err := os.WriteFile(p, bytes.Replace(b, []byte(from), []byte(to), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, c := range []struct {
		name, file, from, to, want string
	}{
		{"renamed model tensor", ModelFile, `"encoder.b"`, `"encoder.c"`, "tensor index"},
		{"reshaped model tensor", ModelFile, `[2,4]`, `[4,2]`, "tensor index"},
		{"swapped optimizer names", OptimizerFile, `"m/encoder.w"`, `"v/encoder.x"`, "tensor index"},
		{"format 2 marked 1", ModelFile, `"hjepa.checkpoint":"2"`, `"hjepa.checkpoint":"1"`, metaIndexCRC},
		{"manifest key damaged", OptimizerFile, `"hjepa.index_crc32c"`, `"hjepa.index_crc32C"`, "lacks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read(edit(t, c.file, c.from, c.to))
			if err == nil || !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s and %q", err, c.file, c.want)
			}
		})
	}

	// A format 1 checkpoint, as written before the index checksum.
	dir := filepath.Join(t.TempDir(), "ck")
	if err := Write(dir, ck); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ModelFile, OptimizerFile} {
		p := filepath.Join(dir, name)
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		meta := maps.Clone(f.Metadata)
		delete(meta, metaIndexCRC)
		meta[metaVersion] = legacyFormat
		var ts []safetensors.Tensor
		for _, info := range f.Tensors() {
			x, shape, err := f.Float32(info.Name)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.Tensor{Name: info.Name, Shape: shape, F32: x})
		}
		f.Close()
		if err := safetensors.WriteFile(p, ts, meta); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatalf("format 1 checkpoint: %v", err)
	}
	sameCheckpoint(t, got, ck)
}
