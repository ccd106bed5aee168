#!/usr/bin/python3
"""PyTorch eager baseline for bench/vit.go: forward + backward of one I-JEPA
ViT block or of the whole encoder, on the CPU, in one process per thread count.

    /usr/bin/python3 bench/torch_vit.py --what block|encoder --threads N

Shapes (the project's Fashion-MNIST tiny config): width 192, 3 heads, MLP
ratio 4, batch 64, 196 tokens; the encoder is 6 blocks on 28x28x1 images with
patch 2 (196 patches, all kept) plus its final LayerNorm. The model code is
tools/golden/ijepa_vit.py, the same code the golden fixtures come from.

Prints one line:  RESULT what=<w> threads=<n> ms_median=<m> ms_min=<m> iters=<k>
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "golden"))
import ijepa_vit as V  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=["block", "encoder"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.what == "block":
        model = V.Block(args.dim, args.heads)
        x = torch.randn(args.batch, 196, args.dim, requires_grad=True)

        def step():
            return model(x)
    else:
        model = V.VisionTransformer(28, 2, 1, args.dim, args.depth, args.heads)
        x = torch.randn(args.batch, 1, 28, 28)

        def step():
            return model(x)

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)
    dout = torch.randn(args.batch, 196, args.dim)

    times = []
    for i in range(args.warmup + args.iters):
        model.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        t0 = time.perf_counter()
        out = step()
        out.backward(dout)
        t1 = time.perf_counter()
        if i >= args.warmup:
            times.append((t1 - t0) * 1e3)
    print(f"RESULT what={args.what} threads={args.threads} ms_median={statistics.median(times):.3f} "
          f"ms_min={min(times):.3f} iters={len(times)}", flush=True)


if __name__ == "__main__":
    main()
