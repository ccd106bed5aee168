package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// Fuzz targets for every parser of outside bytes: IDX images and labels
// (raw and gzip), CIFAR binary batches, the image decoding behind
// ImageFolder and the tar index behind WebDataset shards. Each asserts properties, not only the absence of a panic:
// an error is a *CorruptError naming the file, a success has the shape its
// header declares, and the raw and gzip paths agree. `go test` runs the
// seeds (f.Add below and testdata/fuzz/<target>/); `make fuzz` explores.

// corruptNaming fails t unless err is a *CorruptError about path.
func corruptNaming(t *testing.T, err error, path string) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Path != path || !errors.Is(err, ErrCorrupt) || ce.Reason == "" {
		t.Fatalf("error %q (%T) is not a CorruptError naming %s", err, err, path)
	}
}

// idxImagesResult is what readIDXImages returns, for comparisons.
type idxImagesResult struct {
	n, rows, cols int
	pix           []byte
	err           error
}

func readImagesResult(path string, r io.Reader, size int64) idxImagesResult {
	n, rows, cols, pix, err := readIDXImages(path, r, size)
	return idxImagesResult{n, rows, cols, pix, err}
}

// sameOutcome fails t unless a and b both failed or both gave the same
// images.
func sameOutcome(t *testing.T, what string, a, b idxImagesResult) {
	t.Helper()
	if (a.err == nil) != (b.err == nil) {
		t.Fatalf("%s: one read failed and the other did not: %v / %v", what, a.err, b.err)
	}
	if a.err == nil && (a.n != b.n || a.rows != b.rows || a.cols != b.cols || !bytes.Equal(a.pix, b.pix)) {
		t.Fatalf("%s: the reads differ: %dx%dx%d / %dx%dx%d", what, a.n, a.rows, a.cols, b.n, b.rows, b.cols)
	}
}

// bufioSlack is what newIDXStream's bufio.Reader may read ahead.
const bufioSlack = 4096

func FuzzIDXImages(f *testing.F) {
	f.Add(idxImages(3, 4, 3))
	f.Add(idxImages(0, 1, 1))
	f.Add(idxImages(1, 28, 28)[:100])
	f.Add(append(idxImages(2, 2, 2), 9))
	f.Add([]byte{0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x40, 0, 0, 0, 0x40, 0})
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0x40, 1, 0, 0, 0, 1, 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "/fuzz/train-images-idx3-ubyte"
		cr := &countingReader{r: bytes.NewReader(b)}
		sized := readImagesResult(path, bytes.NewReader(b), int64(len(b)))
		streamed := readImagesResult(path, cr, -1)
		sameOutcome(t, "size known / unknown", sized, streamed)
		if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
			return // a gzip stream: FuzzIDXGzip's business
		}
		if len(b) >= 16 {
			// Never more than the header declares (nothing when it is over
			// the bounds), one byte to see the end, and what bufio reads
			// ahead.
			n, rows, cols := int64(binary.BigEndian.Uint32(b[4:])), int64(binary.BigEndian.Uint32(b[8:])), int64(binary.BigEndian.Uint32(b[12:]))
			declared := int64(0)
			if n <= idxMaxItems && rows <= idxMaxSide && cols <= idxMaxSide {
				declared = n * rows * cols
			}
			if limit := 16 + declared + 1 + bufioSlack; cr.n > limit {
				t.Fatalf("read %d bytes of a stream whose header declares %d", cr.n, declared)
			}
		}
		zipped := readImagesResult(path+".gz", bytes.NewReader(storedGzip(b)), -1)
		sameOutcome(t, "raw / gzip", sized, zipped)
		r := sized
		if r.err != nil {
			corruptNaming(t, r.err, path)
			corruptNaming(t, streamed.err, path)
			corruptNaming(t, zipped.err, path+".gz")
			return
		}
		if r.rows < 1 || r.cols < 1 || r.rows > idxMaxSide || r.cols > idxMaxSide || len(r.pix) != r.n*r.rows*r.cols {
			t.Fatalf("%d images of %dx%d with %d pixel bytes", r.n, r.rows, r.cols, len(r.pix))
		}
		if !bytes.Equal(r.pix, b[16:]) || binary.BigEndian.Uint32(b) != idxImagesMagic {
			t.Fatal("accepted a file that is not header + pixels")
		}
		if r.n > 0 {
			d := &IDX{rows: r.rows, cols: r.cols, pix: r.pix, labels: make([]byte, r.n)}
			m, _, err := d.Get(r.n - 1)
			if err != nil || m.C != 1 || m.H != r.rows || m.W != r.cols {
				t.Fatalf("Get: %v %+v", err, m)
			}
		}
	})
}

