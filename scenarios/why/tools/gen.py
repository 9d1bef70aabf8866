"""Writes scenarios/why/<name>.toml: base.toml's stream and learner with one MTT memory
strategy whose settings (and optionally [experts] table) differ from the baseline's.

usage: python gen.py NAME 'WHAT IT TESTS' 'mtt inline-table keys' ['experts keys']
"""
import sys, pathlib

name, what, keys = sys.argv[1:4]
experts = sys.argv[4] if len(sys.argv) > 4 else "count = 2\nepochs = 4"
here = pathlib.Path(__file__).resolve().parent.parent
text = f"""# Why do MTT memories replay worse than random ones on Split-digits? (WHY.md)
# {what}
# base.toml's stream, learner and seed; one MTT memory strategy (random's row is base.toml's).
# Run: distillery run scenarios/why/{name}.toml  (or scenarios/why/tools/run.sh {name}, which also keeps the memory)
name = "why-{name}"
description = "Split-digits MTT memory: {what}"
kind = "continual"
seed = 0
device = "cpu"

[data]
source = "digits"

[model]
arch = "convnet"
width = 32
depth = 2

[train]
epochs = 10
batch_size = 64
lr = 0.01
momentum = 0.9
weight_decay = 5e-4
schedule = "constant"

[experts]
{experts}
lr = 0.01
batch_size = 64

[continual]
stream = "class_incremental"
tasks = 5
protocol = "streaming"
strategies = [
  {{ method = "mtt", {keys} }},
]
memory_per_class = 10
replay_fraction = 0.5
"""
(here / f"{name}.toml").write_text(text)
print(here / f"{name}.toml")
