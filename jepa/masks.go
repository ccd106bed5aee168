// Package jepa assembles H-JEPA from the nn layers: the multi-block mask
// generator with its hierarchy of pooling windows, the model (context encoder,
// EMA target encoder, predictor, per-level projection heads), the
// hierarchical loss with optional VICReg, and the collapse monitors.
package jepa

import (
	"fmt"
	"math"

	"github.com/hjepa-go/hjepa/tensor"
)

// MaskConfig is I-JEPA's MaskCollator configuration on a patch grid, plus the
// number of hierarchy levels whose pooling windows the generator also lays out.
type MaskConfig struct {
	GridH, GridW int        // patches per column and per row
	NumTargets   int        // target blocks per image (I-JEPA npred, 4)
	TargetScale  [2]float64 // fraction of the grid per target block ([0.15, 0.2])
	TargetAspect [2]float64 // h/w of target blocks ([0.75, 1.5])
	ContextScale [2]float64 // context block fraction ([0.85, 1.0]); aspect 1
	MinKeep      int        // a block must keep more than this many patches
	AllowOverlap bool       // if true the context may overlap the targets
	Levels       int        // hierarchy levels L; level l pools 2^l x 2^l windows
}

// Validate reports every invalid field at once.
func (c MaskConfig) Validate() error {
	var errs []string
	if c.GridH <= 0 || c.GridW <= 0 {
		errs = append(errs, fmt.Sprintf("grid %dx%d must be positive", c.GridH, c.GridW))
	}
	if c.NumTargets < 1 {
		errs = append(errs, fmt.Sprintf("num_masks %d must be at least 1", c.NumTargets))
	}
	for _, s := range []struct {
		name   string
		r      [2]float64
		hi     float64
		closed bool
	}{{"mask_scale", c.TargetScale, 1, false}, {"context_scale", c.ContextScale, 1, true}, {"aspect_ratio", c.TargetAspect, math.Inf(1), false}} {
		if !(s.r[0] > 0 && s.r[0] <= s.r[1] && (s.r[1] < s.hi || s.closed && s.r[1] <= s.hi)) {
			errs = append(errs, fmt.Sprintf("%s %v must satisfy 0 < lo <= hi < %v", s.name, s.r, s.hi))
		}
	}
	if c.MinKeep < 0 {
		errs = append(errs, fmt.Sprintf("min_keep %d must not be negative", c.MinKeep))
	}
	if c.Levels < 1 || 1<<(c.Levels-1) > min(c.GridH, c.GridW) {
		errs = append(errs, fmt.Sprintf("levels %d: windows of 2^(L-1) patches must fit the %dx%d grid", c.Levels, c.GridH, c.GridW))
	}
	if len(errs) > 0 {
		return fmt.Errorf("masking: %v", errs)
	}
	return nil
}

// Masks is one batch's masks in the layout the model consumes.
//
// Context holds B rows of Nc patch indices (ascending, truncated to the
// batch minimum as I-JEPA does). Targets holds NumTargets*B rows of Nt
// indices, row m*B+i being target block m of image i (I-JEPA's
// x.repeat(len(masks)) order); every target block is a whole BlockH x BlockW
// rectangle listed row-major, so Nt = BlockH*BlockW.
type Masks struct {
	B, Nc, Nt      int
	BlockH, BlockW int
	Context        []int32 // [B, Nc]
	Targets        []int32 // [NumTargets*B, Nt]
	Levels         []LevelWindows
}

// LevelWindows groups the target rows of one hierarchy level into windows of
// S x S patches that tile each target block from its top-left corner.
//
// Windows is the number of windows per block, floor(BlockH/S)*floor(BlockW/S)
// (0: the level has no window in this batch and contributes nothing).
// Members lists, window by window over all NumTargets*B blocks, the S*S rows
// of the flattened [NumTargets*B*Nt] target list that the window averages;
// Window gives for each entry of Members its window's index, for the
// scatter that pools them.
type LevelWindows struct {
	S, Windows int
	Members    []int32
	Window     []int32
}

// MultiBlockMasker draws I-JEPA multi-block masks. It is deterministic:
// the masks of a step depend only on (seed, step, B).
type MultiBlockMasker struct {
	cfg  MaskConfig
	seed uint64
}

// NewMultiBlockMasker checks cfg and returns a masker seeded with seed.
func NewMultiBlockMasker(cfg MaskConfig, seed uint64) (*MultiBlockMasker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &MultiBlockMasker{cfg: cfg, seed: seed}, nil
}