func FuzzIDXLabels(f *testing.F) {
	f.Add(idxLabels(6))
	f.Add(idxLabels(0))
	f.Add(idxLabels(10)[:12])
	f.Add(append(idxLabels(2), 1))
	f.Add([]byte{0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "/fuzz/train-labels-idx1-ubyte"
		sized, errSized := readIDXLabels(path, bytes.NewReader(b), int64(len(b)))
		cr := &countingReader{r: bytes.NewReader(b)}
		streamed, errStreamed := readIDXLabels(path, cr, -1)
		if (errSized == nil) != (errStreamed == nil) || !bytes.Equal(sized, streamed) {
			t.Fatalf("size known / unknown differ: %v / %v", errSized, errStreamed)
		}
		if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
			return
		}
		if len(b) >= 8 {
			if declared := int64(binary.BigEndian.Uint32(b[4:])); cr.n > 8+declared+1+bufioSlack {
				t.Fatalf("read %d bytes of a stream whose header declares %d", cr.n, declared)
			}
		}
		zipped, errZipped := readIDXLabels(path+".gz", bytes.NewReader(storedGzip(b)), -1)
		if (errSized == nil) != (errZipped == nil) || !bytes.Equal(sized, zipped) {
			t.Fatalf("raw / gzip differ: %v / %v", errSized, errZipped)
		}
		if errSized != nil {
			corruptNaming(t, errSized, path)
			corruptNaming(t, errStreamed, path)
			corruptNaming(t, errZipped, path+".gz")
			return
		}
		if binary.BigEndian.Uint32(b) != idxLabelsMagic || int(binary.BigEndian.Uint32(b[4:])) != len(sized) || !bytes.Equal(sized, b[8:]) {
			t.Fatal("accepted a file that is not header + labels")
		}
	})
}

// FuzzIDXGzip feeds the bytes as a (possibly gzipped) file, seeded with
// valid gzip streams so that mutations reach the deflate data, the trailer
// and what follows it. A success must be exactly what gunzip gives.
func FuzzIDXGzip(f *testing.F) {
	f.Add(gzipped(idxImages(3, 4, 3)), false)
	f.Add(gzipped(idxLabels(6)), true)
	f.Add(append(gzipped(idxLabels(2)), gzipped([]byte{1})...), true)
	f.Add(gzipped(append(idxImages(1, 2, 2), make([]byte, 1<<12)...)), false)
	f.Add(gzipped(append([]byte{0, 0, 8, 4}, make([]byte, 1<<12)...)), false)
	f.Add(storedGzip(idxLabels(3)), true)
	f.Fuzz(func(t *testing.T, b []byte, labels bool) {
		const path = "/fuzz/t10k-idx-ubyte.gz"
		var got []byte
		var err error
		want := 16
		if labels {
			want = 8
			got, err = readIDXLabels(path, bytes.NewReader(b), int64(len(b)))
		} else {
			_, _, _, got, err = readIDXImages(path, bytes.NewReader(b), int64(len(b)))
		}
		if err != nil {
			corruptNaming(t, err, path)
			return
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			return // raw: FuzzIDXImages and FuzzIDXLabels check it
		}
		zr, zerr := gzip.NewReader(bytes.NewReader(b))
		if zerr != nil {
			t.Fatalf("accepted a stream gzip rejects: %v", zerr)
		}
		all, zerr := io.ReadAll(io.LimitReader(zr, int64(want+len(got)+1)))
		if zerr != nil || len(all) != want+len(got) || !bytes.Equal(all[want:], got) {
			t.Fatalf("accepted %d bytes that are not the stream's content (%d bytes, %v)", len(got), len(all), zerr)
		}
	})
}

