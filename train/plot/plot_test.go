package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gplot "gonum.org/v1/plot"
)

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}

// countColor counts the pixels of colour c inside r.
func countColor(img image.Image, r image.Rectangle, c color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == c {
				n++
			}
		}
	}
	return n
}

func TestWritePNGSeriesColours(t *testing.T) {
	var x, a, b []float64
	for i := range 200 {
		x = append(x, float64(i))
		a = append(a, math.Sin(float64(i)/20))
		b = append(b, math.Cos(float64(i)/20)*2)
	}
	chart := LineChart{
		Title: "Sine and cosine", XLabel: "step", YLabel: "value",
		Series: []Series{{Name: "sin", X: x, Y: a}, {Name: "cos", X: x, Y: b}},
		Width:  640, Height: 400,
	}
	path := filepath.Join(t.TempDir(), "sub", "chart.png")
	if err := chart.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, path)
	if got := img.Bounds().Size(); got != image.Pt(640, 400) {
		t.Fatalf("size %v, want 640x400", got)
	}
	for i := range chart.Series {
		if n := countColor(img, img.Bounds(), chart.SeriesColor(i)); n < 200 {
			t.Errorf("series %d: %d pixels of its colour", i, n)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only chart.png", len(entries))
	}
}

func TestLogYWithZerosNegativesAndNaN(t *testing.T) {
	cases := map[string][]float64{
		"mixed":        {1, 0.5, 0, -1, math.NaN(), 0.01, math.Inf(1), 1e-4},
		"all-invalid":  {0, -1, math.NaN()},
		"single-point": {0.3},
		"constant":     {2, 2, 2},
		"empty":        {},
	}
	for name, y := range cases {
		t.Run(name, func(t *testing.T) {
			x := make([]float64, len(y))
			for i := range x {
				x[i] = float64(i)
			}
			chart := LineChart{Title: name, LogY: true, Series: []Series{{Name: "loss", X: x, Y: y}}}
			path := filepath.Join(t.TempDir(), "loss.png")
			if err := chart.WritePNG(path); err != nil {
				t.Fatal(err)
			}
			img := decodePNG(t, path)
			if img.Bounds().Dx() != DefaultWidth || img.Bounds().Dy() != DefaultHeight {
				t.Fatalf("size %v", img.Bounds())
			}
			valid := 0
			for _, v := range y {
				if v > 0 && !math.IsInf(v, 0) {
					valid++
				}
			}
			n := countColor(img, img.Bounds(), chart.SeriesColor(0))
			if valid > 0 && n == 0 {
				t.Errorf("%d drawable points but no series pixels", valid)
			}
			if valid == 0 && n != 0 {
				t.Errorf("no drawable points but %d series pixels", n)
			}
		})
	}
}

// A log axis gets at least three labelled ticks, inside the range, however
// narrow or wide the range.
func TestLogTicksReadable(t *testing.T) {
	for _, r := range [][2]float64{{3e-4, 2.5}, {0.28, 0.95}, {0.41, 0.47}, {1e-9, 10}, {0.9, 1.1}, {2, 2000}} {
		var labels []string
		for _, tk := range (LogTicks{}).Ticks(r[0], r[1]) {
			if tk.Value < r[0]*(1-1e-9) || tk.Value > r[1]*(1+1e-9) {
				t.Errorf("%v: tick %v outside the range", r, tk.Value)
			}
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			}
		}
		if len(labels) < 3 {
			t.Errorf("%v: labelled ticks %v, want at least 3", r, labels)
		}
		t.Logf("%v: %v", r, labels)
	}
	if got := fmt.Sprint(labelsOf((LogTicks{}).Ticks(3e-4, 2.5))); got != "[0.001 0.01 0.1 1]" {
		t.Errorf("3e-4..2.5: %s", got)
	}
}

