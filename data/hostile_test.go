package data

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
)

// Regression tests for hostile inputs (issue 14): headers that declare far
// more than the file holds, or streams that hold far more than the header
// declares, must fail fast with bounded memory and name the file.

// pngChunk encodes one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

// pngDeclaring is a ~100-byte PNG whose IHDR (valid, CRC included) declares
// w x h 8-bit grey pixels; its IDAT holds a valid zlib stream of one short
// row, so a decoder that trusts the header allocates w*h bytes before it
// finds the pixel data missing.
func pngDeclaring(w, h uint32) []byte {
	var ihdr bytes.Buffer
	binary.Write(&ihdr, binary.BigEndian, []uint32{w, h})
	ihdr.Write([]byte{8, 0, 0, 0, 0}) // depth 8, grey, deflate, filter 0, no interlace
	var idat bytes.Buffer
	zw := zlib.NewWriter(&idat)
	zw.Write(make([]byte, 16))
	zw.Close()
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, pngChunk("IHDR", ihdr.Bytes())...)
	out = append(out, pngChunk("IDAT", idat.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// jpegDeclaring is a valid 16x16 grey baseline JPEG whose SOF0 frame header
// is patched to declare w x h (JPEG has no checksum to fix up).
func jpegDeclaring(t *testing.T, w, h uint16) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, 16, 16))
	for i := range m.Pix {
		m.Pix[i] = uint8(i)
	}
	b := jpegBytes(t, m)
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker in the encoded JPEG")
	}
	// FF C0, length (2), precision (1), height (2), width (2).
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

func TestDecodeImageFileOverPixelLimit(t *testing.T) {
	cases := []struct {
		name string
		file string
		b    []byte
	}{
		{"png 9000x9000 (81 Mpixel)", "big.png", pngDeclaring(9000, 9000)},
		{"png 2^20x2^20 (out of memory before)", "oom.png", pngDeclaring(1<<20, 1<<20)},
		{"png 2^29x2^29 (makeslice panic before)", "panic.png", pngDeclaring(1<<29, 1<<29)},
		{"png (2^31-1)x2", "wide.png", pngDeclaring(1<<31-1, 2)},
		{"jpeg 65535x65535", "big.jpg", jpegDeclaring(t, 65535, 65535)},
		{"jpeg as .png", "jpeg.png", jpegDeclaring(t, 10000, 10000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(t.TempDir(), c.file), c.b)
			_, err := DecodeImageFile(p, 3, 0)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "data.max_image_pixels") {
				t.Fatalf("error %q: want ErrCorrupt naming %s and data.max_image_pixels", err, p)
			}
		})
	}
}

func TestVerifyListsOversizedImage(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "cat", "ok.png"), pngBytes(t, rgbImage(4, 4)))
	huge := writeFile(t, filepath.Join(root, "cat", "huge.png"), pngDeclaring(1<<29, 1<<29))
	big := writeFile(t, filepath.Join(root, "dog", "big.png"), pngDeclaring(12000, 12000))
	r, err := Verify(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Splits) != 1 || r.Splits[0].Count != 1 || len(r.Problems) != 2 {
		t.Fatalf("report:\n%s", r)
	}
	for i, want := range []string{huge, big} {
		if p := r.Problems[i]; p.Path != want || !strings.Contains(p.Err, "data.max_image_pixels") {
			t.Errorf("problem %d is %+v, want %s over data.max_image_pixels", i, p, want)
		}
	}
}

