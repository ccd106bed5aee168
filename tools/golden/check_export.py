"""Load a `hjepa export` file into the I-JEPA VisionTransformer (strict
load_state_dict, the keys timm uses) and check its forward output against
ours. Used by eval's export test when PyTorch is installed:

    python3 check_export.py EXPORT.safetensors INPUT.npy OUTPUT.npy
"""
import json
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ijepa_vit import VisionTransformer  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").copy()).reshape(info["shape"])
    return out, meta


def main():
    export, inp, want_path = sys.argv[1:4]
    sd, meta = load_safetensors(export)
    m = VisionTransformer(int(meta["img_size"]), int(meta["patch_size"]), int(meta["in_chans"]),
                          int(meta["embed_dim"]), int(meta["depth"]), int(meta["num_heads"]),
                          float(meta["mlp_ratio"]))
    m.load_state_dict(sd, strict=True)
    x = torch.from_numpy(np.load(inp))
    with torch.no_grad():
        got = m(x).numpy()
    want = np.load(want_path)
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"relative L2 error {err:.3g}")
    sys.exit(0 if err < 1e-4 else 1)


if __name__ == "__main__":
    main()
