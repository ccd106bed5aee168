package jepa

import (
	"math"
	"reflect"
	"testing"
)

func ijepaMaskConfig(grid int) MaskConfig {
	return MaskConfig{
		GridH: grid, GridW: grid, NumTargets: 4,
		TargetScale: [2]float64{0.15, 0.2}, TargetAspect: [2]float64{0.75, 1.5},
		ContextScale: [2]float64{0.85, 1.0}, MinKeep: 4, Levels: 3,
	}
}

func TestMasksProperties(t *testing.T) {
	for _, grid := range []int{14, 16, 8} {
		cfg := ijepaMaskConfig(grid)
		m, err := NewMultiBlockMasker(cfg, 42)
		if err != nil {
			t.Fatal(err)
		}
		n := float64(grid * grid)
		for step := int64(0); step < 200; step++ {
			const b = 6
			k := m.Sample(step, b)
			if len(k.Context) != b*k.Nc || len(k.Targets) != cfg.NumTargets*b*k.Nt {
				t.Fatalf("grid %d step %d: lengths %d/%d for Nc=%d Nt=%d", grid, step, len(k.Context), len(k.Targets), k.Nc, k.Nt)
			}
			if k.Nt != k.BlockH*k.BlockW {
				t.Fatalf("Nt %d != %dx%d", k.Nt, k.BlockH, k.BlockW)
			}
			// Block size: I-JEPA rounds sqrt(keep*ar) and sqrt(keep/ar), so
			// the area is within rounding of the scale bounds.
			h, w := float64(k.BlockH), float64(k.BlockW)
			lo := (math.Sqrt(math.Floor(cfg.TargetScale[0]*n)) - 0.5)
			hi := (math.Sqrt(cfg.TargetScale[1]*n) + 0.5)
			if h*w < lo*lo || h*w > hi*hi {
				t.Fatalf("grid %d step %d: target block %vx%v outside scale bounds [%v, %v]", grid, step, h, w, lo*lo, hi*hi)
			}
			if r := h / w; r < 0.75*(h-0.5)/(h+0.5)*(w-0.5)/(w+0.5)*0.99 || r > 1.5*(h+0.5)/(h-0.5)*(w+0.5)/(w-0.5)*1.01 {
				t.Fatalf("grid %d step %d: aspect %v far outside [0.75, 1.5]", grid, step, r)
			}
			for i := 0; i < b; i++ {
				ctx := k.Context[i*k.Nc : (i+1)*k.Nc]
				inCtx := map[int32]bool{}
				for j, p := range ctx {
					if j > 0 && p <= ctx[j-1] {
						t.Fatalf("context not ascending: %v", ctx)
					}
					inCtx[p] = true
				}
				for m := 0; m < cfg.NumTargets; m++ {
					tg := k.Targets[(m*b+i)*k.Nt : (m*b+i+1)*k.Nt]
					top, left := int(tg[0])/grid, int(tg[0])%grid
					for j, p := range tg {
						y, x := top+j/k.BlockW, left+j%k.BlockW
						if int(p) != y*grid+x || y >= grid || x >= grid {
							t.Fatalf("target %d of image %d is not a whole row-major %dx%d rectangle: %v", m, i, k.BlockH, k.BlockW, tg)
						}
						if inCtx[p] {
							t.Fatalf("step %d image %d: context contains target patch %d", step, i, p)
						}
					}
				}
			}
			if k.Nc <= cfg.MinKeep {
				t.Fatalf("context keeps %d <= min_keep", k.Nc)
			}
		}
	}
}

