package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/eval"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/train/checkpoint"
	"github.com/hjepa-go/hjepa/train/plot"
	"github.com/hjepa-go/hjepa/train/progress"
	"github.com/hjepa-go/hjepa/train/tfevents"
)

// Version is written into every checkpoint's state.json.
var Version = "0.1.0-dev"

// Commit is the commit the binary was built from when the build did not
// record it itself (make build sets it with -ldflags -X; a build with
// -buildvcs records vcs.revision instead).
var Commit = ""

// logStep averages the step's losses over replicas and writes them to every
// sink: zap, metrics.jsonl, TensorBoard and the progress bar.
func (t *trainer) logStep(ctx context.Context, s jepa.StepStats, lr, wd, ema, gradNorm float64, took time.Duration) error {
	vals := append([]float64{s.Loss, s.JEPA, s.VICReg}, s.Levels...)
	if err := t.sync.ReduceMean(ctx, t.step, vals); err != nil {
		return t.abortErr(ctx, fmt.Errorf("step %d: averaging losses over ranks: %w", t.step, err))
	}
	t.summary.FinalLoss, t.summary.FinalJEPALoss = vals[0], vals[1]
	if t.sync.Rank() != 0 {
		return nil
	}
	row := map[string]any{
		"step": t.step, "epoch": t.epoch, "loss": vals[0], "jepa_loss": vals[1], "lr": lr, "wd": wd,
		"ema_momentum": ema, "grad_norm": gradNorm, "step_ms": float64(took.Microseconds()) / 1000,
	}
	fields := []zap.Field{zap.Int64("step", t.step), zap.Int("epoch", t.epoch), zap.Float64("loss", vals[0]), zap.Float64("jepa_loss", vals[1])}
	if t.loss.VICRegWeight > 0 {
		row["vicreg"] = vals[2]
		fields = append(fields, zap.Float64("vicreg", vals[2]))
	}
	if n := t.termNorms; n != nil {
		row["grad_norm_jepa"], row["grad_norm_vicreg"] = n[0], n[1]
		fields = append(fields, zap.Float64("grad_norm_jepa", n[0]), zap.Float64("grad_norm_vicreg", n[1]))
		t.termNorms = nil
	}
	for l, v := range vals[3:] {
		key := fmt.Sprintf("loss_l%d", l)
		row[key] = v
		row[fmt.Sprintf("windows_l%d", l)] = s.Windows[l]
		fields = append(fields, zap.Float64(key, v))
	}
	fields = append(fields, zap.Float64("lr", lr), zap.Float64("grad_norm", gradNorm), zap.Float64("step_ms", row["step_ms"].(float64)))
	if t.bar == nil {
		t.log.Info("step", fields...)
	} else {
		fs := []progress.Field{progress.F("jepa", vals[1])}
		if t.loss.VICRegWeight > 0 {
			fs = append(fs, progress.F("vicreg", vals[2]))
		}
		t.bar.Update(t.step, append(fs, progress.F("lr", lr))...)
	}
	if err := t.writeMetrics(row); err != nil {
		return err
	}
	return nil
}

// writeMetrics appends one JSON object to metrics.jsonl and the numeric
// fields to TensorBoard.
func (t *trainer) writeMetrics(row map[string]any) error {
	if t.metrics == nil {
		return nil
	}
	line, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := t.metrics.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", t.metrics.Name(), err)
	}
	if t.tb != nil {
		sc := map[string]float64{}
		for k, v := range row {
			if k == "step" {
				continue
			}
			switch x := v.(type) {
			case float64:
				sc[tensorBoardTag(k)] = x
			case int:
				sc[tensorBoardTag(k)] = float64(x)
			}
		}
		if err := t.tb.Scalars(t.step, sc); err != nil {
			return fmt.Errorf("tensorboard: %w", err)
		}
	}
	return nil
}

// ConfigFileName is the run's resolved configuration in its output
// directory: every key, defaults included, as the run used it (`hjepa train
// --config OUT/config.yaml` repeats the run; the checkpoints keep a copy in
// their state.json too).
const ConfigFileName = "config.yaml"

