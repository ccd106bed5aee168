// Package plot draws training curves as PNG line charts with the standard
// library only: axes, gridlines, numeric tick labels in a built-in 5×7 bitmap
// font, a title, one colour per series with a legend, and an optional log-y
// axis for losses. Non-finite points (and non-positive ones on a log axis) are
// gaps in their line, never errors.
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
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

var (
	white     = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black     = color.RGBA{0x00, 0x00, 0x00, 0xff}
	gridColor = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// Default image size in pixels.
const (
	DefaultWidth  = 800
	DefaultHeight = 500
)

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
	// LogY uses a base-10 y axis; points with y <= 0 are skipped.
	LogY bool
	// Width and Height in pixels; zero means DefaultWidth × DefaultHeight.
	Width, Height int
}

// Plot-area margins in pixels: room for tick labels, axis labels and title.
const (
	marginLeft   = 78
	marginRight  = 20
	marginTop    = 36
	marginBottom = 46
)

// PlotArea is the rectangle inside the axes of a chart of the given size.
func PlotArea(width, height int) image.Rectangle {
	return image.Rect(marginLeft, marginTop, width-marginRight, height-marginBottom)
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

// dataRange is the range of the usable points; ok is false when none are.
func (c *LineChart) dataRange() (x0, x1, y0, y1 float64, ok bool) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range min(len(s.X), len(s.Y)) {
			x, y := s.X[i], s.Y[i]
			if !c.usable(x, y) {
				continue
			}
			x0, x1 = math.Min(x0, x), math.Max(x1, x)
			y0, y1 = math.Min(y0, y), math.Max(y1, y)
			ok = true
		}
	}
	return
}

// axis maps data values to pixels along one axis, on a linear or log scale.
type axis struct {
	lo, hi     float64 // in data units (log10 of them on a log axis)
	p0, p1     float64 // pixels of lo and hi
	log        bool
	ticks      []float64 // data units
	tickLabels []string
}

func (a *axis) pixel(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// niceStep is 1, 2 or 5 times a power of ten, near span/n.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f < 1.5:
		return mag
	case f < 3.5:
		return 2 * mag
	case f < 7.5:
		return 5 * mag
	default:
		return 10 * mag
	}
}

// linearAxis covers [lo, hi] with about n ticks; when extend is set the ends
// are rounded out to ticks (y), otherwise the data range is kept (x).
func linearAxis(lo, hi float64, n int, extend bool) axis {
	if hi <= lo {
		pad := math.Max(math.Abs(lo)*0.1, 0.5)
		lo, hi = lo-pad, hi+pad
	}
	step := niceStep(hi-lo, n)
	if extend {
		lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	}
	a := axis{lo: lo, hi: hi}
	for k := math.Ceil(lo / step); k*step <= hi+step*1e-9; k++ {
		v := k * step
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		a.ticks = append(a.ticks, v)
		a.tickLabels = append(a.tickLabels, formatTick(v))
	}
	return a
}

// logAxis covers [lo, hi] (both > 0) with whole decades, ticks at powers of
// ten (every few when there are many).
func logAxis(lo, hi float64) axis {
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	a := axis{lo: dlo, hi: dhi, log: true}
	every := math.Max(1, math.Ceil((dhi-dlo)/8))
	for d := dlo; d <= dhi; d += every {
		v := math.Pow(10, d)
		a.ticks = append(a.ticks, v)
		a.tickLabels = append(a.tickLabels, formatTick(v))
	}
	return a
}

