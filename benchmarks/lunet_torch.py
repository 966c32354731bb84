"""LuNet (Table 6, as kreid.models.lunet builds it) training step in PyTorch, for
benchmarks/lunet_step.py; run with the python of an environment that has torch:

    python benchmarks/lunet_torch.py H W P K STEPS [fp32|bf16]

Prints one JSON line: torch version, parameters, images/s (the faster of NCHW and
channels_last memory formats, both timed). ``bf16`` runs the forward pass under
``torch.autocast("cpu", bfloat16)``, PyTorch's counterpart of Keras' mixed_bfloat16
policy (the loss in float32 in both).
"""

import json
import os
import sys
import time

import torch
from torch import nn

SLOPE = 0.3


def pre(c):
    return nn.Sequential(nn.BatchNorm2d(c), nn.LeakyReLU(SLOPE))


class Res(nn.Module):
    def __init__(self, n1, n2, n3):
        super().__init__()
        self.pre = pre(n1)
        self.proj = nn.Conv2d(n1, n3, 1) if n1 != n3 else None
        self.body = nn.Sequential(nn.Conv2d(n1, n2, 1), pre(n2), nn.Conv2d(n2, n2, 3, padding=1),
                                  pre(n2), nn.Conv2d(n2, n3, 1))

    def forward(self, x):
        p = self.pre(x)
        return (x if self.proj is None else self.proj(p)) + self.body(p)


class Final(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = pre(512)
        self.proj = nn.Conv2d(512, 128, 1)
        self.body = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), pre(512),
                                  nn.Conv2d(512, 128, 3, padding=1))

    def forward(self, x):
        p = self.pre(x)
        return self.proj(p) + self.body(p)


def lunet(h, w):
    pool = lambda: nn.MaxPool2d(3, 2, padding=1)  # noqa: E731
    feats = nn.Sequential(
        nn.Conv2d(3, 128, 7, padding=3), Res(128, 32, 128), pool(),
        Res(128, 32, 128), Res(128, 32, 128), Res(128, 64, 256), pool(),
        Res(256, 64, 256), Res(256, 64, 256), pool(),
        Res(256, 64, 256), Res(256, 64, 256), Res(256, 128, 512), pool(),
        Res(512, 128, 512), Res(512, 128, 512), pool(),
        Final(), pre(128), nn.Flatten())
    flat = 128 * (h // 32) * (w // 32)
    return nn.Sequential(feats, nn.Linear(flat, 512), nn.BatchNorm1d(512), nn.LeakyReLU(SLOPE),
                         nn.Linear(512, 128))


def batch_hard_soft(emb, labels):
    d = torch.cdist(emb, emb).clamp_min(0)          # Euclidean, as kreid
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    hardest_pos = (d * (same & ~eye)).max(1).values
    hardest_neg = d.masked_fill(same, float("inf")).min(1).values
    return nn.functional.softplus(hardest_pos - hardest_neg).mean()


def rate(h, w, p, k, steps, channels_last, bf16=False):
    torch.manual_seed(0)
    model = lunet(h, w)
    images = torch.rand(p * k, 3, h, w)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(p).repeat_interleave(k)
    opt = torch.optim.Adam(model.parameters(), 3e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            emb = model(images)
        loss = batch_hard_soft(emb.float(), labels)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * p * k / (time.perf_counter() - start), sum(
        q.numel() for q in model.parameters())


def main():
    h, w, p, k, steps = (int(v) for v in sys.argv[1:6])
    bf16 = len(sys.argv) > 6 and sys.argv[6] == "bf16"     # autocast, as Keras' mixed policy
    torch.set_num_threads(os.cpu_count())
    nchw, params = rate(h, w, p, k, steps, False, bf16)
    nhwc, _ = rate(h, w, p, k, steps, True, bf16)
    print(json.dumps({"version": torch.__version__, "params": params, "nchw_img_s": nchw,
                      "channels_last_img_s": nhwc, "img_s": max(nchw, nhwc)}))


if __name__ == "__main__":
    main()