// FuzzCIFAR builds a batch file from a compact input, since Go's fuzzer
// minimises every new input byte by byte and whole 3-kB records would stall
// it: heads holds each record's label byte(s) (coarse, fine for CIFAR-100),
// the pixel bytes are filled in, a remainder of heads starts a record that
// does not end, and cut bytes come off the end (cut < 0: -cut bytes go on).
// Only the length and the label bytes decide whether a batch is valid, and
// the target checks the parser against that rule.
func FuzzCIFAR(f *testing.F) {
	f.Add([]byte{3, 9}, int16(0), false)
	f.Add([]byte{19, 99}, int16(0), true)
	f.Add([]byte{0, 5, 1}, int16(0), true)
	f.Add([]byte{10}, int16(0), false)
	f.Add([]byte{1, 2}, int16(1), false)
	f.Add([]byte{1}, int16(-3072), false)
	f.Add([]byte{}, int16(0), false)
	f.Fuzz(func(t *testing.T, heads []byte, cut int16, c100 bool) {
		const path = "/fuzz/data_batch_1.bin"
		record, nclass := cifar10Record, 10
		if c100 {
			record, nclass = cifar100Record, 100
		}
		hdr := record - cifarPixels
		heads = heads[:min(len(heads), 64*hdr)]
		var b []byte
		for r := 0; r < len(heads); r += hdr {
			b = append(b, heads[r:min(r+hdr, len(heads))]...)
			if r+hdr <= len(heads) {
				for k := range cifarPixels {
					b = append(b, byte(r+k))
				}
			}
		}
		if cut > 0 {
			b = b[:max(0, len(b)-int(cut))]
		} else {
			b = append(b, make([]byte, -int(cut))...)
		}
		valid := len(b) > 0 && len(b)%record == 0
		for r := 0; valid && r < len(b); r += record {
			valid = int(b[r+hdr-1]) < nclass
		}
		got, err := checkCIFAR(path, b, record, nclass)
		if (err == nil) != valid {
			t.Fatalf("%d bytes, valid %v: error %v", len(b), valid, err)
		}
		if err != nil {
			corruptNaming(t, err, path)
			if !strings.Contains(err.Error(), "record") {
				t.Fatalf("error %q does not say which record or the record size", err)
			}
			return
		}
		if !bytes.Equal(got, b) {
			t.Fatal("returned other bytes than the file's")
		}
		d := &CIFAR{info: Info{Format: "cifar"}, record: record, recs: got}
		for i := range d.Len() {
			m, lab, err := d.Get(i)
			if err != nil || lab != int(b[i*record+hdr-1]) || m.C != 3 || m.H != cifarSide || m.W != cifarSide {
				t.Fatalf("record %d: label %d, %v", i, lab, err)
			}
			if c100 && d.Coarse(i) != int(b[i*record]) {
				t.Fatalf("record %d: coarse label %d", i, d.Coarse(i))
			}
		}
	})
}

// fuzzMaxPixels keeps each fuzz decode cheap; the limit's own logic is the
// same at any size.
const fuzzMaxPixels = 1 << 16

// interlacedPNG encodes m (8-bit grey) as an Adam7-interlaced PNG, which
// Go's encoder never writes, so that the decoder's interlace path is seeded.
func interlacedPNG(m *image.Gray) []byte {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	passes := [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}} // x0, y0, dx, dy
	var raw bytes.Buffer
	for _, p := range passes {
		for y := p[1]; y < h; y += p[3] {
			if p[0] >= w {
				break
			}
			raw.WriteByte(0) // filter: none
			for x := p[0]; x < w; x += p[2] {
				raw.WriteByte(m.GrayAt(x, y).Y)
			}
		}
	}
	var idat bytes.Buffer
	zw := zlib.NewWriter(&idat)
	zw.Write(raw.Bytes())
	zw.Close()
	var ihdr bytes.Buffer
	binary.Write(&ihdr, binary.BigEndian, []uint32{uint32(w), uint32(h)})
	ihdr.Write([]byte{8, 0, 0, 0, 1})
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, pngChunk("IHDR", ihdr.Bytes())...)
	out = append(out, pngChunk("IDAT", idat.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// imageSeeds are small valid images in every colour model the PNG and JPEG
// decoders produce, plus headers declaring sizes over the limit.
func imageSeeds(tb testing.TB) [][]byte {
	enc := func(m image.Image, asJPEG bool) []byte {
		var b bytes.Buffer
		var err error
		if asJPEG {
			err = jpeg.Encode(&b, m, &jpeg.Options{Quality: 50})
		} else {
			err = png.Encode(&b, m)
		}
		if err != nil {
			tb.Fatal(err)
		}
		return b.Bytes()
	}
	gray := image.NewGray(image.Rect(0, 0, 9, 7))
	gray16 := image.NewGray16(image.Rect(0, 0, 5, 3))
	nrgba := image.NewNRGBA(image.Rect(0, 0, 6, 5))
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 3, 4))
	pal := image.NewPaletted(image.Rect(0, 0, 7, 2), color.Palette{color.Black, color.NRGBA{200, 10, 10, 128}, color.White})
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 5)
	}
	for i := range gray16.Pix {
		gray16.Pix[i] = uint8(i * 37)
	}
	for i := range nrgba.Pix {
		nrgba.Pix[i] = uint8(i * 11)
	}
	for i := range nrgba64.Pix {
		nrgba64.Pix[i] = uint8(i * 13)
	}
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 3)
	}
	opaque := rgbImage(8, 8)
	return [][]byte{
		enc(gray, false), enc(gray16, false), enc(nrgba, false), enc(opaque, false), enc(nrgba64, false), enc(pal, false),
		interlacedPNG(gray),
		enc(gray, true), enc(opaque, true), enc(rgbImage(17, 9), true),
		pngDeclaring(300, 300), pngDeclaring(1<<29, 1<<29),
	}
}

