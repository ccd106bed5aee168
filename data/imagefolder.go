package data

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register JPEG
	_ "image/png"  // register PNG
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// imageExts are the file types ImageFolder reads; other files are ignored
// (as torchvision ignores files outside IMG_EXTENSIONS).
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true}

func isImageFile(name string) bool { return imageExts[strings.ToLower(filepath.Ext(name))] }

// ImageFolder is torchvision's ImageFolder: root/<class>/**/<image>.{jpg,jpeg,png}.
// Classes are the sorted subfolder names (label = position); images are
// listed per class in lexical path order and decoded lazily on Get.
type ImageFolder struct {
	info      Info
	paths     []string
	labels    []int
	classes   []string
	maxPixels int
}

// DefaultMaxImagePixels is the largest image (width x height) decoded when
// no limit is configured (data.max_image_pixels 0): 64 Mpixel, 8192x8192,
// above any photo of ImageNet or a 61-Mpixel camera. Decoding costs about 16
// bytes a pixel (Go's decoded image, then float32 RGB planes), so an image
// at the limit takes about 1 GiB, and each loader worker may hold one. A file
// whose header declares more is refused before any pixel is allocated: PNG
// and JPEG headers can declare billions of pixels in a hundred bytes.
const DefaultMaxImagePixels = 1 << 26

// OpenImageFolder lists root. channels (1 or 3) is the number of channels Get
// returns: grey images are expanded to RGB, RGB converted to grey (luma).
// Get refuses images of more than maxPixels pixels (<= 0:
// DefaultMaxImagePixels). A class folder without any image is an error, as
// in torchvision.
func OpenImageFolder(root string, channels, maxPixels int) (*ImageFolder, error) {
	if channels != 1 && channels != 3 {
		return nil, fmt.Errorf("imagefolder %q: channels must be 1 or 3, got %d", root, channels)
	}
	classes, err := imageFolderClasses(root)
	if err != nil {
		return nil, err
	}
	d := &ImageFolder{classes: classes, maxPixels: maxPixels}
	var empty []string
	for ci, c := range classes {
		files, err := classImages(filepath.Join(root, c))
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			empty = append(empty, filepath.Join(root, c))
		}
		for _, f := range files {
			d.paths = append(d.paths, f)
			d.labels = append(d.labels, ci)
		}
	}
	if len(empty) > 0 {
		return nil, fmt.Errorf("imagefolder %q: no .jpg/.jpeg/.png images in class folder(s) %s; remove them or add images", root, strings.Join(empty, ", "))
	}
	d.info = Info{Format: "imagefolder", Path: root, Split: filepath.Base(root), Count: len(d.paths), Channels: channels}
	return d, nil
}

// imageFolderClasses returns root's sorted subfolder names.
func imageFolderClasses(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("imagefolder %q: %w; set data.path to a folder with one subfolder per class", root, err)
	}
	var classes []string
	for _, e := range ents {
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(filepath.Join(root, e.Name()))) {
			classes = append(classes, e.Name())
		}
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("imagefolder %q: no class subfolders; expected root/<class>/<image>.jpg", root)
	}
	sort.Strings(classes)
	return classes, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// classImages lists the image files under dir, recursively, in lexical order.
func classImages(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("imagefolder: list %s: %w", p, err)
		}
		if !e.IsDir() && isImageFile(p) {
			files = append(files, p)
		}
		return nil
	})
	return files, err
}

// Len is the number of images.
func (d *ImageFolder) Len() int { return len(d.paths) }

// Get decodes image i. Errors name the file.
func (d *ImageFolder) Get(i int) (Image, int, error) {
	if i < 0 || i >= len(d.paths) {
		return Image{}, 0, fmt.Errorf("imagefolder %s: index %d out of range [0, %d)", d.info.Path, i, len(d.paths))
	}
	m, err := DecodeImageFile(d.paths[i], d.info.Channels, d.maxPixels)
	return m, d.labels[i], err
}

// Path returns the file of image i.
func (d *ImageFolder) Path(i int) string { return d.paths[i] }

// Label returns the label of image i without decoding it.
func (d *ImageFolder) Label(i int) int { return d.labels[i] }

// Classes are the sorted class folder names.
func (d *ImageFolder) Classes() []string { return d.classes }

// Info describes the folder; Height and Width are 0 (images vary).
func (d *ImageFolder) Info() Info { return d.info }

