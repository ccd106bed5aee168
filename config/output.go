package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"go.yaml.in/yaml/v3"
)

// ProcessLocalKeys are the keys that may differ between the processes of one
// distributed run without changing what is computed (which GPU, how many
// threads or loader goroutines, where this machine keeps the data, the logs
// and the checkpoints, how chatty the console is, how large an image this
// machine agrees to decode). Digest leaves them out.
var ProcessLocalKeys = []string{
	"device", "threads",
	"data.path", "data.val_path", "data.num_workers", "data.prefetch", "data.max_image_pixels",
	"checkpoint.dir", "logging.dir", "logging.level", "logging.progress",
}

// JobKeys are set by the coordinator for the whole job (world size, restart
// budget, all-reduce buckets): they shape how the run is executed, not the
// model it trains, and a worker started with its own copy of the
// configuration need not repeat them. Digest leaves them out.
var JobKeys = []string{
	"distributed.enabled", "distributed.world_size", "distributed.bucket_mib",
	"distributed.first_bucket_mib", "distributed.max_restarts",
}

// CanonicalJSON is the configuration as one JSON object of key path ->
// value, keys sorted, lists never null: the same configuration always gives
// the same bytes, however it was written.
func (c Config) CanonicalJSON() []byte {
	b, err := json.Marshal(c.flatten()) // encoding/json sorts map keys
	if err != nil {
		panic(fmt.Sprintf("config: canonical JSON: %v", err)) // only plain values: cannot happen
	}
	return b
}

// Digest is the hex SHA-256 of CanonicalJSON without ProcessLocalKeys and
// JobKeys. The coordinator compares the workers' digests so that a run
// never mixes configurations.
func (c Config) Digest() string {
	flat := c.flatten()
	for _, k := range slices.Concat(ProcessLocalKeys, JobKeys) {
		delete(flat, k)
	}
	b, err := json.Marshal(flat)
	if err != nil {
		panic(fmt.Sprintf("config: digest: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// YAML renders the configuration as a YAML file that Load reads back to the
// same Config (for `hjepa config show`); lists are written inline.
func (c Config) YAML() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	flowLists(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

func flowLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	for _, ch := range n.Content {
		flowLists(ch)
	}
}

// Steps resolves the run length and the LR warmup in optimizer steps, given
// the optimizer steps per epoch (batches per epoch / accumulation_steps).
//   - total: max_steps when > 0, else epochs * stepsPerEpoch.
//   - warmup: warmup_steps when > 0; else warmup_epochs * stepsPerEpoch; and
//     when max_steps overrides epochs, the warmup keeps its fraction of the
//     run (warmup_epochs / epochs of max_steps), so a quick run still warms
//     up and then decays instead of never leaving its warmup.
//
// warmup is clamped below total.
func (t Training) Steps(stepsPerEpoch int) (total, warmup int) {
	total = t.Epochs * stepsPerEpoch
	if t.MaxSteps > 0 {
		total = t.MaxSteps
	}
	switch {
	case t.WarmupSteps > 0:
		warmup = t.WarmupSteps
	case t.MaxSteps > 0 && t.Epochs > 0:
		warmup = int(math.Round(t.WarmupEpochs / float64(t.Epochs) * float64(t.MaxSteps)))
	case t.MaxSteps > 0:
		warmup = 0
	default:
		warmup = int(math.Round(t.WarmupEpochs * float64(stepsPerEpoch)))
	}
	if warmup >= total {
		warmup = max(total-1, 0)
	}
	return total, warmup
}
