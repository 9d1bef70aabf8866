"""Statistics of the continual memories kept in a run's checkpoint.msgpack (copied during the
run's privacy audit, when the checkpoint holds every memory strategy's final memory).

usage: python memstats.py CHECKPOINT [REFERENCE_CHECKPOINT]
Per strategy and task (2 classes each): pixel mean, std, min, max of the images, mean L2 norm,
and the mean L2 distance of each image to the same-index image of the `random` memory (MTT's
`init = "real"` starts from exactly the random memory's images: same seed, same selection).
"""
import sys, msgpack, numpy as np

def load(path):
    d = msgpack.unpackb(open(path, 'rb').read(), raw=False, strict_map_key=False)
    out = {}
    for name, ds in d['state']['memories']:
        x = np.asarray(ds['images'], dtype=np.float32).reshape(-1, *ds['shape'])
        y = np.asarray(ds['labels'])
        out[name] = (x, y)
    return out

mems = load(sys.argv[1])
if len(sys.argv) > 2:
    for k, v in load(sys.argv[2]).items():
        mems.setdefault(k, v)
ref = mems.get('random')
print(f"{'set':>12} {'task':>4} {'mean':>7} {'std':>6} {'min':>7} {'max':>7} {'|x|':>6} {'d(init)':>7}")
for name, (x, y) in mems.items():
    for t in range(5):
        m = (y // 2) == t
        xs = x[m].reshape(m.sum(), -1)
        d = ''
        if ref is not None and ref[0].shape == x.shape and (ref[1] == y).all():
            d = f"{np.linalg.norm(xs - ref[0][m].reshape(m.sum(), -1), axis=1).mean():7.2f}"
        print(f"{name:>12} {t:>4} {xs.mean():7.3f} {xs.std():6.3f} {xs.min():7.2f} {xs.max():7.2f} "
              f"{np.linalg.norm(xs, axis=1).mean():6.2f} {d:>7}")
