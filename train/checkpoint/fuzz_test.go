package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fuzz targets below replace one file of a valid checkpoint with the
// fuzzer's bytes and read the directory with Read, ReadExpect and Verify.
// Properties: no panic; either the checkpoint reads back exactly as written
// (every tensor's name, shape and bits, and state.json byte for byte) or the
// error names the replaced file, never a silently different tensor.

// FuzzReadModel replaces model.safetensors (tensors and the manifest).
func FuzzReadModel(f *testing.F) { fuzzReplace(f, ModelFile) }

// FuzzReadOptimizer replaces optimizer.safetensors.
func FuzzReadOptimizer(f *testing.F) { fuzzReplace(f, OptimizerFile) }

// FuzzReadState replaces state.json.
func FuzzReadState(f *testing.F) { fuzzReplace(f, StateFile) }

func fuzzReplace(f *testing.F, file string) {
	base := f.TempDir()
	orig := writeSample(f, filepath.Join(base, "ck"), 3)
	other := writeSample(f, filepath.Join(base, "other"), 4) // another save of the same model
	want, err := Read(filepath.Join(base, "ck"))
	if err != nil {
		f.Fatal(err)
	}
	wantModel, wantOptim := modelShapes(want)

	f.Add(orig[file])
	f.Add(other[file])
	f.Add([]byte{})
	f.Add(orig[file][:len(orig[file])/2])
	f.Add(orig[file][:len(orig[file])-1])
	// Findings, kept as seeds: a renamed tensor (the data checksum does not
	// cover the header) and a reshaped one, both same-size edits.
	f.Add(bytes.Replace(orig[file], []byte(`"w"`), []byte(`"x"`), 1))
	f.Add(bytes.Replace(orig[file], []byte(`[2,3]`), []byte(`[3,2]`), 1))

	// One directory for every input (a fuzzing process runs them one at a
	// time), where only the replaced file changes, on tmpfs where there is
	// one: ext4 flushes a truncated and rewritten file on close. Inputs must
	// be cheap, because the fuzzer minimises each new one by re-running it
	// thousands of times.
	dir := filepath.Join(fastTempDir(f), "fuzz")
	writeSample(f, dir, 3)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		check := func(what string, got *Checkpoint, err error) {
			t.Helper()
			if err != nil {
				if !strings.Contains(err.Error(), file) {
					t.Fatalf("%s: error does not name %s: %v", what, file, err)
				}
				return
			}
			if got == nil {
				return // Verify
			}
			sameTensors(t, what+" model", got.Model, want.Model)
			sameTensors(t, what+" optimizer", got.Optimizer, want.Optimizer)
			if !bytes.Equal(got.State, want.State) {
				t.Fatalf("%s: state %q, wrote %q", what, got.State, want.State)
			}
		}
		ck, readErr := Read(dir)
		check("Read", ck, readErr)
		ck, err := ReadExpect(dir, wantModel, wantOptim)
		check("ReadExpect", ck, err)
		err = Verify(dir)
		check("Verify", nil, err)
		if (err == nil) != (readErr == nil) {
			t.Fatalf("Verify says %v, Read says %v", err, readErr)
		}
	})
}

// fastTempDir is a temporary directory on /dev/shm if it exists, else
// f.TempDir().
func fastTempDir(f *testing.F) string {
	if dir, err := os.MkdirTemp("/dev/shm", "hjepa-fuzz-"); err == nil {
		f.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return f.TempDir()
}

// writeSample writes a small checkpoint whose values depend on v as dir and
// returns its files. Small, because the fuzzer's minimisation of a new input
// costs time quadratic in its length.
func writeSample(f *testing.F, dir string, v int) map[string][]byte {
	w := []float32{float32(v), float32(math.Copysign(0, -1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00123), 0.5, 2}
	ck := &Checkpoint{
		Model: []Tensor{
			{Name: "w", Shape: []int{2, 3}, Data: w},
			{Name: "s", Shape: []int{}, Data: []float32{float32(v)}},
			{Name: "e", Shape: []int{0}},
		},
		Optimizer: []Tensor{
			{Name: "m/w", Shape: []int{2, 3}, Data: slices.Repeat([]float32{float32(v) * 1e-3}, 6)},
			{Name: "v/w", Shape: []int{2, 3}, Data: slices.Repeat([]float32{float32(v) * 1e-6}, 6)},
		},
		State: json.RawMessage(fmt.Sprintf(`{"step":%d,"rng":[1,2]}`, v)),
	}
	if err := Write(dir, ck); err != nil {
		f.Fatal(err)
	}
	files := map[string][]byte{}
	for _, name := range []string{ModelFile, OptimizerFile, StateFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		files[name] = b
	}
	return files
}

// FuzzReadBest feeds best.json, the record beside a best checkpoint that
// ranks it: readBest returns the record or an error naming the file, and a
// Manager listing a directory whose best.json is garbage still lists it.
func FuzzReadBest(f *testing.F) {
	for _, seed := range []string{`{"metric":0.25,"seq":3}`, `{"metric":-1e308,"seq":-1}`, `{}`, `[]`, `{"metric":"x"}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		best := filepath.Join(dir, BestName)
		if err := os.MkdirAll(best, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(best, BestFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		rec, err := readBest(best)
		if err != nil {
			if !strings.Contains(err.Error(), BestFile) {
				t.Fatalf("error %q does not name %s", err, BestFile)
			}
		} else if math.IsNaN(rec.Metric) {
			t.Fatalf("a NaN metric from %q", b)
		}
		m := &Manager{Dir: dir}
		if _, err := m.List(); err != nil {
			t.Fatalf("List with best.json %q: %v", b, err)
		}
	})
}
