// Package progress draws a one-line terminal progress bar for training:
//
//	120/1000 [===>                          ] 12% loss 0.1234 lr 1.0e-04 3.2 it/s ETA 04:35
//
// redrawn in place with \r at most every MinInterval, with a smoothed
// (exponential moving average) step rate and ETA. On a writer that is not a
// terminal the bar prints nothing: the trainer logs lines instead.
package progress

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// Field is one named value shown after the bar. Format is a fmt verb such as
// "%.4f"; empty picks one from the magnitude (see F).
type Field struct {
	Name   string
	Value  float64
	Format string
}

// F is a field with the automatic format: four significant digits for values
// in [0.01, 1e5) and scientific notation with one decimal otherwise
// ("loss 0.1234", "lr 1.0e-04").
func F(name string, v float64) Field { return Field{Name: name, Value: v} }

func (f Field) String() string {
	if f.Format != "" {
		return f.Name + " " + fmt.Sprintf(f.Format, f.Value)
	}
	a := math.Abs(f.Value)
	switch {
	case f.Value == 0:
		return f.Name + " 0"
	case math.IsNaN(f.Value) || math.IsInf(f.Value, 0):
		return f.Name + " " + fmt.Sprint(f.Value)
	case a >= 0.01 && a < 1e5:
		return f.Name + " " + fmt.Sprintf("%.4g", f.Value)
	default:
		return f.Name + " " + fmt.Sprintf("%.1e", f.Value)
	}
}

// Defaults.
const (
	DefaultMinInterval = 100 * time.Millisecond
	DefaultBarWidth    = 30
	// rateAlpha weighs the newest rate sample in the EMA.
	rateAlpha = 0.3
)

// Bar is a progress bar. It is not safe for concurrent use: the training loop
// owns it.
type Bar struct {
	w          io.Writer
	total      int64
	isTerminal bool

	// Now is the clock; tests replace it.
	Now func() time.Time
	// MinInterval is the least time between redraws.
	MinInterval time.Duration
	// Width is the number of cells inside the brackets.
	Width int

	started    bool
	lastDraw   time.Time
	sampleTime time.Time // start of the current rate sample
	sampleStep int64
	rate       float64 // steps/s, EMA; 0 until the first sample
	step       int64
	fields     []Field
	lastLen    int // visible length of the last line, to blank leftovers
	err        error
}

// New is a bar for steps up to total (total <= 0: unknown, no bar or ETA).
// Set isTerminal from IsTerminal(os.Stdout); when false the bar prints nothing.
// When w is a *Console, log lines written to the same Console appear above
// the bar.
func New(w io.Writer, total int64, isTerminal bool) *Bar {
	return &Bar{
		w: w, total: total, isTerminal: isTerminal,
		Now: time.Now, MinInterval: DefaultMinInterval, Width: DefaultBarWidth,
	}
}

// IsTerminal reports whether f is a terminal (a character device that accepts
// terminal ioctls).
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	return isTTY(f)
}

// Rate is the smoothed steps per second (0 before two samples).
func (b *Bar) Rate() float64 { return b.rate }

// Err is the first write error, if any; drawing stops after it.
func (b *Bar) Err() error { return b.err }

// Update records that step is done and redraws when MinInterval has passed
// since the last redraw (or on the last step). The first call only starts the
// clock, so a resumed run's rate counts from where it resumed.
func (b *Bar) Update(step int64, fields ...Field) {
	now := b.Now()
	b.step = step
	b.fields = append(b.fields[:0], fields...)
	if !b.started {
		b.started = true
		b.sampleTime, b.sampleStep = now, step
		b.draw(now)
		return
	}
	last := b.total > 0 && step >= b.total
	if now.Sub(b.lastDraw) < b.MinInterval && !last {
		return
	}
	b.sample(now)
	b.draw(now)
}

// sample folds the steps since the last sample into the rate EMA.
func (b *Bar) sample(now time.Time) {
	dt := now.Sub(b.sampleTime).Seconds()
	if dt <= 0 || b.step <= b.sampleStep {
		return
	}
	r := float64(b.step-b.sampleStep) / dt
	if b.rate == 0 {
		b.rate = r
	} else {
		b.rate = rateAlpha*r + (1-rateAlpha)*b.rate
	}
	b.sampleTime, b.sampleStep = now, b.step
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish() {
	if !b.started {
		return
	}
	now := b.Now()
	b.sample(now)
	b.draw(now)
	if c, ok := b.w.(*Console); ok && b.isTerminal && b.err == nil {
		b.err = c.endBar()
	} else if b.isTerminal && b.err == nil {
		_, b.err = io.WriteString(b.w, "\n")
	}
	b.started = false
}

// Line is the bar's text for the current state, without \r or padding.
func (b *Bar) Line() string {
	var s strings.Builder
	if b.total > 0 {
		frac := math.Min(1, math.Max(0, float64(b.step)/float64(b.total)))
		fmt.Fprintf(&s, "%d/%d [%s] %3d%%", b.step, b.total, barCells(frac, b.Width), int(frac*100))
	} else {
		fmt.Fprintf(&s, "%d", b.step)
	}
	for _, f := range b.fields {
		s.WriteString(" ")
		s.WriteString(f.String())
	}
	if b.rate > 0 {
		fmt.Fprintf(&s, " %s it/s", formatRate(b.rate))
		if b.total > 0 {
			remaining := float64(b.total-b.step) / b.rate
			fmt.Fprintf(&s, " ETA %s", formatDuration(math.Max(0, remaining)))
		}
	} else if b.total > 0 {
		s.WriteString(" ETA --:--")
	}
	return s.String()
}

func (b *Bar) draw(now time.Time) {
	b.lastDraw = now
	if !b.isTerminal || b.err != nil {
		return
	}
	line := b.Line()
	if c, ok := b.w.(*Console); ok {
		b.err = c.drawBar(line)
		return
	}
	pad := max(0, b.lastLen-len(line))
	b.lastLen = len(line)
	_, b.err = io.WriteString(b.w, "\r"+line+strings.Repeat(" ", pad))
}

// barCells is "=====>    " filled to frac of width.
func barCells(frac float64, width int) string {
	filled := int(frac * float64(width))
	if filled >= width {
		return strings.Repeat("=", width)
	}
	return strings.Repeat("=", filled) + ">" + strings.Repeat(" ", width-filled-1)
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 1:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.2f", r)
	}
}

// formatDuration is MM:SS, or H:MM:SS from an hour on.
func formatDuration(sec float64) string {
	if sec > 1e8 {
		return "--:--"
	}
	t := int64(math.Round(sec))
	h, m, s := t/3600, t/60%60, t%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", m, s)
}
