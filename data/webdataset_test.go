package data

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
)

// member is one tar member of a test shard.
type member struct {
	name string
	data []byte
	typ  byte // 0: regular file
}

// tarBytes builds a tar of the members (with the end-of-archive blocks).
func tarBytes(t testing.TB, ms ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}
		if m.typ != 0 {
			h.Typeflag, h.Size = m.typ, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if m.typ == 0 {
			tw.Write(m.data)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sampleMembers is KEY.png and KEY.cls.
func sampleMembers(key string, img []byte, label int) []member {
	return []member{{name: key + ".png", data: img}, {name: key + ".cls", data: []byte(fmt.Sprint(label))}}
}

// testImage is a w x h image whose pixels depend on seed.
func testImage(w, h, seed int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x*17 + seed*31), uint8(y*13 + seed*7), uint8((x + y + seed) * 5), 255})
		}
	}
	return m
}

// writeTestImageFolder writes 3 classes of n images each, of varied sizes
// and formats (PNG, JPEG, grey PNG), and returns the root.
func writeTestImageFolder(t *testing.T, root string, n int) string {
	t.Helper()
	for ci, c := range []string{"ant", "bee", "cat"} {
		for i := range n {
			seed := ci*100 + i
			m := testImage(10+i%5, 9+(i*3)%7, seed)
			switch i % 3 {
			case 0:
				writeFile(t, filepath.Join(root, c, fmt.Sprintf("img%02d.png", i)), pngBytes(t, m))
			case 1:
				writeFile(t, filepath.Join(root, c, fmt.Sprintf("img%02d.JPEG", i)), jpegBytes(t, m))
			case 2:
				g := image.NewGray(m.Rect)
				for k := range g.Pix {
					g.Pix[k] = uint8(k*3 + seed)
				}
				writeFile(t, filepath.Join(root, c, "sub", fmt.Sprintf("img%02d.png", i)), pngBytes(t, g))
			}
		}
	}
	return root
}

