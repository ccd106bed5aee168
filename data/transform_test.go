package data

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestCropBoxBounds(t *testing.T) {
	scale, ratio := [2]float64{0.3, 1}, [2]float64{3.0 / 4, 4.0 / 3}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, hw := range [][2]int{{28, 28}, {32, 32}, {224, 300}, {500, 375}} {
		h, w := hw[0], hw[1]
		for range 2000 {
			top, left, ch, cw := CropBox(h, w, scale, ratio, rng)
			if top < 0 || left < 0 || ch <= 0 || cw <= 0 || top+ch > h || left+cw > w {
				t.Fatalf("%dx%d: box (%d,%d,%d,%d) outside", h, w, top, left, ch, cw)
			}
			// Rounding each side moves area and ratio by at most half a pixel.
			area := float64(ch*cw) / float64(h*w)
			lo := scale[0] * (1 - 1.5/math.Sqrt(scale[0]*float64(h*w)))
			if area < lo-1e-9 || area > scale[1]+1e-9 {
				if !(ch == h || cw == w) { // fallback boxes are exempt
					t.Fatalf("%dx%d: area fraction %v outside %v", h, w, area, scale)
				}
			}
			r := float64(cw) / float64(ch)
			tol := 1.0 / float64(min(ch, cw))
			if r < ratio[0]*(1-tol)-1e-9 || r > ratio[1]*(1+tol)+1e-9 {
				t.Fatalf("%dx%d: ratio %v outside %v", h, w, r, ratio)
			}
		}
	}
	// No draw can fit: centre crop clamped to the ratio range.
	top, left, ch, cw := CropBox(10, 100, [2]float64{0.9, 1}, [2]float64{1, 1}, rng)
	if top != 0 || left != 45 || ch != 10 || cw != 10 {
		t.Fatalf("fallback box (%d,%d,%d,%d), want (0,45,10,10)", top, left, ch, cw)
	}
	top, left, ch, cw = CropBox(40, 40, [2]float64{1, 1}, [2]float64{2, 3}, rng)
	if top != 10 || left != 0 || ch != 20 || cw != 40 {
		t.Fatalf("fallback box (%d,%d,%d,%d), want (10,0,20,40)", top, left, ch, cw)
	}
}

func rampImage(c, h, w int) Image {
	m := NewImage(c, h, w)
	for i := range m.Pix {
		m.Pix[i] = float32(i%251) / 251
	}
	return m
}

func TestEvalIdentityAt28(t *testing.T) {
	img := rampImage(1, 28, 28)
	p := &Pipeline{Size: 28, Channels: 1}
	dst := make([]float32, 28*28)
	if err := p.Apply(dst, img, rand.New(rand.NewPCG(0, 0))); err != nil {
		t.Fatal(err)
	}
	for i := range dst {
		if dst[i] != img.Pix[i] {
			t.Fatalf("pixel %d changed: %v -> %v", i, img.Pix[i], dst[i])
		}
	}
}

func TestFlipAndNormalize(t *testing.T) {
	img := rampImage(3, 4, 4)
	p := &Pipeline{Size: 4, Channels: 3, HorizontalFlip: true, Mean: []float32{0.5, 0.4, 0.3}, Std: []float32{0.2, 0.25, 0.5}}
	flipped, kept := 0, 0
	for s := range uint64(200) {
		dst := make([]float32, 48)
		p.Apply(dst, img, rand.New(rand.NewPCG(s, 9)))
		isFlip := math.Abs(float64(dst[0]*0.2+0.5-img.At(0, 0, 3))) < 1e-6
		for c := range 3 {
			for y := range 4 {
				for x := range 4 {
					sx := x
					if isFlip {
						sx = 3 - x
					}
					want := (img.At(c, y, sx) - p.Mean[c]) / p.Std[c]
					if got := dst[(c*4+y)*4+x]; math.Abs(float64(got-want)) > 1e-5 {
						t.Fatalf("seed %d c%d (%d,%d): %v want %v", s, c, y, x, got, want)
					}
				}
			}
		}
		if isFlip {
			flipped++
		} else {
			kept++
		}
	}
	if flipped < 70 || kept < 70 {
		t.Fatalf("flip rate %d/200", flipped)
	}
}

func TestResize(t *testing.T) {
	// A constant image stays constant under any resize.
	img := NewImage(1, 9, 13)
	for i := range img.Pix {
		img.Pix[i] = 0.25
	}
	dst := make([]float32, 5*7)
	resizeBox(dst, img, 0, 0, 9, 13, 5, 7)
	for _, v := range dst {
		if math.Abs(float64(v-0.25)) > 1e-6 {
			t.Fatalf("constant image became %v", v)
		}
	}
	// Halving averages 2x2 blocks (antialiased triangle filter over pairs).
	img = NewImage(1, 2, 4)
	copy(img.Pix, []float32{0, 1, 0, 1, 1, 0, 1, 0})
	dst = make([]float32, 2)
	resizeBox(dst, img, 0, 0, 2, 4, 1, 2)
	for _, v := range dst {
		if math.Abs(float64(v-0.5)) > 1e-6 {
			t.Fatalf("halving gave %v", dst)
		}
	}
	// Eval transform on a larger image: shorter side to 37, centre crop 32.
	p := &Pipeline{Size: 32, Channels: 3, ResizeTo: EvalResize(32)}
	if EvalResize(224) != 256 || EvalResize(32) != 37 {
		t.Fatalf("EvalResize %d %d", EvalResize(224), EvalResize(32))
	}
	out := make([]float32, 3*32*32)
	if err := p.Apply(out, rampImage(1, 60, 80), nil); err != nil {
		t.Fatal(err)
	}
}

func TestColorJitterRange(t *testing.T) {
	img := rampImage(3, 8, 8)
	p := &Pipeline{Size: 8, Channels: 3, ColorJitter: 0.4}
	a, b := make([]float32, 192), make([]float32, 192)
	p.Apply(a, img, rand.New(rand.NewPCG(3, 3)))
	p.Apply(b, img, rand.New(rand.NewPCG(3, 3)))
	changed := false
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("jitter not deterministic for one stream")
		}
		if a[i] < 0 || a[i] > 1 {
			t.Fatalf("jitter left [0,1]: %v", a[i])
		}
		changed = changed || a[i] != img.Pix[i]
	}
	if !changed {
		t.Fatal("jitter changed nothing")
	}
}

func TestPipelineValidate(t *testing.T) {
	bad := []*Pipeline{
		{Size: 0, Channels: 3},
		{Size: 8, Channels: 2},
		{Size: 8, Channels: 3, RandomResizedCrop: true, Scale: [2]float64{0.5, 0.2}, Ratio: [2]float64{1, 1}},
		{Size: 8, Channels: 3, Mean: []float32{0.5, 0.5}, Std: []float32{1, 1}},
		{Size: 8, Channels: 1, Mean: []float32{0.5}, Std: []float32{0}},
		{Size: 8, Channels: 1, ResizeTo: 4},
	}
	for i, p := range bad {
		if p.Validate() == nil {
			t.Errorf("case %d accepted: %+v", i, p)
		}
	}
}