// formatTick writes a tick value briefly: 0.25, 1500, 1e-05.
func formatTick(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Render draws the chart.
func (c *LineChart) Render() *image.RGBA {
	w, h := c.size()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	area := PlotArea(w, h)

	x0, x1, y0, y1, ok := c.dataRange()
	if !ok {
		x0, x1, y0, y1 = 0, 1, 0, 1
		if c.LogY {
			y0, y1 = 1, 10
		}
	}
	xa := linearAxis(x0, x1, max(2, area.Dx()/100), false)
	var ya axis
	if c.LogY {
		ya = logAxis(y0, y1)
	} else {
		ya = linearAxis(y0, y1, max(2, area.Dy()/60), true)
	}
	xa.p0, xa.p1 = float64(area.Min.X), float64(area.Max.X-1)
	ya.p0, ya.p1 = float64(area.Max.Y-1), float64(area.Min.Y)

	// Gridlines and tick labels.
	for i, v := range ya.ticks {
		py := int(math.Round(ya.pixel(v)))
		hline(img, area.Min.X, area.Max.X-1, py, gridColor)
		hline(img, area.Min.X-4, area.Min.X-1, py, black)
		lbl := ya.tickLabels[i]
		drawText(img, area.Min.X-6-textWidth(lbl, 1), py-glyphH/2, lbl, black, 1, false)
	}
	for i, v := range xa.ticks {
		px := int(math.Round(xa.pixel(v)))
		vline(img, px, area.Min.Y, area.Max.Y-1, gridColor)
		vline(img, px, area.Max.Y, area.Max.Y+3, black)
		lbl := xa.tickLabels[i]
		drawText(img, px-textWidth(lbl, 1)/2, area.Max.Y+6, lbl, black, 1, false)
	}
	// Axes box.
	hline(img, area.Min.X-1, area.Max.X, area.Min.Y-1, black)
	hline(img, area.Min.X-1, area.Max.X, area.Max.Y, black)
	vline(img, area.Min.X-1, area.Min.Y-1, area.Max.Y, black)
	vline(img, area.Max.X, area.Min.Y-1, area.Max.Y, black)

	// Title and axis labels.
	drawText(img, (w-textWidth(c.Title, 2))/2, 10, c.Title, black, 2, false)
	drawText(img, area.Min.X+(area.Dx()-textWidth(c.XLabel, 1))/2, h-14, c.XLabel, black, 1, false)
	ylabel := c.YLabel
	if c.LogY && ylabel != "" {
		ylabel += " (log)"
	}
	drawText(img, 6, area.Min.Y+(area.Dy()+textWidth(ylabel, 1))/2, ylabel, black, 1, true)

	// Series, clipped to the plot area; a gap breaks the line.
	clip := img.SubImage(area).(*image.RGBA)
	for i, s := range c.Series {
		col := c.SeriesColor(i)
		havePrev := false
		var px0, py0 int
		n := min(len(s.X), len(s.Y))
		for j := range n {
			x, y := s.X[j], s.Y[j]
			if !c.usable(x, y) {
				havePrev = false
				continue
			}
			px, py := int(math.Round(xa.pixel(x))), int(math.Round(ya.pixel(y)))
			if havePrev {
				thickLine(clip, px0, py0, px, py, col)
			} else {
				// Isolated points stay visible as a small square.
				isolated := j+1 >= n || !c.usable(s.X[j+1], s.Y[j+1])
				if isolated {
					for d := -1; d <= 1; d++ {
						hline(clip, px-1, px+1, py+d, col)
					}
				}
			}
			px0, py0, havePrev = px, py, true
		}
	}

	// Legend, when there is more than one series.
	if len(c.Series) > 1 {
		lx, ly := area.Max.X-8, area.Min.Y+8
		wmax := 0
		for _, s := range c.Series {
			wmax = max(wmax, textWidth(s.Name, 1))
		}
		lx -= wmax + 18
		bg := image.Rect(lx-4, ly-4, lx+wmax+18+4, ly+len(c.Series)*12)
		draw.Draw(img, bg, &image.Uniform{white}, image.Point{}, draw.Src)
		for i, s := range c.Series {
			yy := ly + i*12
			for d := 0; d < 3; d++ {
				hline(img, lx, lx+12, yy+2+d, c.SeriesColor(i))
			}
			drawText(img, lx+18, yy, s.Name, black, 1, false)
		}
	}
	return img
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		setPixel(img, x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		setPixel(img, x, y, c)
	}
}

// thickLine draws a 2-pixel-wide Bresenham line from (x0,y0) to (x1,y1).
func thickLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	steep := dx < -dy
	e := dx + dy
	for {
		setPixel(img, x0, y0, c)
		if steep {
			setPixel(img, x0+1, y0, c)
		} else {
			setPixel(img, x0, y0+1, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// WritePNG renders the chart and writes it to path atomically: a temporary
// file in the same directory, synced, then renamed over path.
func (c *LineChart) WritePNG(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := png.Encode(tmp, c.Render()); err != nil {
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
