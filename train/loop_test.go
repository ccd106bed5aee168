package train

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/data"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/train/checkpoint"
	"github.com/hjepa-go/hjepa/train/telemetry"
)

// In-process tests of the training loop: the code `hjepa train` and every
// worker run (Run), on configs/synthetic-test.yaml's tiny model, one CPU
// thread so that runs are bit-for-bit repeatable. The e2e tests in
// cmd/hjepa cover the same through the built binary and real signals.

// loopConfig is the synthetic test preset with the overrides sets.
func loopConfig(t *testing.T, sets ...string) config.Config {
	t.Helper()
	c, err := config.Load(config.LoadOptions{ConfigFile: filepath.Join("..", "configs", "synthetic-test.yaml"), Sets: sets})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loopRun is one run: its options, the per-step losses OnStep saw.
type loopRun struct {
	opts   Options
	losses []float64
	// afterStep, when set, runs after each step with the step count.
	afterStep func(step int64)
}

func newLoopRun(t *testing.T, c config.Config, b tensor.Backend, out string) *loopRun {
	r := &loopRun{}
	r.opts = Options{Config: c, Out: out, Backend: b, Logger: zap.NewNop(), Console: io.Discard,
		OnStep: func(s telemetry.Step) {
			r.losses = append(r.losses, s.Loss)
			if r.afterStep != nil {
				r.afterStep(s.Step)
			}
		}}
	return r
}

func (r *loopRun) run(t *testing.T, ctx context.Context) (*Summary, error) {
	t.Helper()
	return Run(ctx, r.opts)
}

// latest reads the run's checkpoint_latest and its state.json.
func latest(t *testing.T, out string) (*checkpoint.Checkpoint, State) {
	t.Helper()
	ck, err := checkpoint.Read(filepath.Join(out, "checkpoints", "checkpoint_latest"))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(ck.State, &st); err != nil {
		t.Fatal(err)
	}
	return ck, st
}

func equalTensors(t *testing.T, what string, a, b []checkpoint.Tensor) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d tensors vs %d", what, len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || len(a[i].Data) != len(b[i].Data) {
			t.Fatalf("%s: tensor %d is %s[%d] vs %s[%d]", what, i, a[i].Name, len(a[i].Data), b[i].Name, len(b[i].Data))
		}
		for k := range a[i].Data {
			if math.Float32bits(a[i].Data[k]) != math.Float32bits(b[i].Data[k]) {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, a[i].Name, k, a[i].Data[k], b[i].Data[k])
			}
		}
	}
}

