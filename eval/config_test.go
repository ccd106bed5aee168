package eval

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

func writeState(t *testing.T, c config.Config) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := json.Marshal(map[string]json.RawMessage{"config": c.CanonicalJSON()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, checkpoint.StateFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The checkpoint's model wins; data and evaluation keys come from the
// command line; how the training job ran (distributed.*, paths) draws no
// note; a --config's model differences draw one; --set model changes are
// refused.
func TestCheckpointConfig(t *testing.T) {
	trained := config.Default()
	trained.Data.Dataset, trained.Data.SyntheticSize = "synthetic", 256
	trained.Distributed.Enabled, trained.Distributed.WorldSize = true, 2
	trained.Model.Depth = 3
	dir := writeState(t, trained)
	saved, err := SavedConfig(dir)
	if err != nil {
		t.Fatal(err)
	}

	file := trained
	file.Distributed.Enabled, file.Distributed.WorldSize = false, 1
	file.Evaluation.TrainLimit = 77
	cfg, notes, err := CheckpointConfig(dir, saved, &file, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 || cfg.Evaluation.TrainLimit != 77 || cfg.Model.Depth != 3 {
		t.Fatalf("notes %q, train_limit %d, depth %d", notes, cfg.Evaluation.TrainLimit, cfg.Model.Depth)
	}

	file.Model.Depth = 5
	cfg, notes, err = CheckpointConfig(dir, saved, &file, file)
	if err != nil || cfg.Model.Depth != 3 || len(notes) != 1 || !strings.Contains(notes[0], "model.depth") {
		t.Fatalf("a --config with another depth: depth %d, notes %q, %v", cfg.Model.Depth, notes, err)
	}

	user := trained
	user.Model.Depth = 5 // as --set would
	if _, _, err := CheckpointConfig(dir, saved, nil, user); err == nil || !strings.Contains(err.Error(), "model.depth 3, not 5") {
		t.Fatalf("--set model.depth=5: %v", err)
	}
}