// writeResolvedConfig writes cfg to out/config.yaml (atomically: a resumed
// run rewrites it with the same configuration).
func writeResolvedConfig(out string, cfg config.Config) error {
	y, err := cfg.YAML()
	if err != nil {
		return err
	}
	path := filepath.Join(out, ConfigFileName)
	tmp := path + ".tmp"
	head := []byte("# The resolved configuration of this run (every key, defaults included), written by hjepa " + Version + ".\n")
	if err := os.WriteFile(tmp, append(head, y...), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tensorBoardTag groups a metrics.jsonl key under a TensorBoard section:
// val/ (validation), collapse/ (the collapse monitors), system/ (time and
// throughput) and train/ (the rest: losses, schedules, gradient norms), so
// that TensorBoard (and W&B's TensorBoard sync) shows one panel group each.
func tensorBoardTag(key string) string {
	switch {
	case key == "val_loss":
		return "val/loss"
	case strings.HasPrefix(key, "val_"):
		return "val/" + strings.TrimPrefix(key, "val_")
	case strings.HasPrefix(key, "rankme") || strings.HasPrefix(key, "feature_std") || strings.HasPrefix(key, "collapse"):
		return "collapse/" + key
	case key == "step_ms" || key == "epoch" || strings.HasPrefix(key, "images_") || strings.HasPrefix(key, "mem_"):
		return "system/" + key
	}
	return "train/" + key
}

// validate computes the validation loss (masks drawn from their own stream,
// the same every time) and the collapse monitors on mean-pooled target
// features: per-dimension std and RankMe. It raises the collapse alarm and,
// after training steps, keeps the best checkpoint. Only rank 0 validates.
func (t *trainer) validate(ctx context.Context) error {
	if t.sync.Rank() != 0 {
		return nil
	}
	ev := t.cfg.Evaluation
	t.valLoader.SetEpoch(0)
	d := t.model.Cfg.Encoder.Dim
	var lossSum float64
	var n int
	var feats []float32
	for i := 0; ev.ValBatches <= 0 || i < ev.ValBatches; i++ {
		batch, err := t.valLoader.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("validation data: %w", err)
		}
		img := t.upload(batch)
		masks := t.vmasker.Sample(int64(i), batch.B)
		s, err := t.model.ForwardBackward(t.b, img, masks, t.loss, jepa.StepOptions{})
		if err != nil {
			batch.Release()
			return fmt.Errorf("validation at step %d: %w", t.step, err)
		}
		lossSum += s.Loss * float64(batch.B)
		n += batch.B
		feats = append(feats, t.model.TargetFeatures(t.b, img)...)
		batch.Release()
	}
	if n == 0 {
		return nil
	}
	t.validatedAt = t.step
	valLoss := lossSum / float64(n)
	rank, err := eval.CenteredRankMe(feats, n, d)
	if err != nil {
		return fmt.Errorf("validation RankMe: %w", err)
	}
	std, err := eval.PerDimStd(feats, n, d)
	if err != nil {
		return fmt.Errorf("validation feature std: %w", err)
	}
	t.summary.RankMe, t.summary.FeatureStd = rank, std.Mean
	alarm := 0
	for _, a := range t.monitor.Observe(rank, std.Mean) {
		alarm = 1
		t.log.Warn(a.Message, zap.Int64("step", t.step), zap.String("metric", a.Metric),
			zap.Float64("value", a.Value), zap.Float64("threshold", a.Threshold))
	}
	t.summary.CollapseAlarms += alarm
	t.log.Info("validation", zap.Int64("step", t.step), zap.Float64("val_loss", valLoss), zap.Float64("rankme", rank),
		zap.Float64("feature_std", std.Mean), zap.Float64("feature_std_min", std.Min), zap.Int("images", n))
	if err := t.writeMetrics(map[string]any{"step": t.step, "epoch": t.epoch, "val_loss": valLoss, "rankme": rank,
		"rankme_frac": rank / float64(d), "feature_std": std.Mean, "feature_std_min": std.Min, "collapse_alarm": alarm}); err != nil {
		return err
	}
	if valLoss < t.best && t.step > 0 {
		t.best = valLoss
		t.summary.BestValLoss = valLoss
		ck, err := t.snapshot()
		if err != nil {
			return err
		}
		if _, err := t.ckpt.SaveBest(ck, valLoss); err != nil {
			return fmt.Errorf("best checkpoint: %w", err)
		}
	}
	return nil
}

// save writes checkpoint_latest and, for kind "epoch" or "step", the
// periodic checkpoint n. Only rank 0 writes.
func (t *trainer) save(kind string, n int) error {
	if t.sync.Rank() != 0 {
		return nil
	}
	ck, err := t.snapshot()
	if err != nil {
		return err
	}
	if err := t.ckpt.SaveLatest(ck); err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", t.step, err)
	}
	if kind != "" {
		if err := t.ckpt.SavePeriodic(kind, n, nil); err != nil {
			return fmt.Errorf("checkpoint %s %d: %w", kind, n, err)
		}
	}
	t.summary.Checkpoint = filepath.Join(t.ckpt.Dir, "checkpoint_latest")
	t.log.Info("checkpoint", zap.Int64("step", t.step), zap.String("dir", t.summary.Checkpoint), zap.String("kind", kind))
	return nil
}

