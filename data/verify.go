package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Report is what `hjepa data verify` prints: the detected format, each
// split's counts and classes, and every file that could not be read.
type Report struct {
	Path     string
	Format   string // idx, cifar10, cifar100, imagefolder, webdataset
	Splits   []SplitReport
	Shards   []ShardReport // webdataset only
	Problems []Problem
}

// ShardReport counts one WebDataset shard's samples.
type ShardReport struct {
	Path    string
	Bytes   int64
	Samples int // samples indexed (up to the first structural error)
	Bad     int // of those, images that do not decode or labels out of range
}

// SplitReport describes one split (train, test, val, ...).
type SplitReport struct {
	Name     string
	Path     string
	Count    int // readable images
	Channels int
	// Height and Width are 0 when images differ in size.
	Height, Width int
	Classes       []string
	PerClass      []int
}

// decoded is one image's shape, or why it could not be read.
type decoded struct {
	c, h, w int
	err     error
}

// decodeAll runs decode(i) for every i < n on every core and returns the
// results by index.
func decodeAll(n int, decode func(i int) decoded) []decoded {
	res := make([]decoded, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				res[i] = decode(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return res
}

// add counts a readable image of class cls: the first sets the split's
// size, one of another size leaves it 0 x 0.
func (s *SplitReport) add(d decoded, cls int) {
	if s.Count == 0 {
		s.Height, s.Width = d.h, d.w
	} else if s.Height != d.h || s.Width != d.w {
		s.Height, s.Width = 0, 0
	}
	s.Count++
	s.PerClass[cls]++
	s.Channels = max(s.Channels, d.c)
}

// Problem is one unreadable or corrupt file (or missing piece).
type Problem struct {
	Path string
	Err  string
}

// Err is nil when no problem was found, else an error counting them.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %d unreadable or corrupt file(s), first %s: %s", r.Path, len(r.Problems), r.Problems[0].Path, r.Problems[0].Err)
}

// String is the printable summary.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataset %s\nformat  %s\n", r.Path, r.Format)
	for _, s := range r.Splits {
		size := "variable size"
		if s.Height > 0 {
			size = fmt.Sprintf("%dx%d", s.Height, s.Width)
		}
		fmt.Fprintf(&b, "split %s (%s): %d images, %d channel(s), %s, %d classes\n", s.Name, s.Path, s.Count, s.Channels, size, len(s.Classes))
		for i, c := range s.Classes {
			fmt.Fprintf(&b, "  %3d %-24s %d\n", i, c, s.PerClass[i])
		}
	}
	if len(r.Shards) > 0 {
		fmt.Fprintf(&b, "%d shard(s):\n", len(r.Shards))
		for _, s := range r.Shards {
			fmt.Fprintf(&b, "  %s: %d samples, %d bad, %.1f MiB\n", s.Path, s.Samples, s.Bad, float64(s.Bytes)/(1<<20))
		}
	}
	if len(r.Problems) == 0 {
		b.WriteString("no problems found\n")
	} else {
		fmt.Fprintf(&b, "%d problem(s):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %s: %s\n", p.Path, p.Err)
		}
	}
	return b.String()
}

func (r *Report) problem(path string, err error) {
	var ce *CorruptError
	if errors.As(err, &ce) {
		r.Problems = append(r.Problems, Problem{Path: ce.Path, Err: ce.Reason})
		return
	}
	r.Problems = append(r.Problems, Problem{Path: path, Err: err.Error()})
}

