"""Run the PyTorch snippet `hjepa export` prints and check that the model it
builds loads the export strictly and computes our encoder's pooled features.

    python3 check_timm_export.py SNIPPET.txt INPUT.npy POOLED.npy

SNIPPET.txt is export's output; its indented lines are executed as Python.
With timm installed they run against timm itself. Without it (Debian has no
timm package) they run against a stand-in `timm.create_model` that builds a
VisionTransformer with timm's module names and timm's rule for where the final
LayerNorm sits: `fc_norm=None` with `global_pool="avg"` moves it after the
pooling (`fc_norm`) and makes `norm` an Identity, so an export holding
`norm.*` loads only with `fc_norm=False`. The stand-in also checks that the
unpatched snippet (without fc_norm=False) would fail a strict load, which is
the mistake this script exists to catch.
"""
import importlib.util
import re
import sys
import types

import numpy as np
import torch
from torch import nn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from check_export import load_safetensors  # noqa: E402
from ijepa_vit import Block, PatchEmbed  # noqa: E402  (timm's block layout and names)


def load_file(path):
    """safetensors.torch.load_file for the stand-in module."""
    return load_safetensors(path)[0]


class TimmVisionTransformer(nn.Module):
    """timm.models.vision_transformer.VisionTransformer, the parts an export
    uses: no class token, no register tokens, learned pos_embed, pre-norm
    blocks with qkv bias, LayerNorm eps 1e-6, and timm's norm/fc_norm rule."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, global_pool="token",
                 embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, class_token=True, fc_norm=None, **unused):
        super().__init__()
        assert not class_token, "exports have no class token"
        assert num_classes == 0, "the snippet asks for no classifier head"
        assert not unused, f"stand-in does not model {sorted(unused)}"
        self.global_pool = global_pool
        use_fc_norm = global_pool in ("avg", "avgmax", "max") if fc_norm is None else fc_norm
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        self.head = nn.Identity()

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        x = self.norm(self.blocks(x))
        assert self.global_pool == "avg"
        return self.head(self.fc_norm(x.mean(dim=1)))


def stand_in_timm():
    timm = types.ModuleType("timm")

    def create_model(name, pretrained=False, **kwargs):
        assert name.startswith("vit_"), name
        assert not pretrained
        return TimmVisionTransformer(**kwargs)

    timm.create_model = create_model
    return timm


def main():
    snippet_path, inp, want_path = sys.argv[1:4]
    with open(snippet_path) as f:
        code = "\n".join(line.strip() for line in f if line.startswith("  "))
    have_timm = importlib.util.find_spec("timm") is not None
    timm = __import__("timm") if have_timm else stand_in_timm()
    st = types.ModuleType("safetensors")
    st.torch = types.SimpleNamespace(load_file=load_file)
    if importlib.util.find_spec("safetensors") is not None:
        import safetensors.torch  # noqa: F401
        st = sys.modules["safetensors"]
    env = {"timm": timm, "safetensors": st}
    exec(code, env)  # noqa: S102 - the snippet under test
    m = env["m"].eval()
    x = torch.from_numpy(np.load(inp))
    with torch.no_grad():
        got = m(x).numpy()
    want = np.load(want_path)
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"timm={'installed' if have_timm else 'stand-in'}: relative L2 error {err:.3g}")
    if err >= 1e-4:
        sys.exit(1)
    if not have_timm:
        # Without fc_norm=False the same snippet must fail: the check above
        # is only meaningful if the layout rule bites.
        bad = re.sub(r",\s*fc_norm=False", "", code)
        assert bad != code, "the snippet does not pass fc_norm=False"
        try:
            exec(bad, dict(env))  # noqa: S102
        except RuntimeError as e:
            print("without fc_norm=False a strict load fails, as in timm:", str(e).splitlines()[0])
        else:
            print("without fc_norm=False the strict load passed: the stand-in does not model timm")
            sys.exit(1)


if __name__ == "__main__":
    main()
