#!/usr/bin/python3
"""Writes the golden fixtures of one training step that jepa/golden_test.go
compares H-JEPA's step against: make golden, or

    /usr/bin/python3 tools/golden/make_step_fixture.py --out jepa/testdata/golden

ijepa_step.safetensors is the official I-JEPA step (facebookresearch/ijepa
src/train.py, train_step), which H-JEPA's is with VICReg off and level
weights [1, 0, 0]:

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

on a tiny ViT (tools/golden/ijepa_vit.py). It holds, in float32 unless noted:
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

hjepa_levels.safetensors is the same step with H-JEPA's parameter-free
hierarchy on top, level weights w = [1, 0.5, 0.25] and target blocks large
enough (4x5 on the 8x8 grid) that levels 1 and 2 both have windows. Level l
pools over s x s windows, s = 2^l, tiling each BlockH x BlockW target block
(its Nt rows row-major) from the top-left corner: floor(BlockH/s) *
floor(BlockW/s) windows per block, the trailing rows and columns left out,
each window the mean of its s*s tokens. With z and h as above ([T, Nt, D],
T = 4*B blocks):

    loss_0 = F.smooth_l1_loss(z, h)                       # I-JEPA's
    loss_l = F.smooth_l1_loss(F.layer_norm(pool_l(z), (D,), eps=1e-5),
                              F.layer_norm(pool_l(h), (D,), eps=1e-5))
    loss   = sum_l w_l * loss_l                           # a level with no window adds 0

(no affine, no prediction heads; pool_l written here with reshape and mean,
checked against F.avg_pool2d). Besides ijepa_step's tensors (loss is the
weighted sum) it holds loss.level.l [1] and, for l > 0, the normalised
pooled predictions pred.level.l and targets target.level.l [T*W_l, D], window
w of block q at row q*W_l + w (diagnostics); the config adds level_weights,
windows_per_block and target_norm_eps.
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

# F.layer_norm's default eps, which I-JEPA's targets use; the pooled levels
# use it on both sides too.
TARGET_NORM_EPS = 1e-5


def base_config(**over):
    # 16x16 one-channel images, patch 2 (8x8 grid), width 32, depth 2, 2 heads,
    # MLP ratio 2; predictor width 16, depth 2, 2 heads, MLP ratio 2. Three
    # images, four target blocks each, one context mask.
    cfg = {"img_size": 16, "patch": 2, "in_chans": 1, "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2,
           "predictor_dim": 16, "predictor_depth": 2, "predictor_heads": 2, "predictor_mlp_ratio": 2,
           "eps": 1e-6, "batch": 3, "targets": 4, "block_h": 2, "block_w": 3, "loss": "smooth_l1 (beta 1)"}
    cfg.update(over)
    return cfg


def setup(cfg, seed):
    """The models with the formula weights, the masks and the images."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(seed)
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
    imgs = randn(gen, B, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    cfg["context_keep"] = ctx.shape[1]
    return model, params, ctx, tgts, imgs


def ijepa_forward(model, imgs, masks_enc, masks_pred):
    """The official train_step's forward: (predictions z, targets h)."""
    encoder, predictor, target_encoder = model["encoder"], model["predictor"], model["target_encoder"]
    with torch.no_grad():
        h = target_encoder(imgs)
        h = F.layer_norm(h, (h.size(-1),))  # normalize over feature-dim
        B = len(h)
        h = V.apply_masks(h, masks_pred)
        h = V.repeat_interleave_batch(h, B, repeat=len(masks_enc))
    z = encoder(imgs, masks_enc)
    z = predictor(z, masks_enc, masks_pred)
    return z, h


def pool_windows(x, bh, bw, s):
    """x [T, bh*bw, D] (each block's tokens row-major) -> [T, W, D], W =
    (bh//s)*(bw//s): the means over the s x s windows tiling every block from
    its top-left corner, windows row-major."""
    t, nt, d = x.shape
    assert nt == bh * bw
    wh, ww = bh // s, bw // s
    g = x.reshape(t, bh, bw, d)[:, :wh * s, :ww * s, :]      # drop the trailing rows / columns
    g = g.reshape(t, wh, s, ww, s, d).mean(dim=(2, 4))        # [T, wh, ww, D]
    out = g.reshape(t, wh * ww, d)
    # A second route to the same windows: average pooling on [T, D, bh, bw].
    ref = F.avg_pool2d(x.reshape(t, bh, bw, d).permute(0, 3, 1, 2), kernel_size=s, stride=s)
    ref = ref.flatten(2).transpose(1, 2)
    assert ref.shape == out.shape and torch.allclose(ref, out, rtol=1e-5, atol=1e-6), "pooling routes disagree"
    return out


def grad_tensors(model):
    return [(f"grad.{n}", f32(p.grad)) for n, p in model.named_parameters() if p.requires_grad]


def summary(path, model, loss, n_grads, extra):
    gnorm = max(float(p.grad.norm()) for _, p in model.named_parameters() if p.requires_grad)
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}, "
          f"{n_grads} gradients (largest norm {gnorm:.3g}), {extra}, torch {torch.__version__}")


