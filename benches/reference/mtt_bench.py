"""PyTorch reference for `cargo bench --bench mtt`: one MTT matching iteration as the reference
`distill.py` runs it (REFERENCE.md 1.7): from an expert's parameters at epoch t (here a fresh
initialisation) take `syn_steps` SGD steps on all the synthetic images (batch_syn = all), each
with its own per-sample DSA draw, the step size `syn_lr` learnable, every inner gradient taken with
`create_graph=True`; the loss ||theta_N - target||^2 / ||theta_0 - target||^2 (target: a nearby
point, as our bench's synthetic two-epoch expert); backward to the images and syn_lr; one SGD step
each (lr 1000 and 1e-5, momentum 0.5). Median seconds per iteration (the first, warm-up,
dropped) and the process's peak RSS; each syn_steps setting runs in a fresh process.

    python benches/reference/mtt_bench.py [--iters 2] [--steps 10,20,30] [--ipc 10] [--width 32] [--threads 2]
"""
import argparse
import random
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from common import FAMILIES_DIGITS, convnet_forward, convnet_init, convnet_shapes, dsa_apply, dsa_draw, peak_rss_mib


def one(a, steps):
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    rng = random.Random(0)
    k = 10
    n = k * a.ipc
    base_rss = peak_rss_mib()
    shapes = convnet_shapes(width=a.width, num_classes=k)
    start = convnet_init(shapes, gen)
    target = start + (torch.rand(start.shape, generator=gen) * 0.02 - 0.01)
    image_syn = torch.randn(n, 1, 28, 28, generator=gen).requires_grad_(True)
    label_syn = torch.arange(k).repeat_interleave(a.ipc)
    syn_lr = torch.tensor(0.01).requires_grad_(True)
    opt_img = torch.optim.SGD([image_syn], lr=1000.0, momentum=0.5)
    opt_lr = torch.optim.SGD([syn_lr], lr=1e-5, momentum=0.5)
    batch_syn = n
    times = []
    for it in range(a.iters + 1):
        t = time.perf_counter()
        student = [start.clone().requires_grad_(True)]
        chunks = []
        for _ in range(steps):
            if not chunks:
                chunks = list(torch.split(torch.randperm(n, generator=gen), batch_syn))
            idx = chunks.pop()
            x = image_syn[idx]
            fam = rng.choice(FAMILIES_DIGITS)
            x = dsa_apply(fam, dsa_draw(fam, x.shape[0], 28, 28, gen), x)  # per-sample draws
            ce = F.cross_entropy(convnet_forward(student[-1], x, shapes), label_syn[idx])
            grad = torch.autograd.grad(ce, student[-1], create_graph=True)[0]
            student.append(student[-1] - syn_lr * grad)
        num = start.numel()
        loss = F.mse_loss(student[-1], target, reduction="sum") / num
        loss = loss / (F.mse_loss(start, target, reduction="sum") / num)
        opt_img.zero_grad()
        opt_lr.zero_grad()
        loss.backward()
        opt_img.step()
        opt_lr.step()
        loss.item()
        del student
        if it >= 1:
            times.append(time.perf_counter() - t)
    print(f"pytorch MTT iteration, 1x28x28, IPC {a.ipc}, ConvNet-3 w{a.width}, DSA, create_graph, "
          f"syn_steps {steps:>2}: median {statistics.median(times):.2f} s (min {min(times):.2f}, {len(times)} runs), "
          f"peak RSS {peak_rss_mib():.0f} MiB (after import {base_rss:.0f} MiB)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--one", type=int, default=None)
    a = ap.parse_args()
    if a.one is not None:
        one(a, a.one)
        return
    for s in a.steps.split(","):
        # A fresh process per setting, so the peak memory figures do not mix.
        subprocess.run([sys.executable, __file__, "--one", s, "--iters", str(a.iters), "--ipc", str(a.ipc),
                        "--width", str(a.width), "--threads", str(a.threads)], check=True)


if __name__ == "__main__":
    main()