func TestLoaderStopsAtOversizedImage(t *testing.T) {
	root := t.TempDir()
	for i := range 8 {
		writeFile(t, filepath.Join(root, "a", string(rune('a'+i))+".png"), pngBytes(t, rgbImage(16, 16)))
	}
	huge := writeFile(t, filepath.Join(root, "a", "z.png"), pngDeclaring(9000, 9000))
	d, err := OpenImageFolder(root, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLoader(t, d, 2, 2, false)
	var lastErr error
	for range 3 {
		b, err := l.Next(context.Background())
		if err != nil {
			lastErr = err
			break
		}
		b.Release()
	}
	if lastErr == nil || !strings.Contains(lastErr.Error(), huge) || !strings.Contains(lastErr.Error(), "data.max_image_pixels") {
		t.Fatalf("loader error %v: want one naming %s and data.max_image_pixels", lastErr, huge)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// incompressible returns n pseudo-random bytes.
func incompressible(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// storedGzip is b as a gzip stream of stored (uncompressed) deflate blocks,
// written by hand: the number of compressed bytes a reader consumes tracks
// the number it inflated, and the fuzz targets that wrap their input in it
// get no coverage from a compressor (which would make every input look new
// to the fuzzer).
func storedGzip(b []byte) []byte {
	crc, size := crc32.ChecksumIEEE(b), uint32(len(b))
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff} // magic, deflate, no flags, mtime, xfl, OS unknown
	for {
		k := min(len(b), 0xffff)
		final := byte(0)
		if k == len(b) {
			final = 1
		}
		out = append(out, final) // BFINAL, BTYPE 00 (stored)
		out = binary.LittleEndian.AppendUint16(out, uint16(k))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(k))
		out = append(out, b[:k]...)
		if final == 1 {
			break
		}
		b = b[k:]
	}
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, size)
}

// TestIDXStopsReadingAtTheHeader: a stream that holds much more than its
// header allows (a bad magic, or megabytes after the declared data) is
// rejected after reading a bounded prefix, not after inflating it all.
func TestIDXStopsReadingAtTheHeader(t *testing.T) {
	const tail = 4 << 20 // bytes after the header or the declared data
	const bound = 256 << 10
	junk := incompressible(tail)
	goodImages, goodLabels := idxImages(2, 4, 3), idxLabels(2)
	cases := []struct {
		name   string
		labels bool
		b      []byte
		inMsg  string
	}{
		{"images bad magic", false, append([]byte{0, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, junk...), "bad IDX magic"},
		{"images trailing data", false, append(append([]byte{}, goodImages...), junk...), "trailing"},
		{"images huge count", false, append([]byte{0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x40, 0, 0, 0, 0x40, 0}, junk...), "header says"},
		{"labels bad magic", true, append([]byte{0, 0, 8, 3, 0, 0, 0, 1}, junk...), "bad IDX magic"},
		{"labels trailing data", true, append(append([]byte{}, goodLabels...), junk...), "trailing"},
	}
	for _, c := range cases {
		for _, zip := range []bool{false, true} {
			name := c.name
			src := c.b
			if zip {
				name += " gzip"
				src = storedGzip(c.b)
			}
			t.Run(name, func(t *testing.T) {
				path := "/data/" + strings.ReplaceAll(name, " ", "-")
				cr := &countingReader{r: bytes.NewReader(src)}
				size := int64(len(src))
				var err error
				if c.labels {
					_, err = readIDXLabels(path, cr, size)
				} else {
					_, _, _, _, err = readIDXImages(path, cr, size)
				}
				if err == nil {
					t.Fatal("no error")
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.inMsg) {
					t.Errorf("error %q: want ErrCorrupt naming %s and saying %q", err, path, c.inMsg)
				}
				if cr.n > bound {
					t.Errorf("read %d of the stream's %d bytes before failing, want <= %d", cr.n, len(src), bound)
				}
			})
		}
	}
}

// TestIDXMemoryFollowsTheData: a header that declares a gigabyte over a few
// bytes of data costs memory for the data, not for the header's claim.
func TestIDXMemoryFollowsTheData(t *testing.T) {
	hdr := []byte{0, 0, 8, 3, 0, 0, 0x40, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x80} // 16384 images of 128x128 = 256 MiB
	for _, zip := range []bool{false, true} {
		b := append(append([]byte{}, hdr...), make([]byte, 1000)...)
		if zip {
			b = gzipped(b)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, _, _, err := readIDXImages("/data/x", bytes.NewReader(b), int64(len(b)))
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("gzip %v: error %v, want truncated", zip, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
			t.Errorf("gzip %v: allocated %d MiB for %d bytes of data", zip, d>>20, len(b))
		}
	}
}

// gzipped is b gzipped at the default level.
func gzipped(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// TestImagePixelLimitIsConfigurable: a valid 64x64 PNG passes a limit of
// 4096 pixels and is refused, naming the file, at 4095; data.max_image_pixels
// reaches ImageFolder through Open; its default is DefaultMaxImagePixels.
func TestImagePixelLimitIsConfigurable(t *testing.T) {
	root := t.TempDir()
	p := writeFile(t, filepath.Join(root, "train", "a", "x.png"), pngBytes(t, rgbImage(64, 64)))
	if m, err := DecodeImageFile(p, 3, 4096); err != nil || m.H != 64 || m.W != 64 {
		t.Fatalf("at the limit: %v %dx%d", err, m.H, m.W)
	}
	if _, err := DecodeImageFile(p, 3, 4095); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "64x64") {
		t.Fatalf("over the limit: %v", err)
	}
	cfg := config.Default().Data
	if cfg.MaxImagePixels != DefaultMaxImagePixels {
		t.Errorf("config default data.max_image_pixels %d, data.DefaultMaxImagePixels %d", cfg.MaxImagePixels, DefaultMaxImagePixels)
	}
	cfg.Path, cfg.MaxImagePixels = root, 1000
	ds, err := Open(cfg, "train", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ds.Get(0); err == nil || !strings.Contains(err.Error(), "over the limit of 1000 pixels") {
		t.Fatalf("Open with data.max_image_pixels 1000: %v", err)
	}
	// `hjepa data verify --max-image-pixels N` lists what training with
	// data.max_image_pixels N would refuse.
	for limit, bad := range map[int]bool{4096: false, 4095: true} {
		r, err := VerifyLimit(root, limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Err() != nil; got != bad || bad && !strings.Contains(r.String(), "x.png") {
			t.Errorf("VerifyLimit(%d): problems %v, want %v:\n%s", limit, got, bad, r)
		}
	}
}

// TestIDXGzipEnd: what follows the declared data inside or after a gzip
// stream, and a stream whose checksum does not match, are errors.
func TestIDXGzipEnd(t *testing.T) {
	good := gzipped(idxLabels(6))
	badCRC := append([]byte{}, good...)
	badCRC[len(badCRC)-8] ^= 1 // CRC-32 of the gzip trailer
	cases := []struct {
		name  string
		b     []byte
		inMsg string
	}{
		{"garbage after the stream", append(append([]byte{}, good...), "junk"...), "gzip"},
		{"second member with more labels", append(append([]byte{}, good...), gzipped([]byte{1, 2})...), "trailing data"},
		{"checksum mismatch", badCRC, "checksum"},
		{"truncated header", gzipped(idxLabels(6)[:5]), "header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readIDXLabels("/data/l.gz", bytes.NewReader(c.b), int64(len(c.b)))
			if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "/data/l.gz") || !strings.Contains(err.Error(), c.inMsg) {
				t.Fatalf("error %v: want ErrCorrupt naming /data/l.gz and saying %q", err, c.inMsg)
			}
		})
	}
	if l, err := readIDXLabels("/data/l.gz", bytes.NewReader(good), -1); err != nil || len(l) != 6 {
		t.Fatalf("good stream: %v %v", l, err)
	}
}
