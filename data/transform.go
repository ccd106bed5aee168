package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Transform turns a decoded image into a model input of a fixed shape. Apply
// writes into dst ([C, H, W] of OutShape) and takes every random draw from
// rng, so a per-sample rng makes the result independent of scheduling.
type Transform interface {
	Apply(dst []float32, img Image, rng *rand.Rand) error
	OutShape() (c, h, w int)
}

// Pipeline is the training and evaluation transform, torchvision-style:
//
//	geometry: RandomResizedCrop(Size, Scale, Ratio)   when RandomResizedCrop
//	          Resize(shorter side -> ResizeTo) + CenterCrop(Size) otherwise
//	then      RandomHorizontalFlip(p=0.5)             when HorizontalFlip
//	          ColorJitter(b=c=s=ColorJitter, hue=0)   when ColorJitter > 0
//	          Normalize(Mean, Std)
//
// ColorJitter applies its three adjustments in a random order (as
// torchvision). Resizing is bilinear with PIL/torchvision antialiasing (the
// triangle filter widens when downscaling), so a same-size resize is the
// identity. Input images are first converted to Channels (grey <-> RGB).
// Random draws per sample, in order: crop (2 per attempt, then 2 for the
// offset), flip (1), jitter (order permutation + 3 factors).
type Pipeline struct {
	Size     int
	Channels int

	RandomResizedCrop bool
	Scale             [2]float64 // fraction of the image area, e.g. [0.3, 1.0]
	Ratio             [2]float64 // aspect ratio w/h range, e.g. [3/4, 4/3]
	HorizontalFlip    bool
	ColorJitter       float64

	// ResizeTo is the shorter side before the centre crop in the
	// deterministic geometry; 0 means Size (so a Size x Size input is left
	// unchanged). ImageNet-style evaluation uses round(Size / 0.875).
	ResizeTo int

	// Mean and Std have one entry per channel, or one for all; empty means
	// no normalisation.
	Mean, Std []float32
}

// OutShape is [Channels, Size, Size].
func (p *Pipeline) OutShape() (c, h, w int) { return p.Channels, p.Size, p.Size }

// Validate reports a malformed pipeline.
func (p *Pipeline) Validate() error {
	if p.Size <= 0 || (p.Channels != 1 && p.Channels != 3) {
		return fmt.Errorf("transform: need size > 0 and channels 1 or 3, got size %d channels %d", p.Size, p.Channels)
	}
	if p.RandomResizedCrop {
		if !(p.Scale[0] > 0 && p.Scale[0] <= p.Scale[1] && p.Scale[1] <= 1) {
			return fmt.Errorf("transform: crop scale %v must satisfy 0 < min <= max <= 1", p.Scale)
		}
		if !(p.Ratio[0] > 0 && p.Ratio[0] <= p.Ratio[1]) {
			return fmt.Errorf("transform: crop ratio %v must satisfy 0 < min <= max", p.Ratio)
		}
	}
	if p.ResizeTo != 0 && p.ResizeTo < p.Size {
		return fmt.Errorf("transform: resize %d smaller than crop %d", p.ResizeTo, p.Size)
	}
	if len(p.Mean) != len(p.Std) || (len(p.Mean) != 0 && len(p.Mean) != 1 && len(p.Mean) != p.Channels) {
		return fmt.Errorf("transform: mean %v and std %v need 0, 1 or %d entries each", p.Mean, p.Std, p.Channels)
	}
	for _, s := range p.Std {
		if s <= 0 {
			return fmt.Errorf("transform: std %v must be positive", p.Std)
		}
	}
	return nil
}

