"""PyTorch reference for `cargo bench --bench dm`: one DM iteration as the reference `main_DM.py`
runs it for a ConvNet with instance norm (REFERENCE.md 1.5): a freshly initialised ConvNet whose
parameters need no gradient; for every class, `batch_real` real images and the class's `ipc`
synthetic images under one shared (Siamese) DSA draw, both embedded, the squared distance of the
mean embeddings summed over classes; backward to the synthetic images; one SGD step (lr 1,
momentum 0.5). Median seconds per iteration (the first, warm-up, dropped) and peak RSS.

    python benches/reference/dm_bench.py [--iters 3] [--ipc 10] [--batch-real 256] [--width 128] [--threads 2]
"""
import argparse
import random
import statistics
import time

import torch

from common import FAMILIES_DIGITS, convnet_embed, convnet_init, convnet_shapes, dsa_apply, dsa_draw, peak_rss_mib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--batch-real", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    k, per = a.classes, max(a.batch_real, a.ipc)
    images_all = torch.randn(k * per, 1, 28, 28)
    indices_class = [list(range(c * per, (c + 1) * per)) for c in range(k)]
    image_syn = torch.cat([images_all[indices_class[c][:a.ipc]] for c in range(k)]).clone().requires_grad_(True)
    opt = torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)
    shapes = convnet_shapes(width=a.width, num_classes=k)
    times = []
    for it in range(a.iters + 1):
        t = time.perf_counter()
        flat = convnet_init(shapes, gen)  # a fresh net; its parameters need no gradient
        loss = torch.tensor(0.0)
        for c in range(k):
            idx = torch.randperm(per, generator=gen)[:a.batch_real] + c * per
            img_real = images_all[idx]
            img_syn = image_syn[c * a.ipc:(c + 1) * a.ipc]
            fam = rng.choice(FAMILIES_DIGITS)
            p = dsa_draw(fam, 1, 28, 28, gen)  # one shared draw for the class's two batches
            img_real, img_syn = dsa_apply(fam, p, img_real), dsa_apply(fam, p, img_syn)
            out_real = convnet_embed(flat, img_real, shapes)[0].detach()
            out_syn = convnet_embed(flat, img_syn, shapes)[0]
            loss = loss + torch.sum((out_real.mean(dim=0) - out_syn.mean(dim=0)) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if it >= 1:
            times.append(time.perf_counter() - t)
    print(f"pytorch {torch.__version__} DM iteration, 1x28x28, {k} classes, IPC {a.ipc}, batch_real {a.batch_real}, "
          f"ConvNet-3 w{a.width}, DSA, {torch.get_num_threads()} threads: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs), peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