// Config returns the masker's configuration.
func (m *MultiBlockMasker) Config() MaskConfig { return m.cfg }

// Sample draws the masks of batch `step` for B images, exactly as I-JEPA's
// MaskCollator: one target block size per batch (scale and aspect drawn from
// one uniform), one context block size (aspect 1); per image NumTargets
// target blocks anywhere, then a context block restricted to the complement
// of the targets (relaxing one target's constraint after every 20 failed
// draws); index lists truncated to the batch minimum.
func (m *MultiBlockMasker) Sample(step int64, b int) *Masks {
	out, _ := m.sample(step, b)
	return out
}

// SampleShard returns the masks of one data-parallel replica's share of a
// global batch: the global batch of b*world images gets the masks Sample
// would draw for it (block sizes and the context truncation are shared by
// the whole global batch), and this replica takes images j*world+rank,
// j < b, which are the images DistributedSampler gives it (rank r reads
// positions r, r+world, ... of each global batch). So world replicas with b
// images each see exactly the masks of one process with b*world images.
func (m *MultiBlockMasker) SampleShard(step int64, b, rank, world int) *Masks {
	return m.SampleMicro(step, b, 0, 1, rank, world)
}

// SampleMicro is SampleShard for micro-batch micro of accum accumulated
// micro-batches of b images: the step's global batch is b*accum*world
// images and one draw of masks covers it, so accumulating accum
// micro-batches of b sees the masks of one batch of b*accum. Micro-batch
// micro holds positions micro*b ... micro*b+b-1 of this replica's share,
// which are the global batch's images (micro*b+j)*world+rank.
func (m *MultiBlockMasker) SampleMicro(step int64, b, micro, accum, rank, world int) *Masks {
	world, accum = max(1, world), max(1, accum)
	if world == 1 && accum == 1 {
		return m.Sample(step, b)
	}
	g := m.Sample(step, b*accum*world)
	nt := m.cfg.NumTargets
	out := &Masks{B: b, Nc: g.Nc, Nt: g.Nt, BlockH: g.BlockH, BlockW: g.BlockW,
		Context: make([]int32, 0, b*g.Nc), Targets: make([]int32, 0, nt*b*g.Nt)}
	for j := 0; j < b; j++ {
		i := (micro*b+j)*world + rank
		out.Context = append(out.Context, g.Context[i*g.Nc:(i+1)*g.Nc]...)
	}
	for t := 0; t < nt; t++ {
		for j := 0; j < b; j++ {
			row := t*b*accum*world + (micro*b+j)*world + rank
			out.Targets = append(out.Targets, g.Targets[row*g.Nt:(row+1)*g.Nt]...)
		}
	}
	out.Levels = make([]LevelWindows, len(g.Levels))
	for l := range out.Levels {
		out.Levels[l] = levelWindows(1<<l, g.BlockH, g.BlockW, nt*b)
	}
	return out
}

// sample is Sample that also returns each image's context list before
// truncation (for tests).
func (m *MultiBlockMasker) sample(step int64, b int) (*Masks, [][]int32) {
	c := m.cfg
	r := &hostRand{rng: tensor.RNG{Seed: m.seed ^ (uint64(step)+1)*0x9E3779B97F4A7C15}}
	th, tw := m.blockSize(r, c.TargetScale, c.TargetAspect)
	ch, cw := m.blockSize(r, c.ContextScale, [2]float64{1, 1})
	out := &Masks{B: b, BlockH: th, BlockW: tw, Nt: th * tw}
	targets := make([][]int32, c.NumTargets*b)
	contexts := make([][]int32, b)
	minCtx := c.GridH * c.GridW
	for i := 0; i < b; i++ {
		var complements [][]bool
		for t := 0; t < c.NumTargets; t++ {
			idx, comp := m.block(r, th, tw, nil)
			targets[t*b+i] = idx
			complements = append(complements, comp)
		}
		if c.AllowOverlap {
			complements = nil
		}
		idx, _ := m.block(r, ch, cw, complements)
		contexts[i] = idx
		minCtx = min(minCtx, len(idx))
	}
	out.Nc = minCtx
	out.Context = make([]int32, 0, b*minCtx)
	for _, idx := range contexts {
		out.Context = append(out.Context, idx[:minCtx]...)
	}
	out.Targets = make([]int32, 0, len(targets)*out.Nt)
	for _, idx := range targets {
		out.Targets = append(out.Targets, idx...)
	}
	out.Levels = make([]LevelWindows, c.Levels)
	for l := range out.Levels {
		out.Levels[l] = levelWindows(1<<l, th, tw, len(targets))
	}
	return out, contexts
}

