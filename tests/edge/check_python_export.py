#!/usr/bin/env python3
"""Checks the researcher's export snippet of docs/formats/expert.md end to end.

Runs the ```python block of that page as written, exports PyTorch experts (swiglu and gelu_mlp,
f32 and bf16) with it, and checks that `trustmoe expert check` accepts each file and that
`trustmoe expert run` computes what PyTorch computes on the same rows.

usage: check_python_export.py TRUSTMOE_BINARY
Exits 77 (skipped) when numpy or torch cannot be imported.
"""
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:  # the GPU machine has both; Debian CI machines may not
    print(f"skipped: {e}")
    sys.exit(77)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def snippet():
    text = (ROOT / "docs/formats/expert.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    if not blocks:
        sys.exit("docs/formats/expert.md has no ```python block")
    scope = {}
    exec(blocks[0], scope)  # the page's own code, as a researcher would paste it
    return scope["write_expert"]


def read_x(path):
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    info = header["x"]
    begin, end = info["data_offsets"]
    data = raw[8 + n + begin:8 + n + end]
    if info["dtype"] == "F32":
        a = np.frombuffer(data, "<f4")
    elif info["dtype"] == "BF16":
        a = (np.frombuffer(data, "<u2").astype("<u4") << 16).view("<f4")
    else:
        a = np.frombuffer(data, "<f2").astype("<f4")
    return a.reshape(info["shape"])


def write_x(path, x):
    b = np.ascontiguousarray(x, "<f4").tobytes()
    header = {"__metadata__": {"trustmoe.format": "trustmoe-activations/v1"},
              "x": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, len(b)]}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b)


def main():
    trustmoe = sys.argv[1]
    write_expert = snippet()
    torch.manual_seed(0)
    d_model, d_ff, rows = 64, 160, 33
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        x = torch.randn(rows, d_model)
        xpath = os.path.join(tmp, "x.safetensors")
        write_x(xpath, x.numpy())
        for arch in ("swiglu", "gelu_mlp"):
            for dtype in ("F32", "BF16"):
                if arch == "swiglu":
                    w1 = torch.nn.Linear(d_model, d_ff, bias=False)
                    w3 = torch.nn.Linear(d_model, d_ff, bias=False)
                    w2 = torch.nn.Linear(d_ff, d_model, bias=False)
                    tensors = {"w1": w1.weight, "w3": w3.weight, "w2": w2.weight}
                else:
                    l1 = torch.nn.Linear(d_model, d_ff)
                    l2 = torch.nn.Linear(d_ff, d_model)
                    tensors = {"w1": l1.weight, "b1": l1.bias, "w2": l2.weight, "b2": l2.bias}
                arrays = {k: v.detach().float().numpy() for k, v in tensors.items()}
                path = os.path.join(tmp, f"{arch}-{dtype}.safetensors")
                write_expert(path, arch, arrays, dtype)
                check = subprocess.run([trustmoe, "expert", "check", path, "--json"],
                                       capture_output=True, text=True)
                if check.returncode != 0:
                    print(f"FAIL {arch} {dtype}: expert check: {check.stderr.strip()}")
                    failures += 1
                    continue
                ypath = os.path.join(tmp, f"y-{arch}-{dtype}.safetensors")
                run = subprocess.run([trustmoe, "expert", "run", path, "--input", xpath, "-o", ypath],
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    print(f"FAIL {arch} {dtype}: expert run: {run.stderr.strip()}")
                    failures += 1
                    continue
                # PyTorch on the weights as stored (bf16 files round the weights).
                w = {k: torch.from_numpy(v) for k, v in arrays.items()}
                if dtype == "BF16":
                    w = {k: v.to(torch.bfloat16).float() for k, v in w.items()}
                with torch.no_grad():
                    if arch == "swiglu":
                        ref = (torch.nn.functional.silu(x @ w["w1"].T) * (x @ w["w3"].T)) @ w["w2"].T
                    else:
                        ref = torch.nn.functional.gelu(x @ w["w1"].T + w["b1"]) @ w["w2"].T + w["b2"]
                y = torch.from_numpy(read_x(ypath).copy())
                err = ((y - ref).norm(dim=1) / ref.norm(dim=1)).max().item()
                ok = err < 1e-5
                failures += 0 if ok else 1
                print(f"{'ok  ' if ok else 'FAIL'} {arch:8s} {dtype:4s}: expert check and run agree "
                      f"with PyTorch (max row relative L2 error {err:.2e})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
