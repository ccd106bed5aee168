package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func names(t *testing.T, m *Manager) []string {
	t.Helper()
	es, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestManagerPeriodicPruning(t *testing.T) {
	t.Parallel()
	m := &Manager{Dir: filepath.Join(t.TempDir(), "checkpoints"), KeepLast: 2}
	if ok, err := m.SaveBest(sample(100, 3), 0.5); err != nil || !ok {
		t.Fatal(ok, err)
	}
	for e := 1; e <= 5; e++ {
		if err := m.SavePeriodic("epoch", e, sample(e, 3)); err != nil {
			t.Fatal(err)
		}
		if err := m.SaveLatest(sample(10+e, 3)); err != nil {
			t.Fatal(err)
		}
		if err := m.SavePeriodic("step", 100*e, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"checkpoint_latest", "checkpoint_best", "checkpoint_epoch_4", "checkpoint_epoch_5", "checkpoint_step_400", "checkpoint_step_500"}
	if got := names(t, m); !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for dir, v := range map[string]int{"checkpoint_epoch_4": 4, "checkpoint_step_500": 15, "checkpoint_latest": 15, "checkpoint_best": 100} {
		ck, err := Read(filepath.Join(m.Dir, dir))
		if err != nil {
			t.Fatal(err)
		}
		sameCheckpoint(t, ck, sample(v, 3))
	}
	// A run resumed from an earlier point keeps what it just saved.
	m.KeepLast = 1
	if err := m.SavePeriodic("epoch", 2, sample(2, 3)); err != nil {
		t.Fatal(err)
	}
	if got := names(t, m); !slices.Contains(got, "checkpoint_epoch_2") || slices.Contains(got, "checkpoint_epoch_4") {
		t.Fatalf("after resume from epoch 2: %v", got)
	}
	if err := m.SavePeriodic("month", 1, nil); err == nil {
		t.Error("accepted kind month")
	}
	if s := sideDirs(t, m.Dir); len(s) > 0 {
		t.Errorf("left behind %v", s)
	}
}

func TestManagerLinksInsteadOfCopying(t *testing.T) {
	t.Parallel()
	m := &Manager{Dir: t.TempDir(), KeepLast: 3}
	if err := m.SavePeriodic("epoch", 1, sample(1, 3)); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(m.Dir, LatestName, ModelFile))
	b, _ := os.Stat(filepath.Join(m.Dir, PeriodicName("epoch", 1), ModelFile))
	if !os.SameFile(a, b) {
		t.Error("periodic checkpoint is a copy, want a hard link")
	}
	// Replacing latest leaves the periodic one intact.
	if err := m.SaveLatest(sample(2, 3)); err != nil {
		t.Fatal(err)
	}
	ck, err := Read(filepath.Join(m.Dir, PeriodicName("epoch", 1)))
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, ck, sample(1, 3))
}

func TestManagerBest(t *testing.T) {
	t.Parallel()
	m := &Manager{Dir: t.TempDir()}
	steps := []struct {
		metric float64
		saved  bool
	}{{3, true}, {2, true}, {5, false}, {2, false}, {1, true}}
	for i, s := range steps {
		ok, err := m.SaveBest(sample(i, 3), s.metric)
		if err != nil || ok != s.saved {
			t.Fatalf("SaveBest(%v) = %v, %v; want %v", s.metric, ok, err, s.saved)
		}
	}
	rec, err := readBest(filepath.Join(m.Dir, BestName))
	if err != nil || rec.Metric != 1 {
		t.Fatalf("best.json = %+v, %v", rec, err)
	}
	ck, err := Read(filepath.Join(m.Dir, BestName))
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, ck, sample(4, 3))
	if got := names(t, m); !slices.Equal(got, []string{LatestName, BestName}) {
		t.Errorf("dirs %v", got)
	}

	m2 := &Manager{Dir: t.TempDir(), KeepBestN: 2}
	for i, metric := range []float64{3, 2, 5, 1, 2.5} {
		if _, err := m2.SaveBest(sample(i, 3), metric); err != nil {
			t.Fatal(err)
		}
	}
	var metrics []float64
	es, _ := m2.List()
	for _, e := range es {
		if e.Kind == "best" && e.Name != BestName {
			metrics = append(metrics, e.Metric)
		}
	}
	slices.Sort(metrics)
	if !slices.Equal(metrics, []float64{1, 2}) {
		t.Errorf("kept best metrics %v, want [1 2]", metrics)
	}
}

