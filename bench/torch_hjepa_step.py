#!/usr/bin/python3
"""PyTorch eager baseline for bench/hjepa_step.go: one full H-JEPA training
step of the fmnist-tiny model on the CPU (or, with --device cuda, of the GPU
benchmark's model), in one process per thread count.

    /usr/bin/python3 bench/torch_hjepa_step.py --masks FILE.json --threads N

The model is the official I-JEPA code (tools/golden/ijepa_vit.py): context
encoder VisionTransformer(28, patch 2, 1 channel, width 192, depth 6, heads 3),
its deepcopy as the target encoder (no grad), VisionTransformerPredictor
(width 96, depth 4, heads 3), initialised as I-JEPA and nn.Encoder.Init:
trunc_normal(0.02) weights, zero biases, LayerNorm 1/0, attn.proj and mlp.fc2
of block i divided by sqrt(2(i+1)). The targets have no parameters: there are no
heads (jepa/step.go with model.prediction_heads off). One step is, as
I-JEPA's train.py and jepa/step.go + train/trainer.go:

    optimizer.zero_grad()
    targets: F.layer_norm(target_encoder(imgs), eps=1e-5) at the target
        indices (no grad)
    predictions: predictor(encoder(imgs, ctx), ctx, targets)
    level 0: smooth_l1 (beta 1) mean between predictions and targets (I-JEPA)
    level l > 0: 2^l x 2^l windows tiling each target block from its top-left,
        averaged on both sides; F.layer_norm (no affine, eps 1e-5) of the
        pooled predictions and of the pooled targets; smooth_l1 mean
    loss = sum_l w_l * loss_l
    loss.backward()
    --clip-grad > 0: clip_grad_norm_ over encoder + predictor (the GPU
        benchmark's default.yaml has 3; fmnist-tiny 0, no clipping)
    AdamW step over encoder + predictor (two groups: no weight decay on
        biases and 1-D params)
    EMA of the target encoder under torch.no_grad()

The masks come from the Go side (jepa.MultiBlockMasker, a JSON list with one
object per iteration: B, Nc, Nt, BlockH, BlockW, Context [B*Nc], Targets
[NumTargets*B*Nt], row m*B+i being block m of image i), so both sides time the
same masks. Images are random; mask tensors are built before timing. Every
mask set is stepped once untimed (warm-up), then once timed.

Prints one line:  RESULT what=hjepa_step threads=<n> ms_median=<m> ms_min=<m> iters=<k>
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "golden"))
import ijepa_vit as V  # noqa: E402


# jepa.TargetNormEps: F.layer_norm's default, as I-JEPA's target normalisation.
TARGET_NORM_EPS = 1e-5


def pool_windows(x, bh, bw, s):
    """x [R, bh*bw, D] (row-major blocks) -> [R*floor(bh/s)*floor(bw/s), D]:
    the mean over s x s windows tiling each block from its top-left corner."""
    if s == 1:
        return x.reshape(-1, x.size(-1))
    r, d = x.size(0), x.size(-1)
    wh, ww = bh // s, bw // s
    x = x.reshape(r, bh, bw, d)[:, :wh * s, :ww * s]
    return x.reshape(r, wh, s, ww, s, d).mean(dim=(2, 4)).reshape(-1, d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", required=True, help="JSON masks written by bench/hjepa_step.go")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (then steps are timed with torch.cuda.synchronize)")
    V.add_model_args(ap)
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--wd", type=float, default=0.04)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--clip-grad", type=float, default=0.0, help="gradient-norm clipping (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        # FP32 as ours (allow_tf32 false is also PyTorch >= 1.12's default for matmul).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with open(args.masks) as f:
        steps = json.load(f)
    if not steps:
        sys.exit(f"{args.masks}: no mask sets")
    batch = []
    for s in steps:
        b, nc, nt = s["B"], s["Nc"], s["Nt"]
        ctx = torch.tensor(s["Context"], dtype=torch.int64).reshape(b, nc).to(dev)
        tgt = torch.tensor(s["Targets"], dtype=torch.int64).reshape(-1, b, nt).to(dev)
        batch.append((ctx, list(tgt.unbind(0)), s["BlockH"], s["BlockW"]))
    bs = steps[0]["B"]

    encoder, predictor, target_encoder = V.build_ijepa(args, dev)

    # I-JEPA's init_opt: weights with decay, biases and 1-D parameters without.
    named = [(n, p) for mod in (encoder, predictor) for n, p in mod.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if "bias" not in n and p.dim() != 1]},
        {"params": [p for n, p in named if "bias" in n or p.dim() == 1], "WD_exclude": True, "weight_decay": 0},
    ], betas=(0.9, 0.999), eps=1e-8)
    trained = [p for _, p in named]
    ema_pairs = list(zip(encoder.parameters(), target_encoder.parameters()))

    imgs = torch.randn(bs, args.channels, args.img_size, args.img_size, device=dev)

    def step(ctx, tgts, bh, bw):
        for g in optimizer.param_groups:  # the schedulers' per-step update
            g["lr"] = args.lr
            if not g.get("WD_exclude", False):
                g["weight_decay"] = args.wd
        optimizer.zero_grad()
        with torch.no_grad():
            h = target_encoder(imgs)
            d = h.size(-1)
            h = F.layer_norm(h, (d,), eps=TARGET_NORM_EPS)
            h = V.apply_masks(h, tgts)  # [M*B, Nt, D]
        z = encoder(imgs, ctx)
        p = predictor(z, ctx, tgts)  # [M*B, Nt, D]
        loss = 0.0
        for lvl, w in enumerate(args.weights):
            s = 1 << lvl
            if bh < s or bw < s:
                continue  # no window at this level: contributes 0
            if s == 1:
                loss = loss + w * F.smooth_l1_loss(p.reshape(-1, d), h.reshape(-1, d))
                continue
            with torch.no_grad():
                t = F.layer_norm(pool_windows(h, bh, bw, s), (d,), eps=TARGET_NORM_EPS)
            q = F.layer_norm(pool_windows(p, bh, bw, s), (d,), eps=TARGET_NORM_EPS)
            loss = loss + w * F.smooth_l1_loss(q, t)
        loss.backward()
        if args.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(trained, args.clip_grad)
        optimizer.step()
        with torch.no_grad():
            m = args.ema
            for q, k in ema_pairs:
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return loss

    times = []
    for i, (ctx, tgts, bh, bw) in enumerate(batch + batch):
        sync()
        t0 = time.perf_counter()
        step(ctx, tgts, bh, bw)
        sync()
        t1 = time.perf_counter()
        if i >= len(batch):
            times.append((t1 - t0) * 1e3)
    print(f"RESULT what=hjepa_step threads={args.threads} ms_median={statistics.median(times):.3f} "
          f"ms_min={min(times):.3f} iters={len(times)}", flush=True)


if __name__ == "__main__":
    main()
