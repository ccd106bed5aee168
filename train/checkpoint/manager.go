package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Directory names under Manager.Dir (SEED-architecture.txt's layout).
const (
	LatestName = "checkpoint_latest"
	BestName   = "checkpoint_best"
)

// PeriodicName is the directory of the periodic checkpoint of kind "epoch"
// (every checkpoint.save_frequency epochs) or "step" (every
// checkpoint.every_steps steps) number n.
func PeriodicName(kind string, n int) string { return fmt.Sprintf("checkpoint_%s_%d", kind, n) }

// Manager keeps a run's checkpoints in Dir:
//
//	checkpoint_latest       the newest state, rewritten at every save
//	checkpoint_best         the state with the lowest metric so far (+ best.json)
//	checkpoint_best_<k>     with KeepBestN > 1: the KeepBestN best, k counting best saves
//	checkpoint_epoch_<N>    every save_frequency epochs, newest KeepLast kept
//	checkpoint_step_<N>     every every_steps steps, newest KeepLast kept
//
// Only checkpoint_latest is written from tensors; periodic and best
// checkpoints are directories of hard links to latest's files (copies where
// links fail), made right after latest is written, so a save point that is
// latest, periodic and best costs one checkpoint of disk and of write time.
// Files are never modified after they are renamed into place, so links are
// safe: replacing latest later unlinks its names and leaves the others'
// data alone. Every directory is replaced atomically as Write does.
//
// A Manager is used by one goroutine of one process (rank 0) at a time.
type Manager struct {
	Dir string
	// KeepLast is how many periodic checkpoints of each kind are kept; 0 keeps all.
	KeepLast int
	// KeepBestN is how many best checkpoints are kept; 0 and 1 keep checkpoint_best only.
	KeepBestN int
	// ReadOnly makes List and Latest leave interrupted writes alone. A
	// process that only looks (the distributed coordinator) may run on
	// another host than the writer, where the writer's pid in a temporary
	// directory's name means nothing: recovery would take a checkpoint
	// being written for an abandoned one and delete it. A checkpoint in
	// the middle of a replace is then skipped, and an older one found.
	ReadOnly bool

	// faults is the write protocol's seam (nil: the real filesystem); tests
	// set it to fail or crash a save.
	faults faults
}

// bestRecord is best.json, inside every best checkpoint, so the metric is
// replaced atomically together with the checkpoint it describes.
type bestRecord struct {
	Metric float64 `json:"metric"`
	Seq    int     `json:"seq"`
}

// Entry is one checkpoint directory of a Manager.
type Entry struct {
	Name string // directory name, e.g. "checkpoint_epoch_10"
	Path string
	Kind string // "latest", "best", "epoch" or "step"
	// N is the epoch or step of a periodic checkpoint, the save count k of
	// checkpoint_best_<k>, and 0 for latest and best.
	N int
	// Metric is a best checkpoint's metric, NaN for the others.
	Metric float64
}

// SaveLatest writes ck as checkpoint_latest.
func (m *Manager) SaveLatest(ck *Checkpoint) error {
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return writeErr(m.Dir, "", err)
	}
	return m.writer().write(filepath.Join(m.Dir, LatestName), ck)
}

// SavePeriodic writes ck as checkpoint_latest (skipped when ck is nil: the
// caller has just saved it with SaveLatest), makes checkpoint_<kind>_<n> from
// it, and removes all but the KeepLast periodic checkpoints of that kind with
// the highest numbers, never the one just saved. latest and best are never
// touched by pruning.
func (m *Manager) SavePeriodic(kind string, n int, ck *Checkpoint) error {
	if kind != "epoch" && kind != "step" {
		return fmt.Errorf("checkpoint: periodic kind %q, want \"epoch\" or \"step\"", kind)
	}
	if n < 0 {
		return fmt.Errorf("checkpoint: periodic %s number %d is negative", kind, n)
	}
	latest, err := m.latestForLink(ck)
	if err != nil {
		return err
	}
	name := PeriodicName(kind, n)
	if err := m.writer().linkDir(latest, filepath.Join(m.Dir, name), nil); err != nil {
		return err
	}
	return m.prune(kind, name)
}

