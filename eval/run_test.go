package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// reportFixture is a four-row evaluation with round numbers.
func reportFixture() []Report {
	row := func(name, enc, ck string, dim int, probe, knn, rankme float64) Report {
		return Report{Name: name, Encoder: enc, Checkpoint: ck, TrainImages: 1000, TestImages: 500, Dim: dim,
			ProbeAccuracy: probe, ProbeL2: 1e-3, ProbeIters: 42, KNNAccuracy: knn, KNNK: 20,
			RankMe: rankme, RankMeFraction: rankme / float64(dim), RankMeRaw: rankme - 1, FeatureStd: 0.5,
			FeatureSeconds: 1, Seconds: 3}
	}
	return []Report{
		row("pixels", "pixels", "", 784, 0.8, 0.75, 100),
		row("init", "target", "init", 64, 0.7, 0.65, 20),
		row("trained", "target", "ck", 64, 0.85, 0.8, 30),
		row("context", "context", "ck", 64, 0.8325, 0.7, 25.5),
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	WriteTable(&buf, reportFixture())
	// The pixels row ends in the empty "vs init" column's padding.
	want := "\n" +
		"row       linear probe       kNN   RankMe  vs init (probe, kNN)    vs pixels (probe, kNN)\n" +
		"pixels          80.00%    75.00%    100.0                          \n" +
		"init            70.00%    65.00%     20.0                          -10.00, -10.00\n" +
		"trained         85.00%    80.00%     30.0  +15.00, +15.00          +5.00, +5.00\n" +
		"context         83.25%    70.00%     25.5  +13.25, +5.00           +3.25, -5.00\n" +
		"protocol: mean-pooled features; the probe (L2 chosen on a held-out tenth) and kNN (k=20) learn from the first 1000 training images and are scored on 500 test images; RankMe is centred, on the test features\n"
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}

	// Without init and pixels rows, both difference columns stay empty.
	buf.Reset()
	WriteTable(&buf, reportFixture()[2:])
	for _, line := range strings.Split(buf.String(), "\n")[2:4] {
		if strings.ContainsAny(line, "+-") {
			t.Errorf("difference without a baseline row: %q", line)
		}
	}
}

