#!/usr/bin/python3
"""Writes the golden fixture of one I-JEPA training step that
jepa/golden_test.go compares H-JEPA's step (VICReg off, level weights
[1, 0, 0]) against: make golden, or

    /usr/bin/python3 tools/golden/make_step_fixture.py --out jepa/testdata/golden

The step is the official one (facebookresearch/ijepa src/train.py, train_step):

    with torch.no_grad():
        h = target_encoder(imgs)
        h = F.layer_norm(h, (h.size(-1),))
        B = len(h)
        h = apply_masks(h, masks_pred)
        h = repeat_interleave_batch(h, B, repeat=len(masks_enc))
    z = encoder(imgs, masks_enc)
    z = predictor(z, masks_enc, masks_pred)
    loss = F.smooth_l1_loss(z, h)
    loss.backward()

on a tiny ViT (tools/golden/ijepa_vit.py). ijepa_step.safetensors holds, in
float32 unless noted:
  img                  [B, C, H, W]
  masks_enc.0          int32 [B, Nc], the context index lists
  masks_pred.k         int32 [B, Nt], target block k of every image (k < 4)
  loss                 [1]
  pred                 the predictor output z [4*B, Nt, D] (diagnostics)
  target               the masked normalised targets h [4*B, Nt, D]
  grad.encoder.<key>   the gradient of every context-encoder parameter
  grad.predictor.<key> the gradient of every predictor parameter
and __metadata__ with torch, fixture, config (JSON) and params (JSON list of
{name, shape, scale, offset} for encoder.*, predictor.* and target_encoder.*,
<key> being I-JEPA's state_dict key). Weights are not stored: they come from
make_fixtures.py's formula keyed by those prefixed names, so the target
encoder's weights differ from the context encoder's.
"""

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ijepa_vit as V  # noqa: E402
from make_fixtures import f32, i32, masks_for, randn, set_weights, write_fixture, FORMULA  # noqa: E402

NAME = "ijepa_step"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="jepa/testdata/golden")
    ap.add_argument("--max-bytes", type=int, default=1_000_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(4321)

    # 16x16 one-channel images, patch 2 (8x8 grid), width 32, depth 2, 2 heads,
    # MLP ratio 2; predictor width 16, depth 2, 2 heads, MLP ratio 2. Three
    # images, four 2x3 target blocks each, one context mask.
    cfg = {"img_size": 16, "patch": 2, "in_chans": 1, "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2,
           "predictor_dim": 16, "predictor_depth": 2, "predictor_heads": 2, "predictor_mlp_ratio": 2,
           "eps": 1e-6, "batch": 3, "targets": 4, "block_h": 2, "block_w": 3, "loss": "smooth_l1 (beta 1)"}
    grid = cfg["img_size"] // cfg["patch"]
    B = cfg["batch"]

    def vit():
        return V.VisionTransformer(cfg["img_size"], cfg["patch"], cfg["in_chans"], cfg["dim"], cfg["depth"],
                                   cfg["heads"], cfg["mlp_ratio"])

    encoder = vit()
    target_encoder = vit()
    predictor = V.VisionTransformerPredictor(grid * grid, cfg["dim"], cfg["predictor_dim"], cfg["predictor_depth"],
                                             cfg["predictor_heads"], cfg["predictor_mlp_ratio"])
    # One container so the formula's names (and so the weights) carry the
    # module prefix: target_encoder.* differ from encoder.*.
    model = nn.ModuleDict({"encoder": encoder, "predictor": predictor, "target_encoder": target_encoder})
    params = set_weights(model)
    for p in target_encoder.parameters():
        p.requires_grad_(False)

    ctx, tgts = masks_for(gen, grid, B, cfg["targets"], (cfg["block_h"], cfg["block_w"]))
    masks_enc, masks_pred = [ctx], tgts
    imgs = randn(gen, B, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    cfg["context_keep"] = ctx.shape[1]

    # The official train_step.
    with torch.no_grad():
        h = target_encoder(imgs)
        h = F.layer_norm(h, (h.size(-1),))  # normalize over feature-dim
        B = len(h)
        h = V.apply_masks(h, masks_pred)
        h = V.repeat_interleave_batch(h, B, repeat=len(masks_enc))
    z = encoder(imgs, masks_enc)
    z = predictor(z, masks_enc, masks_pred)
    loss = F.smooth_l1_loss(z, h)
    loss.backward()

    # Both branches of smooth-L1 must be exercised for the check to mean much.
    beyond = float(((z - h).abs() > 1).float().mean())
    cfg["frac_abs_diff_gt_1"] = round(beyond, 4)

    tensors = [("img", f32(imgs)), ("masks_enc.0", i32(ctx))]
    tensors += [(f"masks_pred.{k}", i32(t)) for k, t in enumerate(masks_pred)]
    tensors += [("loss", f32(loss.reshape(1))), ("pred", f32(z)), ("target", f32(h))]
    grads = [(f"grad.{n}", f32(p.grad)) for n, p in model.named_parameters() if p.requires_grad]
    tensors += grads
    meta = {
        "torch": torch.__version__,
        "fixture": NAME,
        "config": json.dumps(cfg, sort_keys=True),
        "params": json.dumps(params),
        "weight_formula": FORMULA,
        "step": "I-JEPA train_step: smooth_l1(predictor(encoder(img, masks_enc), masks_enc, masks_pred), "
                "apply_masks(layer_norm(target_encoder(img)), masks_pred)); grads of the loss",
    }
    paths = write_fixture(args.out, NAME, tensors, meta, args.max_bytes)
    if len(paths) != 1:
        raise SystemExit(f"{NAME}: split into {len(paths)} parts; keep it one small file")
    gnorm = max(float(p.grad.norm()) for _, p in model.named_parameters() if p.requires_grad)
    print(f"{paths[0]}: {os.path.getsize(paths[0])} bytes, loss {loss.item():.6f}, "
          f"{len(grads)} gradients (largest norm {gnorm:.3g}), |z-h| > 1 for {beyond:.1%}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
