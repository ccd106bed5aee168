package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// WebDataset reads WebDataset-style tar shards: each shard is a POSIX tar
// whose members are grouped into samples by key (the member name up to the
// first dot of its base name), KEY.jpg|jpeg|png the image and KEY.cls its
// class index as ASCII text; other members are ignored.
//
// Open scans every shard's tar headers once (no image is read or decoded)
// and keeps, per sample, the image's byte extent and its label: a global
// index in shard order, then member order. Get reads one member with a
// positioned read and decodes it like an ImageFolder file, so the sampler,
// the loader, DDP sharding and exact resume work unchanged, and shards
// written from an ImageFolder by WriteShards give the same samples under the
// same indices (hence the same batches for the same seed).
//
// Class names come from classes.txt next to the first shard (one per line,
// as WriteShards writes it); without it they are the label numbers.
type WebDataset struct {
	info      Info
	shards    []string
	starts    []int // starts[s] is the index of shard s's first sample; len(shards)+1
	samples   []shardSample
	classes   []string
	maxPixels int
	// shardShuffle: training order is shard-level (see rankOrder).
	shardShuffle bool
	files        *shardFiles
}

// shardSample is one sample of a shard: its image member and label.
type shardSample struct {
	image string // image member name, as in the tar
	off   int64  // offset of the image's data in the shard
	size  int64  // bytes of image data
	label int
}

const (
	// maxLabel bounds a .cls value: far above any real class count, low
	// enough that a corrupt label cannot make Classes allocate gigabytes.
	maxLabel = 1 << 20
	// maxClsBytes bounds a .cls member (an integer in ASCII).
	maxClsBytes = 64
	// maxBufferedMember: image members up to this size are read in one
	// positioned read; larger ones are decoded from the file directly.
	maxBufferedMember = 64 << 20
	// maxOpenShards is how many shard files a dataset keeps open.
	maxOpenShards = 1024
	// indexWorkers scan shard headers concurrently (I/O bound).
	indexWorkers = 16
	// ClassesFile names the class list next to the shards.
	ClassesFile = "classes.txt"
)

// WebDatasetOptions configure OpenWebDataset.
type WebDatasetOptions struct {
	// Channels (1 or 3) is the number of channels Get returns.
	Channels int
	// MaxPixels bounds decoded images (<= 0: DefaultMaxImagePixels).
	MaxPixels int
	// Split names the split in Info ("train", "val").
	Split string
	// ShardShuffle selects shard-level training order (data.shard_shuffle
	// "shard"): see the rankOrder method.
	ShardShuffle bool
}

// OpenWebDataset expands pattern (see ExpandShards) and indexes every shard.
// An unreadable or malformed shard fails the open with an error naming the
// shard and the member ('hjepa data verify PATTERN' lists them all).
func OpenWebDataset(pattern string, opt WebDatasetOptions) (*WebDataset, error) {
	if opt.Channels != 1 && opt.Channels != 3 {
		return nil, fmt.Errorf("webdataset %q: channels must be 1 or 3, got %d", pattern, opt.Channels)
	}
	shards, err := ExpandShards(pattern)
	if err != nil {
		return nil, err
	}
	if err := shardsExist(pattern, shards); err != nil {
		return nil, err
	}
	classes, err := readClassesFile(filepath.Join(filepath.Dir(shards[0]), ClassesFile))
	if err != nil {
		return nil, err
	}
	idx, sizes, errs := indexShards(shards)
	if err := firstShardError(errs); err != nil {
		return nil, err
	}
	d := &WebDataset{shards: shards, starts: make([]int, len(shards)+1), maxPixels: opt.MaxPixels, shardShuffle: opt.ShardShuffle}
	maxSeen := -1
	for s, smp := range idx {
		d.starts[s+1] = d.starts[s] + len(smp)
		for _, x := range smp {
			if classes != nil && x.label >= len(classes) {
				return nil, corruptf(shards[s], "member %s: label %d but %s lists %d classes", x.image, x.label, filepath.Join(filepath.Dir(shards[0]), ClassesFile), len(classes))
			}
			maxSeen = max(maxSeen, x.label)
		}
		d.samples = append(d.samples, smp...)
	}
	if classes == nil {
		classes = make([]string, maxSeen+1)
		for i := range classes {
			classes[i] = strconv.Itoa(i)
		}
	}
	d.classes = classes
	d.files = newShardFiles(shards, sizes)
	d.info = Info{Format: "webdataset", Path: pattern, Split: opt.Split, Count: len(d.samples), Channels: opt.Channels}
	return d, nil
}

