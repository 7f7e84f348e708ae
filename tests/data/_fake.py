"""A tiny picklable stand-in for dicomml.preprocess.Pipeline, for cache and tf.data tests.

A "file" is a text file holding an integer seed; the tensor of (file, frame) is
``default_rng(seed * 1000 + frame).random((224, 224, 3))`` in [0, 1] (or × 4 − 2 for
the float16 case). The file text ``bad`` raises, ``abort`` kills the worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np


class FakeConfig:
    def __init__(self, normalization="unit", delay=0.0):
        self.normalization = normalization
        self.delay = delay

    def to_dict(self):
        return {"normalization": self.normalization}

    def config_hash(self):
        return hashlib.sha256(json.dumps(self.to_dict()).encode()).hexdigest()[:16]


class FakePipeline:
    def __init__(self, normalization="unit", delay=0.0):
        self.config = FakeConfig(normalization, delay)

    def expected(self, seed: int, frame: int) -> np.ndarray:
        x = np.random.default_rng(seed * 1000 + frame).random((224, 224, 3), dtype=np.float32)
        if self.config.normalization != "unit":
            x = x * 4 - 2
        return x

    def from_path(self, path, frame=0):
        with open(path) as f:
            text = f.read().strip()
        if text == "bad":
            raise ValueError("cannot decode (0002,0010) Transfer Syntax UID")
        if text == "abort":
            os.abort()
        if self.config.delay:
            time.sleep(self.config.delay)
        return self.expected(int(text), int(frame))


def write_files(folder, seeds, special=None):
    """One file per seed (plus ``special`` {name: text}); returns an examples DataFrame."""
    import pandas as pd

    rows = []
    os.makedirs(folder, exist_ok=True)
    for s in seeds:
        p = os.path.join(folder, f"f{s}.txt")
        with open(p, "w") as f:
            f.write(str(s))
        rows.append({"path": p, "sop_instance_uid": f"1.2.3.{s}", "frame": 0, "seed": s})
    for name, text in (special or {}).items():
        p = os.path.join(folder, name)
        with open(p, "w") as f:
            f.write(text)
        rows.append({"path": p, "sop_instance_uid": f"9.9.{name}", "frame": 0, "seed": -1})
    return pd.DataFrame(rows)


if __name__ == "__main__":  # used by the resume test: fill a cache in a subprocess
    import sys

    import pandas as pd

    from dicomml.data.cache import TensorCache
    from tests.data._fake import FakePipeline as Pipe  # importable name for the workers

    root, csv, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ex = pd.read_csv(csv, dtype={"sop_instance_uid": str})
    pipe = Pipe(delay=float(sys.argv[4]))
    cache = TensorCache.for_pipeline(root, pipe, shard_size=4)
    rep = cache.fill(ex, pipe, workers=workers, executor="inprocess" if workers == 0
                     else "processes", progress=False)
    print(json.dumps({"computed": rep.computed, "cached": rep.already_cached,
                      "shards": rep.shards_written}))