// SaveBest makes the checkpoint a best one when metric (lower is better)
// ranks among the KeepBestN best so far, and reports whether it did. When it
// does and ck is not nil, ck is first written as checkpoint_latest; with ck
// nil the current checkpoint_latest is used. Nothing is written otherwise.
func (m *Manager) SaveBest(ck *Checkpoint, metric float64) (bool, error) {
	if math.IsNaN(metric) {
		return false, fmt.Errorf("checkpoint: best metric is NaN")
	}
	keep := max(1, m.KeepBestN)
	entries, err := m.List()
	if err != nil {
		return false, err
	}
	var best *Entry
	var ranked []Entry // checkpoint_best_<k>
	seq := 0
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Kind == "best" && e.Name == BestName:
			best = e
		case e.Kind == "best":
			ranked = append(ranked, *e)
		}
		if e.Kind == "best" {
			seq = max(seq, e.N)
		}
	}
	if best != nil {
		if rec, err := readBest(best.Path); err == nil {
			seq = max(seq, rec.Seq)
		}
	}
	isBest := best == nil || math.IsNaN(best.Metric) || metric < best.Metric
	sort.Slice(ranked, func(i, j int) bool { return ranked[i].Metric < ranked[j].Metric })
	inTop := keep > 1 && (len(ranked) < keep || metric < ranked[len(ranked)-1].Metric)
	if !isBest && !inTop {
		return false, nil
	}
	latest, err := m.latestForLink(ck)
	if err != nil {
		return false, err
	}
	seq++
	rec, _ := json.MarshalIndent(bestRecord{Metric: metric, Seq: seq}, "", "  ")
	extra := map[string][]byte{BestFile: append(rec, '\n')}
	if inTop {
		if err := m.writer().linkDir(latest, filepath.Join(m.Dir, fmt.Sprintf("%s_%d", BestName, seq)), extra); err != nil {
			return false, err
		}
		ranked = append(ranked, Entry{Name: fmt.Sprintf("%s_%d", BestName, seq), Metric: metric})
		sort.SliceStable(ranked, func(i, j int) bool { return ranked[i].Metric < ranked[j].Metric })
		for _, e := range ranked[min(keep, len(ranked)):] {
			if err := m.remove(e.Name); err != nil {
				return false, err
			}
		}
	}
	if isBest {
		if err := m.writer().linkDir(latest, filepath.Join(m.Dir, BestName), extra); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (m *Manager) writer() writer { return writer{m.faults} }

// latestForLink writes ck as latest when given and returns latest's path.
func (m *Manager) latestForLink(ck *Checkpoint) (string, error) {
	latest := filepath.Join(m.Dir, LatestName)
	if ck != nil {
		return latest, m.SaveLatest(ck)
	}
	recoverIn(m.Dir, LatestName)
	for _, f := range []string{ModelFile, OptimizerFile, StateFile} {
		if _, err := os.Stat(filepath.Join(latest, f)); err != nil {
			return "", fmt.Errorf("checkpoint: no complete %s to link from (%v); save it first with SaveLatest or pass the checkpoint", latest, err)
		}
	}
	return latest, nil
}

// prune removes periodic checkpoints of kind beyond the KeepLast highest
// numbers, sparing keep.
func (m *Manager) prune(kind, keep string) error {
	if m.KeepLast <= 0 {
		return nil
	}
	entries, err := m.List()
	if err != nil {
		return err
	}
	var same []Entry
	for _, e := range entries {
		if e.Kind == kind {
			same = append(same, e)
		}
	}
	sort.Slice(same, func(i, j int) bool { return same[i].N > same[j].N })
	kept := map[string]bool{keep: true}
	for _, e := range same {
		if len(kept) >= m.KeepLast {
			break
		}
		kept[e.Name] = true
	}
	for _, e := range same {
		if !kept[e.Name] {
			if err := m.remove(e.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove deletes a checkpoint directory: renamed to .trash-* first, so a
// crash midway never leaves a half-deleted checkpoint under a valid name.
func (m *Manager) remove(name string) error {
	p := filepath.Join(m.Dir, name)
	trash, err := newSideDir(m.Dir, trashPrefix, name, false)
	if err != nil {
		return err
	}
	if err := os.Rename(p, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("checkpoint: remove old checkpoint %s: %w", p, err)
	}
	syncDir(m.Dir)
	os.RemoveAll(trash)
	return nil
}

// List recovers interrupted operations in Dir (unless ReadOnly) and returns its checkpoints:
// latest, best, the ranked best ones, then epoch and step checkpoints by
// number. A missing Dir holds none.
func (m *Manager) List() ([]Entry, error) {
	if !m.ReadOnly {
		recoverIn(m.Dir, "")
	}
	des, err := os.ReadDir(m.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("checkpoint: list %s: %w", m.Dir, err)
	}
	var out []Entry
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		name := de.Name()
		e := Entry{Name: name, Path: filepath.Join(m.Dir, name), Metric: math.NaN()}
		switch {
		case name == LatestName:
			e.Kind = "latest"
		case name == BestName:
			e.Kind = "best"
		default:
			rest, ok := strings.CutPrefix(name, "checkpoint_")
			if !ok {
				continue
			}
			i := strings.LastIndexByte(rest, '_')
			if i < 0 {
				continue
			}
			n, ok := parseInt(rest[i+1:])
			if !ok {
				continue
			}
			switch rest[:i] {
			case "epoch", "step":
				e.Kind = rest[:i]
			case "best":
				e.Kind = "best"
			default:
				continue
			}
			e.N = n
		}
		if e.Kind == "best" {
			if rec, err := readBest(e.Path); err == nil {
				e.Metric = rec.Metric
			}
		}
		out = append(out, e)
	}
	order := map[string]int{"latest": 0, "best": 1, "epoch": 2, "step": 3}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if order[a.Kind] != order[b.Kind] {
			return order[a.Kind] < order[b.Kind]
		}
		if (a.Name == BestName) != (b.Name == BestName) {
			return a.Name == BestName
		}
		return a.N < b.N
	})
	return out, nil
}

func readBest(dir string) (bestRecord, error) {
	var rec bestRecord
	b, err := os.ReadFile(filepath.Join(dir, BestFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%s: %v", filepath.Join(dir, BestFile), err)
	}
	return rec, nil
}

// Latest finds the checkpoint --resume continues from: checkpoint_latest when
// it verifies (every file present, every checksum right), else the most
// recently saved periodic or best checkpoint that verifies. warning explains
// every checkpoint skipped as damaged; ok is false with a nil error when Dir
// holds no checkpoint at all, and err is set when it holds only damaged ones.
func (m *Manager) Latest() (dir string, ok bool, warning string, err error) {
	entries, err := m.List()
	if err != nil {
		return "", false, "", err
	}
	if len(entries) == 0 {
		return "", false, "", nil
	}
	type cand struct {
		path string
		at   time.Time
	}
	var rest []cand
	var cands []cand
	for _, e := range entries {
		if e.Kind == "latest" {
			cands = append(cands, cand{path: e.Path})
		} else {
			rest = append(rest, cand{path: e.Path, at: savedAt(e.Path)})
		}
	}
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].at.After(rest[j].at) })
	cands = append(cands, rest...)
	var skipped []string
	for _, c := range cands {
		if _, err := read(c.path, nil, nil, false, !m.ReadOnly); err != nil {
			skipped = append(skipped, fmt.Sprintf("skipped damaged checkpoint: %v", err))
			continue
		}
		return c.path, true, strings.Join(skipped, "\n"), nil
	}
	return "", false, strings.Join(skipped, "\n"), fmt.Errorf("checkpoint: no readable checkpoint in %s (%d damaged):\n%s\nstart a new --out, or run without --resume",
		m.Dir, len(skipped), strings.Join(skipped, "\n"))
}