// shardsExist fails naming the missing shards, if any.
func shardsExist(pattern string, shards []string) error {
	var missing []string
	for _, s := range shards {
		st, err := os.Stat(s)
		switch {
		case err != nil:
			missing = append(missing, s)
		case st.IsDir():
			return fmt.Errorf("shard pattern %q: %s is a directory; name its shards, e.g. %s", pattern, s, filepath.Join(s, "*.tar"))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("shard pattern %q: %d of %d shard(s) missing, first %s; check data.path (write shards with 'hjepa data shard')", pattern, len(missing), len(shards), missing[0])
	}
	return nil
}

// firstShardError is the first shard's error, counting the others.
func firstShardError(errs []error) error {
	var first error
	n := 0
	for _, e := range errs {
		if e != nil {
			if first == nil {
				first = e
			}
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w (and %d more bad shard(s); 'hjepa data verify' lists them)", first, n-1)
	}
	return first
}

// readClassesFile reads a class list (one name per line; trailing blank
// lines ignored); nil, nil when the file does not exist.
func readClassesFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read class list: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\n")
	if len(lines) > maxLabel {
		return nil, corruptf(path, "%d classes, over the limit of %d", len(lines), maxLabel)
	}
	seen := map[string]int{}
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		if l == "" {
			return nil, corruptf(path, "line %d is empty; one class name per line", i+1)
		}
		if j, ok := seen[l]; ok {
			return nil, corruptf(path, "class %q on lines %d and %d", l, j+1, i+1)
		}
		seen[l] = i
		lines[i] = l
	}
	return lines, nil
}

// indexShards indexes the shards concurrently: per shard its samples, size
// and error.
func indexShards(shards []string) ([][]shardSample, []int64, []error) {
	idx := make([][]shardSample, len(shards))
	sizes := make([]int64, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(indexWorkers, len(shards)) {
		wg.Go(func() {
			for s := range next {
				idx[s], sizes[s], errs[s] = indexShardFile(shards[s])
			}
		})
	}
	for s := range shards {
		next <- s
	}
	close(next)
	wg.Wait()
	return idx, sizes, errs
}

// indexShardFile indexes the shard at path; also returns its size.
func indexShardFile(path string) ([]shardSample, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open shard: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("shard %s: %w", path, err)
	}
	// A SectionReader keeps the position in memory, so archive/tar's seeks
	// over image data cost no system call: only headers and labels are read.
	smp, err := indexShard(path, io.NewSectionReader(f, 0, st.Size()), st.Size())
	return smp, st.Size(), err
}

// splitKey splits a member name into WebDataset's key and extension: the
// key is everything up to the first dot of the base name, the extension
// (lower-cased) the rest. ok is false for names without a key.
func splitKey(name string) (key, ext string, ok bool) {
	base := strings.LastIndexByte(name, '/') + 1
	dot := strings.IndexByte(name[base:], '.')
	if dot <= 0 {
		return "", "", false
	}
	return name[:base+dot], strings.ToLower(name[base+dot+1:]), true
}

