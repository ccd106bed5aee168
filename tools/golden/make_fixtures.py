#!/usr/bin/python3
"""Writes the PyTorch golden fixtures that nn/golden_test.go compares the Go
layers against: make golden, or

    /usr/bin/python3 tools/golden/make_fixtures.py --out nn/testdata/golden

Each fixture is a .safetensors file (split into NAME.partK.safetensors when it
would exceed --max-bytes) holding, in float32:
  inputs            x / img, index lists (int32: masks_x.0, masks.0, ...)
  dout              the upstream gradient (the backward computes d(sum(out*dout)))
  out               the forward output
  grad.x / grad.img the input gradient
  grad.<key>        the gradient of every trainable parameter, <key> its
                    PyTorch state_dict key
and __metadata__ with torch (version), fixture, config (JSON) and params (JSON
list of {name, shape, scale, offset}).

Weights are not stored: both sides compute them from one integer formula,

    seed     = FNV-1a 32-bit hash of the UTF-8 parameter name
    u(i)     = ((i*2654435761 + seed*40503) mod 2^32) / 2^32 - 0.5   (exact in float64)
    value(i) = float32(offset + scale*u(i)),  i = 0 .. numel-1 in row-major order

computed in float64 and rounded once to float32, with (scale, offset) per
parameter recorded in the fixture's params metadata (see init_spec).
nn/golden_test.go implements the same formula.

Needs torch and numpy only (Debian's python3-torch); the Go tests need neither.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ijepa_vit as V  # noqa: E402

FORMULA = ("value(i) = float32(offset + scale*(((i*2654435761 + fnv1a32(name)*40503) mod 2^32)/2^32 - 0.5)), "
           "float64 arithmetic, i row-major")


def fnv1a32(s):
    h = 2166136261
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def formula_values(name, n, scale, offset):
    seed = fnv1a32(name)
    i = np.arange(n, dtype=np.uint64)
    k = (i * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503)) % np.uint64(1 << 32)
    u = k.astype(np.float64) / float(1 << 32) - 0.5
    return (offset + scale * u).astype(np.float32)


def init_spec(name, is_norm):
    """(scale, offset) of one parameter: weights ~U(-0.1, 0.1), biases
    ~U(-0.05, 0.05), LayerNorm weights 1 +- 0.1, the mask token U(-0.25, 0.25).
    Large enough that every path (softmax, GELU curvature, LayerNorm affine)
    changes the outputs."""
    if name.endswith("mask_token"):
        return 0.5, 0.0
    if is_norm and name.endswith("weight"):
        return 0.2, 1.0
    if name.endswith("bias"):
        return 0.1, 0.0
    return 0.2, 0.0


def set_weights(module):
    """Fills every trainable parameter of module from the formula and returns
    the params metadata list, in named_parameters (state_dict) order."""
    norm_params = set()
    for mname, m in module.named_modules():
        if isinstance(m, nn.LayerNorm):
            for pname, _ in m.named_parameters(recurse=False):
                norm_params.add(f"{mname}.{pname}" if mname else pname)
    specs = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        scale, offset = init_spec(name, name in norm_params)
        with torch.no_grad():
            p.copy_(torch.from_numpy(formula_values(name, p.numel(), scale, offset)).reshape(p.shape))
        specs.append({"name": name, "shape": list(p.shape), "scale": scale, "offset": offset})
    return specs


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def i32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.int32))


def encode(arr):
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.float32:
        return "F32", arr.astype("<f4").tobytes()
    if arr.dtype == np.int32:
        return "I32", arr.astype("<i4").tobytes()
    raise TypeError(arr.dtype)


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, ndarray) written in order; header padded with
    spaces to 8-byte alignment."""
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, arr in tensors:
        dtype, blob = encode(arr)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_fixture(out_dir, name, tensors, meta, max_bytes):
    """Writes NAME.safetensors, or NAME.part0.safetensors ... when the tensors
    exceed max_bytes; every part carries the full metadata."""
    for old in os.listdir(out_dir):
        if old == name + ".safetensors" or (old.startswith(name + ".part") and old.endswith(".safetensors")):
            os.remove(os.path.join(out_dir, old))
    budget = max_bytes - 64 * 1024  # room for the header
    parts, cur, size = [], [], 0
    for t in tensors:
        n = t[1].nbytes
        if n > budget:
            raise ValueError(f"{name}: tensor {t[0]} alone is {n} bytes")
        if cur and size + n > budget:
            parts.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += n
    parts.append(cur)
    paths = []
    for k, p in enumerate(parts):
        m = dict(meta)
        if len(parts) == 1:
            path = os.path.join(out_dir, name + ".safetensors")
        else:
            path = os.path.join(out_dir, f"{name}.part{k}.safetensors")
            m["part"] = f"{k}/{len(parts)}"
        write_safetensors(path, p, m)
        paths.append(path)
    return paths


