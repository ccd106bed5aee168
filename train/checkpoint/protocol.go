package checkpoint

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Side-directory prefixes: .tmp-<base>-<pid>-<rand> is a checkpoint being
// written, .old-<base>-<pid>-<rand> the previous version during a two-rename
// replace, .trash-<base>-<pid>-<rand> a pruned checkpoint being removed.
const (
	tmpPrefix   = ".tmp-"
	oldPrefix   = ".old-"
	trashPrefix = ".trash-"
)

// fileWriter is what Write needs of a file it creates.
type fileWriter interface {
	io.Writer
	Sync() error
	Close() error
}

// faults is the write protocol's seam to the filesystem and to simulated
// failures. Production passes none (nil means osFiles); tests pass their own
// to simulate a full disk or a failing device, a process killed at any stage,
// or a filesystem without RENAME_EXCHANGE.
type faults interface {
	// create makes a new file (O_EXCL) for Write to fill.
	create(name string) (fileWriter, error)
	// crash is asked at every stage of Write, of linking and of the swap;
	// true stops the operation there with errCrash and cleans nothing up,
	// as a killed process would.
	crash(stage string) bool
	// useExchange selects the one-step RENAME_EXCHANGE swap where the
	// platform has it; false takes the two-rename path.
	useExchange() bool
}

// osFiles is the real filesystem with no injected failure.
type osFiles struct{}

func (osFiles) create(name string) (fileWriter, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
func (osFiles) crash(string) bool { return false }
func (osFiles) useExchange() bool { return true }

var errCrash = errors.New("checkpoint: simulated crash")

// writer runs the write protocol through fx; the zero writer is production.
type writer struct{ fx faults }

func (wr writer) faults() faults {
	if wr.fx == nil {
		return osFiles{}
	}
	return wr.fx
}

// Swaps and recoveries of one directory's checkpoints are serialised within
// the process. recoverIn takes a .old-<base>-<pid>-* whose <base> is missing
// for the leftover of a crash and renames it back, and between
// rename(dir, old) and rename(tmp, dir) this process's own two-rename swap
// looks exactly like that, with this process's pid in the name: a scan then
// (a Manager.List, a Read of a sibling checkpoint, another goroutine's
// Write) would undo the swap in progress. Other processes need no lock:
// recovery leaves side directories of live pids alone. Both only touch
// entries of one parent directory, so the lock is that directory's, keyed by
// its resolved absolute path so that two spellings of it share one.
var parents = struct {
	sync.Mutex
	m map[string]*parentLock
}{m: map[string]*parentLock{}}

type parentLock struct {
	sync.Mutex
	users int // goroutines holding or waiting for it; the entry goes at 0
}

// lockParent locks the swap lock of the directory parent and returns its unlock.
func lockParent(parent string) (unlock func()) {
	key := dirKey(parent)
	parents.Lock()
	l := parents.m[key]
	if l == nil {
		l = &parentLock{}
		parents.m[key] = l
	}
	l.users++
	parents.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		parents.Lock()
		if l.users--; l.users == 0 {
			delete(parents.m, key)
		}
		parents.Unlock()
	}
}

// dirKey names dir independently of how it is spelled: absolute, with
// symbolic links resolved (as given when it cannot be resolved).
func dirKey(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return dir
}

var (
	// inflight holds the temporary directories this process is filling
	// (keyed by inflightKey), which recovery must not take for abandoned ones.
	inflight   = map[string]bool{}
	inflightMu sync.Mutex
)

func inflightKey(path string) string {
	return filepath.Join(dirKey(filepath.Dir(path)), filepath.Base(path))
}

func doneInflight(path string) {
	key := inflightKey(path)
	inflightMu.Lock()
	delete(inflight, key)
	inflightMu.Unlock()
}

func isInflight(path string) bool {
	key := inflightKey(path)
	inflightMu.Lock()
	defer inflightMu.Unlock()
	return inflight[key]
}

// newSideDir picks a fresh parent/<prefix><base>-<pid>-<rand>. With create it
// makes the directory (and marks it in flight), else it only returns a name
// that does not exist yet.
func newSideDir(parent, prefix, base string, create bool) (string, error) {
	for range 100 {
		var b [4]byte
		rand.Read(b[:])
		p := filepath.Join(parent, fmt.Sprintf("%s%s-%d-%s", prefix, base, os.Getpid(), hex.EncodeToString(b[:])))
		if !create {
			if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
				return p, nil
			}
			continue
		}
		key := inflightKey(p)
		inflightMu.Lock()
		err := os.Mkdir(p, 0o755)
		if err == nil {
			inflight[key] = true
		}
		inflightMu.Unlock()
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free temporary name for %s in %s", base, parent)
}

