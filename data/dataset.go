// Package data is hjepa-go's input pipeline: datasets (IDX for MNIST and
// Fashion-MNIST, CIFAR-10/100 binary, ImageFolder, WebDataset tar shards,
// synthetic), training and evaluation transforms, a sampler with PyTorch
// DistributedSampler semantics, a prefetching loader on a bounded goroutine
// pool, dataset verification (`hjepa data verify`), ImageFolder-to-shards
// conversion (`hjepa data shard`) and resumable, checksummed downloads
// (`hjepa data download`).
//
// Images travel as float32 [C, H, W] in [0, 1] (Image); the loader's batches
// are one contiguous float32 [B, C, H, W] slice after normalisation.
//
// Randomness: every augmentation draw of a sample comes from its own PCG
// stream seeded by (seed, epoch, dataset index), so batches do not depend on
// worker count, scheduling or the point a run was resumed from.
package data

import (
	"errors"
	"fmt"
)

// Image is a decoded image: Pix holds C planes of H rows of W float32 values
// in [0, 1] (before normalisation). Pix: [C, H, W].
type Image struct {
	C, H, W int
	Pix     []float32
}

// NewImage allocates a zero image of the given shape.
func NewImage(c, h, w int) Image {
	return Image{C: c, H: h, W: w, Pix: make([]float32, c*h*w)}
}

// At returns channel c at row y, column x.
func (m Image) At(c, y, x int) float32 { return m.Pix[(c*m.H+y)*m.W+x] }

// Info describes a dataset.
type Info struct {
	// Format is idx, cifar10, cifar100, imagefolder, webdataset or synthetic.
	Format string
	// Path is the file or directory the dataset was read from ("" when
	// synthetic; the shard pattern for webdataset).
	Path     string
	Split    string
	Count    int
	Channels int
	// Height and Width are the image size; 0 when images differ in size
	// (ImageFolder, WebDataset).
	Height, Width int
}

func (i Info) String() string {
	size := "variable size"
	if i.Height > 0 {
		size = fmt.Sprintf("%dx%d", i.Height, i.Width)
	}
	return fmt.Sprintf("%s %s: %d images, %d channel(s), %s", i.Format, i.Split, i.Count, i.Channels, size)
}

// Dataset is a random-access collection of labelled images. Get must be safe
// for concurrent use; the loader calls it from several goroutines.
type Dataset interface {
	Len() int
	// Get decodes image i (0 <= i < Len()). Errors name the file.
	Get(i int) (img Image, label int, err error)
	// Classes are the class names, index = label.
	Classes() []string
	Info() Info
}

// ErrCorrupt is wrapped by every error about a malformed dataset file.
var ErrCorrupt = errors.New("corrupt or malformed data file")

// CorruptError names a malformed file and what is wrong with it.
type CorruptError struct {
	Path   string
	Reason string
}

func (e *CorruptError) Error() string { return fmt.Sprintf("%s: %s", e.Path, e.Reason) }

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corruptf(path, format string, args ...any) error {
	return &CorruptError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// bytesImage converts interleaved-free planar uint8 pixels [C, H, W] to an Image.
func bytesImage(pix []byte, c, h, w int) Image {
	m := NewImage(c, h, w)
	for i, v := range pix {
		m.Pix[i] = byteToUnit[v]
	}
	return m
}

// byteToUnit[v] = v / 255 as float32.
var byteToUnit = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// convertChannels returns m with c channels: grey is replicated to RGB, RGB
// is reduced to grey with ITU-R 601-2 luma (as PIL's convert("L")).
func convertChannels(m Image, c int) (Image, error) {
	if m.C == c {
		return m, nil
	}
	n := m.H * m.W
	switch {
	case m.C == 1 && c == 3:
		out := NewImage(3, m.H, m.W)
		for k := range 3 {
			copy(out.Pix[k*n:(k+1)*n], m.Pix)
		}
		return out, nil
	case m.C == 3 && c == 1:
		out := NewImage(1, m.H, m.W)
		r, g, b := m.Pix[:n], m.Pix[n:2*n], m.Pix[2*n:]
		for i := range n {
			out.Pix[i] = 0.299*r[i] + 0.587*g[i] + 0.114*b[i]
		}
		return out, nil
	}
	return Image{}, fmt.Errorf("cannot convert %d-channel image to %d channels", m.C, c)
}