// indexShard lists the samples of the tar in r (size bytes; named path in
// errors) by reading its headers and .cls members only: each Next seeks
// over the previous member's data. Every error is a *CorruptError naming
// path and, where there is one, the member. The samples before an error are
// returned with it.
func indexShard(path string, r io.ReadSeeker, size int64) ([]shardSample, error) {
	tr := tar.NewReader(r)
	var (
		out     []shardSample
		cur     pendingSample
		done    = map[string]bool{}
		last    = "the first header"
		lastEnd int64 // end of the last member's padded data
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return out, corruptf(path, "truncated tar: the file ends within a header or padding %s; re-copy or rewrite the shard", after(last))
			}
			return out, corruptf(path, "malformed tar header %s: %v", after(last), err)
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return out, fmt.Errorf("%s: %w", path, err)
		}
		last = "member " + strconv.Quote(hdr.Name)
		nb := hdr.Size
		switch hdr.Typeflag {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			nb = 0
		}
		if nb < 0 || nb > size-off {
			return out, corruptf(path, "truncated tar: %s declares %d bytes but only %d follow its header", last, hdr.Size, max(size-off, 0))
		}
		lastEnd = off + (nb+511)&^511
		if hdr.Typeflag == tar.TypeGNUSparse || hasSparseRecords(hdr) {
			return out, corruptf(path, "%s is a sparse file, which shards cannot hold; rewrite the shard without --sparse", last)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue // directories, links, PAX globals: not sample data
		}
		base := hdr.Name[strings.LastIndexByte(hdr.Name, '/')+1:]
		if !strings.Contains(hdr.Name, "/") && strings.HasPrefix(base, "__") && strings.HasSuffix(base, "__") {
			continue // WebDataset metadata member
		}
		key, ext, ok := splitKey(hdr.Name)
		if !ok {
			continue
		}
		if key != cur.key {
			if cur.key != "" {
				s, err := cur.sample(path)
				if err != nil {
					return out, err
				}
				out = append(out, s)
				done[cur.key] = true
			}
			if done[key] {
				return out, corruptf(path, "%s: sample %q appears again after other samples; a sample's members must be consecutive", last, key)
			}
			cur = pendingSample{key: key}
		}
		if err := cur.add(path, hdr.Name, ext, off, nb, tr); err != nil {
			return out, err
		}
	}
	// archive/tar stops quietly at the end of the file, even inside a
	// member's padding; a tar without its end-of-archive zero block was cut
	// short.
	if pos, err := r.Seek(0, io.SeekCurrent); err == nil && pos <= lastEnd {
		if size == 0 {
			return out, corruptf(path, "empty file, not a tar shard")
		}
		return out, corruptf(path, "truncated tar: no end-of-archive marker %s; re-copy or rewrite the shard", after(last))
	}
	if cur.key != "" {
		s, err := cur.sample(path)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, corruptf(path, "no samples (no KEY.jpg/KEY.jpeg/KEY.png with KEY.cls members)")
	}
	return out, nil
}

func after(what string) string {
	if what == "the first header" {
		return "at " + what
	}
	return "after " + what
}