// Apply transforms img into dst ([Channels, Size, Size]).
func (p *Pipeline) Apply(dst []float32, img Image, rng *rand.Rand) error {
	c, s := p.Channels, p.Size
	if len(dst) != c*s*s {
		return fmt.Errorf("transform: dst has %d values, want %d", len(dst), c*s*s)
	}
	img, err := convertChannels(img, c)
	if err != nil {
		return err
	}
	if p.RandomResizedCrop {
		top, left, ch, cw := CropBox(img.H, img.W, p.Scale, p.Ratio, rng)
		resizeBox(dst, img, top, left, ch, cw, s, s)
	} else {
		rs := p.ResizeTo
		if rs == 0 {
			rs = s
		}
		rh, rw := rs, rs
		if img.H < img.W {
			rw = rs * img.W / img.H
		} else if img.W < img.H {
			rh = rs * img.H / img.W
		}
		if rh == s && rw == s {
			resizeBox(dst, img, 0, 0, img.H, img.W, s, s)
		} else {
			tmp := make([]float32, c*rh*rw)
			resizeBox(tmp, img, 0, 0, img.H, img.W, rh, rw)
			top := int(math.RoundToEven(float64(rh-s) / 2))
			left := int(math.RoundToEven(float64(rw-s) / 2))
			for k := range c {
				for y := range s {
					copy(dst[(k*s+y)*s:(k*s+y+1)*s], tmp[(k*rh+top+y)*rw+left:])
				}
			}
		}
	}
	if p.HorizontalFlip && rng.Float64() < 0.5 {
		flipRows(dst, c*s, s)
	}
	if p.ColorJitter > 0 {
		colorJitter(dst, c, s*s, p.ColorJitter, rng)
	}
	normalize(dst, c, s*s, p.Mean, p.Std)
	return nil
}

// CropBox draws a RandomResizedCrop box (torchvision's get_params) for an
// h x w image: up to 10 attempts of area fraction ~ U(scale) and log-uniform
// aspect ratio w/h in ratio, rounded half to even; if none fits, the centre
// crop of the whole image clamped to the ratio range.
func CropBox(h, w int, scale, ratio [2]float64, rng *rand.Rand) (top, left, ch, cw int) {
	area := float64(h * w)
	lo, hi := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * (scale[0] + (scale[1]-scale[0])*rng.Float64())
		ar := math.Exp(lo + (hi-lo)*rng.Float64())
		cw = int(math.RoundToEven(math.Sqrt(target * ar)))
		ch = int(math.RoundToEven(math.Sqrt(target / ar)))
		if cw > 0 && cw <= w && ch > 0 && ch <= h {
			top = rng.IntN(h - ch + 1)
			left = rng.IntN(w - cw + 1)
			return top, left, ch, cw
		}
	}
	in := float64(w) / float64(h)
	switch {
	case in < ratio[0]:
		cw = w
		ch = int(math.RoundToEven(float64(cw) / ratio[0]))
	case in > ratio[1]:
		ch = h
		cw = int(math.RoundToEven(float64(ch) * ratio[1]))
	default:
		cw, ch = w, h
	}
	return (h - ch) / 2, (w - cw) / 2, ch, cw
}

// filterTaps holds, per output coordinate, the first input index and the
// normalised weights of the antialiased bilinear (triangle) filter.
type filterTaps struct {
	start []int
	wts   [][]float32
}

// triangleTaps computes PIL's bilinear resampling taps from an input range
// of n pixels to out pixels (support widened by the scale when downscaling).
func triangleTaps(n, out int) filterTaps {
	scale := float64(n) / float64(out)
	fs := max(scale, 1)
	support := fs
	t := filterTaps{start: make([]int, out), wts: make([][]float32, out)}
	for o := range out {
		center := (float64(o) + 0.5) * scale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), n)
		w := make([]float32, 0, xmax-xmin)
		var sum float64
		for x := xmin; x < xmax; x++ {
			v := 1 - math.Abs((float64(x)-center+0.5)/fs)
			v = max(v, 0)
			w = append(w, float32(v))
			sum += v
		}
		if sum > 0 {
			for i := range w {
				w[i] = float32(float64(w[i]) / sum)
			}
		}
		t.start[o], t.wts[o] = xmin, w
	}
	return t
}