// FreeBytes is the space available to this user on the filesystem that holds
// dir, or would hold it: the nearest existing ancestor is asked.
func FreeBytes(dir string) (uint64, error) {
	p, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		up := filepath.Dir(p)
		if up == p {
			break
		}
		p = up
	}
	n, err := statfsFree(p)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: free space of %s (via %s): %w", dir, p, err)
	}
	return n, nil
}

// NeededBytes is the disk a run may fill with checkpoints of one bytes each
// when periodicKinds kinds of periodic checkpoint are on: latest, one being
// written, the best ones and KeepLast per kind (one when KeepLast keeps all,
// which cannot be bounded). Links make this an upper bound.
func (m *Manager) NeededBytes(one int64, periodicKinds int) int64 {
	k := int64(2 + max(1, m.KeepBestN) + max(1, m.KeepLast)*periodicKinds)
	if one > math.MaxInt64/k {
		return math.MaxInt64
	}
	return one * k
}

// Preflight checks that Dir's filesystem has NeededBytes free and otherwise
// says what to change.
func (m *Manager) Preflight(one int64, periodicKinds int) error {
	need := m.NeededBytes(one, periodicKinds)
	free, err := FreeBytes(m.Dir)
	if err != nil {
		return err
	}
	if uint64(need) > free {
		return fmt.Errorf("checkpoint.dir %s: %s free, checkpoints may need %s (%s each, keep_last %d, keep_best_n %d); free disk space, set checkpoint.dir to a larger disk, or lower checkpoint.keep_last",
			m.Dir, human(int64(free)), human(need), human(one), m.KeepLast, m.KeepBestN)
	}
	return nil
}

func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
}