func FuzzDecodeImage(f *testing.F) {
	for _, s := range imageSeeds(f) {
		f.Add(s)
	}
	// A JPEG whose frame header declares 1000x1000 (JPEG has no checksum).
	var b bytes.Buffer
	jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8)), nil)
	j := b.Bytes()
	if i := bytes.Index(j, []byte{0xff, 0xc0}); i >= 0 {
		binary.BigEndian.PutUint16(j[i+5:], 1000)
		binary.BigEndian.PutUint16(j[i+7:], 1000)
		f.Add(j)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "/fuzz/class/img.png"
		cfg, _, cfgErr := image.DecodeConfig(bytes.NewReader(b))
		m, err := decodeImage(path, bytes.NewReader(b), fuzzMaxPixels)
		if err != nil {
			corruptNaming(t, err, path)
			if strings.Contains(err.Error(), "decoder panicked") {
				t.Fatalf("decoder panic: %v", err)
			}
			if cfgErr == nil && cfg.Width > 0 && cfg.Height > 0 && int64(cfg.Width)*int64(cfg.Height) > fuzzMaxPixels &&
				!strings.Contains(err.Error(), "data.max_image_pixels") {
				t.Fatalf("a %dx%d header over the limit gave %q, not the limit's error", cfg.Width, cfg.Height, err)
			}
			return
		}
		if cfgErr != nil || m.W != cfg.Width || m.H != cfg.Height {
			t.Fatalf("decoded %dx%d, header %dx%d (%v)", m.W, m.H, cfg.Width, cfg.Height, cfgErr)
		}
		if (m.C != 1 && m.C != 3) || m.H < 1 || m.W < 1 || m.H*m.W > fuzzMaxPixels || len(m.Pix) != m.C*m.H*m.W {
			t.Fatalf("image [%d, %d, %d] with %d values", m.C, m.H, m.W, len(m.Pix))
		}
		for i, v := range m.Pix {
			if !(v >= 0 && v <= 1) || math.IsNaN(float64(v)) {
				t.Fatalf("pixel %d is %v, not in [0, 1]", i, v)
			}
		}
		for _, c := range []int{1, 3} {
			if o, err := convertChannels(m, c); err != nil || o.C != c || len(o.Pix) != c*m.H*m.W {
				t.Fatalf("to %d channels: %v", c, err)
			}
		}
	})
}

// TestImageSeedsDecode checks that FuzzDecodeImage's seeds reach where they
// are meant to: the valid images decode to their size, the oversized headers
// stop at the limit.
func TestImageSeedsDecode(t *testing.T) {
	seeds := imageSeeds(t)
	sizes := [][3]int{{1, 7, 9}, {1, 3, 5}, {3, 5, 6}, {3, 8, 8}, {3, 4, 3}, {3, 2, 7}, {1, 7, 9}, {1, 7, 9}, {3, 8, 8}, {3, 9, 17}}
	for i, s := range seeds {
		m, err := decodeImage("/seed.png", bytes.NewReader(s), fuzzMaxPixels)
		if i >= len(sizes) {
			if err == nil || !strings.Contains(err.Error(), "data.max_image_pixels") {
				t.Errorf("seed %d: %v, want the pixel limit's error", i, err)
			}
			continue
		}
		if err != nil || [3]int{m.C, m.H, m.W} != sizes[i] {
			t.Errorf("seed %d: %v [%d %d %d], want %v", i, err, m.C, m.H, m.W, sizes[i])
		}
	}
	// The interlaced seed decodes to the same pixels as the plain one.
	a, _ := decodeImage("/a.png", bytes.NewReader(seeds[0]), 0)
	b, _ := decodeImage("/b.png", bytes.NewReader(seeds[6]), 0)
	if !slices.Equal(a.Pix, b.Pix) {
		t.Error("interlaced and plain PNG of one image differ")
	}
}