// snapshot copies every tensor and the run state to the host; a failed
// device's tensors (NaN) are never written.
func (t *trainer) snapshot() (*checkpoint.Checkpoint, error) {
	if err := t.deviceErr(); err != nil {
		return nil, err
	}
	m := t.model
	ck := &checkpoint.Checkpoint{}
	vals := make([]float32, m.Params.Len())
	tvals := make([]float32, m.TargetParams.Len())
	mom := make([]float32, m.Params.Len())
	vel := make([]float32, m.Params.Len())
	t.b.Download(vals, m.Params.Values)
	t.b.Download(tvals, m.TargetParams.Values)
	t.b.Download(mom, t.opt.M)
	t.b.Download(vel, t.opt.V)
	for _, np := range m.NamedParams() {
		p := np.Param
		src := vals
		if np.Target {
			src = tvals
		}
		ck.Model = append(ck.Model, checkpoint.Tensor{Name: np.Name, Shape: p.Shape, Data: src[p.Offset : p.Offset+p.Numel()]})
		if !np.Target {
			ck.Optimizer = append(ck.Optimizer,
				checkpoint.Tensor{Name: "exp_avg." + np.Name, Shape: p.Shape, Data: mom[p.Offset : p.Offset+p.Numel()]},
				checkpoint.Tensor{Name: "exp_avg_sq." + np.Name, Shape: p.Shape, Data: vel[p.Offset : p.Offset+p.Numel()]})
		}
	}
	cfgJSON := t.cfg.CanonicalJSON()
	i := max(int(t.step)-1, 0)
	st := State{Format: stateFormat, Step: t.step, Epoch: t.epoch, Loader: t.loader.State(), OptimizerSteps: t.opt.Steps,
		Seed: t.cfg.Seed, LR: t.sched.LRAt(i), WD: t.sched.WDAt(i), EMAMomentum: t.sched.EMAAt(i),
		ConfigDigest: t.cfg.Digest(), Config: cfgJSON, WorldSize: t.sync.WorldSize(),
		Versions: map[string]string{"hjepa": Version, "go": runtime.Version(), "backend": t.b.Name()},
		Time:     time.Now().UTC().Format(time.RFC3339)}
	if !math.IsInf(t.best, 1) {
		b := t.best
		st.BestValLoss = &b
	}
	if t.monitor.PeakRank > 0 {
		mon := t.monitor
		st.Collapse = &mon
	}
	if t.lastStats.Levels != nil {
		st.Metrics = map[string]float64{"loss": t.lastStats.Loss, "jepa_loss": t.lastStats.JEPA, "vicreg": t.lastStats.VICReg}
		for l, v := range t.lastStats.Levels {
			st.Metrics[fmt.Sprintf("loss_l%d", l)] = v
		}
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	ck.State = raw
	return ck, nil
}

// resume loads the latest checkpoint under the output directory.
func (t *trainer) resume() error {
	dir := t.opts.ResumeFrom
	if dir == "" {
		latest, ok, warning, err := t.ckpt.Latest()
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if warning != "" {
			t.log.Warn("skipped damaged checkpoints", zap.String("details", warning))
		}
		if !ok {
			return fmt.Errorf("--resume: no checkpoint under %s; run without --resume to start a new run", t.ckpt.Dir)
		}
		dir = latest
	}
	m := t.model
	shapes := m.Shapes()
	optShapes := map[string][]int{}
	for _, np := range m.NamedParams() {
		if !np.Target {
			optShapes["exp_avg."+np.Name] = np.Param.Shape
			optShapes["exp_avg_sq."+np.Name] = np.Param.Shape
		}
	}
	ck, err := checkpoint.ReadExpect(dir, shapes, optShapes)
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	byName := map[string]checkpoint.Tensor{}
	for _, x := range ck.Model {
		byName[x.Name] = x
	}
	for _, x := range ck.Optimizer {
		byName[x.Name] = x
	}
	for _, np := range m.NamedParams() {
		p := np.Param
		t.b.Upload(p.W, byName[np.Name].Data)
		if !np.Target {
			t.b.Upload(t.opt.M.View(p.Offset, p.Numel()), byName["exp_avg."+np.Name].Data)
			t.b.Upload(t.opt.V.View(p.Offset, p.Numel()), byName["exp_avg_sq."+np.Name].Data)
		}
	}
	var st State
	if err := json.Unmarshal(ck.State, &st); err != nil {
		return fmt.Errorf("--resume: %s/state.json: %w", dir, err)
	}
	if st.Format != stateFormat {
		return fmt.Errorf("--resume: %s/state.json has format %d, this build reads %d", dir, st.Format, stateFormat)
	}
	if st.ConfigDigest != t.cfg.Digest() {
		t.log.Warn("the configuration differs from the checkpoint's; continuing with the new one", zap.String("checkpoint", dir))
	}
	if err := t.loader.Restore(st.Loader); err != nil {
		return fmt.Errorf("--resume: %s: %w", dir, err)
	}
	t.step, t.epoch, t.opt.Steps = st.Step, st.Epoch, st.OptimizerSteps
	if st.BestValLoss != nil {
		t.best = *st.BestValLoss
		t.summary.BestValLoss = t.best
	}
	if st.Collapse != nil {
		t.monitor.InitialRank, t.monitor.PeakRank, t.monitor.InitialStd = st.Collapse.InitialRank, st.Collapse.PeakRank, st.Collapse.InitialStd
	}
	t.log.Info("resumed", zap.String("checkpoint", dir), zap.Int64("step", t.step), zap.Int("epoch", t.epoch))
	return nil
}

// openSinks opens metrics.jsonl (dropping rows after the resumed step, so a
// run killed after its last checkpoint does not leave duplicates) and the
// TensorBoard writer with the run's hyperparameters.
func (t *trainer) openSinks(logDir string) error {
	if err := writeResolvedConfig(t.opts.Out, t.cfg); err != nil {
		return err
	}
	path := filepath.Join(t.opts.Out, "metrics.jsonl")
	if t.opts.Resume {
		if err := truncateMetrics(path, t.step); err != nil {
			return err
		}
	} else if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reset %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	t.metrics = f
	if !t.cfg.Logging.TensorBoard {
		return nil
	}
	tb, err := tfevents.NewWriter(filepath.Join(logDir, "tensorboard"))
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	t.tb = tb
	c := t.cfg
	enc, _ := c.Encoder()
	hp := map[string]any{
		"encoder": c.Model.EncoderType, "embed_dim": enc.EmbedDim, "depth": enc.Depth, "heads": enc.NumHeads,
		"patch_size": enc.PatchSize, "levels": c.Model.NumHierarchies, "predictor_dim": c.Model.Predictor.EmbedDim,
		"predictor_depth": c.Model.Predictor.Depth, "batch_size": c.Data.BatchSize, "lr": c.Training.LR,
		"weight_decay": c.Training.WeightDecay, "ema": c.Model.EMA.Momentum, "loss": c.Loss.Type,
		"vicreg_weight": c.Loss.VICReg.Weight, "seed": c.Seed, "world_size": t.sync.WorldSize(),
		"total_steps": t.sched.Total, "dataset": c.Data.Dataset,
	}
	return tb.WriteHParams(hp, []string{tensorBoardTag("loss"), tensorBoardTag("val_loss"), tensorBoardTag("rankme"), tensorBoardTag("feature_std")})
}

// truncateMetrics keeps the rows of path whose step is at most step.
func truncateMetrics(path string, step int64) error {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var keep bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var row struct {
			Step json.Number `json:"step"`
		}
		if json.Unmarshal(sc.Bytes(), &row) != nil {
			continue
		}
		if s, err := strconv.ParseInt(string(row.Step), 10, 64); err == nil && s <= step {
			keep.Write(sc.Bytes())
			keep.WriteByte('\n')
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, keep.Bytes(), 0o644); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// finish draws the plots and prints the summary with next steps.
func (t *trainer) finish() {
	t.summary.Steps, t.summary.Epochs = t.step, t.epoch
	t.summary.EpochsDone = float64(t.step) / float64(max(1, t.stepsPerEpoch))
	if t.bar != nil {
		t.bar.Finish()
	}
	if t.sync.Rank() != 0 {
		return
	}
	if t.metrics != nil {
		_ = t.metrics.Sync()
	}
	if t.tb != nil {
		_ = t.tb.Flush()
	}
	if t.cfg.Logging.Plots {
		if err := plot.FromJSONL(filepath.Join(t.opts.Out, "metrics.jsonl"), filepath.Join(t.opts.Out, "plots"), nil); err != nil {
			t.log.Warn("plots", zap.Error(err))
		}
	}
	t.log.Info("done", zap.Int64("steps", t.step), zap.Int("epochs", t.epoch), zap.Float64("final_loss", t.summary.FinalLoss),
		zap.Float64("rankme", t.summary.RankMe), zap.Int("collapse_alarms", t.summary.CollapseAlarms),
		zap.String("checkpoint", t.summary.Checkpoint), zap.Bool("interrupted", t.summary.Interrupted))
}

// preflight checks disk and memory before anything large is allocated.
func (t *trainer) preflight(mc jepa.ModelConfig) error {
	c := t.cfg
	e, p := mc.Encoder, mc.Predictor
	blockParams := func(d, hidden int) int64 { return int64(4*d*d + 2*d*hidden + 9*d + hidden) }
	encParams := blockParams(e.Dim, e.Hidden())*int64(e.Depth) + int64(e.Dim*e.PatchDim()+3*e.Dim)
	predParams := blockParams(p.Dim, p.Hidden())*int64(p.Depth) + int64(2*e.Dim*p.Dim+4*p.Dim)
	var headParams int64
	if mc.PredictionHeads {
		headParams = int64(mc.Levels-1) * int64(e.Dim*e.Dim+3*e.Dim)
	}
	if p := int64(mc.ProjectorDim); p > 0 {
		headParams += int64(e.Dim)*p + p*p + p
	}
	trained := encParams + predParams + headParams
	target := encParams
	ckBytes := 4*(3*trained+target) + 1<<20
	keep := int64(max(c.Checkpoint.KeepLast, 0) + 2)
	var problems []string
	if free, err := checkpoint.FreeBytes(t.ckpt0()); err == nil && uint64(keep*ckBytes) > free {
		problems = append(problems, fmt.Sprintf("checkpoints need about %s (%d x %s) but %s has %s free: free disk space, set checkpoint.dir elsewhere or lower checkpoint.keep_last",
			human(keep*ckBytes), keep, human(ckBytes), t.ckpt0(), human(int64(free))))
	}
	need := 4*(4*trained+target) + stepActivationBytes(c, mc)
	if _, onDevice := t.b.(tensor.DeviceMemory); !onDevice {
		// Go's heap: the GC lets it grow a quarter past the live bytes
		// (trainGCPercent), and the runtime, the program and the
		// loader's batches take some more.
		need = need*(100+trainGCPercent)/100 + 28<<20
	}
	if dm, ok := t.b.(tensor.DeviceMemory); ok {
		// Parameters, moments and activations live on the device.
		if free, _, err := dm.DeviceMemory(); err == nil && uint64(need) > free {
			problems = append(problems, fmt.Sprintf("training needs about %s of %s memory but %s is free: lower data.batch_size or use a smaller model.encoder_type",
				human(need), t.b.Device(), human(int64(free))))
		}
	} else if avail, ok := memAvailable(); ok && need > avail {
		problems = append(problems, fmt.Sprintf("training needs about %s of memory but %s is available: lower data.batch_size or use a smaller model.encoder_type",
			human(need), human(avail)))
	}
	if len(problems) > 0 {
		return errors.New("resource check failed:\n  " + strings.Join(problems, "\n  "))
	}
	t.log.Info("resources", zap.String("parameters", fmt.Sprintf("%.2fM trained, %.2fM target", float64(trained)/1e6, float64(target)/1e6)),
		zap.String("memory_estimate", human(need)), zap.String("checkpoint_size", human(ckBytes)))
	return nil
}

// stepActivationBytes is what one training step's buffers hold on its
// device: every block of the context encoder and the predictor keeps its
// activations for the backward pass (per token: LayerNorm outputs and
// statistics, qkv, attention output and log-sum-exp, projection, residuals,
// the MLP's hidden layer before and after GELU), each stack shares one set
// of backward temporaries, and the forward-only target encoder holds one
// block's buffers. The context and target lengths are the largest of the
// masks of the first steps (masks depend only on the seed and the step);
// buffers grow by a quarter past a new largest length, counted as an
// eighth on average.
func stepActivationBytes(c config.Config, mc jepa.ModelConfig) int64 {
	e, p := mc.Encoder, mc.Predictor
	b := int64(c.Data.BatchSize)
	np := int64(e.NumPatches())
	nc, nt := np, np/4
	if m, err := jepa.NewMultiBlockMasker(jepa.NewMaskConfig(c, mc), uint64(c.Seed)); err == nil {
		nc, nt = 0, 0
		for step := range int64(16) {
			s := m.Sample(step, int(b))
			nc, nt = max(nc, int64(s.Nc)), max(nt, int64(s.Nt))
		}
	}
	targets := int64(c.Masking.NumMasks)
	kept := func(d, hidden, heads int) int64 { return int64(10*d + 2*hidden + heads + 4) }
	back := func(d, hidden int) int64 { return int64(6*d + hidden) }
	ed, pd := int64(e.Dim), int64(p.Dim)
	patch := int64(e.PatchDim())
	// Context encoder: B x Nc tokens; patch gather and embedding, positions,
	// the final LayerNorm, the gradient stream.
	ctxTok := b * nc
	ctx := ctxTok * (int64(e.Depth)*kept(e.Dim, e.Hidden(), e.Heads) + back(e.Dim, e.Hidden()) + patch + 4*ed + 2)
	// Predictor: NumTargets x B sequences of Nc + Nt tokens; its input
	// embedding and positions, the output projection and its gradient.
	predTok := targets * b * (nc + nt)
	pred := predTok*(int64(p.Depth)*kept(p.Dim, p.Hidden(), p.Heads)+back(p.Dim, p.Hidden())+4*pd+2) +
		targets*b*nt*3*ed
	// Target encoder on every patch of each view: one block's buffers, the
	// patch embedding and the normalised output; the targets gathered.
	views := int64(max(1, c.Data.Augmentation.Views))
	tgtTok := views * b * np
	tgt := tgtTok*(kept(e.Dim, e.Hidden(), e.Heads)+patch+3*ed+2) + targets*b*nt*ed
	return 4 * (ctx + pred + tgt) * 9 / 8
}

func (t *trainer) ckpt0() string {
	if t.cfg.Checkpoint.Dir != "" {
		return t.cfg.Checkpoint.Dir
	}
	return t.opts.Out
}

// memAvailable reads MemAvailable from /proc/meminfo.
func memAvailable() (int64, bool) {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err == nil
		}
	}
	return 0, false
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