// The context lists are truncated to the batch minimum: Nc is the shortest
// image's list, and every row is a prefix of its image's full list.
func TestMasksTruncatedToBatchMinimum(t *testing.T) {
	m, _ := NewMultiBlockMasker(ijepaMaskConfig(14), 3)
	const b = 8
	sawTruncation := false
	for step := int64(0); step < 20; step++ {
		k, full := m.sample(step, b)
		shortest := len(full[0])
		for _, f := range full {
			shortest = min(shortest, len(f))
		}
		if k.Nc != shortest {
			t.Fatalf("step %d: Nc %d, shortest context %d", step, k.Nc, shortest)
		}
		for i, f := range full {
			if !reflect.DeepEqual(k.Context[i*k.Nc:(i+1)*k.Nc], f[:k.Nc]) {
				t.Fatalf("step %d image %d: row is not a prefix of the full context", step, i)
			}
			if len(f) > k.Nc {
				sawTruncation = true
			}
		}
	}
	if !sawTruncation {
		t.Fatal("no image was ever truncated: the test exercised nothing")
	}
}

func TestMasksDeterministicBySeed(t *testing.T) {
	m1, _ := NewMultiBlockMasker(ijepaMaskConfig(14), 7)
	m2, _ := NewMultiBlockMasker(ijepaMaskConfig(14), 7)
	m3, _ := NewMultiBlockMasker(ijepaMaskConfig(14), 8)
	a, b := m1.Sample(10, 4), m2.Sample(10, 4)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed and step gave different masks")
	}
	if reflect.DeepEqual(a, m1.Sample(11, 4)) {
		t.Fatal("different steps gave identical masks")
	}
	if reflect.DeepEqual(a, m3.Sample(10, 4)) {
		t.Fatal("different seeds gave identical masks")
	}
}

func TestLevelWindows(t *testing.T) {
	// A 5x3 block at level 1 (2x2 windows): floor(5/2)*floor(3/2) = 2 windows.
	lw := levelWindows(2, 5, 3, 2)
	if lw.Windows != 2 || len(lw.Members) != 2*2*4 {
		t.Fatalf("windows %d members %d", lw.Windows, len(lw.Members))
	}
	// Block 0, window 0: rows 0-1, cols 0-1 -> list positions 0,1,3,4.
	if got := lw.Members[:4]; !reflect.DeepEqual(got, []int32{0, 1, 3, 4}) {
		t.Fatalf("window 0 members %v", got)
	}
	// Block 0, window 1: rows 2-3 -> 6,7,9,10.
	if got := lw.Members[4:8]; !reflect.DeepEqual(got, []int32{6, 7, 9, 10}) {
		t.Fatalf("window 1 members %v", got)
	}
	// Block 1 starts at entry 15.
	if got := lw.Members[8:12]; !reflect.DeepEqual(got, []int32{15, 16, 18, 19}) {
		t.Fatalf("block 1 window 0 members %v", got)
	}
	for i, w := range lw.Window {
		if int(w) != i/4 {
			t.Fatalf("window id %d at %d", w, i)
		}
	}
	// Level 2 (4x4) on a 5x3 block has no window: it contributes nothing.
	if lw := levelWindows(4, 5, 3, 2); lw.Windows != 0 || len(lw.Members) != 0 {
		t.Fatalf("4x4 windows on a 5x3 block: %+v", lw)
	}
	// Level 0 is the identity grouping.
	lw0 := levelWindows(1, 5, 3, 2)
	for i, p := range lw0.Members {
		if int(p) != i || int(lw0.Window[i]) != i {
			t.Fatalf("level 0 grouping not identity at %d", i)
		}
	}
}