func hasSparseRecords(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// pendingSample gathers the members of one key.
type pendingSample struct {
	key      string
	exts     []string
	img      shardSample
	hasImg   bool
	hasLabel bool
}

func (p *pendingSample) add(path, name, ext string, off, size int64, r io.Reader) error {
	for _, e := range p.exts {
		if e == ext {
			return corruptf(path, "member %q: sample %q already has a .%s member", name, p.key, ext)
		}
	}
	p.exts = append(p.exts, ext)
	switch ext {
	case "jpg", "jpeg", "png":
		if p.hasImg {
			return corruptf(path, "member %q: sample %q already has an image (%s); keep one of .jpg, .jpeg, .png", name, p.key, p.img.image)
		}
		p.img.image, p.img.off, p.img.size, p.hasImg = name, off, size, true
	case "cls":
		if size > maxClsBytes {
			return corruptf(path, "member %q: %d bytes, not a class index", name, size)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return corruptf(path, "member %q: %v", name, err)
		}
		s := strings.TrimSpace(string(b))
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || strings.Trim(s, "0123456789") != "" {
			return corruptf(path, "member %q: label %q is not a class index (a non-negative integer)", name, s)
		}
		if v >= maxLabel {
			return corruptf(path, "member %q: label %d over the limit of %d classes", name, v, maxLabel)
		}
		p.img.label, p.hasLabel = v, true
	}
	return nil
}

func (p *pendingSample) sample(path string) (shardSample, error) {
	switch {
	case !p.hasImg:
		return shardSample{}, corruptf(path, "sample %q has no image member (%s.jpg, .jpeg or .png)", p.key, p.key)
	case !p.hasLabel:
		return shardSample{}, corruptf(path, "sample %q (member %q) has no label member %s.cls", p.key, p.img.image, p.key)
	}
	return p.img, nil
}

// Len is the number of samples over all shards.
func (d *WebDataset) Len() int { return len(d.samples) }

// shardOf is the shard holding sample i.
func (d *WebDataset) shardOf(i int) int { return sort.SearchInts(d.starts, i+1) - 1 }

// Get reads and decodes sample i's image. Errors name the shard and member.
func (d *WebDataset) Get(i int) (Image, int, error) {
	if i < 0 || i >= len(d.samples) {
		return Image{}, 0, fmt.Errorf("webdataset %s: index %d out of range [0, %d)", d.info.Path, i, len(d.samples))
	}
	s, x := d.shardOf(i), d.samples[i]
	f, err := d.files.acquire(s)
	if err != nil {
		return Image{}, 0, err
	}
	defer d.files.release(s)
	m, err := decodeMember(d.shards[s], x, f, d.maxPixels)
	if err != nil {
		return Image{}, 0, err
	}
	m, err = convertChannels(m, d.info.Channels)
	if err != nil {
		return Image{}, 0, fmt.Errorf("%s: member %s: %w", d.shards[s], x.image, err)
	}
	return m, x.label, nil
}

// decodeMember decodes sample x's image from shard file f at its native
// channel count.
func decodeMember(shard string, x shardSample, f io.ReaderAt, maxPixels int) (Image, error) {
	var r io.ReadSeeker = io.NewSectionReader(f, x.off, x.size)
	if x.size <= maxBufferedMember {
		buf := make([]byte, x.size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return Image{}, corruptf(shard, "member %s: read %d bytes at offset %d: %v (was the shard changed after it was indexed?)", x.image, x.size, x.off, err)
		}
		r = bytes.NewReader(buf)
	} else {
		r = &bufferedSeeker{s: r.(*io.SectionReader)}
	}
	m, err := decodeImage(x.image, r, maxPixels)
	var ce *CorruptError
	if errors.As(err, &ce) {
		return Image{}, corruptf(shard, "member %s: %s", x.image, ce.Reason)
	}
	if err != nil {
		return Image{}, fmt.Errorf("%s: member %s: %w", shard, x.image, err)
	}
	return m, nil
}

// bufferedSeeker buffers reads of a large member (the decoders read a few
// bytes at a time) and drops the buffer on Seek.
type bufferedSeeker struct {
	s  *io.SectionReader
	br *bufio.Reader
}

func (b *bufferedSeeker) Read(p []byte) (int, error) {
	if b.br == nil {
		b.br = bufio.NewReaderSize(b.s, 1<<20)
	}
	return b.br.Read(p)
}

func (b *bufferedSeeker) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekCurrent && b.br != nil {
		off -= int64(b.br.Buffered())
	}
	b.br = nil
	return b.s.Seek(off, whence)
}

// Shards are the shard files, in index order.
func (d *WebDataset) Shards() []string { return d.shards }

// ShardSamples is the number of samples of shard s.
func (d *WebDataset) ShardSamples(s int) int { return d.starts[s+1] - d.starts[s] }

// Member names sample i's shard and image member.
func (d *WebDataset) Member(i int) (shard, member string) {
	return d.shards[d.shardOf(i)], d.samples[i].image
}

// Label returns the label of sample i without reading it.
func (d *WebDataset) Label(i int) int { return d.samples[i].label }

// Classes are classes.txt's names, or the label numbers without it.
func (d *WebDataset) Classes() []string { return d.classes }

// Info describes the shards; Height and Width are 0 (images vary).
func (d *WebDataset) Info() Info { return d.info }

// Close closes the open shard files; call it when no Get is running (a
// later Get reopens what it needs).
func (d *WebDataset) Close() error { return d.files.close() }

// checkReplicas fails when shard-level order cannot give every rank a shard.
func (d *WebDataset) checkReplicas(replicas int) error {
	if d.shardShuffle && len(d.shards) < replicas {
		return fmt.Errorf("webdataset %s: %d shard(s) for %d ranks with data.shard_shuffle=shard; every rank reads whole shards, so write at least %d shards ('hjepa data shard --samples-per-shard N') or set data.shard_shuffle=sample",
			d.info.Path, len(d.shards), replicas, replicas)
	}
	return nil
}

