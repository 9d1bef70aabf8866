"""Shared pieces of the PyTorch reference benchmarks: the ConvNet of the DC/DSA/DM/MTT code as a
function of one flat parameter vector (what MTT's reparametrised module does), the DSA family
(mode 'S': one family per call, as `DiffAugment` in the reference `utils.py` defines it), and the
process's peak resident memory.

Written from REFERENCE.md sections 1.1 and 1.3 and `src/model/convnet.rs` / `src/data/augment.rs`,
so both sides do the same work: 3x3 convs (padding 3 on the first for 1x28x28), GroupNorm(C, C),
ReLU, 2x2 average pooling, one linear classifier.
"""
import math
import resource

import torch
import torch.nn.functional as F


def peak_rss_mib():
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def convnet_shapes(channel=1, num_classes=10, width=128, depth=3, size=28):
    """Parameter shapes in our order: per block conv weight, conv bias, norm scale, norm shift;
    then the classifier weight and bias."""
    shapes, c, hw = [], channel, size
    for d in range(depth):
        pad = 3 if (d == 0 and channel == 1 and size == 28) else 1
        shapes += [(width, c, 3, 3), (width,), (width,), (width,)]
        hw = (hw + 2 * pad - 2) // 2
        c = width
    shapes += [(num_classes, width * hw * hw), (num_classes,)]
    return shapes


def convnet_init(shapes, gen=None):
    """PyTorch's default initialisation (uniform +-1/sqrt(fan_in); norms 1 and 0) as one flat vector."""
    depth = (len(shapes) - 2) // 4
    parts = []
    for i, s in enumerate(shapes):
        if i < 4 * depth and i % 4 == 2:
            parts.append(torch.ones(s))
        elif i < 4 * depth and i % 4 == 3:
            parts.append(torch.zeros(s))
        else:
            w_shape = s if len(s) > 1 else shapes[i - 1]
            b = 1.0 / math.sqrt(math.prod(w_shape[1:]))
            parts.append((torch.rand(s, generator=gen) * 2 - 1) * b)
    return torch.cat([p.reshape(-1) for p in parts])


def convnet_embed(flat, x, shapes, channel=1, size=28):
    """The flattened features before the classifier, the net's parameters sliced out of `flat`."""
    views, o = [], 0
    for s in shapes:
        n = math.prod(s)
        views.append(flat[o:o + n].view(s))
        o += n
    depth = (len(shapes) - 2) // 4
    for d in range(depth):
        w, b, g, beta = views[4 * d:4 * d + 4]
        pad = 3 if (d == 0 and channel == 1 and size == 28) else 1
        x = F.conv2d(x, w, b, padding=pad)
        x = F.group_norm(x, w.shape[0], g, beta, eps=1e-5)
        x = F.relu(x)
        x = F.avg_pool2d(x, 2, 2)
    return x.flatten(1), views[-2], views[-1]


def convnet_forward(flat, x, shapes, channel=1, size=28):
    """Class logits."""
    f, w, b = convnet_embed(flat, x, shapes, channel, size)
    return F.linear(f, w, b)


FAMILIES_DIGITS = ["color", "crop", "cutout", "scale", "rotate"]


def dsa_draw(family, n, h, w, gen):
    """The random parameters of one DSA call of `family` for `n` samples (n = 1: one shared draw,
    the Siamese mode DM uses for a class's real and synthetic batches)."""
    u = lambda: torch.rand(n, 1, 1, 1, generator=gen)
    if family == "color":
        return {"b": u() - 0.5, "s": u() * 2.0, "c": u() + 0.5}
    if family == "scale":
        r = 1.2
        return {"sx": torch.rand(n, generator=gen) * (r - 1 / r) + 1 / r,
                "sy": torch.rand(n, generator=gen) * (r - 1 / r) + 1 / r}
    if family == "rotate":
        return {"t": (torch.rand(n, generator=gen) - 0.5) * 2 * 15.0 / 180 * math.pi}
    if family == "crop":
        sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
        return {"ty": torch.randint(-sh, sh + 1, (n, 1, 1), generator=gen),
                "tx": torch.randint(-sw, sw + 1, (n, 1, 1), generator=gen)}
    if family == "cutout":
        ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        return {"size": (ch, cw),
                "oy": torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=gen),
                "ox": torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=gen)}
    raise ValueError(family)


def dsa_apply(family, p, x):
    """Applies a draw to a batch, differentiably in `x` (shared draws broadcast over the batch)."""
    n, _, h, w = x.shape
    if family == "color":
        x = x + p["b"]
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * p["s"] + m
        m = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - m) * p["c"] + m
    if family in ("scale", "rotate"):
        k = p["sx"].shape[0] if family == "scale" else p["t"].shape[0]
        theta = torch.zeros(k, 2, 3)
        if family == "scale":
            theta[:, 0, 0], theta[:, 1, 1] = p["sx"], p["sy"]
        else:
            t = p["t"]
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(t), -torch.sin(t)
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(t), torch.cos(t)
        theta = theta.expand(n, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)
    if family == "crop":
        gb, gy, gx = torch.meshgrid(torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij")
        gy = torch.clamp(gy + p["ty"] + 1, 0, h + 1)
        gx = torch.clamp(gx + p["tx"] + 1, 0, w + 1)
        xp = F.pad(x, [1, 1, 1, 1])
        return xp.permute(0, 2, 3, 1).contiguous()[gb, gy, gx].permute(0, 3, 1, 2)
    if family == "cutout":
        ch, cw = p["size"]
        gb, gy, gx = torch.meshgrid(torch.arange(n), torch.arange(ch), torch.arange(cw), indexing="ij")
        gy = torch.clamp(gy + p["oy"] - ch // 2, min=0, max=h - 1)
        gx = torch.clamp(gx + p["ox"] - cw // 2, min=0, max=w - 1)
        mask = torch.ones(n, h, w, dtype=x.dtype)
        mask[gb, gy, gx] = 0
        return x * mask.unsqueeze(1)
    raise ValueError(family)