func labelsOf(ticks []gplot.Tick) []string {
	var out []string
	for _, tk := range ticks {
		if tk.Label != "" {
			out = append(out, tk.Label)
		}
	}
	return out
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFromJSONL(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for step := 1; step <= 50; step++ {
		l0, l1, l2 := 1/float64(step), 0.5/float64(step), 0.25/float64(step)
		fmt.Fprintf(&b, `{"step":%d,"epoch":0,"loss":%g,"loss_l0":%g,"loss_l1":%g,"loss_l2":%g,"lr":%g,"grad_norm":%g,"step_ms":12.5,"note":"x"}`+"\n",
			step, l0+l1+l2, l0, l1, l2, 1e-4*float64(step)/50, 2.0)
		if step%10 == 0 {
			fmt.Fprintf(&b, `{"step":%d,"val_loss":%g,"rankme":null}`+"\n", step, 1/float64(step))
		}
	}
	b.WriteString("\n") // a trailing blank line is fine
	metrics := writeFile(t, dir, "metrics.jsonl", b.String())
	out := filepath.Join(dir, "plots")
	if err := FromJSONL(metrics, out, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"loss.png", "loss_levels.png", "lr.png", "grad_norm.png", "step_ms.png", "val_loss.png", "rankme.png"} {
		img := decodePNG(t, filepath.Join(out, name))
		if img.Bounds().Dx() != DefaultWidth {
			t.Errorf("%s: width %d", name, img.Bounds().Dx())
		}
	}
	// wd and feature_std are absent: skipped, not errors.
	if _, err := os.Stat(filepath.Join(out, "wd.png")); !os.IsNotExist(err) {
		t.Errorf("wd.png exists or stat failed: %v", err)
	}
	// The per-level chart has one colour per level.
	img := decodePNG(t, filepath.Join(out, "loss_levels.png"))
	for i := range 3 {
		if n := countColor(img, img.Bounds(), Palette[i]); n < 50 {
			t.Errorf("loss_levels.png: level %d has %d pixels", i, n)
		}
	}

	m, err := ReadJSONL(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Steps) != 55 || len(m.Fields["val_loss"]) != 55 || len(m.Fields["loss"]) != 55 {
		t.Fatalf("rows %d, val_loss %d, loss %d; want 55 each", len(m.Steps), len(m.Fields["val_loss"]), len(m.Fields["loss"]))
	}
	if _, ok := m.Fields["note"]; ok {
		t.Error("string field became a column")
	}
	if !math.IsNaN(m.Fields["val_loss"][0]) || m.Fields["val_loss"][10] != 0.1 {
		t.Errorf("val_loss column misaligned: %v", m.Fields["val_loss"][:11])
	}
}

func TestFromJSONLErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, body string
		keys       []string
		want       string // substring of the error, after the file name
	}{
		{"empty.jsonl", "", nil, "empty.jsonl: no metrics records"},
		{"blank.jsonl", "\n\n  \n", nil, "blank.jsonl: no metrics records"},
		{"garbage.jsonl", `{"step":1,"loss":0.5}` + "\n" + `{"step":2,"loss":` + "\n", nil, "garbage.jsonl:2: not a JSON object"},
		{"nostep.jsonl", `{"step":1,"loss":0.5}` + "\n\n" + `{"loss":0.4}` + "\n", nil, `nostep.jsonl:3: missing "step"`},
		{"badstep.jsonl", `{"step":"one","loss":0.5}`, nil, `badstep.jsonl:1: "step" is one, not a number`},
		{"array.jsonl", `[1,2,3]`, nil, "array.jsonl:1: not a JSON object"},
		{"nokeys.jsonl", `{"step":1,"loss":0.5}`, []string{"acc"}, "none of the plot keys [acc] is a field; fields present: [loss]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, dir, c.name, c.body)
			err := FromJSONL(p, filepath.Join(dir, "plots"), c.keys)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), p) {
				t.Fatalf("err = %v, want it to start with the file path", err)
			}
		})
	}
	err := FromJSONL(filepath.Join(dir, "missing.jsonl"), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Fatalf("missing file: err = %v", err)
	}
}
