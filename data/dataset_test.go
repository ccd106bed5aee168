package data

import (
	"errors"
	"image"
	"image/color"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIDXDecode(t *testing.T) {
	for _, zip := range []bool{false, true} {
		dir := t.TempDir()
		writeIDXDir(t, dir, 12, 5, zip)
		d, err := OpenIDX(dir, "train")
		if err != nil {
			t.Fatal(err)
		}
		if d.Len() != 12 || d.Info().Height != 4 || d.Info().Width != 3 || d.Info().Channels != 1 {
			t.Fatalf("zip=%v: info %+v", zip, d.Info())
		}
		img, lab, err := d.Get(3)
		if err != nil {
			t.Fatal(err)
		}
		if lab != 3 || img.C != 1 || img.H != 4 || img.W != 3 {
			t.Fatalf("label %d shape %dx%dx%d", lab, img.C, img.H, img.W)
		}
		for k, v := range img.Pix {
			if want := float32((3*7+k)%256) / 255; math.Abs(float64(v-want)) > 1e-6 {
				t.Fatalf("pixel %d = %v, want %v", k, v, want)
			}
		}
		te, err := OpenIDX(dir, "test")
		if err != nil || te.Len() != 5 || te.Info().Split != "test" {
			t.Fatalf("test split: %v %v", te, err)
		}
	}
}

func TestIDXBadInput(t *testing.T) {
	good := idxImages(6, 4, 3)
	cases := []struct {
		name    string
		images  []byte
		labels  []byte
		corrupt bool
		inMsg   string
	}{
		{"bad image magic", append([]byte{0, 0, 8, 4}, good[4:]...), idxLabels(6), true, "bad IDX magic"},
		{"bad label magic", good, append([]byte{0, 0, 8, 3}, idxLabels(6)[4:]...), true, "labels-idx1"},
		{"truncated images", good[:len(good)-5], idxLabels(6), true, "truncated"},
		{"padded images", append(append([]byte{}, good...), 1, 2), idxLabels(6), true, "trailing data"},
		{"truncated labels", good, idxLabels(6)[:10], true, "labels"},
		{"count mismatch", good, idxLabels(5), true, "holds 5 labels"},
		{"short header", good[:10], idxLabels(6), true, "header"},
		{"truncated gzip", nil, idxLabels(6), true, "truncated gzip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			imgName := "train-images-idx3-ubyte"
			img := c.images
			if img == nil {
				z := gz(t, good)
				img, imgName = z[:len(z)/2], imgName+".gz"
			}
			ip := writeFile(t, filepath.Join(dir, imgName), img)
			lp := writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), c.labels)
			_, err := OpenIDX(dir, "train")
			if err == nil {
				t.Fatal("no error")
			}
			if c.corrupt && !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v does not wrap ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), ip) && !strings.Contains(err.Error(), lp) {
				t.Errorf("error %q names neither file", err)
			}
			if !strings.Contains(err.Error(), c.inMsg) {
				t.Errorf("error %q lacks %q", err, c.inMsg)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		_, err := OpenIDX(filepath.Join(t.TempDir(), "nope"), "train")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing labels file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "train-images-idx3-ubyte"), good)
		_, err := OpenIDX(dir, "train")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "train-labels-idx1-ubyte") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads everything")
		}
		dir := t.TempDir()
		writeIDXDir(t, dir, 3, 3, false)
		os.Chmod(filepath.Join(dir, "train-images-idx3-ubyte"), 0)
		if _, err := OpenIDX(dir, "train"); err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestDebianFashionMNIST reads the layout Debian's dataset-fashion-mnist
// package installs: /usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
func TestDebianFashionMNIST(t *testing.T) {
	const dir = "/usr/share/datasets/fashion-mnist"
	if _, err := os.Stat(dir); err != nil {
		t.Skip("dataset-fashion-mnist not installed")
	}
	if testing.Short() {
		t.Skip("short")
	}
	for split, n := range map[string]int{"train": 60000, "test": 10000} {
		d, err := OpenIDX(dir, split)
		if err != nil {
			t.Fatal(err)
		}
		if d.Len() != n || d.Info().Height != 28 || d.Info().Width != 28 || d.Classes()[9] != "Ankle boot" {
			t.Fatalf("%s: %+v %v", split, d.Info(), d.Classes())
		}
	}
}