def run_fixture(module, inputs, call, seed):
    """Forward call(module, *inputs), backward of sum(out * dout). Returns
    (out, dout, input grads, {param: grad})."""
    for x in inputs:
        if x.is_floating_point():
            x.requires_grad_(True)
    out = call(module, *inputs)
    g = torch.Generator().manual_seed(seed)
    dout = torch.randn(out.shape, generator=g, dtype=torch.float32)
    out.backward(dout)
    grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    return out, dout, [x.grad if x.is_floating_point() else None for x in inputs], grads


def base_meta(name, config, params):
    return {
        "torch": torch.__version__,
        "fixture": name,
        "config": json.dumps(config, sort_keys=True),
        "params": json.dumps(params),
        "weight_formula": FORMULA,
        "backward": "inputs and parameters get d(sum(out*dout))/d(.)",
    }


def grad_tensors(grads):
    return [("grad." + n, f32(g)) for n, g in grads.items()]


def randn(gen, *shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * scale + shift


def masks_for(gen, grid, batch, n_targets, block):
    """I-JEPA-style index lists: per image n_targets block x block rectangles
    (one size for the batch) and a context = all patches minus their union,
    every context list truncated to the batch minimum. Returns (ctx [B, Nc],
    [targets [B, Nt]] * n_targets), sorted ascending like I-JEPA's nonzero()."""
    bh, bw = block
    targets = [[] for _ in range(n_targets)]
    ctx = []
    for _ in range(batch):
        covered = set()
        for t in range(n_targets):
            r = int(torch.randint(0, grid - bh + 1, (1,), generator=gen))
            c = int(torch.randint(0, grid - bw + 1, (1,), generator=gen))
            idx = [(r + i) * grid + (c + j) for i in range(bh) for j in range(bw)]
            targets[t].append(idx)
            covered.update(idx)
        ctx.append([k for k in range(grid * grid) if k not in covered])
    keep = min(len(c) for c in ctx)
    # Drop a random subset rather than the tail so kept indices are not a prefix.
    ctx_t = []
    for c in ctx:
        perm = torch.randperm(len(c), generator=gen)[:keep].sort().values
        ctx_t.append([c[int(i)] for i in perm])
    return torch.tensor(ctx_t, dtype=torch.int64), [torch.tensor(t, dtype=torch.int64) for t in targets]


def simple_fixture(out_dir, max_bytes, name, module, x, config, seed):
    params = set_weights(module)
    out, dout, (dx,), grads = run_fixture(module, [x], lambda m, a: m(a), seed)
    tensors = [("x", f32(x)), ("dout", f32(dout)), ("out", f32(out)), ("grad.x", f32(dx))] + grad_tensors(grads)
    return write_fixture(out_dir, name, tensors, base_meta(name, config, params), max_bytes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="nn/testdata/golden")
    ap.add_argument("--max-bytes", type=int, default=1_900_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1234)
    written = []

    # Linear: 48 -> 40 with bias, on a [B, N, in] input.
    written += simple_fixture(args.out, args.max_bytes, "linear", nn.Linear(48, 40), randn(gen, 2, 5, 48),
                              {"in": 48, "out": 40, "bias": True}, 1)

    # LayerNorm eps 1e-6, affine and not; inputs off-centre so the mean matters.
    written += simple_fixture(args.out, args.max_bytes, "layernorm", nn.LayerNorm(40, eps=1e-6),
                              randn(gen, 2, 5, 40, scale=2.0, shift=3.0), {"dim": 40, "eps": 1e-6, "affine": True}, 2)
    written += simple_fixture(args.out, args.max_bytes, "layernorm_noaffine",
                              nn.LayerNorm(40, eps=1e-6, elementwise_affine=False),
                              randn(gen, 2, 5, 40, scale=2.0, shift=-1.0), {"dim": 40, "eps": 1e-6, "affine": False}, 3)

    # GELU (erf form) over [-6, 6] plus random points.
    gx = torch.cat([torch.linspace(-6, 6, 241), randn(gen, 259, scale=2.0)]).reshape(2, 250)
    written += simple_fixture(args.out, args.max_bytes, "gelu", nn.GELU(), gx, {"approximate": "none"}, 4)

    # MLP 32 -> 128 -> 32.
    written += simple_fixture(args.out, args.max_bytes, "mlp", V.MLP(32, 128), randn(gen, 2, 6, 32),
                              {"dim": 32, "hidden": 128}, 5)

    # Attention: width 48, 3 heads (head dim 16), qkv bias, scale 16^-0.5.
    written += simple_fixture(args.out, args.max_bytes, "attention", V.Attention(48, 3), randn(gen, 2, 7, 48),
                              {"dim": 48, "heads": 3, "qkv_bias": True, "scale": 16 ** -0.5}, 6)

    # Pre-norm block: width 96, 3 heads, MLP ratio 4.
    written += simple_fixture(args.out, args.max_bytes, "block", V.Block(96, 3), randn(gen, 2, 13, 96),
                              {"dim": 96, "heads": 3, "mlp_ratio": 4, "eps": 1e-6}, 7)

    # PatchEmbed: Conv2d(3 -> 48, kernel = stride = 4) on 16x16 images.
    pe = V.PatchEmbed(16, 4, 3, 48)
    params = set_weights(pe)
    img = randn(gen, 2, 3, 16, 16)
    out, dout, (dimg,), grads = run_fixture(pe, [img], lambda m, a: m(a), 8)
    written += write_fixture(args.out, "patch_embed",
                             [("img", f32(img)), ("dout", f32(dout)), ("out", f32(out)), ("grad.img", f32(dimg))]
                             + grad_tensors(grads),
                             base_meta("patch_embed", {"img_size": 16, "patch": 4, "in_chans": 3, "dim": 48}, params),
                             args.max_bytes)

    # Sin-cos position tables (computed in float64, stored rounded to float32).
    tables = []
    for d, g in [(192, 8), (96, 8), (192, 14), (64, 4)]:
        tables.append((f"pos_embed.{d}.{g}", V.get_2d_sincos_pos_embed(d, g).astype(np.float32)))
    written += write_fixture(args.out, "sincos", tables,
                             base_meta("sincos", {"tables": "pos_embed.<dim>.<grid>: [grid*grid, dim]"}, []),
                             args.max_bytes)

    # Small ViT-tiny encoder with context masks: 16x16x3 images, patch 2 (8x8
    # grid), width 192, 3 heads, depth 2; 2 target blocks of 3x4 per image.
    B, grid = 2, 8
    enc_cfg = {"img_size": 16, "patch": 2, "in_chans": 3, "dim": 192, "depth": 2, "heads": 3,
               "mlp_ratio": 4, "eps": 1e-6, "batch": B}
    enc = V.VisionTransformer(16, 2, 3, 192, 2, 3)
    params = set_weights(enc)
    ctx, tgts = masks_for(gen, grid, B, 2, (3, 4))
    img = randn(gen, B, 3, 16, 16)
    with torch.no_grad():
        out_full = enc(img)
    out, dout, (dimg, _), grads = run_fixture(enc, [img, ctx], lambda m, a, mk: m(a, [mk]), 9)
    enc_cfg["context_keep"] = ctx.shape[1]
    written += write_fixture(
        args.out, "vit_encoder",
        [("img", f32(img)), ("masks_x.0", i32(ctx)), ("dout", f32(dout)), ("out", f32(out)),
         ("out_nomask", f32(out_full)), ("grad.img", f32(dimg))] + grad_tensors(grads),
        base_meta("vit_encoder", enc_cfg, params), args.max_bytes)

    # Predictor on the same masks: encoder width 192 -> predictor width 96,
    # depth 2, 3 heads; one context mask, two target masks (output batch 2*B,
    # target-mask-major as I-JEPA's apply_masks/repeat order).
    pred_cfg = {"num_patches": grid * grid, "embed_dim": 192, "predictor_dim": 96, "depth": 2, "heads": 3,
                "mlp_ratio": 4, "eps": 1e-6, "batch": B, "targets": len(tgts), "target_keep": tgts[0].shape[1],
                "context_keep": ctx.shape[1]}
    pred = V.VisionTransformerPredictor(grid * grid, 192, 96, 2, 3)
    params = set_weights(pred)
    x = randn(gen, B, ctx.shape[1], 192)
    out, dout, grads_in, grads = run_fixture(pred, [x, ctx] + tgts,
                                             lambda m, a, mx, *mt: m(a, [mx], list(mt)), 10)
    tensors = [("x", f32(x)), ("masks_x.0", i32(ctx))]
    tensors += [(f"masks.{k}", i32(t)) for k, t in enumerate(tgts)]
    tensors += [("dout", f32(dout)), ("out", f32(out)), ("grad.x", f32(grads_in[0]))] + grad_tensors(grads)
    written += write_fixture(args.out, "vit_predictor", tensors, base_meta("vit_predictor", pred_cfg, params),
                             args.max_bytes)

    total = 0
    for p in written:
        n = os.path.getsize(p)
        total += n
        print(f"{p}: {n} bytes")
    print(f"total {total} bytes, torch {torch.__version__}")


if __name__ == "__main__":
    main()