// parseSide splits a side-directory name into its prefix, base and pid.
func parseSide(name string) (prefix, base string, pid int, ok bool) {
	for _, p := range []string{tmpPrefix, oldPrefix, trashPrefix} {
		if strings.HasPrefix(name, p) {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return "", "", 0, false
	}
	rest := name[len(prefix):]
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", "", 0, false
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j <= 0 {
		return "", "", 0, false
	}
	pid, err := strconv.Atoi(rest[j+1:])
	if err != nil {
		return "", "", 0, false
	}
	return prefix, rest[:j], pid, true
}

// foreign reports whether a side directory belongs to another live process
// (which may be in the middle of writing it).
func foreign(pid int) bool {
	return pid != os.Getpid() && processAlive(pid)
}

// recoverIn finishes or undoes interrupted operations on the checkpoint
// directories in parent (only the one named only, unless only is ""). It
// returns what it did, for logs; failures are reported the same way, since a
// later read reports any checkpoint that stays broken.
func recoverIn(parent, only string) []string {
	defer lockParent(parent)()
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var notes []string
	olds := map[string][]string{}
	for _, e := range entries {
		prefix, base, pid, ok := parseSide(e.Name())
		if !ok || (only != "" && base != only) || foreign(pid) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		switch prefix {
		case tmpPrefix:
			if isInflight(p) {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				notes = append(notes, fmt.Sprintf("remove unfinished checkpoint %s: %v", p, err))
			} else {
				notes = append(notes, fmt.Sprintf("removed unfinished checkpoint %s", p))
			}
		case trashPrefix:
			os.RemoveAll(p)
		case oldPrefix:
			olds[base] = append(olds[base], p)
		}
	}
	for base, list := range olds {
		slices.Sort(list)
		target := filepath.Join(parent, base)
		if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			// A crash between rename(dir, old) and rename(tmp, dir): the old
			// version is complete (it was renamed whole), so put it back.
			if err := os.Rename(list[0], target); err != nil {
				notes = append(notes, fmt.Sprintf("restore %s from %s: %v", target, list[0], err))
				continue
			}
			syncDir(parent)
			notes = append(notes, fmt.Sprintf("restored %s from an interrupted replace", target))
			list = list[1:]
		}
		for _, p := range list {
			os.RemoveAll(p)
		}
	}
	return notes
}

// replaceable refuses to replace a directory holding anything but checkpoint
// files, so a mistaken path cannot delete unrelated data.
func replaceable(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s exists and is not a directory; choose another checkpoint.dir", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var foreignFiles []string
	for _, e := range entries {
		switch e.Name() {
		case ModelFile, OptimizerFile, StateFile, BestFile:
		default:
			foreignFiles = append(foreignFiles, e.Name())
		}
	}
	if len(foreignFiles) > 0 {
		return fmt.Errorf("refusing to replace %s: it holds files that are not part of a checkpoint (%s); choose another checkpoint.dir or --out",
			dir, strings.Join(foreignFiles, ", "))
	}
	return nil
}

// commit swaps the complete, fsync'd directory tmp in as dir, asking stop at
// each stage. After a successful exchange tmp holds the previous version,
// for the caller to remove.
func (wr writer) commit(dir, tmp string, stop func(string) bool) error {
	parent := filepath.Dir(dir)
	defer lockParent(parent)()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		if stop("renamed") {
			return errCrash
		}
		return syncDir(parent)
	} else if err != nil {
		return err
	}
	if err := replaceable(dir); err != nil {
		return err
	}
	if wr.faults().useExchange() {
		err := exchange(tmp, dir)
		if err == nil {
			if stop("exchanged") {
				return errCrash
			}
			return syncDir(parent)
		}
		if !errors.Is(err, errNoExchange) {
			return err
		}
	}
	old, err := newSideDir(parent, oldPrefix, filepath.Base(dir), false)
	if err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if stop("old-renamed") {
		return errCrash
	}
	if err := os.Rename(tmp, dir); err != nil {
		if rerr := os.Rename(old, dir); rerr != nil {
			return fmt.Errorf("%w (and restoring the previous checkpoint from %s failed: %v; rename it back to %s by hand)", err, old, rerr, dir)
		}
		return err
	}
	if stop("new-renamed") {
		return errCrash
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if stop("parent-synced") {
		return errCrash
	}
	os.RemoveAll(old)
	return nil
}

// linkDir makes dst a checkpoint holding src's files plus extra ones, by hard
// links where the filesystem allows and copies where it does not. Checkpoint
// files are never modified after they are renamed into place, so sharing
// them between directories is safe.
func (wr writer) linkDir(src, dst string, extra map[string][]byte) (err error) {
	parent, base := filepath.Dir(dst), filepath.Base(dst)
	recoverIn(parent, base)
	tmp, err := newSideDir(parent, tmpPrefix, base, true)
	if err != nil {
		return writeErr(dst, "", err)
	}
	crashed := false
	defer func() {
		if !crashed {
			os.RemoveAll(tmp)
		}
		doneInflight(tmp)
	}()
	for _, name := range []string{ModelFile, OptimizerFile, StateFile} {
		from, to := filepath.Join(src, name), filepath.Join(tmp, name)
		if err := os.Link(from, to); err != nil {
			if err := wr.copyFile(from, to); err != nil {
				return writeErr(dst, name, err)
			}
		}
	}
	for name, data := range extra {
		if err := wr.writeFile(filepath.Join(tmp, name), func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		}); err != nil {
			return writeErr(dst, name, err)
		}
	}
	if err := syncDir(tmp); err != nil {
		return writeErr(dst, "", err)
	}
	stop := func(stage string) bool {
		crashed = wr.faults().crash("link-" + stage)
		return crashed
	}
	if err := wr.commit(dst, tmp, stop); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		return writeErr(dst, "", err)
	}
	return nil
}

func (wr writer) copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	return wr.writeFile(to, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
