package plot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultKeys are the charts FromJSONL draws when given no keys: the metrics
// the trainer writes to metrics.jsonl, with the per-level losses in one chart.
var DefaultKeys = []string{
	"loss", "jepa_loss", "vicreg", "loss_levels=loss_l*", "lr", "wd", "ema_momentum", "grad_norm", "grad_norm_terms=grad_norm_*", "step_ms",
	"val_loss", "rankme", "feature_std",
}

// Metrics is metrics.jsonl in columns: Steps[i] is the step of row i and
// Fields[name][i] its value (NaN where the row lacks it or holds null).
type Metrics struct {
	Steps  []float64
	Fields map[string][]float64
}

// ReadJSONL reads a metrics file: one JSON object per line, each with a
// numeric "step"; other numeric fields become columns, null is NaN, and
// strings and bools are ignored. Blank lines are skipped. Errors name the file
// and line.
func ReadJSONL(metricsPath string) (*Metrics, error) {
	f, err := os.Open(metricsPath)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer f.Close()
	m := &Metrics{Fields: map[string][]float64{}}
	r := bufio.NewReader(f)
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", metricsPath, lineNo, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			if perr := m.addLine(trimmed); perr != nil {
				return nil, fmt.Errorf("%s:%d: %w", metricsPath, lineNo, perr)
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	if len(m.Steps) == 0 {
		return nil, fmt.Errorf("%s: no metrics records (the file is empty); has training logged a step yet?", metricsPath)
	}
	return m, nil
}

func (m *Metrics) addLine(line []byte) error {
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	step, ok := obj["step"].(float64)
	if !ok {
		if _, present := obj["step"]; !present {
			return errors.New(`missing "step"`)
		}
		return fmt.Errorf(`"step" is %v, not a number`, obj["step"])
	}
	row := len(m.Steps)
	m.Steps = append(m.Steps, step)
	for k, v := range obj {
		if k == "step" {
			continue
		}
		var x float64
		switch v := v.(type) {
		case float64:
			x = v
		case nil:
			x = math.NaN()
		default:
			continue
		}
		col, seen := m.Fields[k]
		if !seen {
			col = make([]float64, row, row+1)
			for i := range col {
				col[i] = math.NaN()
			}
		}
		m.Fields[k] = append(col, x)
	}
	// Columns this row lacks get NaN so that every column stays aligned.
	for k, col := range m.Fields {
		if len(col) == row {
			m.Fields[k] = append(col, math.NaN())
		}
	}
	return nil
}

// chartSpec is one key of FromJSONL: "name" or "name=glob".
type chartSpec struct{ name, pattern string }

func parseSpec(key string) chartSpec {
	if name, pat, ok := strings.Cut(key, "="); ok {
		return chartSpec{name, pat}
	}
	return chartSpec{strings.TrimRight(strings.ReplaceAll(key, "*", ""), "_"), key}
}

// naturalLess orders loss_l2 before loss_l10.
func naturalLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// usesLogY is the y scale of a chart: losses and gradient norms span decades.
func usesLogY(name string) bool {
	return strings.Contains(name, "loss") || strings.Contains(name, "grad_norm")
}

// labels are the title and y-axis label (with its unit) of the charts of
// DefaultKeys.
var labels = map[string][2]string{
	"loss":            {"Training loss (all terms)", "loss"},
	"jepa_loss":       {"JEPA prediction loss", "loss"},
	"vicreg":          {"VICReg term", "loss"},
	"loss_levels":     {"JEPA loss per hierarchy level", "loss"},
	"lr":              {"Learning rate", "learning rate"},
	"wd":              {"Weight decay", "weight decay"},
	"ema_momentum":    {"Target-encoder EMA momentum", "momentum"},
	"grad_norm":       {"Gradient norm (before clipping)", "L2 norm"},
	"grad_norm_terms": {"Gradient norm per loss term", "L2 norm"},
	"step_ms":         {"Step time", "time per step (ms)"},
	"val_loss":        {"Validation loss", "loss"},
	"rankme":          {"RankMe of target features (collapse monitor)", "effective rank"},
	"feature_std":     {"Feature std of target features (collapse monitor)", "mean per-dimension std"},
}

// describe is a chart's title and y label: from labels, else the name.
func describe(name string) (title, ylabel string) {
	if l, ok := labels[name]; ok {
		return l[0], l[1]
	}
	return name, name
}

// FromJSONL reads metricsPath and writes one PNG per key into outDir. A key is
// a field name ("lr" writes lr.png) or name=glob ("loss_levels=loss_l*" writes
// loss_levels.png with one series per matching field, in natural order); nil
// keys means DefaultKeys. Keys that match no field are skipped, but it is an
// error when none matches. Loss and gradient-norm charts use a log y axis.
func FromJSONL(metricsPath, outDir string, keys []string) error {
	m, err := ReadJSONL(metricsPath)
	if err != nil {
		return err
	}
	if keys == nil {
		keys = DefaultKeys
	}
	drawn := 0
	for _, key := range keys {
		spec := parseSpec(key)
		var names []string
		for field := range m.Fields {
			if ok, err := path.Match(spec.pattern, field); err != nil {
				return fmt.Errorf("plot key %q: %w", key, err)
			} else if ok {
				names = append(names, field)
			}
		}
		if len(names) == 0 {
			continue
		}
		sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
		title, ylabel := describe(spec.name)
		chart := LineChart{
			Title:  title,
			XLabel: "step (optimizer steps)",
			YLabel: ylabel,
			LogY:   usesLogY(spec.name),
		}
		for _, n := range names {
			chart.Series = append(chart.Series, Series{Name: n, X: m.Steps, Y: m.Fields[n]})
		}
		file := strings.NewReplacer("/", "_", string(filepath.Separator), "_").Replace(spec.name) + ".png"
		if err := chart.WritePNG(filepath.Join(outDir, file)); err != nil {
			return err
		}
		drawn++
	}
	if drawn == 0 {
		fields := make([]string, 0, len(m.Fields))
		for k := range m.Fields {
			fields = append(fields, k)
		}
		sort.Strings(fields)
		return fmt.Errorf("%s: none of the plot keys %v is a field; fields present: %v", metricsPath, keys, fields)
	}
	return nil
}
