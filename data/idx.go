package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	n, rows, cols, pix, err := readIDXImagesFile(images)
	if err != nil {
		return nil, err
	}
	labs, err := readIDXLabelsFile(labels)
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

// Bounds on what an IDX header may declare. A split is held in memory
// whole; the largest published IDX datasets (EMNIST ByClass: 814,255 images,
// 0.64 GB) are far below these, and a header above them is hostile or
// corrupt, not data worth trying to read.
const (
	idxMaxSide  = 1 << 14 // rows and cols
	idxMaxItems = 1 << 28 // images or labels per file
	idxMaxBytes = 1 << 33 // pixel bytes per images file (8 GiB)
)

func readIDXImagesFile(path string) (n, rows, cols int, pix []byte, err error) {
	f, size, err := openDataFile(path)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	defer f.Close()
	return readIDXImages(path, f, size)
}

func readIDXLabelsFile(path string) ([]byte, error) {
	f, size, err := openDataFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readIDXLabels(path, f, size)
}

// openDataFile opens path and returns its size (-1 when it is not a regular
// file, whose size says nothing about what it will yield).
func openDataFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// idxStream is an IDX file's content: r yields the (gunzipped) bytes;
// size is their number when known before reading (an uncompressed regular
// file), else -1.
type idxStream struct {
	path string
	r    io.Reader
	size int64
	gz   bool
}

// newIDXStream wraps src (size bytes, -1 if unknown), gunzipping it when it
// starts with the gzip magic. Nothing beyond the gzip header is read.
func newIDXStream(path string, src io.Reader, size int64) (*idxStream, error) {
	br := bufio.NewReader(src)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return &idxStream{path: path, r: br, size: size}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, corruptf(path, "bad gzip header: %v", err)
	}
	return &idxStream{path: path, r: zr, size: -1, gz: true}, nil
}

// header reads the first len(h) bytes; short files are corrupt.
func (s *idxStream) header(h []byte, what string) error {
	k, err := io.ReadFull(s.r, h)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		if s.gz {
			return corruptf(s.path, "IDX %s header needs %d bytes, the gzip stream yields %d (truncated)", what, len(h), k)
		}
		return corruptf(s.path, "IDX %s header needs %d bytes, file has %d", what, len(h), k)
	}
	return s.readErr(err, int64(k))
}

// readErr classifies an error from the stream after k bytes.
func (s *idxStream) readErr(err error, k int64) error {
	switch {
	case !s.gz:
		return fmt.Errorf("read %s: %w", s.path, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return corruptf(s.path, "truncated gzip stream (%d bytes decompressed before the end)", k)
	}
	return corruptf(s.path, "gzip: %v (after %d decompressed bytes)", err, k)
}

// payload reads exactly the n bytes the header (hdr bytes long) declared,
// then checks that the stream ends there: trailing bytes are an error, and
// so is a gzip checksum mismatch, which gzip reports at the end. The buffer
// grows as data arrives, so a header that overstates n costs memory for the
// bytes actually present, not for its claim (or for an uncompressed file,
// whose length was checked first, exactly n). declared describes n for
// errors ("60000 images of 28x28").
func (s *idxStream) payload(hdr, n int64, declared string) ([]byte, error) {
	if s.size >= 0 && s.size-hdr != n {
		if s.size-hdr < n {
			return nil, corruptf(s.path, "header says %s (%d bytes) but only %d follow (truncated)", declared, n, s.size-hdr)
		}
		return nil, corruptf(s.path, "header says %s (%d bytes) but %d follow (trailing data: padded, or a header that is not this data's)", declared, n, s.size-hdr)
	}
	lr := io.LimitReader(s.r, n)
	start := n // the file's length vouches for n
	if s.size < 0 {
		start = min(n, 64<<10)
	}
	buf := make([]byte, 0, start)
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(n-int64(len(buf)), int64(len(buf)))))
		}
		k, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, s.readErr(err, hdr+int64(len(buf)))
		}
	}
	if int64(len(buf)) < n {
		return nil, corruptf(s.path, "header says %s (%d bytes) but only %d follow (truncated)", declared, n, len(buf))
	}
	var one [1]byte
	switch k, err := io.ReadFull(s.r, one[:]); {
	case k > 0:
		return nil, corruptf(s.path, "header says %s (%d bytes) but more follow (trailing data: padded, or a header that is not this data's)", declared, n)
	case !errors.Is(err, io.EOF):
		return nil, s.readErr(err, hdr+n)
	}
	return buf, nil
}

// readIDXImages reads an IDX images file (gzipped or not) from src, whose
// length is size (-1 if unknown). The header is checked before any pixel
// is read, and no more than it declares (plus one byte) is ever read.
func readIDXImages(path string, src io.Reader, size int64) (n, rows, cols int, pix []byte, err error) {
	s, err := newIDXStream(path, src, size)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	var h [16]byte
	if err := s.header(h[:], "images"); err != nil {
		return 0, 0, 0, nil, err
	}
	if m := binary.BigEndian.Uint32(h[:]); m != idxImagesMagic {
		return 0, 0, 0, nil, corruptf(path, "bad IDX magic 0x%08x, want 0x%08x (uint8 images, 3 dims)", m, idxImagesMagic)
	}
	n = int(binary.BigEndian.Uint32(h[4:]))
	rows = int(binary.BigEndian.Uint32(h[8:]))
	cols = int(binary.BigEndian.Uint32(h[12:]))
	if rows == 0 || cols == 0 || rows > idxMaxSide || cols > idxMaxSide {
		return 0, 0, 0, nil, corruptf(path, "implausible image size %dx%d (each side must be in [1, %d])", rows, cols, idxMaxSide)
	}
	declared := fmt.Sprintf("%d images of %dx%d", n, rows, cols)
	want := int64(n) * int64(rows) * int64(cols)
	if n > idxMaxItems || want > idxMaxBytes {
		return 0, 0, 0, nil, corruptf(path, "header says %s (%d bytes), over the limit of %d images and %d bytes per file", declared, want, idxMaxItems, int64(idxMaxBytes))
	}
	pix, err = s.payload(16, want, declared)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	return n, rows, cols, pix, nil
}

// readIDXLabels reads an IDX labels file (gzipped or not) from src, as
// readIDXImages.
func readIDXLabels(path string, src io.Reader, size int64) ([]byte, error) {
	s, err := newIDXStream(path, src, size)
	if err != nil {
		return nil, err
	}
	var h [8]byte
	if err := s.header(h[:], "labels"); err != nil {
		return nil, err
	}
	if m := binary.BigEndian.Uint32(h[:]); m != idxLabelsMagic {
		return nil, corruptf(path, "bad IDX magic 0x%08x, want 0x%08x (uint8 labels, 1 dim)", m, idxLabelsMagic)
	}
	n := int(binary.BigEndian.Uint32(h[4:]))
	declared := fmt.Sprintf("%d labels", n)
	if n > idxMaxItems {
		return nil, corruptf(path, "header says %s, over the limit of %d per file", declared, idxMaxItems)
	}
	return s.payload(8, int64(n), declared)
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
