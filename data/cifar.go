package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CIFAR binary layout: one record per image, label byte(s) then 3072 bytes
// of R, G and B planes of 32x32.
const (
	cifarSide      = 32
	cifarPixels    = 3 * cifarSide * cifarSide
	cifar10Record  = 1 + cifarPixels
	cifar100Record = 2 + cifarPixels // coarse label, fine label, pixels
)

// CIFAR10Classes are the CIFAR-10 class names used when batches.meta.txt is absent.
var CIFAR10Classes = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

// CIFAR is CIFAR-10 or CIFAR-100 in the binary version, held in memory.
// For CIFAR-100 the label is the fine label (100 classes); Coarse gives the
// superclass.
type CIFAR struct {
	info    Info
	record  int
	recs    []byte // [N, record]
	classes []string
}

// cifarFiles lists the batch files of a split and the class-name file.
func cifarFiles(kind, split string) (files []string, meta string, err error) {
	train := split == "train" || split == ""
	if !train && split != "test" && split != "val" {
		return nil, "", fmt.Errorf("%s: unknown split %q (want train or test)", kind, split)
	}
	switch kind {
	case "cifar10":
		if train {
			for i := 1; i <= 5; i++ {
				files = append(files, fmt.Sprintf("data_batch_%d.bin", i))
			}
		} else {
			files = []string{"test_batch.bin"}
		}
		return files, "batches.meta.txt", nil
	case "cifar100":
		if train {
			return []string{"train.bin"}, "fine_label_names.txt", nil
		}
		return []string{"test.bin"}, "fine_label_names.txt", nil
	}
	return nil, "", fmt.Errorf("unknown CIFAR kind %q (want cifar10 or cifar100)", kind)
}

// cifarDir resolves dir to the folder holding the .bin files: dir itself or
// the folder the official archive extracts to (cifar-10-batches-bin,
// cifar-100-binary).
func cifarDir(dir, kind string) string {
	sub := "cifar-10-batches-bin"
	if kind == "cifar100" {
		sub = "cifar-100-binary"
	}
	if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
		return filepath.Join(dir, sub)
	}
	return dir
}

// OpenCIFAR opens split (train or test) of kind (cifar10 or cifar100) from
// dir, which holds the binary batches or the folder the official tar.gz
// extracts to.
func OpenCIFAR(dir, kind, split string) (*CIFAR, error) {
	files, meta, err := cifarFiles(kind, split)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%s dataset %q: %w; set data.path or run 'hjepa data download %s --dir DIR'", kind, dir, err, kind)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s dataset %q: not a directory", kind, dir)
	}
	dir = cifarDir(dir, kind)
	record := cifar10Record
	nclass := 10
	if kind == "cifar100" {
		record, nclass = cifar100Record, 100
	}
	var recs []byte
	for _, f := range files {
		p := filepath.Join(dir, f)
		b, err := readCIFARFile(p, record, nclass)
		if err != nil {
			return nil, err
		}
		recs = append(recs, b...)
	}
	classes := readClassNames(filepath.Join(dir, meta), nclass)
	if classes == nil {
		classes = make([]string, nclass)
		for i := range classes {
			classes[i] = fmt.Sprint(i)
		}
		if kind == "cifar10" {
			classes = append([]string(nil), CIFAR10Classes...)
		}
	}
	sp := "train"
	if split == "test" || split == "val" {
		sp = "test"
	}
	return &CIFAR{
		info:    Info{Format: kind, Path: dir, Split: sp, Count: len(recs) / record, Channels: 3, Height: cifarSide, Width: cifarSide},
		record:  record,
		recs:    recs,
		classes: classes,
	}, nil
}

// readCIFARFile reads one batch file and checks its length and labels.
func readCIFARFile(path string, record, nclass int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CIFAR batch %s: %w", path, err)
	}
	return checkCIFAR(path, b, record, nclass)
}

// checkCIFAR checks that b, the content of batch file path, is whole
// records of record bytes whose (fine) labels are below nclass, and returns
// it.
func checkCIFAR(path string, b []byte, record, nclass int) ([]byte, error) {
	if len(b) == 0 || len(b)%record != 0 {
		return nil, corruptf(path, "length %d is not a positive multiple of the %d-byte record (truncated, or CIFAR-10 vs CIFAR-100 mix-up)", len(b), record)
	}
	for r := 0; r < len(b); r += record {
		lab := int(b[r+record-cifarPixels-1])
		if lab >= nclass {
			return nil, corruptf(path, "record %d has label %d, want < %d", r/record, lab, nclass)
		}
	}
	return b, nil
}

// readClassNames reads one name per non-empty line; nil when the file is
// absent or has the wrong number of names.
func readClassNames(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if s := strings.TrimSpace(line); s != "" {
			names = append(names, s)
		}
	}
	if len(names) != n {
		return nil
	}
	return names
}

// Len is the number of images.
func (d *CIFAR) Len() int { return len(d.recs) / d.record }

// Get returns image i as [3, 32, 32] in [0, 1] and its (fine) label.
func (d *CIFAR) Get(i int) (Image, int, error) {
	if i < 0 || i >= d.Len() {
		return Image{}, 0, fmt.Errorf("%s %s: index %d out of range [0, %d)", d.info.Format, d.info.Path, i, d.Len())
	}
	r := d.recs[i*d.record : (i+1)*d.record]
	lab := int(r[d.record-cifarPixels-1])
	return bytesImage(r[d.record-cifarPixels:], 3, cifarSide, cifarSide), lab, nil
}

// Coarse returns the CIFAR-100 superclass of image i (-1 for CIFAR-10).
func (d *CIFAR) Coarse(i int) int {
	if d.record != cifar100Record {
		return -1
	}
	return int(d.recs[i*d.record])
}

// Classes are the class names from batches.meta.txt / fine_label_names.txt
// when present.
func (d *CIFAR) Classes() []string { return d.classes }

// Info describes the split.
func (d *CIFAR) Info() Info { return d.info }