// DecodeImageFile decodes a JPEG or PNG file to [channels, H, W] in [0, 1].
// Images of more than maxPixels pixels (<= 0: DefaultMaxImagePixels) are
// refused from their header. Errors name the file.
func DecodeImageFile(path string, channels, maxPixels int) (Image, error) {
	m, err := decodeImageNative(path, maxPixels)
	if err != nil {
		return Image{}, err
	}
	m, err = convertChannels(m, channels)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// decodeImageNative decodes a JPEG or PNG file to its own channel count
// (1 for grey, else 3).
func decodeImageNative(path string, maxPixels int) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	return decodeImage(path, f, maxPixels)
}

// decodeImage decodes the image in r (named path in errors). Its header is
// read first and the image refused when it declares more than maxPixels
// pixels (<= 0: DefaultMaxImagePixels), so the decoder never allocates for a
// size the limit rules out. A decoder panic becomes an error naming the file.
func decodeImage(path string, r io.ReadSeeker, maxPixels int) (m Image, err error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxImagePixels
	}
	defer func() {
		if p := recover(); p != nil {
			m, err = Image{}, corruptf(path, "decode image: decoder panicked: %v", p)
		}
	}()
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return Image{}, corruptf(path, "decode image: %v", err)
	}
	w, h := cfg.Width, cfg.Height
	if w <= 0 || h <= 0 {
		return Image{}, corruptf(path, "decode image: %s header declares %dx%d pixels", format, w, h)
	}
	if w > maxPixels/h {
		return Image{}, corruptf(path, "%s image is %dx%d (%d pixels), over the limit of %d pixels (data.max_image_pixels); downscale it, or raise the limit if the memory allows (about 16 bytes a pixel per loader worker)",
			format, w, h, int64(w)*int64(h), maxPixels)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("%s: rewind after reading the image header: %w", path, err)
	}
	src, _, err := image.Decode(r)
	if err != nil {
		return Image{}, corruptf(path, "decode image: %v", err)
	}
	if b := src.Bounds(); b.Dx() != w || b.Dy() != h {
		return Image{}, corruptf(path, "decode image: %s header declares %dx%d pixels but %dx%d were decoded", format, w, h, b.Dx(), b.Dy())
	}
	return imageToPlanar(src), nil
}

// imageToPlanar converts a decoded image to float32 planes: grey images give
// one plane, everything else three (alpha dropped without premultiplying, as
// PIL's convert("RGB")).
func imageToPlanar(src image.Image) Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	switch im := src.(type) {
	case *image.Gray:
		m := NewImage(1, h, w)
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+w]
			for x, v := range row {
				m.Pix[y*w+x] = byteToUnit[v]
			}
		}
		return m
	case *image.Gray16:
		m := NewImage(1, h, w)
		for y := range h {
			for x := range w {
				m.Pix[y*w+x] = float32(im.Gray16At(b.Min.X+x, b.Min.Y+y).Y) / 65535
			}
		}
		return m
	}
	m := NewImage(3, h, w)
	n := h * w
	r, g, bl := m.Pix[:n], m.Pix[n:2*n], m.Pix[2*n:]
	switch im := src.(type) {
	case *image.YCbCr:
		for y := range h {
			for x := range w {
				yi := im.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := im.COffset(b.Min.X+x, b.Min.Y+y)
				rr, gg, bb := color.YCbCrToRGB(im.Y[yi], im.Cb[ci], im.Cr[ci])
				k := y*w + x
				r[k], g[k], bl[k] = byteToUnit[rr], byteToUnit[gg], byteToUnit[bb]
			}
		}
	case *image.NRGBA:
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+4*w]
			for x := range w {
				k := y*w + x
				r[k], g[k], bl[k] = byteToUnit[row[4*x]], byteToUnit[row[4*x+1]], byteToUnit[row[4*x+2]]
			}
		}
	case *image.RGBA:
		for y := range h {
			row := im.Pix[y*im.Stride : y*im.Stride+4*w]
			for x := range w {
				k := y*w + x
				px := row[4*x : 4*x+4]
				if a := px[3]; a == 255 {
					r[k], g[k], bl[k] = byteToUnit[px[0]], byteToUnit[px[1]], byteToUnit[px[2]]
				} else if a > 0 { // un-premultiply
					fa := float32(a)
					r[k], g[k], bl[k] = float32(px[0])/fa, float32(px[1])/fa, float32(px[2])/fa
				}
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := color.NRGBA64Model.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				k := y*w + x
				r[k], g[k], bl[k] = float32(c.R)/65535, float32(c.G)/65535, float32(c.B)/65535
			}
		}
	}
	return m
}