func TestManagerLatestFallsBackPastDamage(t *testing.T) {
	t.Parallel()
	m := &Manager{Dir: t.TempDir(), KeepLast: 5}
	if _, ok, _, err := m.Latest(); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	if err := m.SavePeriodic("epoch", 1, sample(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := m.SavePeriodic("step", 50, sample(2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := m.SaveLatest(sample(3, 3)); err != nil {
		t.Fatal(err)
	}
	dir, ok, warn, err := m.Latest()
	if err != nil || !ok || dir != filepath.Join(m.Dir, LatestName) || warn != "" {
		t.Fatalf("Latest = %q %v %q %v", dir, ok, warn, err)
	}
	os.Truncate(filepath.Join(m.Dir, LatestName, ModelFile), 100)
	dir, ok, warn, err = m.Latest()
	if err != nil || !ok || dir != filepath.Join(m.Dir, "checkpoint_step_50") {
		t.Fatalf("Latest = %q %v %v", dir, ok, err)
	}
	if !strings.Contains(warn, LatestName) || !strings.Contains(warn, ModelFile) {
		t.Errorf("warning %q does not name the damaged file", warn)
	}
	for _, d := range []string{"checkpoint_step_50", "checkpoint_epoch_1"} {
		os.Remove(filepath.Join(m.Dir, d, StateFile))
	}
	if _, ok, _, err = m.Latest(); ok || err == nil || !strings.Contains(err.Error(), "no readable checkpoint") {
		t.Fatalf("all damaged: ok=%v err=%v", ok, err)
	}
}

func TestManagerPreflight(t *testing.T) {
	t.Parallel()
	m := &Manager{Dir: filepath.Join(t.TempDir(), "new"), KeepLast: 3}
	if err := m.Preflight(1<<20, 1); err != nil {
		t.Fatal(err)
	}
	err := m.Preflight(1<<60, 2)
	if err == nil || !strings.Contains(err.Error(), "keep_last") {
		t.Fatalf("err = %v", err)
	}
}

// TestManagerCrashWhileLinking kills SaveBest at every stage of making
// checkpoint_best from latest's files, and checks that a fresh Manager (the
// restarted process) finds the new latest, a best that is the old or the new
// one whole with the metric that goes with it, and nothing left behind.
func TestManagerCrashWhileLinking(t *testing.T) {
	t.Parallel()
	stages := []string{"exchanged", "old-renamed", "new-renamed", "parent-synced", "renamed"}
	after := map[string]bool{"exchanged": true, "new-renamed": true, "parent-synced": true, "renamed": true}
	for _, exch := range []bool{true, false} {
		for _, prior := range []bool{true, false} {
			for _, stage := range stages {
				t.Run(fmt.Sprintf("exchange=%v/prior=%v/%s", exch, prior, stage), func(t *testing.T) {
					t.Parallel()
					dir := t.TempDir()
					if prior {
						if ok, err := (&Manager{Dir: dir}).SaveBest(sample(1, 3), 2); err != nil || !ok {
							t.Fatal(ok, err)
						}
					}
					fx := &injected{crashAt: "link-" + stage, noExchange: !exch}
					ok, err := (&Manager{Dir: dir, faults: fx}).SaveBest(sample(2, 3), 1)
					if fx.crashed != errors.Is(err, errCrash) || (!fx.crashed && (err != nil || !ok)) {
						t.Fatalf("crashed=%v ok=%v err=%v", fx.crashed, ok, err)
					}
					m := &Manager{Dir: dir}
					got, found, warn, err := m.Latest()
					if err != nil || !found || got != filepath.Join(dir, LatestName) || warn != "" {
						t.Fatalf("Latest = %q %v %q %v", got, found, warn, err)
					}
					ck, err := Read(got)
					if err != nil {
						t.Fatal(err)
					}
					sameCheckpoint(t, ck, sample(2, 3))
					best := filepath.Join(dir, BestName)
					want, metric := 2, 1.0
					switch {
					case !fx.crashed || after[stage]:
					case prior:
						want, metric = 1, 2
					default:
						want = 0
					}
					if want == 0 {
						if _, err := os.Stat(best); !errors.Is(err, fs.ErrNotExist) {
							t.Fatalf("half-made %s: %v", best, err)
						}
					} else {
						ck, err := Read(best)
						if err != nil {
							t.Fatal(err)
						}
						sameCheckpoint(t, ck, sample(want, 3))
						if rec, err := readBest(best); err != nil || rec.Metric != metric {
							t.Fatalf("best.json = %+v, %v; want metric %v", rec, err, metric)
						}
					}
					if s := sideDirs(t, dir); len(s) > 0 {
						t.Errorf("left behind after recovery: %v", s)
					}
				})
			}
		}
	}
}
