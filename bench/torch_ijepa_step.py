#!/usr/bin/python3
"""The official I-JEPA training step, for bench/ijepa_step.go's
hjepa_step_ijepa_official: the inner loop of facebookresearch/ijepa's
src/train.py (train_step), on its ViT and predictor as transcribed in
tools/golden/ijepa_vit.py, on the CPU, in one process per thread count.

    /usr/bin/python3 bench/torch_ijepa_step.py --masks FILE.json --threads N

The loop is train.py's, line for line, without the AMP autocast (CPU,
float32 like ours) and the distributed wrapper (one process):

    def train_step():
        _new_lr = scheduler.step(); _new_wd = wd_scheduler.step()
        # Step 1. Forward
        def forward_target():
            with torch.no_grad():
                h = target_encoder(imgs)
                h = F.layer_norm(h, (h.size(-1),))  # normalize over feature-dim
                B = len(h)
                # -- create targets (masked regions of h)
                h = apply_masks(h, masks_pred)
                h = repeat_interleave_batch(h, B, repeat=len(masks_enc))
                return h
        def forward_context():
            z = encoder(imgs, masks_enc)
            z = predictor(z, masks_enc, masks_pred)
            return z
        def loss_fn(z, h):
            loss = F.smooth_l1_loss(z, h)
            loss = AllReduce.apply(loss)
            return loss
        h = forward_target(); z = forward_context(); loss = loss_fn(z, h)
        # Step 2. Backward & step
        loss.backward(); optimizer.step()
        grad_stats = grad_logger(encoder.named_parameters())
        optimizer.zero_grad()
        # Step 3. momentum update of target encoder
        with torch.no_grad():
            m = next(momentum_scheduler)
            for param_q, param_k in zip(encoder.parameters(), target_encoder.parameters()):
                param_k.data.mul_(m).add_((1.-m) * param_q.detach().data)

masks_enc is a list of one [B, Nc] tensor (one context block), masks_pred a
list of NumTargets [B, Nt] tensors, both from the Go side's masks (the same
JSON as bench/torch_hjepa_step.py), so both sides time the same masks. The
optimizer is train.py's init_opt: AdamW over encoder + predictor, weight decay
on weights only; the schedulers' per-step updates are the assignments of lr
and weight_decay; grad_logger's per-layer statistics are left out (they are
logging). Each mask set is stepped once untimed, then once timed.

Prints one line: RESULT what=ijepa_step threads=<n> ms_median=<m> ms_min=<m>
iters=<k> peak_rss_mib=<r> (ru_maxrss of this process: Python, PyTorch,
the models, the optimizer and the steps).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "golden"))
import ijepa_vit as V  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", required=True)
    ap.add_argument("--threads", type=int, default=1)
    V.add_model_args(ap)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--wd", type=float, default=0.04)
    ap.add_argument("--ema", type=float, default=0.998)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with open(args.masks) as f:
        steps = json.load(f)
    if not steps:
        sys.exit(f"{args.masks}: no mask sets")
    batches = []
    for s in steps:
        b, nc, nt = s["B"], s["Nc"], s["Nt"]
        masks_enc = [torch.tensor(s["Context"], dtype=torch.int64).reshape(b, nc)]
        masks_pred = list(torch.tensor(s["Targets"], dtype=torch.int64).reshape(-1, b, nt).unbind(0))
        batches.append((masks_enc, masks_pred))
    bs = steps[0]["B"]

    # init_model: I-JEPA's trunc_normal(0.02) init and fix_init_weight.
    encoder, predictor, target_encoder = V.build_ijepa(args)

    # init_opt
    param_groups = [
        {"params": (p for n, p in encoder.named_parameters() if ("bias" not in n) and (len(p.shape) != 1))},
        {"params": (p for n, p in predictor.named_parameters() if ("bias" not in n) and (len(p.shape) != 1))},
        {"params": (p for n, p in encoder.named_parameters() if ("bias" in n) or (len(p.shape) == 1)),
         "WD_exclude": True, "weight_decay": 0},
        {"params": (p for n, p in predictor.named_parameters() if ("bias" in n) or (len(p.shape) == 1)),
         "WD_exclude": True, "weight_decay": 0},
    ]
    optimizer = torch.optim.AdamW(param_groups)

    imgs = torch.randn(bs, args.channels, args.img_size, args.img_size)

    def train_step(masks_enc, masks_pred):
        for group in optimizer.param_groups:  # scheduler.step(), wd_scheduler.step()
            group["lr"] = args.lr
            if ("WD_exclude" not in group) or not group["WD_exclude"]:
                group["weight_decay"] = args.wd

        def forward_target():
            with torch.no_grad():
                h = target_encoder(imgs)
                h = F.layer_norm(h, (h.size(-1),))
                B = len(h)
                h = V.apply_masks(h, masks_pred)
                h = V.repeat_interleave_batch(h, B, repeat=len(masks_enc))
                return h

        def forward_context():
            z = encoder(imgs, masks_enc)
            z = predictor(z, masks_enc, masks_pred)
            return z

        def loss_fn(z, h):
            return F.smooth_l1_loss(z, h)

        h = forward_target()
        z = forward_context()
        loss = loss_fn(z, h)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            m = args.ema
            for param_q, param_k in zip(encoder.parameters(), target_encoder.parameters()):
                param_k.data.mul_(m).add_((1. - m) * param_q.detach().data)
        return float(loss)

    times = []
    for i, (masks_enc, masks_pred) in enumerate(batches + batches):
        t0 = time.perf_counter()
        train_step(masks_enc, masks_pred)
        t1 = time.perf_counter()
        if i >= len(batches):
            times.append((t1 - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT what=ijepa_step threads={args.threads} ms_median={statistics.median(times):.3f} "
          f"ms_min={min(times):.3f} iters={len(times)} peak_rss_mib={peak:.0f}", flush=True)


if __name__ == "__main__":
    main()