// resizeBox resamples the box (top, left, bh, bw) of src to oh x ow into dst
// ([src.C, oh, ow]).
func resizeBox(dst []float32, src Image, top, left, bh, bw, oh, ow int) {
	if bh == oh && bw == ow {
		for c := range src.C {
			for y := range oh {
				copy(dst[(c*oh+y)*ow:(c*oh+y+1)*ow], src.Pix[(c*src.H+top+y)*src.W+left:])
			}
		}
		return
	}
	hx := triangleTaps(bw, ow)
	vy := triangleTaps(bh, oh)
	tmp := make([]float32, bh*ow) // one channel after the horizontal pass: [bh, ow]
	for c := range src.C {
		for y := range bh {
			row := src.Pix[(c*src.H+top+y)*src.W+left : (c*src.H+top+y)*src.W+left+bw]
			for x := range ow {
				var acc float32
				for k, w := range hx.wts[x] {
					acc += w * row[hx.start[x]+k]
				}
				tmp[y*ow+x] = acc
			}
		}
		plane := dst[c*oh*ow : (c+1)*oh*ow]
		for y := range oh {
			out := plane[y*ow : (y+1)*ow]
			clear(out)
			for k, w := range vy.wts[y] {
				in := tmp[(vy.start[y]+k)*ow : (vy.start[y]+k+1)*ow]
				for x := range ow {
					out[x] += w * in[x]
				}
			}
		}
	}
}

// flipRows mirrors each of rows rows of width w in place.
func flipRows(p []float32, rows, w int) {
	for r := range rows {
		row := p[r*w : (r+1)*w]
		for i, j := 0, w-1; i < j; i, j = i+1, j-1 {
			row[i], row[j] = row[j], row[i]
		}
	}
}

// colorJitter applies brightness, contrast and saturation factors drawn from
// U[max(0, 1-s), 1+s], in a random order, clamping to [0, 1] after each (as
// torchvision's ColorJitter on float tensors). x: [c, n].
func colorJitter(x []float32, c, n int, s float64, rng *rand.Rand) {
	order := rng.Perm(3)
	draw := func() float32 { return float32(max(0, 1-s) + (1+s-max(0, 1-s))*rng.Float64()) }
	fb, fc, fs := draw(), draw(), draw()
	for _, op := range order {
		switch op {
		case 0:
			blend(x, nil, fb)
		case 1:
			g := luma(x, c, n)
			var mean float64
			for _, v := range g {
				mean += float64(v)
			}
			m := float32(mean / float64(n))
			for i := range x {
				x[i] = clamp01(fc*x[i] + (1-fc)*m)
			}
		case 2:
			if c == 3 {
				g := luma(x, c, n)
				for k := range 3 {
					blend(x[k*n:(k+1)*n], g, fs)
				}
			}
		}
	}
}

// blend sets x = clamp(f*x + (1-f)*other), other nil meaning zero.
func blend(x, other []float32, f float32) {
	for i := range x {
		v := f * x[i]
		if other != nil {
			v += (1 - f) * other[i]
		}
		x[i] = clamp01(v)
	}
}

// luma is the grey plane of x ([c, n]): itself for c == 1, ITU-R 601-2 for RGB.
func luma(x []float32, c, n int) []float32 {
	g := make([]float32, n)
	if c == 1 {
		copy(g, x)
		return g
	}
	for i := range n {
		g[i] = 0.299*x[i] + 0.587*x[n+i] + 0.114*x[2*n+i]
	}
	return g
}

func clamp01(v float32) float32 { return min(1, max(0, v)) }

// normalize applies (x - mean[c]) / std[c] per channel of x ([c, n]).
func normalize(x []float32, c, n int, mean, std []float32) {
	if len(mean) == 0 {
		return
	}
	for k := range c {
		m, s := mean[0], std[0]
		if len(mean) > 1 {
			m, s = mean[k], std[k]
		}
		inv := 1 / s
		for i := k * n; i < (k+1)*n; i++ {
			x[i] = (x[i] - m) * inv
		}
	}
}

// Views applies T to the same image N times with successive draws from the
// sample's rng: N independently augmented views, written one after the
// other ([N*C, H, W]). Two views give joint-embedding terms (VICReg's
// invariance) a second look at every image.
type Views struct {
	T Transform
	N int
}

// OutShape is [N*C, H, W].
func (v Views) OutShape() (c, h, w int) {
	c, h, w = v.T.OutShape()
	return v.N * c, h, w
}

// Apply writes the N views of img into dst.
func (v Views) Apply(dst []float32, img Image, rng *rand.Rand) error {
	c, h, w := v.T.OutShape()
	n := c * h * w
	if len(dst) < v.N*n {
		return fmt.Errorf("transform: %d views of %d values into %d", v.N, n, len(dst))
	}
	for i := 0; i < v.N; i++ {
		if err := v.T.Apply(dst[i*n:(i+1)*n], img, rng); err != nil {
			return err
		}
	}
	return nil
}