// blockSize is I-JEPA's _sample_block_size: one uniform drives both the
// scale and the aspect ratio; the block is shrunk until it fits strictly
// inside the grid.
func (m *MultiBlockMasker) blockSize(r *hostRand, scale, aspect [2]float64) (h, w int) {
	u := r.float64()
	s := scale[0] + u*(scale[1]-scale[0])
	maxKeep := int(float64(m.cfg.GridH*m.cfg.GridW) * s)
	ar := aspect[0] + u*(aspect[1]-aspect[0])
	h = int(math.Round(math.Sqrt(float64(maxKeep) * ar)))
	w = int(math.Round(math.Sqrt(float64(maxKeep) / ar)))
	for h >= m.cfg.GridH {
		h--
	}
	for w >= m.cfg.GridW {
		w--
	}
	return max(h, 1), max(w, 1)
}

// block is I-JEPA's _sample_block_mask: a random top-left corner, the
// rectangle intersected with the acceptable regions, retried until it keeps
// more than MinKeep patches. It returns the kept indices (ascending) and the
// rectangle's complement.
func (m *MultiBlockMasker) block(r *hostRand, h, w int, acceptable [][]bool) ([]int32, []bool) {
	gh, gw := m.cfg.GridH, m.cfg.GridW
	tries, timeout := 0, 20
	for {
		top := r.intn(gh - h)
		left := r.intn(gw - w)
		var idx []int32
		for y := top; y < top+h; y++ {
			for x := left; x < left+w; x++ {
				p := y*gw + x
				ok := true
				for k := 0; k < len(acceptable)-tries; k++ {
					if !acceptable[k][p] {
						ok = false
						break
					}
				}
				if ok {
					idx = append(idx, int32(p))
				}
			}
		}
		if len(idx) > m.cfg.MinKeep || (len(acceptable)-tries <= 0 && len(idx) > 0) {
			comp := make([]bool, gh*gw)
			for i := range comp {
				comp[i] = true
			}
			for y := top; y < top+h; y++ {
				for x := left; x < left+w; x++ {
					comp[y*gw+x] = false
				}
			}
			return idx, comp
		}
		timeout--
		if timeout == 0 {
			tries++
			timeout = 20
		}
	}
}

// levelWindows tiles each of nblocks h x w blocks (rows of Nt = h*w
// consecutive entries, row-major) with s x s windows from the top-left.
func levelWindows(s, h, w, nblocks int) LevelWindows {
	wh, ww := h/s, w/s
	lw := LevelWindows{S: s, Windows: wh * ww}
	nt := h * w
	for q := 0; q < nblocks; q++ {
		for a := 0; a < wh; a++ {
			for c := 0; c < ww; c++ {
				win := int32(q*lw.Windows + a*ww + c)
				for dy := 0; dy < s; dy++ {
					for dx := 0; dx < s; dx++ {
						lw.Members = append(lw.Members, int32(q*nt+(a*s+dy)*w+c*s+dx))
						lw.Window = append(lw.Window, win)
					}
				}
			}
		}
	}
	return lw
}

// hostRand is a sequential stream over the counter-based Philox generator,
// four 32-bit words per counter.
type hostRand struct {
	rng  tensor.RNG
	ctr  uint64
	buf  [4]uint32
	used int
}

func (r *hostRand) uint32() uint32 {
	if r.used == 0 || r.used == 4 {
		r.buf = r.rng.Bits(r.ctr)
		r.ctr++
		r.used = 0
	}
	v := r.buf[r.used]
	r.used++
	return v
}

// float64 is uniform in [0, 1) with 53 random bits.
func (r *hostRand) float64() float64 {
	hi := uint64(r.uint32()) >> 6
	lo := uint64(r.uint32()) >> 5
	return float64(hi<<27|lo) / (1 << 53)
}

// intn is uniform in [0, n) (0 when n <= 0, as torch.randint(0, 0) would
// fail; I-JEPA's blocks are strictly smaller than the grid so n >= 1).
func (r *hostRand) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(uint64(r.uint32()) * uint64(n) >> 32)
}
