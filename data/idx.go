package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// IDX magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// FashionMNISTClasses are Fashion-MNIST's class names, index = label.
var FashionMNISTClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// IDX is an in-memory MNIST-style dataset (uint8 images, uint8 labels).
type IDX struct {
	info    Info
	rows    int
	cols    int
	pix     []byte // [N, rows, cols]
	labels  []byte // [N]
	classes []string
}

// idxPrefix maps a split name to the conventional file prefix.
func idxPrefix(split string) (string, error) {
	switch split {
	case "train", "":
		return "train", nil
	case "test", "val", "t10k":
		return "t10k", nil
	}
	return "", fmt.Errorf("idx: unknown split %q (want train or test)", split)
}

// findIDXFile finds prefix-kind-idxD-ubyte in dir under its usual spellings
// (with '-' or '.' before idx, gzipped or not). It returns "" when absent.
func findIDXFile(dir, prefix, kind, dims string) string {
	for _, sep := range []string{"-", "."} {
		base := prefix + "-" + kind + sep + dims + "-ubyte"
		for _, name := range []string{base, base + ".gz"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// OpenIDX opens split (train or test) of an MNIST-layout directory holding
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], such as Debian's
// /usr/share/datasets/fashion-mnist or a `hjepa data download` directory.
func OpenIDX(dir, split string) (*IDX, error) {
	prefix, err := idxPrefix(split)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("idx dataset %q: %w; set data.path to a directory with %s-images-idx3-ubyte[.gz] (e.g. /usr/share/datasets/fashion-mnist from apt-get install dataset-fashion-mnist)", dir, err, prefix)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("idx dataset %q: not a directory", dir)
	}
	img := findIDXFile(dir, prefix, "images", "idx3")
	lab := findIDXFile(dir, prefix, "labels", "idx1")
	if img == "" || lab == "" {
		missing := prefix + "-images-idx3-ubyte[.gz]"
		if img != "" {
			missing = prefix + "-labels-idx1-ubyte[.gz]"
		}
		return nil, fmt.Errorf("idx dataset %q: %s not found: %w; run 'hjepa data download fashion-mnist --dir %s' or point data.path at an MNIST-layout directory", dir, missing, fs.ErrNotExist, dir)
	}
	d, err := OpenIDXFiles(img, lab)
	if err != nil {
		return nil, err
	}
	d.info.Path = dir
	d.info.Split = map[string]string{"train": "train", "t10k": "test"}[prefix]
	return d, nil
}

// IDXLabelsPath derives the labels file that goes with an images file
// (train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz).
func IDXLabelsPath(images string) string {
	dir, base := filepath.Split(images)
	base = strings.Replace(base, "images", "labels", 1)
	base = strings.Replace(base, "idx3", "idx1", 1)
	return filepath.Join(dir, base)
}

// OpenIDXFiles reads an images file and a labels file (each gzipped or not,
// detected by the gzip magic) and checks their headers against each other and
// against the file lengths.
func OpenIDXFiles(images, labels string) (*IDX, error) {
	ib, err := readMaybeGzip(images)
	if err != nil {
		return nil, err
	}
	lb, err := readMaybeGzip(labels)
	if err != nil {
		return nil, err
	}
	n, rows, cols, pix, err := parseIDXImages(images, ib)
	if err != nil {
		return nil, err
	}
	labs, err := parseIDXLabels(labels, lb)
	if err != nil {
		return nil, err
	}
	if len(labs) != n {
		return nil, corruptf(labels, "holds %d labels but %s holds %d images", len(labs), images, n)
	}
	maxLab := 0
	for _, l := range labs {
		maxLab = max(maxLab, int(l))
	}
	classes := make([]string, max(maxLab+1, 10))
	for i := range classes {
		classes[i] = fmt.Sprint(i)
	}
	if strings.Contains(strings.ToLower(images), "fashion") && len(classes) == 10 {
		classes = append([]string(nil), FashionMNISTClasses...)
	}
	split := "train"
	if strings.HasPrefix(filepath.Base(images), "t10k") || strings.Contains(filepath.Base(images), "test") {
		split = "test"
	}
	return &IDX{
		info:    Info{Format: "idx", Path: images, Split: split, Count: n, Channels: 1, Height: rows, Width: cols},
		rows:    rows,
		cols:    cols,
		pix:     pix,
		labels:  labs,
		classes: classes,
	}, nil
}

// readMaybeGzip returns the file's bytes, gunzipped when it starts with the
// gzip magic. Truncated gzip streams are reported as corrupt.
func readMaybeGzip(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, corruptf(path, "bad gzip header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corruptf(path, "truncated gzip stream (%d bytes decompressed before the end)", len(out))
		}
		return nil, corruptf(path, "gzip: %v", err)
	}
	return out, nil
}

func parseIDXImages(path string, b []byte) (n, rows, cols int, pix []byte, err error) {
	if len(b) < 16 {
		return 0, 0, 0, nil, corruptf(path, "IDX images header needs 16 bytes, file has %d", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != idxImagesMagic {
		return 0, 0, 0, nil, corruptf(path, "bad IDX magic 0x%08x, want 0x%08x (uint8 images, 3 dims)", m, idxImagesMagic)
	}
	n = int(binary.BigEndian.Uint32(b[4:]))
	rows = int(binary.BigEndian.Uint32(b[8:]))
	cols = int(binary.BigEndian.Uint32(b[12:]))
	if rows == 0 || cols == 0 || rows > 1<<14 || cols > 1<<14 {
		return 0, 0, 0, nil, corruptf(path, "implausible image size %dx%d", rows, cols)
	}
	want := 16 + int64(n)*int64(rows)*int64(cols)
	if int64(len(b)) != want {
		return 0, 0, 0, nil, corruptf(path, "header says %d images of %dx%d (%d bytes) but the data is %d bytes (truncated or padded)", n, rows, cols, want, len(b))
	}
	return n, rows, cols, b[16:], nil
}

func parseIDXLabels(path string, b []byte) ([]byte, error) {
	if len(b) < 8 {
		return nil, corruptf(path, "IDX labels header needs 8 bytes, file has %d", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != idxLabelsMagic {
		return nil, corruptf(path, "bad IDX magic 0x%08x, want 0x%08x (uint8 labels, 1 dim)", m, idxLabelsMagic)
	}
	n := int(binary.BigEndian.Uint32(b[4:]))
	if len(b) != 8+n {
		return nil, corruptf(path, "header says %d labels (%d bytes) but the data is %d bytes (truncated or padded)", n, 8+n, len(b))
	}
	return b[8:], nil
}

// Len is the number of images.
func (d *IDX) Len() int { return len(d.labels) }

// Get returns image i as [1, rows, cols] in [0, 1].
func (d *IDX) Get(i int) (Image, int, error) {
	if i < 0 || i >= len(d.labels) {
		return Image{}, 0, fmt.Errorf("idx %s: index %d out of range [0, %d)", d.info.Path, i, len(d.labels))
	}
	sz := d.rows * d.cols
	return bytesImage(d.pix[i*sz:(i+1)*sz], 1, d.rows, d.cols), int(d.labels[i]), nil
}

// Classes are "0".."9" for MNIST, the Fashion-MNIST names when the path says
// fashion.
func (d *IDX) Classes() []string { return d.classes }

// Info describes the split.
func (d *IDX) Info() Info { return d.info }

// Labels returns every label (index = image), without copying.
func (d *IDX) Labels() []byte { return d.labels }