func TestWriteRow(t *testing.T) {
	r := reportFixture()[2]
	var buf bytes.Buffer
	WriteRow(&buf, r)
	r.KNNK = 0
	WriteRow(&buf, r)
	want := "trained  linear probe 85.00% (L2 0.001)  kNN 80.00%  RankMe 30.0 (0.47 of D=64; uncentred 29.0)  [1000 train / 500 test images, 3s]\n" +
		"trained  linear probe 85.00% (L2 0.001)  kNN skipped  RankMe 30.0 (0.47 of D=64; uncentred 29.0)  [1000 train / 500 test images, 3s]\n"
	if buf.String() != want {
		t.Errorf("rows:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// reportKeys are the JSON fields of one row, in order (scripts read them).
var reportKeys = []string{"checkpoint", "encoder", "train_images", "test_images", "dim",
	"linear_probe_accuracy", "linear_probe_l2", "linear_probe_iterations", "knn_accuracy", "knn_k",
	"rankme", "rankme_fraction", "rankme_uncentered", "feature_std", "feature_seconds", "seconds"}

// jsonKeys lists an object's keys in file order.
func jsonKeys(t *testing.T, js []byte) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(js))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestMarshalReports(t *testing.T) {
	reports := reportFixture()
	one, err := MarshalReports(reports[2:3])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(one, []byte("}\n")) || !bytes.Contains(one, []byte("\n  \"encoder\": \"target\",\n")) {
		t.Errorf("one row: not indented by two spaces with a final newline:\n%s", one)
	}
	if got := jsonKeys(t, one); !slices.Equal(got, reportKeys) {
		t.Errorf("one row: keys %v, want %v", got, reportKeys)
	}

	all, err := MarshalReports(reports)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonKeys(t, all), []string{"context", "init", "pixels", "trained"}; !slices.Equal(got, want) {
		t.Errorf("rows: keys %v, want %v", got, want)
	}
	var byName map[string]json.RawMessage
	if err := json.Unmarshal(all, &byName); err != nil {
		t.Fatal(err)
	}
	if got := jsonKeys(t, byName["pixels"]); !slices.Equal(got, reportKeys[1:]) {
		t.Errorf("pixels row: keys %v, want %v (no checkpoint)", got, reportKeys[1:])
	}
	var trained Report
	if err := json.Unmarshal(byName["trained"], &trained); err != nil {
		t.Fatal(err)
	}
	trained.Name = "trained"
	if trained != reports[2] {
		t.Errorf("trained row: %+v, want %+v", trained, reports[2])
	}

	if _, err := MarshalReports(nil); err == nil {
		t.Error("no reports: no error")
	}
	path := filepath.Join(t.TempDir(), "missing", "eval.json")
	if err := WriteJSON(path, reports); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("unwritable path: %v, want an error naming %s", err, path)
	}
}

// syntheticConfig is configs/synthetic-test.yaml on the CPU with a small
// probe protocol.
func syntheticConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{ConfigFile: filepath.Join("..", "configs", "synthetic-test.yaml"), Sets: []string{
		"device=cpu", "threads=2", "data.num_workers=1",
		"evaluation.train_limit=60", "evaluation.test_limit=30", "evaluation.probe_max_iter=30",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writeCheckpoint writes the weights of cfg's model initialised from seed as
// a checkpoint directory.
func writeCheckpoint(t *testing.T, cfg config.Config, seed int64, dir string) {
	t.Helper()
	b := cpu.New(1)
	cfg.Seed = seed
	m, err := jepa.NewInitialModel(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ck checkpoint.Checkpoint
	for _, np := range m.NamedParams() {
		x := make([]float32, np.Param.Numel())
		b.Download(x, np.Param.W)
		ck.Model = append(ck.Model, checkpoint.Tensor{Name: np.Name, Shape: np.Param.Shape, Data: x})
	}
	ck.State = json.RawMessage(`{}`)
	if err := checkpoint.Write(dir, &ck); err != nil {
		t.Fatal(err)
	}
}

// Run on the synthetic dataset: every row in order, from the right weights,
// on the same images; the lines, the table and the JSON written.
func TestRunSynthetic(t *testing.T) {
	cfg := syntheticConfig(t)
	tmp := t.TempDir()
	ck := filepath.Join(tmp, "checkpoint_latest")
	writeCheckpoint(t, cfg, cfg.Seed+1, ck)
	jsonPath := filepath.Join(tmp, "eval.json")

	var out bytes.Buffer
	res, err := Run(context.Background(), Request{Config: cfg, Checkpoint: ck, Pixels: true, CompareInit: true, Context: true, JSONPath: jsonPath}, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, encoder, ck string }{
		{"pixels", "pixels", ""}, {"init", "target", "init"}, {"trained", "target", ck}, {"context", "context", ck},
	}
	if len(res.Reports) != len(want) {
		t.Fatalf("%d reports, want %d", len(res.Reports), len(want))
	}
	for i, w := range want {
		r := res.Reports[i]
		if r.Name != w.name || r.Encoder != w.encoder || r.Checkpoint != w.ck {
			t.Errorf("row %d: %s/%s/%q, want %s/%s/%q", i, r.Name, r.Encoder, r.Checkpoint, w.name, w.encoder, w.ck)
		}
		wantDim := 32
		if w.name == "pixels" {
			wantDim = 16 * 16
		}
		if r.TrainImages != 60 || r.TestImages != 30 || r.Dim != wantDim || r.KNNK != 20 {
			t.Errorf("%s: %d train / %d test images, D=%d, k=%d; want 60 / 30, D=%d, k=20", r.Name, r.TrainImages, r.TestImages, r.Dim, r.KNNK, wantDim)
		}
		if r.ProbeAccuracy < 0 || r.ProbeAccuracy > 1 || r.KNNAccuracy < 0 || r.KNNAccuracy > 1 || !(r.RankMe >= 1) || !(r.FeatureStd > 0) {
			t.Errorf("%s: implausible report %+v", r.Name, r)
		}
	}
	// The checkpoint holds other weights than the initialisation.
	if res.Reports[1].FeatureStd == res.Reports[2].FeatureStd {
		t.Errorf("trained row has the initialisation's features (std %g): checkpoint not loaded", res.Reports[2].FeatureStd)
	}

	text := out.String()
	for _, s := range []string{"pixels   linear probe ", "init     linear probe ", "trained  linear probe ", "context  linear probe ",
		"\nrow       linear probe", "\nprotocol: ", "learn from the first 60 training images and are scored on 30 test images", "\nevaluated 4 row(s) in "} {
		if !strings.Contains(text, s) {
			t.Errorf("output lacks %q:\n%s", s, text)
		}
	}

	js, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := jsonKeys(t, js), []string{"context", "init", "pixels", "trained"}; !slices.Equal(got, want) {
		t.Errorf("%s: keys %v, want %v", jsonPath, got, want)
	}
	if wantJS, _ := MarshalReports(res.Reports); !bytes.Equal(js, wantJS) {
		t.Errorf("%s differs from the reports returned:\n%s", jsonPath, js)
	}

	// --checkpoint init alone: one row, an object, no table.
	out.Reset()
	res, err = Run(context.Background(), Request{Config: cfg, Checkpoint: "init", Context: true, NoKNN: true, JSONPath: jsonPath}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Reports) != 1 || res.Reports[0].Name != "init" || res.Reports[0].Checkpoint != "init" || res.Reports[0].KNNK != 0 {
		t.Fatalf("init alone: %+v", res.Reports)
	}
	if strings.Contains(out.String(), "protocol:") || !strings.Contains(out.String(), "kNN skipped") {
		t.Errorf("init alone: output\n%s", out.String())
	}
	if js, err = os.ReadFile(jsonPath); err != nil {
		t.Fatal(err)
	}
	if got := jsonKeys(t, js); !slices.Equal(got, reportKeys) {
		t.Errorf("init alone: keys %v, want %v", got, reportKeys)
	}
}

// A missing checkpoint fails before any evaluation, naming the directory.
func TestRunMissingCheckpoint(t *testing.T) {
	cfg := syntheticConfig(t)
	ck := filepath.Join(t.TempDir(), "checkpoint_step_99")
	var out bytes.Buffer
	_, err := Run(context.Background(), Request{Config: cfg, Checkpoint: ck}, &out)
	if err == nil || !strings.Contains(err.Error(), ck) {
		t.Fatalf("error %v, want one naming %s", err, ck)
	}
	if out.Len() != 0 {
		t.Errorf("output before the error:\n%s", out.String())
	}
}