func TestIndexShard(t *testing.T) {
	a, b := pngBytes(t, rgbImage(4, 3)), pngBytes(t, rgbImage(2, 5))
	ms := []member{
		{name: "dir/", typ: tar.TypeDir},
		{name: "__meta__", data: []byte("x")},
		{name: "dir/k0.png", data: a},
		{name: "dir/k0.cls", data: []byte(" 2\n")},
		{name: "dir/k0.json", data: []byte("{}")},
		{name: "dir/k0.seg.png", data: b}, // extension "seg.png": not the image
		{name: "noext", data: []byte("ignored")},
		{name: "k1.cls", data: []byte("0")},
		{name: "k1.PNG", data: b},
	}
	raw := tarBytes(t, ms...)
	got, err := indexShard("/s/a.tar", bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].image != "dir/k0.png" || got[0].label != 2 || got[1].image != "k1.PNG" || got[1].label != 0 {
		t.Fatalf("samples %+v", got)
	}
	for i, want := range [][]byte{a, b} {
		if s := got[i]; !bytes.Equal(raw[s.off:s.off+s.size], want) {
			t.Fatalf("sample %d: extent [%d, +%d) is not the image", i, s.off, s.size)
		}
	}

	good := tarBytes(t, append(sampleMembers("k0", a, 1), sampleMembers("k1", b, 0)...)...)
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"no label", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k1.png", data: b}, member{name: "k1.cls", data: []byte("1")}), `sample "k0" (member "k0.png") has no label member k0.cls`},
		{"no image", tarBytes(t, member{name: "k0.cls", data: []byte("1")}), `sample "k0" has no image member`},
		{"two images", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k0.jpg", data: a}), `member "k0.jpg": sample "k0" already has an image (k0.png)`},
		{"same member twice", tarBytes(t, member{name: "k0.cls", data: []byte("1")}, member{name: "k0.cls", data: []byte("1")}), "already has a .cls member"},
		{"key not consecutive", tarBytes(t, append(append(sampleMembers("k0", a, 0), sampleMembers("k1", a, 0)...), member{name: "k0.txt"})...), `sample "k0" appears again`},
		{"label text", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k0.cls", data: []byte("dog")}), `member "k0.cls": label "dog" is not a class index`},
		{"label negative", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k0.cls", data: []byte("-1")}), "not a class index"},
		{"label huge", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k0.cls", data: []byte("99999999")}), "over the limit"},
		{"label member large", tarBytes(t, member{name: "k0.png", data: a}, member{name: "k0.cls", data: make([]byte, 100)}), "100 bytes, not a class index"},
		{"truncated in data", good[:512+len(a)/2], `truncated tar: member "k0.png" declares`},
		{"truncated in header", good[:512+512*((len(a)+511)/512)+100], `truncated tar: the file ends within a header or padding after member "k0.png"`},
		{"cut at a member boundary", good[:len(good)-1024], `no end-of-archive marker after member "k1.cls"`},
		{"empty file", nil, "empty file"},
		{"only the end marker", make([]byte, 1024), "no samples"},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 100), "malformed tar header at the first header"},
		{"sparse member", gnuSparse(t), "sparse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := indexShard("/s/bad.tar", bytes.NewReader(tc.raw), int64(len(tc.raw)))
			corruptNaming(t, err, "/s/bad.tar")
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// gnuSparse is a tar with one old-GNU sparse member (typeflag 'S'), which
// archive/tar reads but does not write.
func gnuSparse(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "k0.png", Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatGNU})
	tw.Close()
	raw := b.Bytes()
	raw[156] = tar.TypeGNUSparse
	copy(raw[148:156], "        ")
	sum := 0
	for _, c := range raw[:512] {
		sum += int(c)
	}
	copy(raw[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return raw
}

// writeShardSet writes shards of the given samples (label = i % 3, image
// testImage(i)) under dir, per shard sizes, and returns the pattern.
func writeShardSet(t *testing.T, dir string, sizes ...int) string {
	t.Helper()
	i := 0
	for s, n := range sizes {
		var ms []member
		for range n {
			ms = append(ms, sampleMembers(fmt.Sprintf("%06d", i), pngBytes(t, testImage(5+i%3, 4, i)), i%3)...)
			i++
		}
		writeFile(t, filepath.Join(dir, fmt.Sprintf("s-%02d.tar", s)), tarBytes(t, ms...))
	}
	return filepath.Join(dir, fmt.Sprintf("s-{00..%02d}.tar", len(sizes)-1))
}

func TestWebDatasetGet(t *testing.T) {
	dir := t.TempDir()
	pattern := writeShardSet(t, dir, 3, 1, 4)
	d, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3, Split: "train"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Len() != 8 || len(d.Shards()) != 3 || d.ShardSamples(2) != 4 || !slices.Equal(d.Classes(), []string{"0", "1", "2"}) {
		t.Fatalf("len %d shards %v classes %v", d.Len(), d.Shards(), d.Classes())
	}
	if i := d.Info(); i.Format != "webdataset" || i.Count != 8 || i.Path != pattern || i.Split != "train" {
		t.Fatalf("info %+v", i)
	}
	for i := range d.Len() {
		m, lab, err := d.Get(i)
		want, _ := decodeImage("x.png", bytes.NewReader(pngBytes(t, testImage(5+i%3, 4, i))), 0)
		if err != nil || lab != i%3 || !slices.Equal(m.Pix, want.Pix) || m.W != 5+i%3 {
			t.Fatalf("sample %d: %v label %d", i, err, lab)
		}
		if s, mem := d.Member(i); mem != fmt.Sprintf("%06d.png", i) || !strings.HasPrefix(filepath.Base(s), "s-") {
			t.Fatalf("sample %d is %s %s", i, s, mem)
		}
	}
	g, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 1})
	if m, _, _ := g.Get(0); err != nil || m.C != 1 {
		t.Fatalf("grey: %v %d", err, m.C)
	}
	if _, _, err := d.Get(8); err == nil {
		t.Fatal("index out of range accepted")
	}

	t.Run("classes.txt", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, ClassesFile), []byte("ant\nbee\ncat\n\n"))
		d, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3})
		if err != nil || !slices.Equal(d.Classes(), []string{"ant", "bee", "cat"}) {
			t.Fatalf("%v %v", err, d.Classes())
		}
		writeFile(t, filepath.Join(dir, ClassesFile), []byte("ant\nbee\n"))
		_, err = OpenWebDataset(pattern, WebDatasetOptions{Channels: 3})
		if err == nil || !strings.Contains(err.Error(), "label 2 but") || !strings.Contains(err.Error(), "lists 2 classes") {
			t.Fatalf("label out of range: %v", err)
		}
		writeFile(t, filepath.Join(dir, ClassesFile), []byte("ant\n\nbee\n"))
		if _, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3}); err == nil || !strings.Contains(err.Error(), "line 2 is empty") {
			t.Fatalf("blank line: %v", err)
		}
		os.Remove(filepath.Join(dir, ClassesFile))
	})
	t.Run("errors name the shard and member", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.tar")
		jb := jpegBytes(t, rgbImage(8, 8))
		writeFile(t, bad, tarBytes(t, append(sampleMembers("a", pngBytes(t, rgbImage(2, 2)), 0),
			member{name: "b.jpg", data: jb[:len(jb)/2]}, member{name: "b.cls", data: []byte("0")},
			member{name: "c.png", data: pngDeclaring(300, 300)}, member{name: "c.cls", data: []byte("0")})...))
		d, err := OpenWebDataset(bad, WebDatasetOptions{Channels: 3, MaxPixels: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Get(0); err != nil {
			t.Fatal(err)
		}
		_, _, err = d.Get(1)
		corruptNaming(t, err, bad)
		if !strings.Contains(err.Error(), "member b.jpg: decode image") {
			t.Fatalf("truncated jpeg: %v", err)
		}
		_, _, err = d.Get(2)
		corruptNaming(t, err, bad)
		if !strings.Contains(err.Error(), "member c.png") || !strings.Contains(err.Error(), "data.max_image_pixels") {
			t.Fatalf("over the pixel limit: %v", err)
		}
	})
	t.Run("open fails naming the shard", func(t *testing.T) {
		dir := t.TempDir()
		pattern := writeShardSet(t, dir, 2, 2, 2)
		p := filepath.Join(dir, "s-01.tar")
		raw, _ := os.ReadFile(p)
		os.WriteFile(p, raw[:700], 0o644)
		_, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3})
		corruptNaming(t, err, p)
		if !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "000002.png") {
			t.Fatalf("got %v", err)
		}
		os.Remove(p)
		if _, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3}); err == nil || !strings.Contains(err.Error(), "1 of 3 shard(s) missing, first "+p) {
			t.Fatalf("missing shard: %v", err)
		}
		if _, err := OpenWebDataset(dir, WebDatasetOptions{Channels: 3}); err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("directory: %v", err)
		}
	})
	t.Run("shard changed after indexing", func(t *testing.T) {
		dir := t.TempDir()
		pattern := writeShardSet(t, dir, 2)
		d, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "s-00.tar")
		raw, _ := os.ReadFile(p)
		os.WriteFile(p, raw[:1500], 0o644)
		_, _, err = d.Get(1)
		corruptNaming(t, err, p)
		if !strings.Contains(err.Error(), "changed") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestShardFilesLimit(t *testing.T) {
	dir := t.TempDir()
	pattern := writeShardSet(t, dir, 1, 1, 1, 1, 1)
	d, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	d.files.limit = 2
	for range 3 {
		for i := range d.Len() {
			if _, _, err := d.Get(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(d.files.open); n != 2 {
		t.Fatalf("%d shard files open, limit 2", n)
	}
	// A file in use is never closed under its reader.
	f, _ := d.files.acquire(0)
	for i := 1; i < d.Len(); i++ {
		d.Get(i)
	}
	if _, err := f.Stat(); err != nil {
		t.Fatalf("file in use was closed: %v", err)
	}
	d.files.release(0)
	if err := d.Close(); err != nil || len(d.files.open) != 0 {
		t.Fatal(err)
	}
}

// loaderBatches is the first n batches of a training loader (crossing
// epochs), copied.
type loaderBatch struct {
	images         []float32
	labels, index  []int
	epoch, inEpoch int
}

func firstBatches(t *testing.T, ds Dataset, tf Transform, world, rank, n int, restore *LoaderState) []loaderBatch {
	t.Helper()
	s, err := NewDistributedSampler(ds.Len(), world, rank, true, 42, false)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(ds, tf, s, LoaderOptions{BatchSize: 4, NumWorkers: 3, Prefetch: 2, DropLast: true, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if restore != nil {
		if err := l.Restore(*restore); err != nil {
			t.Fatal(err)
		}
	}
	var out []loaderBatch
	for len(out) < n {
		b, err := l.Next(context.Background())
		if err == io.EOF {
			l.SetEpoch(l.State().Epoch + 1)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, loaderBatch{slices.Clone(b.Images), slices.Clone(b.Labels), slices.Clone(b.Indices), b.Epoch, b.Index})
		b.Release()
	}
	return out
}

// TestShardsTrainLikeImageFolder is the must-show: shards written from an
// ImageFolder give, through data.Open, the configured transform, the
// sampler and the loader, the same first 20 batches bit for bit as the
// ImageFolder itself, on one rank and on each of two, and a loader resumed
// mid-epoch continues with the same batches.
func TestShardsTrainLikeImageFolder(t *testing.T) {
	root := writeTestImageFolder(t, filepath.Join(t.TempDir(), "imgs"), 14)
	out := t.TempDir()
	res, err := WriteShards(root, filepath.Join(out, "train-{0000..9999}.tar"), ShardOptions{MaxSamples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Shards) != 9 || res.Pattern != filepath.Join(out, "train-{0000..0008}.tar") {
		t.Fatalf("%d shards, pattern %s", len(res.Shards), res.Pattern)
	}
	aug := config.Augmentation{RandomCrop: true, CropScale: []float64{0.3, 1}, CropRatio: []float64{0.75, 4.0 / 3}, HorizontalFlip: true, ColorJitter: 0.2, Views: 1}
	folderCfg := config.Data{Dataset: "imagefolder", Path: root, ImageSize: 8, Channels: 3, Mean: []float64{0.5, 0.5, 0.5}, Std: []float64{0.25, 0.25, 0.25}, Augmentation: aug}
	shardCfg := folderCfg
	shardCfg.Dataset, shardCfg.Path, shardCfg.ShardShuffle = "webdataset", res.Pattern, "sample"
	open := func(cfg config.Data) (Dataset, Transform) {
		ds, err := Open(cfg, "train", 42)
		if err != nil {
			t.Fatal(err)
		}
		tf, err := TrainTransform(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ds, tf
	}
	fds, ftf := open(folderCfg)
	sds, stf := open(shardCfg)
	if !reflect.DeepEqual(ftf, stf) || !slices.Equal(fds.Classes(), sds.Classes()) || fds.Len() != 42 || sds.Len() != 42 {
		t.Fatalf("transforms %+v / %+v, classes %v / %v", ftf, stf, fds.Classes(), sds.Classes())
	}
	for _, world := range []int{1, 2} {
		for rank := range world {
			a := firstBatches(t, fds, ftf, world, rank, 20, nil)
			b := firstBatches(t, sds, stf, world, rank, 20, nil)
			for i := range a {
				if !slices.Equal(a[i].images, b[i].images) || !slices.Equal(a[i].labels, b[i].labels) || !slices.Equal(a[i].index, b[i].index) {
					t.Fatalf("world %d rank %d: batch %d differs (indices %v / %v)", world, rank, i, a[i].index, b[i].index)
				}
			}
			if world == 1 && a[19].epoch != 1 {
				t.Fatalf("20 batches end in epoch %d; the test means to cross an epoch", a[19].epoch)
			}
			// Resume the shard loader at the 13th batch (epoch 1, batch 3).
			at := a[12]
			r := firstBatches(t, sds, stf, world, rank, 20-12, &LoaderState{Epoch: at.epoch, Position: at.inEpoch * 4})
			for i := range r {
				if !slices.Equal(r[i].images, a[12+i].images) || r[i].epoch != a[12+i].epoch || r[i].inEpoch != a[12+i].inEpoch {
					t.Fatalf("world %d rank %d: resumed batch %d differs", world, rank, 12+i)
				}
			}
		}
	}
}

func TestShardShuffleOrder(t *testing.T) {
	starts := []int{0, 5, 9, 15, 20, 21, 30} // 6 shards
	for _, replicas := range []int{1, 2, 3, 6} {
		n := (30 + replicas - 1) / replicas
		for epoch := range 3 {
			owner := map[int]int{}
			for rank := range replicas {
				a := shardRankOrder(starts, 7, epoch, rank, replicas, n)
				if b := shardRankOrder(starts, 7, epoch, rank, replicas, n); !slices.Equal(a, b) || len(a) != n {
					t.Fatalf("replicas %d epoch %d rank %d: not deterministic or %d long, want %d", replicas, epoch, rank, len(a), n)
				}
				for _, i := range a {
					s := shardOfIndex(starts, i)
					if o, ok := owner[s]; ok && o != rank {
						t.Fatalf("replicas %d epoch %d: shard %d read by ranks %d and %d", replicas, epoch, s, o, rank)
					}
					owner[s] = rank
				}
			}
			if replicas == 1 {
				if a := shardRankOrder(starts, 7, epoch, 0, 1, 30); !slices.Equal(slices.Sorted(slices.Values(a)), seq(30)) {
					t.Fatalf("one rank does not see every sample once: %v", a)
				}
			}
		}
	}
	// Shards move between ranks from epoch to epoch.
	if slices.Equal(shardRankOrder(starts, 7, 0, 0, 2, 15), shardRankOrder(starts, 7, 1, 0, 2, 15)) {
		t.Fatal("epochs 0 and 1 gave rank 0 the same order")
	}
}

func shardOfIndex(starts []int, i int) int {
	for s := range len(starts) - 1 {
		if i >= starts[s] && i < starts[s+1] {
			return s
		}
	}
	return -1
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestShardShuffleLoader(t *testing.T) {
	dir := t.TempDir()
	pattern := writeShardSet(t, dir, 6, 6, 6)
	d, err := OpenWebDataset(pattern, WebDatasetOptions{Channels: 3, ShardShuffle: true})
	if err != nil {
		t.Fatal(err)
	}
	// Fewer shards than ranks: a clear error when the loader is built.
	s, _ := NewDistributedSampler(d.Len(), 4, 0, true, 1, false)
	if _, err := NewLoader(d, trainPipe(), s, LoaderOptions{BatchSize: 2}); err == nil || !strings.Contains(err.Error(), "3 shard(s) for 4 ranks") || !strings.Contains(err.Error(), "data.shard_shuffle=sample") {
		t.Fatalf("got %v", err)
	}
	for rank := range 2 {
		a := firstBatches(t, d, trainPipe(), 2, rank, 6, nil)
		for _, b := range a {
			for k, i := range b.index {
				if b.labels[k] != i%3 {
					t.Fatalf("label %d for sample %d", b.labels[k], i)
				}
			}
		}
		r := firstBatches(t, d, trainPipe(), 2, rank, 3, &LoaderState{Epoch: a[3].epoch, Position: a[3].inEpoch * 4})
		for i := range r {
			if !slices.Equal(r[i].images, a[3+i].images) || !slices.Equal(r[i].index, a[3+i].index) {
				t.Fatalf("rank %d: resumed batch %d differs", rank, 3+i)
			}
		}
	}
	// Evaluation (no shuffle) keeps the index order.
	s, _ = NewDistributedSampler(d.Len(), 1, 0, false, 1, false)
	if got := d.rankOrder(s); got != nil {
		t.Fatalf("unshuffled sampler got a shard order %v", got)
	}
}

func TestWriteShards(t *testing.T) {
	src := t.TempDir()
	writeTestImageFolder(t, filepath.Join(src, "train"), 4)
	writeTestImageFolder(t, filepath.Join(src, "val"), 1)
	out := filepath.Join(t.TempDir(), "a", "b")
	pat := filepath.Join(out, "t-{00..99}.tar")
	res, err := WriteShards(src, pat, ShardOptions{MaxBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != filepath.Join(src, "train") || len(res.Shards) < 2 {
		t.Fatalf("%+v", res)
	}
	folder, _ := OpenImageFolder(filepath.Join(src, "train"), 3, 0)
	shards, err := OpenWebDataset(res.Pattern, WebDatasetOptions{Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	if shards.Len() != folder.Len() || !slices.Equal(shards.Classes(), folder.Classes()) {
		t.Fatalf("%d / %d samples, classes %v", shards.Len(), folder.Len(), shards.Classes())
	}
	for i := range folder.Len() {
		a, la, _ := folder.Get(i)
		b, lb, err := shards.Get(i)
		if err != nil || la != lb || !slices.Equal(a.Pix, b.Pix) {
			t.Fatalf("sample %d (%s) differs: %v", i, folder.Path(i), err)
		}
	}
	for k, s := range res.Shards {
		st, _ := os.Stat(s)
		if st.Size() > 4096 && res.Samples[k] > 1 {
			t.Fatalf("%s: %d bytes, bound 4096", s, st.Size())
		}
		if shards.ShardSamples(k) != res.Samples[k] {
			t.Fatalf("%s: %d samples, %d reported", s, shards.ShardSamples(k), res.Samples[k])
		}
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file %s left", e.Name())
		}
	}

	// Existing shards are refused without --force; the same input gives the
	// same bytes.
	first, _ := os.ReadFile(res.Shards[0])
	if _, err := WriteShards(src, pat, ShardOptions{MaxBytes: 4096}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite: %v", err)
	}
	os.WriteFile(res.Shards[0], []byte("stale"), 0o644)
	if _, err := WriteShards(src, pat, ShardOptions{MaxBytes: 4096, Force: true}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(res.Shards[0]); !bytes.Equal(again, first) {
		t.Fatal("rewriting the same images gave other bytes")
	}
	// Fewer, larger shards leave the old tail as stale.
	res2, err := WriteShards(src, pat, ShardOptions{MaxSamples: 100, Force: true})
	if err != nil || len(res2.Shards) != 1 || res2.Stale != filepath.Join(out, "t-01.tar") || res2.Pattern != filepath.Join(out, "t-00.tar") {
		t.Fatalf("%v %+v", err, res2)
	}

	for _, tc := range []struct {
		pattern string
		opt     ShardOptions
		want    string
	}{
		{filepath.Join(t.TempDir(), "x-{0..1}.tar"), ShardOptions{MaxSamples: 1}, "names 2 shard(s) but 12 are needed"},
		{filepath.Join(t.TempDir(), "one.tar"), ShardOptions{MaxSamples: 5}, "names 1 shard(s) but 3 are needed"},
		{filepath.Join(t.TempDir(), "x-{a,b}.tar"), ShardOptions{}, "lists and globs"},
		{filepath.Join(t.TempDir(), "x.tar"), ShardOptions{MaxSamples: -1}, "must be positive"},
	} {
		if _, err := WriteShards(src, tc.pattern, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.pattern, err, tc.want)
		}
	}
	// Another class list in the same directory is refused.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "zebra", "z.png"), pngBytes(t, rgbImage(2, 2)))
	if _, err := WriteShards(other, filepath.Join(out, "z-{0..9}.tar"), ShardOptions{}); err == nil || !strings.Contains(err.Error(), "other classes") {
		t.Fatalf("classes clash: %v", err)
	}
	if _, err := WriteShards(filepath.Join(src, "val"), filepath.Join(out, "v-{0..9}.tar"), ShardOptions{}); err != nil {
		t.Fatalf("same classes, other split: %v", err)
	}
}

func TestPlanShards(t *testing.T) {
	sizes := []int64{100, 600, 5000, 10, 10, 10}
	// Each sample takes 512 + pad512(n) bytes, and 1024 for its label; the
	// end marker 1024: two 10-byte samples fill 5120 exactly.
	got := planShards(sizes, ShardOptions{MaxBytes: 1024 + 2*2048})
	want := [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 5}, {5, 6}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("by bytes %v, want %v", got, want)
	}
	if got := planShards(sizes, ShardOptions{MaxSamples: 4}); !reflect.DeepEqual(got, [][2]int{{0, 4}, {4, 6}}) {
		t.Fatalf("by samples %v", got)
	}
	if got := planShards(sizes, ShardOptions{MaxSamples: 2, MaxBytes: 1 << 20}); len(got) != 3 {
		t.Fatalf("both bounds %v", got)
	}
}

func TestVerifyWebDataset(t *testing.T) {
	dir := t.TempDir()
	pattern := writeShardSet(t, dir, 2, 3)
	r, err := Verify(pattern)
	if err != nil || r.Format != "webdataset" || r.Err() != nil {
		t.Fatalf("%v %+v", err, r)
	}
	if len(r.Shards) != 2 || r.Shards[0].Samples != 2 || r.Shards[1].Samples != 3 || r.Splits[0].Count != 5 || !slices.Equal(r.Splits[0].PerClass, []int{2, 2, 1}) {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.String(), "s-01.tar: 3 samples, 0 bad") {
		t.Fatalf("report does not count per shard:\n%s", r)
	}

	// A broken image, a label past classes.txt, a truncated shard.
	jb := jpegBytes(t, rgbImage(8, 8))
	s0 := writeFile(t, filepath.Join(dir, "s-00.tar"), tarBytes(t, append(append(sampleMembers("a", pngBytes(t, rgbImage(2, 2)), 0),
		member{name: "b.jpg", data: jb[:len(jb)/2]}, member{name: "b.cls", data: []byte("1")}),
		sampleMembers("c", pngBytes(t, rgbImage(2, 2)), 5)...)...))
	s1 := filepath.Join(dir, "s-01.tar")
	raw, _ := os.ReadFile(s1)
	os.WriteFile(s1, raw[:len(raw)-1024-600], 0o644)
	writeFile(t, filepath.Join(dir, ClassesFile), []byte("x\ny\nz\n"))
	r, err = VerifyLimit(pattern, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		s0 + ": member b.jpg: decode image",
		s0 + ": member c.png: label 5 but",
		s1 + ": truncated tar",
	}
	for _, w := range want {
		found := false
		for _, p := range r.Problems {
			found = found || strings.HasPrefix(p.Path+": "+p.Err, w)
		}
		if !found {
			t.Errorf("no problem %q in\n%s", w, r)
		}
	}
	if len(r.Problems) != 3 || r.Shards[0].Bad != 2 || r.Shards[1].Samples != 2 || r.Splits[0].Count != 3 {
		t.Fatalf("%s", r)
	}
	if _, err := Verify(filepath.Join(dir, "s-{0..1.tar")); err == nil {
		t.Fatal("bad pattern accepted")
	}
	if r, err := Verify(filepath.Join(dir, "nope-{0..1}.tar")); err != nil || len(r.Problems) != 2 || !strings.Contains(r.Problems[0].Err, "no such file") {
		t.Fatalf("missing shards: %v %+v", err, r)
	}
}

func TestOpenWebDatasetFromConfig(t *testing.T) {
	dir := t.TempDir()
	pattern := writeShardSet(t, dir, 2, 2)
	cfg := config.Data{Dataset: "webdataset", Path: pattern, ImageSize: 8, Channels: 3, Mean: []float64{0.5, 0.5, 0.5}, Std: []float64{0.5, 0.5, 0.5}}
	ds, err := Open(cfg, "train", 0)
	if err != nil || ds.Len() != 4 || ds.Info().Split != "train" {
		t.Fatal(err)
	}
	if _, err := Open(cfg, "val", 0); err == nil || !strings.Contains(err.Error(), "data.val_path") {
		t.Fatalf("val without val_path: %v", err)
	}
	cfg.ValPath = filepath.Join(dir, "s-01.tar")
	if v, err := Open(cfg, "val", 0); err != nil || v.Len() != 2 || v.Info().Split != "val" {
		t.Fatalf("val: %v", err)
	}
	if e, err := EvalTransform(cfg); err != nil || e.ResizeTo != EvalResize(8) {
		t.Fatalf("eval transform %v %+v", err, e)
	}
	cfg.ShardShuffle = "shard"
	ds, _ = Open(cfg, "train", 0)
	if !ds.(*WebDataset).shardShuffle {
		t.Fatal("data.shard_shuffle=shard not passed on")
	}
}
