"""Benchmark: how many images per second the tf.data pipelines deliver to an accelerator.

Measured in one run, interleaved rounds (median), on a generated CT export (512×512 slices):

* **cache-fed** :func:`dicomml.data.cache_dataset` over the memory-mapped uint8 shards of the
  tensor cache, shuffled, batch 32 and 128, prefetched: with ``output="float32"`` (the
  batch converted to float32 on the CPU) and ``output="stored"`` (the uint8 bytes as
  stored, converted to float32 where the model runs by
  :func:`dicomml.data.tfdata.stored_to_float`);
* **floor**: one ``numpy.take`` of the rows of a batch from one memory-mapped shard (the
  copy any shuffled batch needs);
* **on the fly**: :class:`dicomml.data.OnTheFly` decoding + preprocessing the DICOM files in
  two worker processes (``--workers``).

Every round runs each tree in a fresh process (TensorFlow's start-up, the dataset's tracing
and a warm-up pass excluded from the timing), trees in alternating order; with ``--base``
the same run measures the code before a change (a dicomml tree, e.g. ``git archive``) and
checks that it gives the same tensors, in the same order, as this tree (SHA-256 of one
shuffled epoch of each pipeline).

Usage::

    python bench/bench_tfdata.py                 # 1,024 cached images, 256 on the fly
    git archive BASE_COMMIT dicomml | tar -x -C /tmp/base   # the "before" tree
    nice -n 5 python bench/bench_tfdata.py --base /tmp/base --write-readme
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if "--child" not in sys.argv:  # a child imports the dicomml tree it is given
    sys.path.insert(0, str(ROOT))


def _examples(folder: Path, n_files: int, seed: int = 0):
    """A manifest-like DataFrame (path, sop_instance_uid, frame) of ``n_files`` CT slices."""
    import pandas as pd
    import pydicom

    from dicomml.testing import write_ct_series

    paths = []
    per = 64
    for s in range(-(-n_files // per)):
        paths += write_ct_series(folder / f"s{s}", seed=seed + s, n_slices=min(per, n_files -
                                                                              s * per))
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    return pd.DataFrame({"path": [str(p) for p in paths], "sop_instance_uid": uids,
                         "frame": 0})


def _rate(ds, n_images: int) -> tuple[float, float]:
    """(images per second of wall time, images per CPU second of this process)."""
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for batch in ds:
        x = batch[0] if isinstance(batch, tuple) else batch
        n += int(x.shape[0])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    assert n == n_images, (n, n_images)
    return n / dt, n / max(dc, 1e-9)


def _tree_cpu() -> float:
    """CPU seconds (user + system) of this process and of every process below it (the
    executor's workers; ``getrusage(RUSAGE_CHILDREN)`` misses forkserver workers)."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited meanwhile
            continue
        total += t.user + t.system
    return total


def _rate_tree(ds, n_images: int) -> tuple[float, float]:
    """(images per second, images per CPU second of this process and its workers)."""
    c = _tree_cpu()
    wall, _ = _rate(ds, n_images)
    return wall, n_images / max(_tree_cpu() - c, 1e-9)


def floor_take(cache, names, batch: int, n: int, seed: int = 0) -> float:
    """The copy a shuffled batch needs: ``numpy.take`` of random rows of the shards."""
    rng = np.random.default_rng(seed)
    maps = [cache._mmap(nm) for nm in names]  # noqa: SLF001 - bench: the raw shards
    per = maps[0].shape[0]
    t, c = time.perf_counter(), time.process_time()
    done = 0
    while done < n:
        k = min(batch, n - done)
        s = int(rng.integers(len(maps)))
        rows = np.sort(rng.choice(min(per, maps[s].shape[0]), size=min(k, maps[s].shape[0]),
                                  replace=False))
        np.take(maps[s], rows, axis=0)
        done += k
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


def _methods(tmp: Path, args) -> tuple[dict, dict]:
    """(name → function giving (images/s, images per CPU second), name → checksum
    function) for the dicomml tree imported here; the cache and files are in ``tmp``."""
    import pandas as pd

    from dicomml.data import OnTheFly, TensorCache, cache_dataset
    from dicomml.preprocess import Pipeline

    ex = pd.read_pickle(tmp / "examples.pkl")
    pipe = Pipeline()
    cache = TensorCache.for_pipeline(tmp / "cache", pipe)
    _, _, names = cache.locate(ex)
    y = np.zeros(len(ex), int)
    outputs = ["float32", "stored"] if _has_output() else ["float32"]
    methods, sums = {}, {}
    for batch in (32, 128):
        for out in outputs:
            kw = {"output": out} if len(outputs) > 1 else {}
            # built once (traced once), iterated --epochs times per round
            ds = cache_dataset(cache, ex, targets=y, batch_size=batch, shuffle=True,
                               seed=0, **kw).repeat(args.epochs)
            name = f"cache_dataset, batch {batch}, output={out}"
            methods[name] = lambda ds=ds: _rate(ds, args.epochs * len(ex))
            sums[name] = lambda b=batch, kw=kw: _digest(cache_dataset(
                cache, ex, targets=y, batch_size=b, shuffle=True, seed=0, **kw))
        methods[f"floor: numpy.take of the rows, batch {batch}"] = (
            lambda b=batch: floor_take(cache, names, b, args.epochs * len(ex)))
    otf_ex = ex.iloc[:args.otf_images]
    one = OnTheFly(otf_ex, pipe, workers=0)
    methods["OnTheFly in this process (workers=0), batch 32"] = (
        lambda: _rate_tree(one.dataset(batch_size=32), len(otf_ex)))
    otf = OnTheFly(otf_ex, pipe, workers=args.workers)
    otf_y = np.zeros(len(otf_ex), int)
    name = f"OnTheFly, {args.workers} worker processes, batch 32"
    methods[name] = lambda: _rate_tree(otf.dataset(targets=otf_y, batch_size=32,
                                                   shuffle=True, seed=0), len(otf_ex))
    sums[name] = lambda: _digest(otf.dataset(targets=otf_y, batch_size=32, shuffle=True,
                                             seed=0))
    methods["_close"] = otf.close
    return methods, sums


def _digest(ds) -> str:
    """SHA-256 of every batch's bytes (x, then y), in order."""
    h = hashlib.sha256()
    for batch in ds:
        for t in (batch if isinstance(batch, tuple) else (batch,)):
            a = t.numpy()
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _child(args) -> int:
    """One round in this process, for the dicomml tree ``--tree``: JSON on the last line."""
    sys.path.insert(0, str(Path(args.tree).resolve()))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dicomml

    methods, sums = _methods(Path(args.child), args)
    close = methods.pop("_close")
    try:
        for fn in methods.values():  # warm-up: tracing, page cache, workers started
            fn()
        res = {"rates": {k: fn() for k, fn in methods.items()},
               "load": os.getloadavg()[0], "dicomml": str(Path(dicomml.__file__).parent)}
        if args.checksums:
            res["sums"] = {k: fn() for k, fn in sums.items()}
    finally:
        close()
    print(json.dumps(res))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="cached images")
    ap.add_argument("--otf-images", type=int, default=256, help="images decoded on the fly")
    ap.add_argument("--workers", type=int, default=2, help="on-the-fly worker processes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="passes over the cache per round")
    ap.add_argument("--base", help="a dicomml source tree to measure as 'before' in the same "
                    "run (e.g. git archive COMMIT dicomml | tar -x -C DIR)")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # data folder: run one round here
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--checksums", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dicomml.data import TensorCache
    from dicomml.preprocess import Pipeline

    trees = {"now": ROOT}
    if args.base:
        trees["before"] = Path(args.base).resolve()
        if not (trees["before"] / "dicomml" / "__init__.py").exists():
            ap.error(f"--base {args.base}: no dicomml package in that folder")
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-tfdata-"))
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    try:
        ex = _examples(tmp / "dicom", args.images)
        ex.to_pickle(tmp / "examples.pkl")
        pipe = Pipeline()
        cache = TensorCache.for_pipeline(tmp / "cache", pipe)
        t = time.perf_counter()
        cache.fill(ex, pipe, workers=args.workers, progress=False)
        fill_s = time.perf_counter() - t
        common = ["--images", str(args.images), "--otf-images", str(args.otf_images),
                  "--workers", str(args.workers), "--epochs", str(args.epochs)]
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for which in order:
                cmd = [sys.executable, __file__, "--child", str(tmp), "--tree",
                       str(trees[which]), *common] + (["--checksums"] if r == 0 else [])
                p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp))
                if p.returncode != 0:
                    raise SystemExit(f"{which} round {r} failed:\n{p.stderr[-4000:]}")
                runs[which].append(json.loads(p.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {which}: load {runs[which][-1]['load']:.1f}, "
                      f"{runs[which][-1]['dicomml']}",
                      file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    same = None
    if "before" in runs:
        a, b = runs["now"][0]["sums"], runs["before"][0]["sums"]
        same = {k: a[k] == b[k] for k in a if k in b}
    load = os.getloadavg()
    lines = [f"`python bench/bench_tfdata.py --images {args.images} --otf-images "
             f"{args.otf_images} --workers {args.workers} --rounds {args.rounds} --epochs "
             f"{args.epochs}{' --base BEFORE' if args.base else ''}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.images} CT slices "
             "of 512×512 → 224×224×3 (cache: uint8 shards of 128, filled in "
             f"{fill_s:.1f} s; {args.epochs} shuffled passes per round), median of "
             f"{args.rounds} rounds, each tree in a fresh process per round after a warm-up "
             f"pass, trees in alternating order; Python {platform.python_version()}, "
             f"{os.cpu_count()} CPU cores **shared with other jobs**, load average at each "
             "round " + ", ".join(f"{run['load']:.1f}" for k in trees for run in runs[k])
             + f"; at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
             "", "| pipeline | tree | images/s (median) | min – max | images per CPU second |",
             "| --- | --- | ---: | ---: | ---: |"]
    for k in runs["now"][0]["rates"]:
        for which in trees:
            v = [run["rates"][k] for run in runs[which] if k in run["rates"]]
            if not v:
                continue
            wall = [w for w, _ in v]
            cpu = f"{statistics.median(c for _, c in v):,.0f}"
            lines.append(f"| {k} | {which} | {statistics.median(wall):,.0f} | "
                         f"{min(wall):,.0f} – {max(wall):,.0f} | {cpu} |")
    lines += ["", "Images per CPU second: user + system time of the child process (all its "
              "threads) and, on the fly, of every worker process (psutil, per process). "
              "`output=stored` is what an accelerator is fed: the uint8 bytes, converted to "
              "float32 on the device by `dicomml.data.tfdata.stored_to_float`."]
    if same is not None:
        lines += ["", "Same tensors and labels, in the same order, as before (SHA-256 of one "
                  "shuffled epoch, seed 0): " + ", ".join(
                      f"{k}: {'yes' if v else '**NO**'}" for k, v in same.items()) + "."]
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        _write_readme(text)
    return 0 if same is None or all(same.values()) else 1


def _has_output() -> bool:
    import inspect

    from dicomml.data import cache_dataset

    return "output" in inspect.signature(cache_dataset).parameters


def _write_readme(text: str) -> None:
    from _readme import replace_section

    replace_section("tfdata", "Generated by `python bench/bench_tfdata.py --write-readme` "
                    "(issue 19 goals: ≥ 20,000 images/s from the cache, ≥ 500 images/s on the "
                    "fly with two workers).\n\n" + text)

if __name__ == "__main__":
    raise SystemExit(main())