// rankOrder is rank s.Rank's training order for s's epoch under shard-level
// shuffling, or nil (use the sampler's order) when the dataset uses
// sample-level order or s does not shuffle (evaluation).
//
// The epoch's shards are permuted with a generator seeded by (Seed +
// epoch); rank r takes permuted shards r, r+R, r+2R, ... and reads only
// those; their samples are shuffled together with a generator seeded by
// (Seed + epoch, rank). The list is then cut, or repeated from its start,
// to s.NumSamples() so that every rank takes the same number of steps (with
// shards of unequal size some samples are skipped or repeated that epoch).
// It depends only on (Seed, epoch, rank, replicas), so resume is exact.
func (d *WebDataset) rankOrder(s *DistributedSampler) []int {
	if !d.shardShuffle || !s.Shuffle {
		return nil
	}
	return shardRankOrder(d.starts, s.Seed, s.Epoch(), s.Rank, s.Replicas, s.NumSamples())
}

// shardRankOrder implements rankOrder over shards with sample ranges
// [starts[k], starts[k+1]); needs len(starts)-1 >= replicas and non-empty
// shards.
func shardRankOrder(starts []int, seed int64, epoch, rank, replicas, n int) []int {
	perm := make([]int, len(starts)-1)
	for i := range perm {
		perm[i] = i
	}
	shuffleInts(perm, rand.NewPCG(uint64(seed+int64(epoch)), 0x3c6ef372fe94f82b))
	var idx []int
	for k := rank; k < len(perm); k += replicas {
		for i := starts[perm[k]]; i < starts[perm[k]+1]; i++ {
			idx = append(idx, i)
		}
	}
	shuffleInts(idx, rand.NewPCG(uint64(seed+int64(epoch)), mix64(0xbb67ae8584caa73b, uint64(rank))))
	if len(idx) >= n {
		return idx[:n]
	}
	out := make([]int, n)
	for i := range out {
		out[i] = idx[i%len(idx)]
	}
	return out
}

// shardFiles keeps up to maxOpenShards shard files open for positioned
// reads (concurrent ReadAt on one *os.File is safe), closing the least
// recently used idle one beyond that. A file whose size differs from the
// indexed one is refused: the index no longer describes it.
type shardFiles struct {
	paths []string
	sizes []int64
	limit int

	mu    sync.Mutex
	open  map[int]*openShard
	clock uint64
}

type openShard struct {
	f    *os.File
	refs int
	used uint64
}

func newShardFiles(paths []string, sizes []int64) *shardFiles {
	return &shardFiles{paths: paths, sizes: sizes, limit: maxOpenShards, open: map[int]*openShard{}}
}

// acquire returns shard s's file; pair it with release(s).
func (c *shardFiles) acquire(s int) (*os.File, error) {
	c.mu.Lock()
	if o := c.open[s]; o != nil {
		o.refs++
		c.clock++
		o.used = c.clock
		c.mu.Unlock()
		return o.f, nil
	}
	c.mu.Unlock()
	f, err := os.Open(c.paths[s])
	if err != nil {
		return nil, fmt.Errorf("open shard: %w", err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != c.sizes[s] {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", c.paths[s], err)
		}
		return nil, corruptf(c.paths[s], "%d bytes now, %d when it was indexed; the shard changed during the run (restart to re-index)", st.Size(), c.sizes[s])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	if o := c.open[s]; o != nil { // opened meanwhile by another reader
		f.Close()
		o.refs++
		o.used = c.clock
		return o.f, nil
	}
	c.open[s] = &openShard{f: f, refs: 1, used: c.clock}
	if len(c.open) > c.limit {
		victim, oldest := -1, c.clock
		for k, o := range c.open {
			if o.refs == 0 && o.used < oldest {
				victim, oldest = k, o.used
			}
		}
		if victim >= 0 {
			c.open[victim].f.Close()
			delete(c.open, victim)
		}
	}
	return f, nil
}

func (c *shardFiles) release(s int) {
	c.mu.Lock()
	if o := c.open[s]; o != nil {
		o.refs--
	}
	c.mu.Unlock()
}

func (c *shardFiles) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for k, o := range c.open {
		if err := o.f.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.open, k)
	}
	return first
}