def write_step_fixture(args, name, model, cfg, params, imgs, ctx, masks_pred, outputs, step, loss, extra):
    """Writes one fixture file: the inputs (image, context and target masks),
    the step's outputs, every parameter gradient, and the metadata naming
    the step; refuses to split it."""
    tensors = [("img", f32(imgs)), ("masks_enc.0", i32(ctx))]
    tensors += [(f"masks_pred.{k}", i32(t)) for k, t in enumerate(masks_pred)]
    tensors += outputs
    grads = grad_tensors(model)
    tensors += grads
    meta = {
        "torch": torch.__version__,
        "fixture": name,
        "config": json.dumps(cfg, sort_keys=True),
        "params": json.dumps(params),
        "weight_formula": FORMULA,
        "step": step,
    }
    paths = write_fixture(args.out, name, tensors, meta, args.max_bytes)
    if len(paths) != 1:
        raise SystemExit(f"{name}: split into {len(paths)} parts; keep it one small file")
    summary(paths[0], model, loss, len(grads), extra)


def ijepa_step(args):
    name = "ijepa_step"
    cfg = base_config()
    model, params, ctx, tgts, imgs = setup(cfg, 4321)
    masks_enc, masks_pred = [ctx], tgts

    # The official train_step.
    z, h = ijepa_forward(model, imgs, masks_enc, masks_pred)
    loss = F.smooth_l1_loss(z, h)
    loss.backward()

    # Both branches of smooth-L1 must be exercised for the check to mean much.
    beyond = float(((z - h).abs() > 1).float().mean())
    cfg["frac_abs_diff_gt_1"] = round(beyond, 4)

    write_step_fixture(args, name, model, cfg, params, imgs, ctx, masks_pred,
                       [("loss", f32(loss.reshape(1))), ("pred", f32(z)), ("target", f32(h))],
                       "I-JEPA train_step: smooth_l1(predictor(encoder(img, masks_enc), masks_enc, masks_pred), "
                       "apply_masks(layer_norm(target_encoder(img)), masks_pred)); grads of the loss",
                       loss, f"|z-h| > 1 for {beyond:.1%}")


def hjepa_levels(args):
    name = "hjepa_levels"
    weights = [1.0, 0.5, 0.25]
    cfg = base_config(block_h=4, block_w=5)
    model, params, ctx, tgts, imgs = setup(cfg, 2468)
    masks_enc, masks_pred = [ctx], tgts
    z, h = ijepa_forward(model, imgs, masks_enc, masks_pred)  # [T, Nt, D]
    bh, bw, d = cfg["block_h"], cfg["block_w"], z.size(-1)

    losses, windows, beyond, diag = [], [], [], []
    for lvl in range(len(weights)):
        s = 2 ** lvl
        w = (bh // s) * (bw // s)
        windows.append(w)
        if w == 0:
            losses.append(z.new_zeros(()))
            beyond.append(0.0)
            continue
        if lvl == 0:
            p, t = z, h
        else:
            with torch.no_grad():
                t = F.layer_norm(pool_windows(h, bh, bw, s), (d,), eps=TARGET_NORM_EPS)
            p = F.layer_norm(pool_windows(z, bh, bw, s), (d,), eps=TARGET_NORM_EPS)
            diag += [(f"pred.level.{lvl}", f32(p.reshape(-1, d))), (f"target.level.{lvl}", f32(t.reshape(-1, d)))]
        losses.append(F.smooth_l1_loss(p, t))
        beyond.append(round(float(((p - t).abs() > 1).float().mean()), 4))
    if not all(w > 0 for w in windows):
        raise SystemExit(f"{name}: windows per block {windows}; every level must have one")
    loss = sum(wl * ll for wl, ll in zip(weights, losses))
    loss.backward()

    cfg.update(level_weights=weights, windows_per_block=windows, target_norm_eps=TARGET_NORM_EPS,
               frac_abs_diff_gt_1=beyond)
    outputs = [("loss", f32(loss.reshape(1)))]
    outputs += [(f"loss.level.{lvl}", f32(ll.reshape(1))) for lvl, ll in enumerate(losses)]
    outputs += [("pred", f32(z)), ("target", f32(h))] + diag
    write_step_fixture(args, name, model, cfg, params, imgs, ctx, masks_pred, outputs,
                       "H-JEPA levels: sum_l w_l smooth_l1(layer_norm(pool_l(z)), layer_norm(pool_l(h))), z and h "
                       "I-JEPA's predictions and masked normalised targets, pool_l the means over the 2^l x 2^l "
                       "windows tiling each target block from its top-left corner (level 0: z, h themselves, "
                       "no extra norm), layer_norm without affine, eps 1e-5; grads of the loss",
                       loss, f"levels {[round(float(ll), 6) for ll in losses]}, windows per block {windows}, "
                       f"context {cfg['context_keep']}, |diff| > 1 for {beyond} per level")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="jepa/testdata/golden")
    ap.add_argument("--max-bytes", type=int, default=1_000_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    ijepa_step(args)
    hjepa_levels(args)


if __name__ == "__main__":
    main()
