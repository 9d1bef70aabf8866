"""Do the memory images still look like their class to a network trained on that task's real
data? Classifies each task's memory images (from a checkpoint copied by run.sh) with the task's
expert networks (trained on the task's real images; the MTT experts' last epoch), a numpy
re-implementation of the ConvNet (conv3x3 pad 1, instance norm with affine, ReLU, 2x2 average
pooling, per block; linear head).

usage: python classify.py CHECKPOINT [--seed S] [--epochs E] [--results DIR]
Prints per strategy and task: accuracy of the expert(s) on the memory's images (their task-local
labels) and the mean probability of the right class.
"""
import sys, json, struct, glob, argparse, msgpack, numpy as np

M = (1 << 64) - 1
def step_seed(seed, i):
    z = (seed ^ (i * 0x9E3779B97F4A7C15 & M)) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)

def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[base + s:base + e], dtype=np.float32).reshape(v['shape'])
    return out

def conv3x3(x, w, b):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)  # n c 9 h w
    wf = w.reshape(w.shape[0], c, 9)
    return np.einsum('nckhw,ock->nohw', cols, wf) + b[None, :, None, None]

def forward(p, e, x, depth=2):
    for d in range(depth):
        x = conv3x3(x, p[f'epoch{e}.conv{d}.weight'], p[f'epoch{e}.conv{d}.bias'])
        m = x.mean(axis=(2, 3), keepdims=True); v = x.var(axis=(2, 3), keepdims=True)
        x = (x - m) / np.sqrt(v + 1e-5)
        x = x * p[f'epoch{e}.norm{d}.weight'][None, :, None, None] + p[f'epoch{e}.norm{d}.bias'][None, :, None, None]
        x = np.maximum(x, 0)
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    x = x.reshape(x.shape[0], -1)
    return x @ p[f'epoch{e}.classifier.weight'].T + p[f'epoch{e}.classifier.bias']

ap = argparse.ArgumentParser()
ap.add_argument('checkpoint'); ap.add_argument('--ref')
ap.add_argument('--seed', type=int, default=0); ap.add_argument('--epochs', type=int, default=4)
ap.add_argument('--results', default='results')
a = ap.parse_args()
d = msgpack.unpackb(open(a.checkpoint, 'rb').read(), raw=False, strict_map_key=False)
mems = list(d['state']['memories'])
if a.ref:
    r = msgpack.unpackb(open(a.ref, 'rb').read(), raw=False, strict_map_key=False)
    have = {n for n, _ in mems}
    mems += [(n, ds) for n, ds in r['state']['memories'] if n not in have]
print(f"{'set':>8} task  expert-acc  p(right)   (experts: {a.epochs} epochs, last epoch)")
for name, ds in mems:
    x = np.asarray(ds['images'], np.float32).reshape(-1, *ds['shape']); y = np.asarray(ds['labels'])
    for t in range(5):
        m = (y // 2) == t; xt, yt = x[m], y[m] - 2 * t
        dirs = [g for g in glob.glob(f"{a.results}/experts/digits-*-e{a.epochs}-lr0.01-b64-dsa-s{step_seed(a.seed, t)}")
                if json.load(open(g + '/manifest.json'))['spec']['ConvNet']['num_classes'] == 2]
        assert len(dirs) == 1, dirs
        accs, probs = [], []
        for f in sorted(glob.glob(dirs[0] + '/expert_*.safetensors')):
            z = forward(read_st(f), a.epochs, xt)
            pr = np.exp(z - z.max(1, keepdims=True)); pr /= pr.sum(1, keepdims=True)
            accs.append((z.argmax(1) == yt).mean()); probs.append(pr[np.arange(len(yt)), yt].mean())
        print(f"{name:>8} {t:>4}  {np.mean(accs):10.3f}  {np.mean(probs):8.3f}   ({len(accs)} experts)")
