package jepa

import (
	"math"
	"sync"
	"testing"

	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

// chanGather connects in-process replicas for the test: each GatherRows
// waits for every replica's rows of the same round.
type chanGather struct {
	rank, world int
	hub         *gatherHub
}

type gatherHub struct {
	mu     sync.Mutex
	cond   *sync.Cond
	round  int
	blocks [][]float32
	n      int
}

func (g chanGather) Rank() int      { return g.rank }
func (g chanGather) WorldSize() int { return g.world }
func (g chanGather) GatherRows(local []float32) ([][]float32, error) {
	h := g.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	round := h.round
	h.blocks[g.rank] = append([]float32(nil), local...)
	h.n++
	if h.n == g.world {
		h.n = 0
		h.round++
		h.cond.Broadcast()
	}
	for h.round == round {
		h.cond.Wait()
	}
	return append([][]float32(nil), h.blocks...), nil
}

// TestVICRegOverReplicasEqualsOneBatch: two replicas with half a batch each,
// gathering VICReg's samples, compute the loss of one process with the whole
// batch, and the mean of their gradients (what the all-reduce gives) is its
// gradient.
func TestVICRegOverReplicasEqualsOneBatch(t *testing.T) {
	const world, half = 2, 3
	b := cpu.New(1)
	one := tinyModel(t, b, 2)
	vals := make([]float32, one.Params.Len())
	tvals := make([]float32, one.TargetParams.Len())
	b.Download(vals, one.Params.Values)
	b.Download(tvals, one.TargetParams.Values)
	masker, err := NewMultiBlockMasker(MaskConfig{GridH: 8, GridW: 8, NumTargets: 2,
		TargetScale: [2]float64{0.2, 0.3}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1}, MinKeep: 2, Levels: 2}, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, lc := range []LossConfig{
		{Type: "smoothl1", Weights: []float64{1, 0.5}, VICRegWeight: 0.5, VarianceCoeff: 25, CovarianceCoeff: 1},
		{Type: "mse", Weights: []float64{1, 0.5}, VICRegWeight: 2, VarianceCoeff: 25, CovarianceCoeff: 25, InvarianceCoeff: 1},
	} {
		img := randImages(b, world*half, 9)
		all := make([]float32, img.Numel())
		b.Download(all, img)
		one.Params.ZeroGrad(b)
		want, err := one.ForwardBackward(b, img, masker.Sample(4, world*half), lc, StepOptions{Backward: true})
		if err != nil {
			t.Fatal(err)
		}
		wantGrad := make([]float32, one.Params.Len())
		b.Download(wantGrad, one.Params.Grads)

		hub := &gatherHub{blocks: make([][]float32, world)}
		hub.cond = sync.NewCond(&hub.mu)
		stats := make([]StepStats, world)
		grads := make([][]float32, world)
		errs := make([]error, world)
		var wg sync.WaitGroup
		for r := 0; r < world; r++ {
			rb := cpu.New(1)
			m := tinyModel(t, rb, 2)
			rb.Upload(m.Params.Values, vals)
			rb.Upload(m.TargetParams.Values, tvals)
			// Replica r reads images j*world + r of the global batch.
			per := len(all) / (world * half)
			mine := make([]float32, 0, half*per)
			for j := 0; j < half; j++ {
				i := j*world + r
				mine = append(mine, all[i*per:(i+1)*per]...)
			}
			x := rb.New(tensor.Float32, half, 1, 16, 16)
			rb.Upload(x, mine)
			m.Params.ZeroGrad(rb)
			wg.Add(1)
			go func(r int) {
				defer wg.Done()
				masks := masker.SampleShard(4, half, r, world)
				stats[r], errs[r] = m.ForwardBackward(rb, x, masks, lc, StepOptions{Backward: true, Replicas: chanGather{r, world, hub}})
				grads[r] = make([]float32, m.Params.Len())
				rb.Download(grads[r], m.Params.Grads)
			}(r)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var loss, jepa, vic float64
		for r := range stats {
			loss += stats[r].Loss / world
			jepa += stats[r].JEPA / world
			vic += stats[r].VICReg / world
		}
		for _, c := range []struct {
			what      string
			got, want float64
		}{{"loss", loss, want.Loss}, {"jepa", jepa, want.JEPA}, {"vicreg", vic, want.VICReg}} {
			if math.Abs(c.got-c.want) > 1e-6*math.Abs(c.want) {
				t.Errorf("%s %+v: mean over replicas %.9g, one process %.9g", lc.Type, c.what, c.got, c.want)
			}
		}
		var num, den float64
		for i := range wantGrad {
			g := (float64(grads[0][i]) + float64(grads[1][i])) / world
			num += (g - float64(wantGrad[i])) * (g - float64(wantGrad[i]))
			den += float64(wantGrad[i]) * float64(wantGrad[i])
		}
		if rel := math.Sqrt(num / den); rel > 1e-5 {
			t.Errorf("%s: mean replica gradient differs from one process's: relative L2 %.2e", lc.Type, rel)
		}
	}
}