func TestMaskConfigValidate(t *testing.T) {
	bad := []func(*MaskConfig){
		func(c *MaskConfig) { c.GridH = 0 },
		func(c *MaskConfig) { c.NumTargets = 0 },
		func(c *MaskConfig) { c.TargetScale = [2]float64{0.3, 0.2} },
		func(c *MaskConfig) { c.TargetScale = [2]float64{0.1, 1.2} },
		func(c *MaskConfig) { c.ContextScale = [2]float64{0, 1} },
		func(c *MaskConfig) { c.TargetAspect = [2]float64{-1, 1} },
		func(c *MaskConfig) { c.Levels = 5 },
		func(c *MaskConfig) { c.MinKeep = -1 },
	}
	for i, f := range bad {
		c := ijepaMaskConfig(14)
		f(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: %+v validated", i, c)
		}
	}
	if err := ijepaMaskConfig(14).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestSampleShardPartitionsGlobalBatch: world replicas with b images each
// see, image for image, the masks one process draws for b*world images.
func TestSampleShardPartitionsGlobalBatch(t *testing.T) {
	cfg := ijepaMaskConfig(14)
	m, _ := NewMultiBlockMasker(cfg, 3)
	if !reflect.DeepEqual(m.SampleShard(5, 4, 0, 1), m.Sample(5, 4)) {
		t.Fatal("world 1: SampleShard differs from Sample")
	}
	for _, world := range []int{2, 3, 4} {
		const b = 3
		for step := int64(0); step < 20; step++ {
			g := m.Sample(step, b*world)
			for rank := 0; rank < world; rank++ {
				s := m.SampleShard(step, b, rank, world)
				if s.B != b || s.Nc != g.Nc || s.Nt != g.Nt || s.BlockH != g.BlockH || s.BlockW != g.BlockW {
					t.Fatalf("world %d rank %d: sizes %+v vs global %+v", world, rank, s, g)
				}
				for j := 0; j < b; j++ {
					i := j*world + rank
					if !reflect.DeepEqual(s.Context[j*s.Nc:(j+1)*s.Nc], g.Context[i*g.Nc:(i+1)*g.Nc]) {
						t.Fatalf("world %d rank %d image %d: context differs from global image %d", world, rank, j, i)
					}
					for tg := 0; tg < cfg.NumTargets; tg++ {
						sr, gr := tg*b+j, tg*b*world+i
						if !reflect.DeepEqual(s.Targets[sr*s.Nt:(sr+1)*s.Nt], g.Targets[gr*g.Nt:(gr+1)*g.Nt]) {
							t.Fatalf("world %d rank %d image %d target %d differs", world, rank, j, tg)
						}
					}
				}
				for l, lv := range s.Levels {
					if want := levelWindows(1<<l, g.BlockH, g.BlockW, cfg.NumTargets*b); !reflect.DeepEqual(lv, want) {
						t.Fatalf("world %d level %d windows differ", world, l)
					}
				}
			}
		}
	}
}

// TestSampleMicroMatchesOneBigBatch: accum micro-batches of b images on
// each of world replicas see, image for image, the masks of one replica
// reading b*accum images (the loader hands micro-batch m positions m*b ...
// m*b+b-1 of the replica's share).
func TestSampleMicroMatchesOneBigBatch(t *testing.T) {
	cfg := ijepaMaskConfig(14)
	m, _ := NewMultiBlockMasker(cfg, 3)
	for _, world := range []int{1, 2, 3} {
		for _, accum := range []int{1, 2, 4} {
			const b = 3
			for step := int64(0); step < 10; step++ {
				for rank := 0; rank < world; rank++ {
					big := m.SampleShard(step, b*accum, rank, world)
					for micro := 0; micro < accum; micro++ {
						s := m.SampleMicro(step, b, micro, accum, rank, world)
						if s.B != b || s.Nc != big.Nc || s.Nt != big.Nt || s.BlockH != big.BlockH || s.BlockW != big.BlockW {
							t.Fatalf("world %d accum %d: sizes %+v vs %+v", world, accum, s, big)
						}
						for j := 0; j < b; j++ {
							i := micro*b + j
							if !reflect.DeepEqual(s.Context[j*s.Nc:(j+1)*s.Nc], big.Context[i*big.Nc:(i+1)*big.Nc]) {
								t.Fatalf("world %d accum %d rank %d micro %d image %d: context differs", world, accum, rank, micro, j)
							}
							for tg := 0; tg < cfg.NumTargets; tg++ {
								sr, br := tg*b+j, tg*b*accum+i
								if !reflect.DeepEqual(s.Targets[sr*s.Nt:(sr+1)*s.Nt], big.Targets[br*big.Nt:(br+1)*big.Nt]) {
									t.Fatalf("world %d accum %d rank %d micro %d image %d target %d differs", world, accum, rank, micro, j, tg)
								}
							}
						}
					}
				}
			}
		}
	}
}
