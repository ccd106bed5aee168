package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hjepa-go/hjepa/cuda"
	"github.com/hjepa-go/hjepa/tensor"
)

// GPU benchmarks: they need an NVIDIA GPU and, for the baselines, a Python
// with CUDA PyTorch on the same machine (HJEPA_PYTHON, else python3 on PATH;
// Debian's python3-torch is CPU-only). Without a GPU they print why they are
// skipped and report nothing, so `make bench` still passes on CPU machines.
//
//   - gpu_gemm_f32_4096: C = A B for 4096x4096 FP32 matrices through our
//     backend's Gemm (cuBLAS, TF32 off) against torch.matmul with
//     allow_tf32 off, in TFLOP/s (higher is better).
//   - hjepa_step_vits16_224: one full training step of ViT-S/16 at 224 px,
//     batch 128, predictor 384 x 6 (configs/default.yaml with those
//     overrides, smooth-L1 and no VICReg as the script), against the same model and masks
//     in PyTorch eager (bench/torch_hjepa_step.py --device cuda), in ms.
const (
	gpuGemmName  = "gpu_gemm_f32_4096"
	gpuStepName  = "hjepa_step_vits16_224"
	gpuGemmSize  = 4096
	gpuGemmIters = 20
)

// gpuStepSets turn configs/default.yaml (ViT-B/16) into the benchmark's model.
var gpuStepSets = []string{
	"model.encoder_type=vit_small_patch16_224", "model.embed_dim=384",
	"model.predictor.embed_dim=384", "model.predictor.depth=6", "model.predictor.num_heads=12",
	"data.batch_size=128", "loss.type=smoothl1", "loss.vicreg.weight=0",
}

func init() {
	register(Bench{Names: []string{gpuGemmName, gpuStepName}, Run: runGPU})
}

func runGPU(want func(string) bool, report func(Result)) error {
	b, err := cuda.Open(0, cuda.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s, %s: skipped, no usable GPU: %v\n", gpuGemmName, gpuStepName, err)
		return nil
	}
	defer b.Close()
	fmt.Fprintf(os.Stderr, "bench gpu: %s\n", b.Name())
	if want(gpuGemmName) {
		ours, err := gpuGemmOurs(b)
		if err != nil {
			return fmt.Errorf("%s: %w", gpuGemmName, err)
		}
		base, err := runTorchGPU(filepath.Join("bench", "torch_gpu_gemm.py"), "--size", strconv.Itoa(gpuGemmSize), "--iters", strconv.Itoa(gpuGemmIters))
		if err != nil {
			return fmt.Errorf("%s baseline: %w", gpuGemmName, err)
		}
		flop := 2 * math.Pow(gpuGemmSize, 3)
		report(Result{Name: gpuGemmName, Value: flop / (ours * 1e-3) / 1e12, Unit: "TFLOP/s", Baseline: flop / (base * 1e-3) / 1e12})
	}
	if want(gpuStepName) {
		s, err := newHJEPAStepSetup(filepath.Join("configs", "default.yaml"), gpuStepSets, 128)
		if err != nil {
			return err
		}
		defer os.Remove(s.masksFile)
		ours, err := hjepaStepOurs(s, b, "cuda")
		if err != nil {
			return fmt.Errorf("%s: %w", gpuStepName, err)
		}
		base, err := runTorchGPU(filepath.Join("bench", "torch_hjepa_step.py"), hjepaStepTorchArgs(s, "--device", "cuda")...)
		if err != nil {
			return fmt.Errorf("%s baseline: %w", gpuStepName, err)
		}
		report(Result{Name: gpuStepName, Value: ours, Unit: "ms", Baseline: base})
	}
	return nil
}

// gpuGemmOurs returns the fastest of gpuGemmIters 4096^3 GEMMs in ms.
func gpuGemmOurs(b *cuda.Backend) (float64, error) {
	n := gpuGemmSize
	rng := tensor.NewRNG(1)
	x, y, z := b.New(tensor.Float32, n, n), b.New(tensor.Float32, n, n), b.New(tensor.Float32, n, n)
	b.RandNormal(x, rng, 0, 1)
	b.RandNormal(y, rng, 0, 1)
	g := tensor.GemmArgs{M: n, N: n, K: n, Alpha: 1, A: x, B: y, C: z}
	b.Gemm(g) // warm-up: cuBLAS picks and loads its kernel
	if err := b.Sync(); err != nil {
		return 0, err
	}
	best := math.Inf(1)
	for range gpuGemmIters {
		t0 := time.Now()
		b.Gemm(g)
		if err := b.Sync(); err != nil {
			return 0, err
		}
		best = min(best, float64(time.Since(t0).Nanoseconds())/1e6)
	}
	return best, nil
}

// runTorchGPU runs a baseline script under a CUDA-enabled Python and returns
// its fastest iteration in ms.
func runTorchGPU(rel string, args ...string) (float64, error) {
	script, err := benchRepoFile(rel)
	if err != nil {
		return 0, err
	}
	py := os.Getenv("HJEPA_PYTHON")
	if py == "" {
		py = "python3"
	}
	cmd := exec.Command(py, append([]string{script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s (needs PyTorch with CUDA; set HJEPA_PYTHON to its python)", cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	m := torchResult.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s: no RESULT line in output %q", cmd, out)
	}
	return strconv.ParseFloat(string(m[3]), 64)
}
