package train

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/hjepa-go/hjepa/config"
	"github.com/hjepa-go/hjepa/jepa"
	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// ModelConfig turns the run configuration into the model's shapes.
func ModelConfig(c config.Config) (jepa.ModelConfig, error) {
	e, err := c.Encoder()
	if err != nil {
		return jepa.ModelConfig{}, err
	}
	std := float32(c.Model.InitStd)
	if std == 0 {
		std = 0.02
	}
	enc := nn.ViTConfig{ImgSize: e.ImageSize, PatchSize: e.PatchSize, InChans: e.Channels, Dim: e.EmbedDim,
		Depth: e.Depth, Heads: e.NumHeads, MLPRatio: e.MLPRatio, Eps: 1e-6, InitStd: std,
		PatchInitStd: float32(c.Model.PatchEmbedInitStd)}
	if enc.PatchInitStd == 0 && c.Model.PatchEmbedInit == config.PatchInitFanIn {
		enc.PatchInitStd = float32(1 / math.Sqrt(3*float64(enc.PatchDim())))
	}
	p := c.Model.Predictor
	pred := nn.PredictorConfig{GridSize: enc.GridSize(), EmbedDim: enc.Dim, Dim: p.EmbedDim, Depth: p.Depth,
		Heads: p.NumHeads, MLPRatio: p.MLPRatio, Eps: 1e-6, InitStd: std}
	mc := jepa.ModelConfig{Encoder: enc, Predictor: pred, Levels: c.Model.NumHierarchies, PredictionHeads: c.Model.PredictionHeads,
		ProjectorDim: c.Loss.VICReg.ProjectorDim}
	return mc, mc.Validate()
}

// MaskConfig turns the masking section into the mask generator's config.
func MaskConfig(c config.Config, mc jepa.ModelConfig) jepa.MaskConfig {
	m := c.Masking
	pair := func(v []float64) [2]float64 {
		if len(v) == 2 {
			return [2]float64{v[0], v[1]}
		}
		return [2]float64{}
	}
	g := mc.Encoder.GridSize()
	return jepa.MaskConfig{GridH: g, GridW: g, NumTargets: m.NumMasks,
		TargetScale: pair(m.MaskScale), TargetAspect: pair(m.AspectRatio), ContextScale: pair(m.ContextScale),
		MinKeep: m.MinKeep, AllowOverlap: m.AllowOverlap, Levels: mc.Levels}
}

// LossConfig turns the loss section into the step's loss config.
func LossConfig(c config.Config) jepa.LossConfig {
	l := c.Loss
	return jepa.LossConfig{Type: l.Type, Weights: l.HierarchyWeights, VICRegWeight: l.VICReg.Weight,
		VarianceCoeff: l.VICReg.VarianceCoeff, CovarianceCoeff: l.VICReg.CovarianceCoeff, StdTarget: l.VICReg.StdTarget,
		VICRegTokens: l.VICReg.TokensPerImage, InvarianceCoeff: l.VICReg.InvarianceCoeff}
}

// NewBackend opens the compute device named by c.Device: "cpu" (c.Threads
// workers, 0: all cores), "cuda" or "cuda:K" (an error says why when the GPU
// cannot be used), or "auto": the first GPU when one is usable, else the CPU,
// and then fallback says why in one line for the caller to log.
func NewBackend(c config.Config) (b tensor.Backend, fallback string, err error) {
	return NewLocalBackend(c, 0)
}

// NewLocalBackend is NewBackend for the worker of local rank localRank on
// its host: device auto takes GPU localRank (one worker per GPU, as
// torchrun's LOCAL_RANK), and the CPU when that GPU does not exist.
func NewLocalBackend(c config.Config, localRank int) (b tensor.Backend, fallback string, err error) {
	threads := c.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	switch device := c.Device; {
	case device == "" || device == "cpu":
		return cpu.New(threads), "", nil
	case device == "auto":
		gb, err := openGPU(localRank, c.AllowTF32)
		if noGPU(err) {
			return cpu.New(threads), fmt.Sprintf("device auto: %v; using the CPU", firstClause(err)), nil
		}
		if err != nil {
			return cpu.New(threads), fmt.Sprintf("device auto: the GPU is not usable (%v); using the CPU", err), nil
		}
		return gb, "", nil
	case device == "cuda" || strings.HasPrefix(device, "cuda:"):
		ordinal := 0
		if k, ok := strings.CutPrefix(device, "cuda:"); ok {
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 {
				return nil, "", fmt.Errorf("device %q: want cuda:K with K a GPU index", device)
			}
			ordinal = n
		}
		gb, err := openGPU(ordinal, c.AllowTF32)
		if err != nil {
			return nil, "", fmt.Errorf("device %s: %w (use --device cpu to train on the CPU)", device, err)
		}
		return gb, "", nil
	}
	return nil, "", fmt.Errorf("device %q: want auto, cpu, cuda or cuda:K", c.Device)
}

// firstClause is an error's text up to its first ';' (the part that says
// what is missing, without the advice).
func firstClause(err error) string {
	s, _, _ := strings.Cut(err.Error(), ";")
	return s
}

// NewInitialModel builds the model of c on b, initialised from c.Seed as
// `hjepa train` does at step 0.
func NewInitialModel(b tensor.Backend, c config.Config) (*jepa.Model, error) {
	mc, err := ModelConfig(c)
	if err != nil {
		return nil, err
	}
	m, err := jepa.NewModel(b, mc)
	if err != nil {
		return nil, err
	}
	m.Init(b, tensor.NewRNG(uint64(c.Seed)))
	return m, nil
}

// LoadWeights loads a checkpoint's model tensors (context and target sides)
// into m, checking every name and shape first.
func LoadWeights(b tensor.Backend, m *jepa.Model, dir string) error {
	ck, err := checkpoint.ReadExpect(dir, m.Shapes(), nil)
	if err != nil {
		return err
	}
	byName := map[string][]float32{}
	for _, x := range ck.Model {
		byName[x.Name] = x.Data
	}
	for _, np := range m.NamedParams() {
		b.Upload(np.Param.W, byName[np.Name])
	}
	return nil
}