// shardSeeds are small tar shards: valid ones in the USTAR, PAX (long
// names) and GNU formats, with ignored members, and broken variants (cut,
// bad label, missing label).
func shardSeeds(tb testing.TB) [][]byte {
	build := func(format tar.Format, ms ...member) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, m := range ms {
			h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, Format: format}
			if m.typ != 0 {
				h.Typeflag, h.Size = m.typ, 0
			}
			if err := tw.WriteHeader(h); err != nil {
				tb.Fatal(err)
			}
			tw.Write(m.data)
		}
		tw.Close()
		return b.Bytes()
	}
	img := []byte("\x89PNG fake image bytes")
	long := strings.Repeat("d", 120) + "/k2"
	valid := build(tar.FormatUnknown,
		member{name: "k0.png", data: img}, member{name: "k0.cls", data: []byte("3")},
		member{name: "k1.cls", data: []byte("0\n")}, member{name: "k1.jpg", data: img[:7]}, member{name: "k1.txt", data: []byte("caption")})
	return [][]byte{
		valid,
		build(tar.FormatPAX, member{name: long + ".jpeg", data: img}, member{name: long + ".cls", data: []byte("1")}),
		build(tar.FormatGNU, member{name: "d/", typ: tar.TypeDir}, member{name: long + ".png", data: img}, member{name: long + ".cls", data: []byte("2")}),
		valid[:len(valid)-1024],
		valid[:700],
		build(tar.FormatUnknown, member{name: "k0.png", data: img}, member{name: "k0.cls", data: []byte("x")}),
		build(tar.FormatUnknown, member{name: "k0.png", data: img}),
		{},
	}
}

// FuzzShardIndex feeds the bytes to indexShard as a shard. An error is a
// *CorruptError naming the shard; a success lists at least one sample, and
// each sample's image extent lies inside the file and holds exactly the
// bytes a streaming (non-seeking) tar reader gives for that member, with
// its label in range: the seeks that skip image data never misplace it.
func FuzzShardIndex(f *testing.F) {
	for _, s := range shardSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "/fuzz/train-000000.tar"
		got, err := indexShard(path, bytes.NewReader(b), int64(len(b)))
		if err != nil {
			corruptNaming(t, err, path)
			return
		}
		if len(got) == 0 {
			t.Fatal("a shard without samples was accepted")
		}
		members := map[string][]byte{}
		tr := tar.NewReader(struct{ io.Reader }{bytes.NewReader(b)})
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("indexed a tar that a streaming reader rejects: %v", err)
			}
			if _, seen := members[h.Name]; h.Typeflag == tar.TypeReg && !seen {
				data, err := io.ReadAll(tr)
				if err != nil {
					t.Fatalf("indexed a tar whose member %q a streaming reader cannot read: %v", h.Name, err)
				}
				members[h.Name] = data
			}
		}
		for i, s := range got {
			if s.off < 0 || s.size < 0 || s.off > int64(len(b))-s.size {
				t.Fatalf("sample %d: extent [%d, +%d) outside the %d-byte file", i, s.off, s.size, len(b))
			}
			want, ok := members[s.image]
			if !ok || !bytes.Equal(b[s.off:s.off+s.size], want) {
				t.Fatalf("sample %d (%s): extent [%d, +%d) is not the member's data", i, s.image, s.off, s.size)
			}
			if _, ext, _ := splitKey(s.image); ext != "png" && ext != "jpg" && ext != "jpeg" {
				t.Fatalf("sample %d: image member %q", i, s.image)
			}
			if s.label < 0 || s.label >= maxLabel {
				t.Fatalf("sample %d: label %d", i, s.label)
			}
		}
	})
}

// TestShardSeedsIndex checks that FuzzShardIndex's seeds reach where they
// are meant to: the valid shards index, the broken ones fail.
func TestShardSeedsIndex(t *testing.T) {
	for i, s := range shardSeeds(t) {
		got, err := indexShard("/seed.tar", bytes.NewReader(s), int64(len(s)))
		want := []int{2, 1, 1}
		if i < len(want) && (err != nil || len(got) != want[i]) {
			t.Errorf("seed %d: %v, %d samples, want %d", i, err, len(got), want[i])
		}
		if i >= len(want) && err == nil {
			t.Errorf("seed %d indexed; it is meant to be broken", i)
		}
	}
}
