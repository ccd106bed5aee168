package main

import (
	"os"
	"runtime/pprof"

	"github.com/hjepa-go/hjepa/nn"
	"github.com/hjepa-go/hjepa/tensor"
	"github.com/hjepa-go/hjepa/tensor/cpu"
)

func main() {
	b := cpu.New(2)
	rng := tensor.NewRNG(1)
	pb := nn.NewBuilder()
	blk := nn.NewBlock(pb.Scope("blocks.0."), 192, 3, 768, 1e-6)
	arena, _ := pb.Build(b)
	b.RandNormal(arena.Values, rng, 0, 0.02)
	x := b.New(tensor.Float32, 64, 196, 192)
	dx := b.New(tensor.Float32, 64, 196, 192)
	dy := b.New(tensor.Float32, 64, 196, 192)
	b.RandNormal(x, rng, 0, 1)
	b.RandNormal(dy, rng, 0, 1)
	blk.Forward(b, x)
	blk.Backward(b, dx, dy)
	f, _ := os.Create("/tmp/vit.prof")
	pprof.StartCPUProfile(f)
	for i := 0; i < 8; i++ {
		arena.ZeroGrad(b)
		blk.Forward(b, x)
		blk.Backward(b, dx, dy)
	}
	pprof.StopCPUProfile()
}
