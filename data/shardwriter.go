package data

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ShardOptions bound the shards WriteShards writes: a shard is closed before
// a sample would take it past MaxBytes (tar bytes) or MaxSamples (0: no
// bound; a sample larger than MaxBytes gets a shard of its own). Force
// overwrites existing shards.
type ShardOptions struct {
	MaxBytes   int64
	MaxSamples int
	Force      bool
}

// DefaultShardBytes is the shard size when no bound is given: large enough
// that the file count stops mattering, small enough to shuffle and
// distribute (WebDataset's guidance is a few hundred MB to a few GB).
const DefaultShardBytes = 1 << 30

// ShardResult is what WriteShards wrote.
type ShardResult struct {
	// Source is the ImageFolder split folder converted.
	Source string
	// Shards are the files written, Samples each one's sample count.
	Shards  []string
	Samples []int
	// Pattern is the data.path naming exactly the shards written.
	Pattern string
	// Classes is the class list written next to the shards.
	Classes string
	// Stale is an existing file that the output pattern names after the
	// last shard written (left by an earlier, larger run), or "".
	Stale string
}

// tarHeaderBytes is one tar header block; members are padded to blocks.
const tarHeaderBytes = 512

// memberBytes is the tar size of a member of n data bytes.
func memberBytes(n int64) int64 { return tarHeaderBytes + (n+511)&^511 }

// WriteShards converts the ImageFolder at src (its train/ folder when it has
// one, as data.dataset imagefolder reads it) into tar shards named by
// outPattern (one {A..B} range, or a plain name when one shard suffices)
// and writes ClassesFile next to them. Sample i of the shards, in shard
// order, is ImageFolder image i, with its label: KEY.EXT holds the file's
// bytes unchanged and KEY.cls its label, KEY being i zero-padded. The output
// depends only on the files (sorted order, fixed tar metadata). Each shard
// is written to a temporary file and renamed into place; existing shards are
// refused unless opt.Force.
func WriteShards(src, outPattern string, opt ShardOptions) (*ShardResult, error) {
	if opt.MaxBytes < 0 || opt.MaxSamples < 0 {
		return nil, fmt.Errorf("shard: size bounds must be positive (got %d bytes, %d samples)", opt.MaxBytes, opt.MaxSamples)
	}
	if opt.MaxBytes == 0 && opt.MaxSamples == 0 {
		opt.MaxBytes = DefaultShardBytes
	}
	out, err := parseOutputPattern(outPattern)
	if err != nil {
		return nil, err
	}
	root := imageFolderSplit(src, false)
	d, err := OpenImageFolder(root, 3, 0)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, d.Len())
	for i := range sizes {
		st, err := os.Stat(d.Path(i))
		if err != nil {
			return nil, fmt.Errorf("shard: %w", err)
		}
		sizes[i] = st.Size()
	}
	plan := planShards(sizes, opt)
	if int64(len(plan)) > out.capacity() {
		return nil, fmt.Errorf("output pattern %q names %d shard(s) but %d are needed for %d images; widen its range or raise --shard-size/--samples-per-shard", outPattern, out.capacity(), len(plan), d.Len())
	}
	res := &ShardResult{Source: root, Pattern: out.exact(len(plan))}
	for k := range plan {
		res.Shards = append(res.Shards, out.name(k))
		res.Samples = append(res.Samples, plan[k][1]-plan[k][0])
	}
	res.Classes = filepath.Join(filepath.Dir(res.Shards[0]), ClassesFile)
	classes := []byte(strings.Join(d.Classes(), "\n") + "\n")
	if !opt.Force {
		var existing []string
		for _, s := range res.Shards {
			if _, err := os.Lstat(s); err == nil {
				existing = append(existing, s)
			}
		}
		if len(existing) > 0 {
			return nil, fmt.Errorf("shard: %d of the %d output shard(s) exist, first %s; pass --force to overwrite them", len(existing), len(res.Shards), existing[0])
		}
		if old, err := os.ReadFile(res.Classes); err == nil && !bytes.Equal(old, classes) {
			return nil, fmt.Errorf("shard: %s exists with other classes; write to another directory or pass --force", res.Classes)
		}
	}
	if int64(len(plan)) < out.capacity() {
		if n := out.name(len(plan)); exists(n) {
			res.Stale = n
		}
	}
	for _, dir := range uniqueDirs(res.Shards) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("shard: %w", err)
		}
	}
	if err := writeFileAtomic(res.Classes, func(w io.Writer) error { _, err := w.Write(classes); return err }); err != nil {
		return nil, err
	}
	width := max(6, len(strconv.Itoa(d.Len()-1)))
	for k, span := range plan {
		err := writeFileAtomic(res.Shards[k], func(w io.Writer) error {
			tw := tar.NewWriter(w)
			for i := span[0]; i < span[1]; i++ {
				key := fmt.Sprintf("%0*d", width, i)
				ext := strings.ToLower(filepath.Ext(d.Path(i)))
				if err := addFileMember(tw, key+ext, d.Path(i), sizes[i]); err != nil {
					return err
				}
				if err := addMember(tw, key+".cls", []byte(strconv.Itoa(d.Label(i)))); err != nil {
					return err
				}
			}
			return tw.Close()
		})
		if err != nil {
			return nil, err
		}
	}
	for _, dir := range uniqueDirs(res.Shards) {
		syncDir(dir)
	}
	return res, nil
}

// planShards cuts samples of the given sizes into consecutive [lo, hi)
// spans under opt's bounds.
func planShards(sizes []int64, opt ShardOptions) [][2]int {
	var plan [][2]int
	lo, total := 0, int64(2*tarHeaderBytes) // the end-of-archive blocks
	for i, n := range sizes {
		b := memberBytes(n) + memberBytes(8)
		full := (opt.MaxSamples > 0 && i-lo >= opt.MaxSamples) || (opt.MaxBytes > 0 && total+b > opt.MaxBytes)
		if full && i > lo {
			plan = append(plan, [2]int{lo, i})
			lo, total = i, int64(2*tarHeaderBytes)
		}
		total += b
	}
	return append(plan, [2]int{lo, len(sizes)})
}

// shardModTime is every member's modification time, so that the bytes of a
// shard depend only on its images.
var shardModTime = time.Unix(0, 0)

func addMember(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: shardModTime, Format: tar.FormatUSTAR}); err != nil {
		return fmt.Errorf("shard member %s: %w", name, err)
	}
	_, err := tw.Write(b)
	return err
}

// addFileMember copies file path (size bytes when listed) as member name.
func addFileMember(tw *tar.Writer, name, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: shardModTime, Format: tar.FormatUSTAR}); err != nil {
		return fmt.Errorf("shard member %s (%s): %w", name, path, err)
	}
	n, err := io.Copy(tw, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("shard: copy %s: %w", path, err)
	}
	if k, _ := f.Read(make([]byte, 1)); n != size || k != 0 {
		return fmt.Errorf("shard: %s changed while being written (%d bytes listed)", path, size)
	}
	return nil
}

// writeFileAtomic writes path through fill into a temporary file in its
// directory, synced, then renamed over path: a reader never sees a partial
// file, and a failed write leaves none behind.
func writeFileAtomic(path string, fill func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func uniqueDirs(paths []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if d := filepath.Dir(p); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// syncDir makes the renames into dir durable (best effort).
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
