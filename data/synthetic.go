package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Synthetic is a generated dataset with learnable structure: image i has
// label i mod Classes; its class fixes the orientation and frequency of a
// sinusoidal grating, a colour tint and the kind of shape (disc or square)
// drawn over it, while position, phase, shape size and pixel noise vary per
// image. Images are generated on Get, deterministically from (seed, i).
type Synthetic struct {
	info    Info
	seed    int64
	classes []string
}

// NewSynthetic makes n images of channels x size x size in the given number
// of classes.
func NewSynthetic(n, classes, channels, size int, seed int64) (*Synthetic, error) {
	if n <= 0 || classes <= 0 || size <= 0 || (channels != 1 && channels != 3) {
		return nil, fmt.Errorf("synthetic dataset: need n > 0, classes > 0, size > 0 and channels 1 or 3; got n=%d classes=%d size=%d channels=%d", n, classes, size, channels)
	}
	names := make([]string, classes)
	for i := range names {
		names[i] = fmt.Sprintf("class_%d", i)
	}
	return &Synthetic{
		info:    Info{Format: "synthetic", Split: "train", Count: n, Channels: channels, Height: size, Width: size},
		seed:    seed,
		classes: names,
	}, nil
}

// Len is the number of images.
func (d *Synthetic) Len() int { return d.info.Count }

// Classes are class_0 .. class_{K-1}.
func (d *Synthetic) Classes() []string { return d.classes }

// Info describes the dataset.
func (d *Synthetic) Info() Info { return d.info }

// Get generates image i.
func (d *Synthetic) Get(i int) (Image, int, error) {
	if i < 0 || i >= d.info.Count {
		return Image{}, 0, fmt.Errorf("synthetic: index %d out of range [0, %d)", i, d.info.Count)
	}
	k := len(d.classes)
	label := i % k
	rng := rand.New(rand.NewPCG(uint64(d.seed), mix64(0x5e17, uint64(i))))
	s := d.info.Height
	m := NewImage(d.info.Channels, s, s)

	theta := math.Pi * float64(label) / float64(k)
	freq := 1.5 + float64(label%4)
	phase := 2 * math.Pi * rng.Float64()
	ct, st := math.Cos(theta), math.Sin(theta)
	// Shape: a disc for even classes, a square for odd ones.
	r := float64(s) * (0.15 + 0.1*rng.Float64())
	cx := r + rng.Float64()*(float64(s)-2*r)
	cy := r + rng.Float64()*(float64(s)-2*r)
	square := label%2 == 1
	for c := range m.C {
		tint := 0.6 + 0.4*math.Cos(2*math.Pi*(float64(label)/float64(k)+float64(c)/3))
		plane := m.Pix[c*s*s : (c+1)*s*s]
		for y := range s {
			for x := range s {
				u := (float64(x)*ct + float64(y)*st) / float64(s)
				v := 0.5 + 0.25*math.Sin(2*math.Pi*freq*u+phase)
				dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
				inside := dx*dx+dy*dy <= r*r
				if square {
					inside = math.Abs(dx) <= r && math.Abs(dy) <= r
				}
				if inside {
					v = 1 - 0.3*v
				}
				v = v*tint + 0.05*rng.NormFloat64()
				plane[y*s+x] = float32(min(1, max(0, v)))
			}
		}
	}
	return m, label, nil
}

// mix64 hashes two words into one (splitmix64 finaliser over a combination);
// it derives independent PCG stream ids.
func mix64(a, b uint64) uint64 {
	z := a*0x9e3779b97f4a7c15 ^ (b + 0x632be59bd9b4e019 + (a << 6) + (a >> 2))
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