// A run stopped after step 3 (Options.Stop: SIGTERM in the binary) and
// resumed ends with the parameters, optimizer moments and losses of a run
// that never stopped, bit for bit; the interrupted run checkpoints at the
// step it stopped.
func TestLoopStopAndResumeIsExact(t *testing.T) {
	c := loopConfig(t, "training.max_steps=6")
	b := cpu.New(1)
	defer b.Close()

	straight := newLoopRun(t, c, b, t.TempDir())
	s, err := straight.run(t, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Steps != 6 || s.Interrupted {
		t.Fatalf("straight run: %+v", s)
	}

	out := t.TempDir()
	stop := make(chan struct{})
	first := newLoopRun(t, c, b, out)
	first.opts.Stop = stop
	first.afterStep = func(step int64) {
		if step == 3 {
			close(stop)
		}
	}
	s, err = first.run(t, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.Steps != 3 {
		t.Fatalf("stopped run: %+v, want interrupted after 3 steps", s)
	}
	if _, st := latest(t, out); st.Step != 3 {
		t.Fatalf("stopped run's checkpoint is at step %d, want 3", st.Step)
	}

	second := newLoopRun(t, c, b, out)
	second.opts.Resume = true
	if s, err = second.run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Steps != 6 || s.Interrupted {
		t.Fatalf("resumed run: %+v", s)
	}
	losses := append(append([]float64(nil), first.losses...), second.losses...)
	for i := range straight.losses {
		if i >= len(losses) || losses[i] != straight.losses[i] {
			t.Fatalf("losses %v, want %v", losses, straight.losses)
		}
	}
	want, _ := latest(t, straight.opts.Out)
	got, _ := latest(t, out)
	equalTensors(t, "model", got.Model, want.Model)
	equalTensors(t, "optimizer", got.Optimizer, want.Optimizer)
}

// A single process whose context is cancelled (SIGINT) checkpoints the
// steps it finished and reports an interrupted run, not an error.
func TestLoopCancelCheckpoints(t *testing.T) {
	c := loopConfig(t, "training.max_steps=6")
	b := cpu.New(1)
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	r := newLoopRun(t, c, b, out)
	r.afterStep = func(step int64) {
		if step == 2 {
			cancel()
		}
	}
	s, err := r.run(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.Steps != 2 {
		t.Fatalf("summary %+v, want interrupted after 2 steps", s)
	}
	if _, st := latest(t, out); st.Step != 2 {
		t.Fatalf("checkpoint at step %d, want 2", st.Step)
	}
}

// nanBackend is the CPU backend whose SumSquares (the gradient norm) turns
// NaN once poisoned: a diverged step.
type nanBackend struct {
	tensor.Backend
	poisoned atomic.Bool
}

func (n *nanBackend) SumSquares(x *tensor.Tensor) float64 {
	if n.poisoned.Load() {
		return math.NaN()
	}
	return n.Backend.SumSquares(x)
}

// A non-finite gradient stops the run with the guard's advice before any
// update is applied, and the last checkpoint stays as it was.
func TestLoopNaNGuardKeepsCheckpoint(t *testing.T) {
	c := loopConfig(t, "training.max_steps=6", "checkpoint.every_steps=2")
	ref := cpu.New(1)
	defer ref.Close()
	b := &nanBackend{Backend: ref}
	out := t.TempDir()
	r := newLoopRun(t, c, b, out)
	var saved []checkpoint.Tensor // the step-2 checkpoint's model
	r.afterStep = func(step int64) {
		if step == 3 {
			ck, _ := latest(t, out)
			saved = ck.Model
			b.poisoned.Store(true)
		}
	}
	_, err := r.run(t, context.Background())
	if err == nil {
		t.Fatal("a NaN gradient norm did not stop the run")
	}
	for _, want := range []string{"step 3: gradient norm is NaN", "no update was applied", "checkpoint_latest is intact", "--resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	ck, st := latest(t, out)
	if st.Step != 2 {
		t.Fatalf("checkpoint at step %d, want the step-2 one", st.Step)
	}
	equalTensors(t, "model after the NaN", ck.Model, saved)
}

// Gradient accumulation: two micro-batches of 8 take the same steps as one
// batch of 16 (same images, the same masks, the mean of the two halves'
// gradients), up to float32 summation order.
func TestLoopAccumulationMatchesBigBatch(t *testing.T) {
	b := cpu.New(1)
	defer b.Close()
	big := newLoopRun(t, loopConfig(t, "training.max_steps=4", "data.batch_size=16"), b, t.TempDir())
	if _, err := big.run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	acc := newLoopRun(t, loopConfig(t, "training.max_steps=4", "data.batch_size=8", "training.accumulation_steps=2"), b, t.TempDir())
	if _, err := acc.run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(big.losses) != 4 || len(acc.losses) != 4 {
		t.Fatalf("steps: %d and %d, want 4", len(big.losses), len(acc.losses))
	}
	for i := range big.losses {
		if d := math.Abs(acc.losses[i]-big.losses[i]) / math.Abs(big.losses[i]); d > 1e-5 {
			t.Errorf("step %d: loss %.9g accumulated vs %.9g, relative difference %.2g", i, acc.losses[i], big.losses[i], d)
		}
	}
	want, _ := latest(t, big.opts.Out)
	got, _ := latest(t, acc.opts.Out)
	var worst float64
	for i := range want.Model {
		for k, w := range want.Model[i].Data {
			worst = math.Max(worst, math.Abs(float64(got.Model[i].Data[k]-w)))
		}
	}
	if worst > 1e-5 {
		t.Errorf("parameters after 4 steps differ by up to %.3g", worst)
	}
	t.Logf("largest parameter difference after 4 steps: %.3g", worst)
}

// A run writes its resolved configuration to OUT/config.yaml, and loading
// that file gives the same configuration (digest).
func TestLoopWritesResolvedConfig(t *testing.T) {
	c := loopConfig(t, "training.max_steps=1", "training.lr=3e-4")
	b := cpu.New(1)
	defer b.Close()
	out := t.TempDir()
	if _, err := newLoopRun(t, c, b, out).run(t, context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(config.LoadOptions{ConfigFile: filepath.Join(out, ConfigFileName)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != c.Digest() || got.Training.LR != 3e-4 {
		t.Fatalf("%s does not load back to the run's configuration (lr %v)", ConfigFileName, got.Training.LR)
	}
}

func TestTensorBoardTags(t *testing.T) {
	for key, want := range map[string]string{
		"loss": "train/loss", "jepa_loss": "train/jepa_loss", "loss_l2": "train/loss_l2", "lr": "train/lr",
		"grad_norm": "train/grad_norm", "val_loss": "val/loss", "rankme": "collapse/rankme",
		"feature_std_min": "collapse/feature_std_min", "collapse_alarm": "collapse/collapse_alarm",
		"step_ms": "system/step_ms", "epoch": "system/epoch",
	} {
		if got := tensorBoardTag(key); got != want {
			t.Errorf("%s: tag %q, want %q", key, got, want)
		}
	}
}

// Training from WebDataset shards made from an ImageFolder (hjepa data
// shard) gives the same losses, step for step and bit for bit, as training
// from the ImageFolder with the same seed: 20 steps with augmentation and
// a validation.
func TestLoopShardsTrainLikeImageFolder(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "folder")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 96 {
		cls := filepath.Join(folder, fmt.Sprintf("class%d", i%3))
		if err := os.MkdirAll(cls, 0o755); err != nil {
			t.Fatal(err)
		}
		img := image.NewGray(image.Rect(0, 0, 20, 20))
		for p := range img.Pix {
			img.Pix[p] = uint8(rng.IntN(256))
		}
		f, err := os.Create(filepath.Join(cls, fmt.Sprintf("img%03d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	res, err := data.WriteShards(folder, filepath.Join(dir, "shards", "train-{000..999}.tar"), data.ShardOptions{MaxSamples: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Shards) != 5 {
		t.Fatalf("%d shards, want 5", len(res.Shards))
	}
	sets := []string{"training.max_steps=20", "data.batch_size=8", "data.image_size=16", "data.augmentation.random_crop=true",
		"data.augmentation.horizontal_flip=true", "evaluation.every_steps=10", "data.val_path=" + folder}
	b := cpu.New(1)
	defer b.Close()
	var losses [2][]float64
	for i, src := range [][]string{{"data.dataset=imagefolder", "data.path=" + folder}, {"data.dataset=webdataset", "data.path=" + res.Pattern}} {
		r := newLoopRun(t, loopConfig(t, append(append([]string{}, sets...), src...)...), b, t.TempDir())
		if _, err := r.run(t, context.Background()); err != nil {
			t.Fatalf("%s: %v", src[0], err)
		}
		losses[i] = r.losses
		t.Logf("%s: first losses %v", src[0], r.losses[:3])
	}
	if len(losses[0]) != 20 || len(losses[1]) != 20 {
		t.Fatalf("steps: %d and %d, want 20", len(losses[0]), len(losses[1]))
	}
	for s := range losses[0] {
		if math.Float64bits(losses[0][s]) != math.Float64bits(losses[1][s]) {
			t.Fatalf("step %d: loss %v from the ImageFolder, %v from its shards", s+1, losses[0][s], losses[1][s])
		}
	}
}
