package progress

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newBar(buf *bytes.Buffer, total int64, term bool) (*Bar, *fakeClock) {
	c := &fakeClock{t: time.Unix(1700000000, 0)}
	b := New(buf, total, term)
	b.Now = c.now
	return b, c
}

// lastFrame is the text after the final \r, without padding.
func lastFrame(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimRight(s[strings.LastIndex(s, "\r")+1:], " ")
}

func TestRenderedLine(t *testing.T) {
	var buf bytes.Buffer
	b, clk := newBar(&buf, 100, true)
	b.Width = 10
	b.Update(0)
	if got, want := lastFrame(buf.String()), "0/100 [>         ]   0% ETA --:--"; got != want {
		t.Fatalf("first frame %q, want %q", got, want)
	}
	// 42 steps in 10 s: 4.2 it/s, 58 steps left: 13.8 s.
	clk.advance(10 * time.Second)
	b.Update(42, F("loss", 0.12344), F("lr", 1e-4))
	want := "42/100 [====>     ]  42% loss 0.1234 lr 1.0e-04 4.2 it/s ETA 00:14"
	if got := lastFrame(buf.String()); got != want {
		t.Fatalf("frame %q, want %q", got, want)
	}
	if !strings.HasPrefix(buf.String(), "\r") || strings.Count(buf.String(), "\r") != 2 {
		t.Fatalf("output %q: want two \\r-led frames", buf.String())
	}
	clk.advance(20 * time.Second)
	b.Update(100, Field{Name: "loss", Value: 0.05, Format: "%.3f"})
	b.Finish()
	out := buf.String()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("Finish should end the line once: %q", out)
	}
	if got := lastFrame(out); !strings.HasPrefix(got, "100/100 [==========] 100% loss 0.050 ") || !strings.HasSuffix(got, "ETA 00:00") {
		t.Fatalf("final frame %q", got)
	}
}

func TestShorterLineBlanksLeftovers(t *testing.T) {
	var buf bytes.Buffer
	b, clk := newBar(&buf, 0, true)
	b.Update(1, F("loss", 12345.678), F("extra", 1))
	first := len(buf.String())
	buf.Reset()
	clk.advance(time.Second)
	b.Update(2)
	frame := buf.String()[1:] // drop \r
	if len(frame) < first-1 {
		t.Fatalf("second frame %q shorter than the first (%d): leftovers stay on screen", frame, first-1)
	}
	if got := strings.TrimRight(frame, " "); got != "2 1.0 it/s" {
		t.Fatalf("unknown-total frame %q", got)
	}
}

func TestRateLimitedRedraws(t *testing.T) {
	var buf bytes.Buffer
	b, clk := newBar(&buf, 10000, true)
	b.MinInterval = 100 * time.Millisecond
	for step := int64(0); step < 1000; step++ {
		b.Update(step)
		clk.advance(10 * time.Millisecond) // 100 it/s
	}
	// 10 s of updates at one frame per 100 ms: the first frame plus ~99.
	if n := strings.Count(buf.String(), "\r"); n < 95 || n > 101 {
		t.Fatalf("%d redraws for 1000 updates over 10 s, want about 100", n)
	}
	if r := b.Rate(); math.Abs(r-100) > 1e-6 {
		t.Fatalf("rate %v, want 100", r)
	}
	// The last step always draws, even inside the interval.
	before := strings.Count(buf.String(), "\r")
	b.Update(10000)
	if strings.Count(buf.String(), "\r") != before+1 {
		t.Fatal("final step was not drawn")
	}
}

func TestRateEMA(t *testing.T) {
	var buf bytes.Buffer
	b, clk := newBar(&buf, 1000, true)
	b.MinInterval = time.Second
	b.Update(100) // resumed at step 100: the rate starts from here
	clk.advance(time.Second)
	b.Update(110) // 10 it/s
	if b.Rate() != 10 {
		t.Fatalf("first rate %v, want 10", b.Rate())
	}
	clk.advance(time.Second)
	b.Update(130) // 20 it/s sample: EMA 0.3*20 + 0.7*10 = 13
	if math.Abs(b.Rate()-13) > 1e-9 {
		t.Fatalf("rate %v, want 13", b.Rate())
	}
	// ETA = (1000-130)/13 = 66.9 s.
	if got := lastFrame(buf.String()); !strings.HasSuffix(got, "13.0 it/s ETA 01:07") {
		t.Fatalf("frame %q", got)
	}
}

func TestNotTerminalPrintsNothing(t *testing.T) {
	var buf bytes.Buffer
	b, clk := newBar(&buf, 100, false)
	for step := int64(0); step <= 100; step++ {
		b.Update(step, F("loss", 1))
		clk.advance(time.Second)
	}
	b.Finish()
	if buf.Len() != 0 {
		t.Fatalf("wrote %q to a non-terminal", buf.String())
	}
	// The state is still tracked, for a caller that wants Line.
	if b.Rate() != 1 || !strings.HasPrefix(b.Line(), "100/100") {
		t.Fatalf("rate %v line %q", b.Rate(), b.Line())
	}
}

func TestFieldFormats(t *testing.T) {
	cases := map[Field]string{
		F("loss", 0.12344):      "loss 0.1234",
		F("lr", 1e-4):           "lr 1.0e-04",
		F("lr", 0.001):          "lr 1.0e-03",
		F("grad_norm", 12.3456): "grad_norm 12.35",
		F("x", 0):               "x 0",
		F("big", 2.5e6):         "big 2.5e+06",
		F("nan", math.NaN()):    "nan NaN",
		{Name: "ema", Value: 0.9965, Format: "%.4f"}: "ema 0.9965",
	}
	for f, want := range cases {
		if got := f.String(); got != want {
			t.Errorf("%+v: %q, want %q", f, got, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := map[float64]string{0: "00:00", 83: "01:23", 3599.4: "59:59", 3600: "1:00:00", 90061: "25:01:01", 1e12: "--:--"}
	for sec, want := range cases {
		if got := formatDuration(sec); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", sec, got, want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if IsTerminal(devnull) {
		t.Error("/dev/null is a terminal")
	}
	if IsTerminal(nil) {
		t.Error("nil is a terminal")
	}
}

// A log line written to the Console while the bar is shown blanks the bar,
// appears on its own line, and the bar is drawn again below it.
func TestConsoleKeepsLogLinesOffTheBar(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out)
	b := New(c, 10, true)
	now := time.Unix(0, 0)
	b.Now = func() time.Time { return now }
	b.Update(1)
	bar := b.Line()
	if _, err := c.Write([]byte("INFO validation\n")); err != nil {
		t.Fatal(err)
	}
	want := "\r" + bar + "\r" + strings.Repeat(" ", len(bar)) + "\rINFO validation\n\r" + bar
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
	b.Finish()
	out.Reset()
	if _, err := c.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "after\n" {
		t.Fatalf("after Finish: %q", out.String())
	}
}
