"""PyTorch reference for `cargo bench --bench convnet`: the same ConvNet-3 (width 128, instance
norm as GroupNorm(C, C), ReLU, 2x2 average pooling, padding 3 on the first conv for 28x28x1)
forward + backward + SGD step on a batch of 256 random 28x28x1 images; median ms per iteration.

    pip install torch   # CPU is enough
    python benches/reference/convnet_bench.py [--iters 7] [--batch 256] [--threads 2]
"""
import argparse
import statistics
import resource
import time

import torch
import torch.nn as nn


def convnet(channel=1, num_classes=10, width=128, depth=3):
    layers, c = [], channel
    for d in range(depth):
        layers += [
            nn.Conv2d(c, width, kernel_size=3, padding=3 if channel == 1 and d == 0 else 1),
            nn.GroupNorm(width, width, affine=True),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(kernel_size=2, stride=2),
        ]
        c = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 4 * 4, num_classes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    net = convnet().to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(a.batch, 1, 28, 28, device=dev) * 2 - 1
    y = torch.arange(a.batch, device=dev) % 10
    times = []
    for i in range(a.iters + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append((time.perf_counter() - t) * 1e3)
    print(f"pytorch {torch.__version__} ConvNet-3 w128, batch {a.batch} 28x28x1, fwd+bwd+step: "
          f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}, {len(times)} runs), "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
