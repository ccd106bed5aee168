"""I-JEPA's ViT in plain PyTorch: the reference the Go nn package is checked and
timed against.

This follows facebookresearch/ijepa src/models/vision_transformer.py module by
module and keeps its state_dict keys (patch_embed.proj.weight, blocks.0.norm1.weight,
blocks.0.attn.qkv.weight, ..., predictor_embed.weight, mask_token, ...), so a
fixture's gradient names are the names of a real I-JEPA checkpoint. Dropout,
drop-path and the init are left out: the fixtures set every weight themselves
and the model runs in train mode with no randomness.

Used by tools/golden/make_fixtures.py, bench/torch_vit.py and the step benchmarks
(bench/torch_ijepa_step.py, bench/torch_hjepa_step.py). Needs only torch
and numpy (Debian's python3-torch).
"""

import copy
import math

import numpy as np
import torch
import torch.nn as nn


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    """Fixed 2-D sin-cos positions, [grid_size*grid_size, embed_dim] float64.

    Patches are numbered row-major, k = row*G + col. As in I-JEPA (whose
    meshgrid(grid_w, grid_h) puts the column index in grid[0]), the first half
    of the channels encodes the column and the second half the row. Each 1-D
    half is [sin(pos*omega), cos(pos*omega)], omega_d = 10000^(-d/(D/4)).
    """
    assert embed_dim % 4 == 0
    coords = np.arange(grid_size, dtype=float)
    grid = np.stack(np.meshgrid(coords, coords), axis=0)  # grid[0][r, c] = c, grid[1][r, c] = r
    emb_col = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_row = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_col, emb_row], axis=1)


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    """[len(pos), embed_dim]: sin(pos*omega) then cos(pos*omega)."""
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=float) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def apply_masks(x, masks):
    """x [B, N, D], masks: list of [B, K] index tensors -> [len(masks)*B, K, D],
    the kept rows of every image for each mask, masks concatenated on batch."""
    out = []
    for m in masks:
        idx = m.unsqueeze(-1).expand(-1, -1, x.size(-1))
        out.append(torch.gather(x, dim=1, index=idx))
    return torch.cat(out, dim=0)


def repeat_interleave_batch(x, B, repeat):
    """[N*B, ...] -> [N*repeat*B, ...]: each chunk of B repeated `repeat` times."""
    n = len(x) // B
    return torch.cat([torch.cat([x[i * B:(i + 1) * B] for _ in range(repeat)], dim=0) for i in range(n)], dim=0)


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block, LayerNorm eps 1e-6, MLP ratio 4."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Conv2d with kernel = stride = patch: [B, C, H, W] -> [B, (H/p)*(W/p), D]."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """I-JEPA encoder: patch embed + fixed sin-cos positions, optional kept-patch
    masks, pre-norm blocks, final LayerNorm. No cls token."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        pos = get_2d_sincos_pos_embed(embed_dim, int(math.isqrt(n)))
        self.pos_embed = nn.Parameter(torch.from_numpy(pos).float().unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x, masks=None):
        x = self.patch_embed(x) + self.pos_embed
        if masks is not None:
            x = apply_masks(x, masks if isinstance(masks, list) else [masks])
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class VisionTransformerPredictor(nn.Module):
    """I-JEPA predictor: context tokens mapped to predictor width plus their
    positions, one mask token plus position per target index, blocks, norm,
    projection back to the encoder width, outputs at the target positions."""

    def __init__(self, num_patches, embed_dim, predictor_embed_dim, depth, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        pos = get_2d_sincos_pos_embed(predictor_embed_dim, int(math.isqrt(num_patches)))
        self.predictor_pos_embed = nn.Parameter(torch.from_numpy(pos).float().unsqueeze(0), requires_grad=False)
        self.predictor_blocks = nn.ModuleList([Block(predictor_embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)

    def forward(self, x, masks_x, masks):
        """x [len(masks_x)*B, Nc, D]; masks_x: context index lists [B, Nc];
        masks: target index lists [B, Nt] -> [len(masks)*len(masks_x)*B, Nt, D]."""
        masks_x = masks_x if isinstance(masks_x, list) else [masks_x]
        masks = masks if isinstance(masks, list) else [masks]
        B = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        x = x + apply_masks(self.predictor_pos_embed.repeat(B, 1, 1), masks_x)
        n_ctxt = x.shape[1]
        pos_embs = apply_masks(self.predictor_pos_embed.repeat(B, 1, 1), masks)
        pos_embs = repeat_interleave_batch(pos_embs, B, repeat=len(masks_x))
        pred_tokens = self.mask_token.repeat(pos_embs.size(0), pos_embs.size(1), 1) + pos_embs
        x = x.repeat(len(masks), 1, 1)
        x = torch.cat([x, pred_tokens], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, n_ctxt:])


def init_ijepa(encoder, predictor):
    """I-JEPA's init_model: trunc_normal(0.02) weights, zero biases,
    LayerNorm 1/0, then fix_init_weight (attn.proj and mlp.fc2 of block i
    divided by sqrt(2(i+1))); nn.Encoder.Init and nn.Predictor.Init on our
    side."""
    with torch.no_grad():
        for mod in (encoder, predictor):
            for n, p in mod.named_parameters():
                if not p.requires_grad:
                    continue
                if p.dim() > 1:
                    nn.init.trunc_normal_(p, std=0.02)
                elif "norm" in n and n.endswith("weight"):
                    p.fill_(1)
                else:
                    p.zero_()
        for blocks in (encoder.blocks, predictor.predictor_blocks):
            for i, blk in enumerate(blocks):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))


def add_model_args(ap):
    """The model-shape flags the step benchmarks (bench/torch_*_step.py)
    share; bench/hjepa_step.go passes them from the config."""
    ap.add_argument("--img-size", type=int, default=28)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--pred-dim", type=int, default=96)
    ap.add_argument("--pred-depth", type=int, default=4)
    ap.add_argument("--pred-heads", type=int, default=3)


def build_ijepa(args, device=None):
    """I-JEPA's init_model for the shapes in args (add_model_args): the
    context encoder and predictor with init_ijepa's values, on device, and
    the target encoder as their deep copy without gradients."""
    encoder = VisionTransformer(args.img_size, args.patch, args.channels, args.dim, args.depth, args.heads)
    predictor = VisionTransformerPredictor(encoder.patch_embed.num_patches, args.dim, args.pred_dim,
                                           args.pred_depth, args.pred_heads)
    init_ijepa(encoder, predictor)
    if device is not None:
        encoder.to(device)
        predictor.to(device)
    target_encoder = copy.deepcopy(encoder)
    for p in target_encoder.parameters():
        p.requires_grad = False
    return encoder, predictor, target_encoder
