package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// idxImages encodes n images of r x c whose pixel k of image i is (i*7+k)%256.
func idxImages(n, r, c int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{idxImagesMagic, uint32(n), uint32(r), uint32(c)})
	for i := range n {
		for k := range r * c {
			b.WriteByte(byte((i*7 + k) % 256))
		}
	}
	return b.Bytes()
}

// idxLabels encodes labels i%10.
func idxLabels(n int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{idxLabelsMagic, uint32(n)})
	for i := range n {
		b.WriteByte(byte(i % 10))
	}
	return b.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeIDXDir writes train (n) and t10k (m) splits, gzipped when zip.
func writeIDXDir(t *testing.T, dir string, n, m int, zip bool) {
	t.Helper()
	for _, s := range []struct {
		prefix string
		n      int
	}{{"train", n}, {"t10k", m}} {
		img, lab := idxImages(s.n, 4, 3), idxLabels(s.n)
		ext := ""
		if zip {
			img, lab, ext = gz(t, img), gz(t, lab), ".gz"
		}
		writeFile(t, filepath.Join(dir, s.prefix+"-images-idx3-ubyte"+ext), img)
		writeFile(t, filepath.Join(dir, s.prefix+"-labels-idx1-ubyte"+ext), lab)
	}
}

// cifarRecords makes n records; image i has label i%nclass (fine) and pixel
// k = (i+k)%256. CIFAR-100 records get coarse label i%20.
func cifarRecords(n int, c100 bool) []byte {
	var b bytes.Buffer
	for i := range n {
		if c100 {
			b.WriteByte(byte(i % 20))
			b.WriteByte(byte(i % 100))
		} else {
			b.WriteByte(byte(i % 10))
		}
		for k := range cifarPixels {
			b.WriteByte(byte((i + k) % 256))
		}
	}
	return b.Bytes()
}

func writeCIFAR10(t *testing.T, dir string, per int) {
	t.Helper()
	for i := 1; i <= 5; i++ {
		writeFile(t, filepath.Join(dir, "data_batch_"+string(rune('0'+i))+".bin"), cifarRecords(per, false))
	}
	writeFile(t, filepath.Join(dir, "test_batch.bin"), cifarRecords(per, false))
	writeFile(t, filepath.Join(dir, "batches.meta.txt"), []byte("a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n"))
}

// rgbImage is a w x h image with R = x*20, G = y*20, B = 100.
func rgbImage(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 20), uint8(y * 20), 100, 255})
		}
	}
	return m
}

func pngBytes(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
