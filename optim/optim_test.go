package optim

import (
	"math"
	"testing"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

func TestSchedulesMatchIJEPA(t *testing.T) {
	s := Schedules{Total: 100, Warmup: 10, StartLR: 2e-4, LR: 1e-3, FinalLR: 1e-6, WD: 0.04, FinalWD: 0.4, EMAStart: 0.996, EMAEnd: 1}
	// Values computed by hand from I-JEPA's WarmupCosineSchedule /
	// CosineWDSchedule / momentum generator.
	cases := []struct {
		i           int
		lr, wd, ema float64
	}{
		{0, 2e-4 + 0.1*(8e-4), 0.4 + (0.04-0.4)*0.5*(1+math.Cos(math.Pi*0.01)), 0.996},
		{8, 2e-4 + 0.9*(8e-4), 0.4 + (0.04-0.4)*0.5*(1+math.Cos(math.Pi*0.09)), 0.996 + 8*0.004/100},
		{9, 1e-3, 0.4 + (0.04-0.4)*0.5*(1+math.Cos(math.Pi*0.10)), 0.996 + 9*0.004/100},
		{54, 1e-6 + (1e-3-1e-6)*0.5*(1+math.Cos(math.Pi*45/90)), 0.4 + (0.04-0.4)*0.5*(1+math.Cos(math.Pi*0.55)), 0.996 + 54*0.004/100},
		{99, 1e-6, 0.4, 0.996 + 99*0.004/100},
	}
	for _, c := range cases {
		if got := s.LRAt(c.i); math.Abs(got-c.lr) > 1e-15 {
			t.Errorf("LRAt(%d) = %v, want %v", c.i, got, c.lr)
		}
		if got := s.WDAt(c.i); math.Abs(got-c.wd) > 1e-15 {
			t.Errorf("WDAt(%d) = %v, want %v", c.i, got, c.wd)
		}
		if got := s.EMAAt(c.i); math.Abs(got-c.ema) > 1e-15 {
			t.Errorf("EMAAt(%d) = %v, want %v", c.i, got, c.ema)
		}
	}
	// The cosine phase decreases monotonically and never undershoots.
	prev := math.Inf(1)
	for i := 9; i < 100; i++ {
		lr := s.LRAt(i)
		if lr > prev || lr < s.FinalLR {
			t.Fatalf("LRAt(%d) = %v after %v", i, lr, prev)
		}
		prev = lr
	}
}

func TestAdamWGroupsAndClip(t *testing.T) {
	b := cpu.New(1)
	pb := nn.NewBuilder()
	w := pb.Param("fc.weight", true, 2, 3)
	bias := pb.Param("fc.bias", false, 2)
	w2 := pb.Param("fc2.weight", true, 3, 2)
	a, err := pb.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	b.Fill(a.Values, 1)
	b.Fill(a.Grads, 0)
	o := NewAdamW(b, a, 0.9, 0.999, 1e-8)
	if len(o.runs) != 3 {
		t.Fatalf("runs %+v", o.runs)
	}
	o.Step(b, a, 0.1, 0.5)
	// Zero gradients: only decoupled weight decay moves decayed weights.
	got := func(p *nn.Param) float32 { v := make([]float32, p.Numel()); b.Download(v, p.W); return v[0] }
	if g := got(w); math.Abs(float64(g)-0.95) > 1e-7 {
		t.Errorf("decayed weight %v, want 0.95", g)
	}
	if g := got(w2); math.Abs(float64(g)-0.95) > 1e-7 {
		t.Errorf("decayed weight 2 %v, want 0.95", g)
	}
	if g := got(bias); g != 1 {
		t.Errorf("bias %v, want 1 (no decay)", g)
	}

	grads := tensor.FromFloat32s([]float32{3, 4}, 2)
	if n := ClipGradNorm(b, grads, 1); math.Abs(n-5) > 1e-12 {
		t.Errorf("norm %v", n)
	}
	if n := math.Sqrt(b.SumSquares(grads)); math.Abs(n-1) > 1e-5 {
		t.Errorf("clipped norm %v", n)
	}
	if n := ClipGradNorm(b, grads, 10); math.Abs(n-1) > 1e-5 || math.Abs(math.Sqrt(b.SumSquares(grads))-n) > 1e-12 {
		t.Errorf("norm below the bound must not change: %v", n)
	}
}