func TestCIFAR(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR10(t, dir, 3)
	d, err := OpenCIFAR(dir, "cifar10", "train")
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 15 || d.Classes()[2] != "a2" {
		t.Fatalf("len %d classes %v", d.Len(), d.Classes())
	}
	img, lab, _ := d.Get(4) // batch 2, record 1
	if lab != 1 || img.C != 3 || img.H != 32 {
		t.Fatalf("label %d shape %d", lab, img.C)
	}
	if want := float32((1+1024+5)%256) / 255; img.At(1, 0, 5) != want {
		t.Fatalf("G(0,5) = %v, want %v", img.At(1, 0, 5), want)
	}
	te, err := OpenCIFAR(dir, "cifar10", "test")
	if err != nil || te.Len() != 3 {
		t.Fatal(te, err)
	}

	// CIFAR-100 inside the folder its archive extracts to.
	root := t.TempDir()
	sub := filepath.Join(root, "cifar-100-binary")
	writeFile(t, filepath.Join(sub, "train.bin"), cifarRecords(130, true))
	writeFile(t, filepath.Join(sub, "test.bin"), cifarRecords(2, true))
	c, err := OpenCIFAR(root, "cifar100", "train")
	if err != nil {
		t.Fatal(err)
	}
	if _, lab, _ := c.Get(120); lab != 20 || c.Coarse(120) != 0 || len(c.Classes()) != 100 {
		t.Fatalf("fine %d coarse %d", lab, c.Coarse(120))
	}

	bad := []struct {
		name, kind, file string
		data             []byte
		inMsg            string
	}{
		{"wrong record length", "cifar10", "test_batch.bin", cifarRecords(2, false)[:3000], "not a positive multiple"},
		{"cifar100 file as cifar10", "cifar10", "test_batch.bin", cifarRecords(3073, true)[:3074*3073], "label"},
		{"empty", "cifar100", "test.bin", nil, "not a positive multiple"},
		{"label out of range", "cifar100", "test.bin", append([]byte{0, 200}, make([]byte, cifarPixels)...), "label 200"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, filepath.Join(dir, c.file), c.data)
			_, err := OpenCIFAR(dir, c.kind, "test")
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.inMsg) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("missing batch", func(t *testing.T) {
		dir := t.TempDir()
		writeCIFAR10(t, dir, 1)
		os.Remove(filepath.Join(dir, "data_batch_3.bin"))
		_, err := OpenCIFAR(dir, "cifar10", "train")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "data_batch_3.bin") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestImageFolder(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "zebra", "a.png"), pngBytes(t, rgbImage(5, 4)))
	writeFile(t, filepath.Join(root, "apple", "b.jpg"), jpegBytes(t, rgbImage(6, 6)))
	grey := image.NewGray(image.Rect(0, 0, 3, 2))
	grey.SetGray(1, 1, color.Gray{Y: 51})
	writeFile(t, filepath.Join(root, "apple", "sub", "c.PNG"), pngBytes(t, grey))
	writeFile(t, filepath.Join(root, "apple", "notes.txt"), []byte("ignored"))

	d, err := OpenImageFolder(root, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Classes(), ","); got != "apple,zebra" || d.Len() != 3 {
		t.Fatalf("classes %s len %d", got, d.Len())
	}
	// Lexical order within apple: b.jpg, sub/c.PNG; then zebra/a.png.
	img, lab, err := d.Get(2)
	if err != nil || lab != 1 || img.C != 3 || img.H != 4 || img.W != 5 {
		t.Fatalf("png: %v %d %+v", err, lab, img.C)
	}
	if img.At(0, 2, 3) != float32(60)/255 || img.At(1, 2, 3) != float32(40)/255 || img.At(2, 2, 3) != float32(100)/255 {
		t.Fatalf("png pixel %v %v %v", img.At(0, 2, 3), img.At(1, 2, 3), img.At(2, 2, 3))
	}
	g, _, err := d.Get(1) // grey expanded to RGB
	if err != nil || g.C != 3 || g.At(0, 1, 1) != float32(51)/255 || g.At(2, 1, 1) != float32(51)/255 {
		t.Fatalf("grey->rgb: %v %+v", err, g)
	}
	j, _, err := d.Get(0)
	if err != nil || math.Abs(float64(j.At(0, 3, 3)-60.0/255)) > 0.05 {
		t.Fatalf("jpeg: %v %v", err, j.At(0, 3, 3))
	}
	d1, _ := OpenImageFolder(root, 1, 0)
	m, _, _ := d1.Get(2)
	want := float32(0.299*60+0.587*40+0.114*100) / 255
	if m.C != 1 || math.Abs(float64(m.At(0, 2, 3)-want)) > 1e-5 {
		t.Fatalf("rgb->grey %v want %v", m.At(0, 2, 3), want)
	}

	t.Run("truncated jpeg", func(t *testing.T) {
		root := t.TempDir()
		b := jpegBytes(t, rgbImage(8, 8))
		p := writeFile(t, filepath.Join(root, "c", "x.jpg"), b[:len(b)/2])
		d, err := OpenImageFolder(root, 3, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = d.Get(0)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty class folder", func(t *testing.T) {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, "a", "x.png"), pngBytes(t, rgbImage(2, 2)))
		os.MkdirAll(filepath.Join(root, "b"), 0o755)
		_, err := OpenImageFolder(root, 3, 0)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "b")) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		_, err := OpenImageFolder(filepath.Join(root, "missing"), 3, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no class folders", func(t *testing.T) {
		_, err := OpenImageFolder(t.TempDir(), 3, 0)
		if err == nil || !strings.Contains(err.Error(), "no class subfolders") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSynthetic(t *testing.T) {
	a, _ := NewSynthetic(50, 10, 3, 16, 7)
	b, _ := NewSynthetic(50, 10, 3, 16, 7)
	c, _ := NewSynthetic(50, 10, 3, 16, 8)
	x, lx, _ := a.Get(13)
	y, _, _ := b.Get(13)
	z, _, _ := c.Get(13)
	if lx != 3 {
		t.Fatalf("label %d", lx)
	}
	same, diff := true, false
	for i := range x.Pix {
		same = same && x.Pix[i] == y.Pix[i]
		diff = diff || x.Pix[i] != z.Pix[i]
		if x.Pix[i] < 0 || x.Pix[i] > 1 {
			t.Fatalf("pixel %v out of [0,1]", x.Pix[i])
		}
	}
	if !same || !diff {
		t.Fatalf("determinism by seed: same=%v diff=%v", same, diff)
	}
	if _, err := NewSynthetic(0, 10, 3, 16, 1); err == nil {
		t.Fatal("n=0 accepted")
	}
}
