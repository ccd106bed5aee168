#!/usr/bin/env python3
"""PyTorch baseline for gpu_gemm_f32_4096 (bench/gpu.go): torch.matmul of two
size x size FP32 matrices on the GPU with TF32 off, timed with
torch.cuda.synchronize around each call after one warm-up.

    python3 bench/torch_gpu_gemm.py --size 4096 --iters 20

Prints one line:  RESULT what=gpu_gemm threads=1 ms_median=<m> ms_min=<m> iters=<k>
"""

import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    n = args.size
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    c = torch.matmul(a, b)
    torch.cuda.synchronize()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        c = torch.matmul(a, b)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    del c
    print(f"RESULT what=gpu_gemm threads=1 ms_median={statistics.median(times):.4f} "
          f"ms_min={min(times):.4f} iters={len(times)}", flush=True)


if __name__ == "__main__":
    main()
