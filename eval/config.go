package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// Overridable says whether an evaluation may set key rather than take it
// from the checkpoint's configuration: the data it reads (but not the image
// size and channels, which shape the model), the evaluation protocol, and
// where it runs (device, threads, logging). Everything else describes the
// model that was trained, or how (augmentation).
func Overridable(key string) bool {
	switch {
	case key == "data.image_size" || key == "data.channels":
		return false
	case strings.HasPrefix(key, "data.augmentation."): // training's, and validated against loss.*
		return false
	case key == "device" || key == "threads" || key == "logging.level" || key == "logging.progress":
		return true
	}
	return strings.HasPrefix(key, "data.") || strings.HasPrefix(key, "evaluation.")
}

// CheckpointConfig is the configuration that evaluates, embeds or exports
// checkpoint dir: saved, the one in its state.json (SavedConfig), with the data,
// evaluation and device keys (Overridable) of what the command line gave.
// file is a --config file alone (nil: none); user is the command line's
// whole configuration: file (or, without one, the checkpoint's own) with
// HJEPA_* and --set on top. A key file sets otherwise is ignored with a
// note (the checkpoint's wins: --config is often the training's preset, or
// a sibling's); a key --set or HJEPA_* changes otherwise is an error (it
// asks for a model the checkpoint does not hold).
func CheckpointConfig(dir string, saved config.Config, file *config.Config, user config.Config) (cfg config.Config, notes []string, err error) {
	merged := saved.Flat()
	base := merged
	if file != nil {
		base = file.Flat()
	}
	var ignored, refused []string
	for k, v := range user.Flat() {
		switch {
		case Overridable(k) || slices.Contains(config.ProcessLocalKeys, k) || slices.Contains(config.JobKeys, k):
			// Data, protocol, where it runs, and how the training job was
			// run (distributed.*): none describes the model.
			merged[k] = v
		case reflect.DeepEqual(v, merged[k]):
		case !reflect.DeepEqual(v, base[k]): // --set or HJEPA_*
			refused = append(refused, fmt.Sprintf("%s %v, not %v", k, merged[k], v))
		default:
			ignored = append(ignored, k)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return config.Config{}, nil, fmt.Errorf("%s was trained with %s: eval, embed and export take the model from the checkpoint; --set and HJEPA_* may change only data.* (not image_size, channels or augmentation), evaluation.*, device and threads",
			dir, strings.Join(refused, ", "))
	}
	if len(ignored) > 0 {
		slices.Sort(ignored)
		more := ""
		if len(ignored) > 6 {
			more = fmt.Sprintf(" and %d more", len(ignored)-6)
			ignored = ignored[:6]
		}
		notes = append(notes, fmt.Sprintf("--config differs from the checkpoint's configuration in %s%s: the checkpoint's is used (--config gives only data.* and evaluation.*)", strings.Join(ignored, ", "), more))
	}
	y, err := config.NestedYAML(merged)
	if err != nil {
		return config.Config{}, nil, err
	}
	cfg, err = config.Load(config.LoadOptions{ConfigFile: filepath.Join(dir, checkpoint.StateFile), ConfigYAML: y})
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, notes, cfg.Validate()
}

// SavedConfig is the configuration in checkpoint dir's state.json.
func SavedConfig(dir string) (config.Config, error) {
	path := filepath.Join(dir, checkpoint.StateFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			return config.Config{}, fmt.Errorf("read checkpoint %s: no such checkpoint directory; check the path (a run's checkpoints are under <out>/checkpoints)", dir)
		}
		return config.Config{}, fmt.Errorf("%s: missing, so the checkpoint's configuration is unknown: pass --checkpoint a checkpoint directory (e.g. OUT/checkpoints/checkpoint_latest)", path)
	}
	if err != nil {
		return config.Config{}, err
	}
	var st struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return config.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(st.Config) == 0 {
		return config.Config{}, fmt.Errorf("%s: no configuration recorded (an older checkpoint?): give --config", path)
	}
	return config.FromCanonicalJSON(st.Config, path)
}