// DetectFormat names the dataset format at path: idx (an MNIST-layout
// directory or an IDX images file), cifar10, cifar100, imagefolder, or
// webdataset (a .tar file, or a shard pattern: braces, globs, commas).
func DetectFormat(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil && strings.ContainsAny(path, "{},*?[") {
		return "webdataset", nil
	}
	if err == nil && !st.IsDir() && strings.HasSuffix(strings.ToLower(path), ".tar") {
		return "webdataset", nil
	}
	if err != nil {
		return "", fmt.Errorf("dataset %q: %w; check the path, or fetch a dataset with 'hjepa data download NAME --dir DIR'", path, err)
	}
	if !st.IsDir() {
		if strings.Contains(filepath.Base(path), "idx3") {
			return "idx", nil
		}
		return "", fmt.Errorf("dataset %q: a file that is not an IDX images file; give a dataset directory", path)
	}
	for _, p := range []string{"train", "t10k"} {
		if findIDXFile(path, p, "images", "idx3") != "" || findIDXFile(path, p, "labels", "idx1") != "" {
			return "idx", nil
		}
	}
	d10 := cifarDir(path, "cifar10")
	if m, _ := filepath.Glob(filepath.Join(d10, "data_batch_*.bin")); len(m) > 0 || exists(filepath.Join(d10, "test_batch.bin")) {
		return "cifar10", nil
	}
	d100 := cifarDir(path, "cifar100")
	if exists(filepath.Join(d100, "train.bin")) || exists(filepath.Join(d100, "test.bin")) {
		return "cifar100", nil
	}
	if _, err := imageFolderClasses(path); err == nil {
		return "imagefolder", nil
	}
	return "", fmt.Errorf("dataset %q: not an IDX, CIFAR binary or ImageFolder directory", path)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Verify reads the whole dataset at path (a directory, an IDX file, or
// WebDataset shards: a .tar or a pattern, see ExpandShards) and reports
// every problem. The error is non-nil only when path is missing, its format
// unknown or its shard pattern malformed; corrupt
// files are listed in Report.Problems (see Report.Err), and so are images
// over DefaultMaxImagePixels, the default of data.max_image_pixels.
func Verify(path string) (*Report, error) { return VerifyLimit(path, 0) }

// VerifyLimit is Verify with images over maxPixels listed as problems
// (data.max_image_pixels; <= 0: DefaultMaxImagePixels).
func VerifyLimit(path string, maxPixels int) (*Report, error) {
	format, err := DetectFormat(path)
	if err != nil {
		return nil, err
	}
	r := &Report{Path: path, Format: format}
	switch format {
	case "idx":
		verifyIDX(r, path)
	case "cifar10", "cifar100":
		verifyCIFAR(r, path, format)
	case "imagefolder":
		verifyImageFolder(r, path, maxPixels)
	case "webdataset":
		shards, err := ExpandShards(path)
		if err != nil {
			return nil, err
		}
		verifyWebDataset(r, shards, maxPixels)
	}
	return r, nil
}

func verifyIDX(r *Report, path string) {
	type pair struct{ name, img, lab string }
	var pairs []pair
	if st, _ := os.Stat(path); !st.IsDir() {
		pairs = append(pairs, pair{filepath.Base(path), path, IDXLabelsPath(path)})
	} else {
		for _, p := range []string{"train", "t10k"} {
			img, lab := findIDXFile(path, p, "images", "idx3"), findIDXFile(path, p, "labels", "idx1")
			switch {
			case img == "" && lab == "":
				continue
			case img == "":
				r.Problems = append(r.Problems, Problem{Path: filepath.Join(path, p+"-images-idx3-ubyte[.gz]"), Err: "missing (labels file present)"})
				continue
			case lab == "":
				r.Problems = append(r.Problems, Problem{Path: filepath.Join(path, p+"-labels-idx1-ubyte[.gz]"), Err: "missing (images file present)"})
				continue
			}
			pairs = append(pairs, pair{map[string]string{"train": "train", "t10k": "test"}[p], img, lab})
		}
	}
	for _, p := range pairs {
		d, err := OpenIDXFiles(p.img, p.lab)
		if err != nil {
			r.problem(p.img, err)
			continue
		}
		s := SplitReport{Name: p.name, Path: p.img, Count: d.Len(), Channels: 1, Height: d.rows, Width: d.cols, Classes: d.classes, PerClass: make([]int, len(d.classes))}
		for _, l := range d.labels {
			s.PerClass[l]++
		}
		r.Splits = append(r.Splits, s)
	}
}

func verifyCIFAR(r *Report, path, kind string) {
	dir := cifarDir(path, kind)
	record, nclass := cifar10Record, 10
	if kind == "cifar100" {
		record, nclass = cifar100Record, 100
	}
	for _, split := range []string{"train", "test"} {
		files, meta, _ := cifarFiles(kind, split)
		classes := readClassNames(filepath.Join(dir, meta), nclass)
		if classes == nil {
			classes = make([]string, nclass)
			for i := range classes {
				classes[i] = fmt.Sprint(i)
			}
			if kind == "cifar10" {
				copy(classes, CIFAR10Classes)
			}
		}
		s := SplitReport{Name: split, Path: dir, Channels: 3, Height: cifarSide, Width: cifarSide, Classes: classes, PerClass: make([]int, nclass)}
		for _, f := range files {
			p := filepath.Join(dir, f)
			b, err := readCIFARFile(p, record, nclass)
			if err != nil {
				r.problem(p, err)
				continue
			}
			for o := 0; o < len(b); o += record {
				s.PerClass[b[o+record-cifarPixels-1]]++
				s.Count++
			}
		}
		r.Splits = append(r.Splits, s)
	}
}

// imageFolderSplits returns the split folders of an ImageFolder root: its
// train/val/test subfolders when it has them, else the root itself.
func imageFolderSplits(root string) []string {
	var splits []string
	for _, s := range []string{"train", "val", "test"} {
		p := filepath.Join(root, s)
		if isDir(p) {
			if cls, err := imageFolderClasses(p); err == nil && len(cls) > 0 {
				splits = append(splits, p)
			}
		}
	}
	if len(splits) == 0 {
		splits = []string{root}
	}
	return splits
}

func verifyImageFolder(r *Report, root string, maxPixels int) {
	for _, sp := range imageFolderSplits(root) {
		classes, err := imageFolderClasses(sp)
		if err != nil {
			r.problem(sp, err)
			continue
		}
		s := SplitReport{Name: filepath.Base(sp), Path: sp, Classes: classes, PerClass: make([]int, len(classes))}
		type item struct {
			path  string
			class int
		}
		var items []item
		for ci, c := range classes {
			files, err := classImages(filepath.Join(sp, c))
			if err != nil {
				r.problem(filepath.Join(sp, c), err)
				continue
			}
			if len(files) == 0 {
				r.Problems = append(r.Problems, Problem{Path: filepath.Join(sp, c), Err: "class folder has no .jpg/.jpeg/.png images"})
			}
			for _, f := range files {
				items = append(items, item{f, ci})
			}
		}
		res := decodeAll(len(items), func(i int) decoded {
			m, err := decodeImageNative(items[i].path, maxPixels)
			if err != nil {
				return decoded{err: err}
			}
			return decoded{c: m.C, h: m.H, w: m.W}
		})
		for i, it := range items {
			if res[i].err != nil {
				r.problem(it.path, res[i].err)
				continue
			}
			s.add(res[i], it.class)
		}
		r.Splits = append(r.Splits, s)
	}
	sort.SliceStable(r.Problems, func(i, j int) bool { return r.Problems[i].Path < r.Problems[j].Path })
}

// verifyWebDataset indexes every shard, decodes every image and checks every
// label against classes.txt (when present). Problems name the shard and
// the member; a shard's structural error stops its index there, and the
// samples before it are still checked.
func verifyWebDataset(r *Report, shards []string, maxPixels int) {
	classesPath := filepath.Join(filepath.Dir(shards[0]), ClassesFile)
	classes, err := readClassesFile(classesPath)
	if err != nil {
		r.problem(classesPath, err)
	}
	idx, sizes, errs := indexShards(shards)
	type item struct {
		shard int
		x     shardSample
	}
	var items []item
	top := -1
	for s, p := range shards {
		if errs[s] != nil {
			r.problem(p, errs[s])
		}
		r.Shards = append(r.Shards, ShardReport{Path: p, Bytes: sizes[s], Samples: len(idx[s])})
		for _, x := range idx[s] {
			items = append(items, item{s, x})
			top = max(top, x.label)
		}
	}
	if classes == nil {
		for i := range top + 1 {
			classes = append(classes, fmt.Sprint(i))
		}
	}
	s := SplitReport{Name: "shards", Path: r.Path, Classes: classes, PerClass: make([]int, len(classes))}
	files := newShardFiles(shards, sizes)
	defer files.close()
	res := decodeAll(len(items), func(i int) decoded {
		it := items[i]
		if it.x.label >= len(classes) {
			return decoded{err: corruptf(shards[it.shard], "member %s: label %d but %s lists %d classes", it.x.image, it.x.label, classesPath, len(classes))}
		}
		f, err := files.acquire(it.shard)
		if err != nil {
			return decoded{err: err}
		}
		m, err := decodeMember(shards[it.shard], it.x, f, maxPixels)
		files.release(it.shard)
		return decoded{c: m.C, h: m.H, w: m.W, err: err}
	})
	for i, it := range items {
		if res[i].err != nil {
			r.problem(shards[it.shard], res[i].err)
			r.Shards[it.shard].Bad++
			continue
		}
		s.add(res[i], it.x.label)
	}
	r.Splits = append(r.Splits, s)
}
