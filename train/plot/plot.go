// Package plot draws training curves as PNG line charts with
// gonum.org/v1/plot: real fonts, a title, labelled axes with units, one
// colour per series with a legend, and a log y axis for losses and gradient
// norms whose ticks stay readable however few decades the data spans.
// Non-finite points (and non-positive ones on a log axis) are left out,
// never errors.
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Palette is the colour cycle of series without their own Color (matplotlib's
// tab10, which readers of PyTorch training plots know).
var Palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // blue
	{0xff, 0x7f, 0x0e, 0xff}, // orange
	{0x2c, 0xa0, 0x2c, 0xff}, // green
	{0xd6, 0x27, 0x28, 0xff}, // red
	{0x94, 0x67, 0xbd, 0xff}, // purple
	{0x8c, 0x56, 0x4b, 0xff}, // brown
	{0xe3, 0x77, 0xc2, 0xff}, // pink
	{0x7f, 0x7f, 0x7f, 0xff}, // grey
	{0xbc, 0xbd, 0x22, 0xff}, // olive
	{0x17, 0xbe, 0xcf, 0xff}, // cyan
}

// Default image size in pixels.
const (
	DefaultWidth  = 800
	DefaultHeight = 500
)

// dpi relates the chart's pixels to gonum/plot's lengths (points).
const dpi = 96

// Series is one line. X and Y have the same length.
type Series struct {
	Name string
	X, Y []float64
	// Color overrides the palette colour when its alpha is non-zero.
	Color color.RGBA
}

// LineChart is a chart of one or more series sharing the axes.
type LineChart struct {
	Title, XLabel, YLabel string
	Series                []Series
	// LogY uses a base-10 y axis; points with y <= 0 are left out.
	LogY bool
	// Width and Height in pixels; zero means DefaultWidth × DefaultHeight.
	Width, Height int
}

// SeriesColor is the colour series i of c is drawn in.
func (c *LineChart) SeriesColor(i int) color.RGBA {
	if c.Series[i].Color.A != 0 {
		return c.Series[i].Color
	}
	return Palette[i%len(Palette)]
}

func (c *LineChart) size() (int, int) {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = DefaultWidth
	}
	if h <= 0 {
		h = DefaultHeight
	}
	return w, h
}

// usable reports whether (x, y) can be drawn on the chart's axes.
func (c *LineChart) usable(x, y float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) {
		return false
	}
	return !c.LogY || y > 0
}

// Render draws the chart.
func (c *LineChart) Render() (*image.RGBA, error) {
	p := gplot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	drawn := 0
	y0, y1 := math.Inf(1), math.Inf(-1)
	for i, s := range c.Series {
		var pts plotter.XYs
		for k := range min(len(s.X), len(s.Y)) {
			if c.usable(s.X[k], s.Y[k]) {
				pts = append(pts, plotter.XY{X: s.X[k], Y: s.Y[k]})
				y0, y1 = math.Min(y0, s.Y[k]), math.Max(y1, s.Y[k])
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", s.Name, err)
		}
		l.Color = c.SeriesColor(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		if len(pts) == 1 { // a lone point is no line: mark it
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, err
			}
			sc.Color, sc.Shape = l.Color, draw.CircleGlyph{}
			p.Add(sc)
		}
		if len(c.Series) > 1 {
			p.Legend.Add(s.Name, l)
		}
		drawn++
	}
	if drawn == 0 {
		p.X.Min, p.X.Max = 0, 1
		y0, y1 = 0.1, 1
		p.Title.Text += " (no data to draw)"
	}
	if y0 == y1 { // one value: give it room
		if c.LogY {
			y0, y1 = y0/2, y1*2
		} else {
			y0, y1 = y0-math.Max(1, math.Abs(y0)/10), y1+math.Max(1, math.Abs(y1)/10)
		}
	}
	p.Y.Min, p.Y.Max = y0, y1 // the drawn points' range, padded above
	if c.LogY {
		p.Y.Scale = gplot.LogScale{}
		p.Y.Tick.Marker = LogTicks{}
	}
	w, h := c.size()
	canvas := vgimg.NewWith(vgimg.UseWH(vg.Length(w)*vg.Inch/dpi, vg.Length(h)*vg.Inch/dpi), vgimg.UseDPI(dpi))
	dc := draw.New(canvas)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(dc)
	img, ok := canvas.Image().(*image.RGBA)
	if !ok {
		return nil, fmt.Errorf("plot: the canvas is a %T, not an RGBA image", canvas.Image())
	}
	return img, nil
}

// LogTicks labels a log axis readably: powers of ten (every other one past
// six decades) with unlabelled minor ticks when the data spans several
// decades; 1-2-5 multiples, or every digit, when it spans about one or
// less, so a loss going from 0.9 to 0.3 still gets labelled ticks.
type LogTicks struct{}

// Ticks implements gonum/plot's Ticker.
func (LogTicks) Ticks(lo, hi float64) []gplot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	e0, e1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	// ticks places a tick at m x 10^e for every m of mults inside the range,
	// labelled where label says, and counts the labels.
	ticks := func(mults []float64, label func(m float64, e int) bool) (out []gplot.Tick, labelled int) {
		for e := e0; e <= e1; e++ {
			for _, m := range mults {
				v := m * math.Pow(10, float64(e))
				if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
					continue
				}
				t := gplot.Tick{Value: v}
				if label(m, e) {
					t.Label = formatTick(v)
					labelled++
				}
				out = append(out, t)
			}
		}
		return out, labelled
	}
	digits := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}
	if e1-e0 > 2 {
		step := 1
		if e1-e0 > 6 {
			step = 2
		}
		out, _ := ticks(digits, func(m float64, e int) bool { return m == 1 && (e-e0)%step == 0 })
		return out
	}
	if out, n := ticks(digits, func(m float64, _ int) bool { return m == 1 || m == 2 || m == 5 }); n >= 3 {
		return out
	}
	if out, n := ticks([]float64{1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9}, func(float64, int) bool { return true }); n >= 3 {
		return out
	}
	// Less than a factor of ~1.5: three evenly spaced labels.
	var out []gplot.Tick
	for i := range 3 {
		v := lo * math.Pow(hi/lo, float64(i)/2)
		out = append(out, gplot.Tick{Value: v, Label: formatTick(v)})
	}
	return out
}

func formatTick(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }

// WritePNG renders the chart and writes it to path atomically: a temporary
// file in the same directory, synced, then renamed over path.
func (c *LineChart) WritePNG(path string) error {
	img, err := c.Render()
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		return fmt.Errorf("plot %s: encode: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
