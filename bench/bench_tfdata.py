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

Usage::

    python bench/bench_tfdata.py                 # 1,024 cached images, 256 on the fly
    python bench/bench_tfdata.py --write-readme  # also replace '## tfdata' in bench/README.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="cached images")
    ap.add_argument("--otf-images", type=int, default=256, help="images decoded on the fly")
    ap.add_argument("--workers", type=int, default=2, help="on-the-fly worker processes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="passes over the cache per round")
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from dicomml.data import OnTheFly, TensorCache, cache_dataset
    from dicomml.preprocess import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-tfdata-"))
    try:
        ex = _examples(tmp / "dicom", args.images)
        pipe = Pipeline()
        cache = TensorCache.for_pipeline(tmp / "cache", pipe)
        t = time.perf_counter()
        cache.fill(ex, pipe, workers=args.workers, progress=False)
        fill_s = time.perf_counter() - t
        _, _, names = cache.locate(ex)
        y = np.zeros(len(ex), int)
        outputs = ["float32", "stored"] if _has_output() else ["float32"]
        methods = {}
        for batch in (32, 128):
            for out in outputs:
                kw = {"output": out} if len(outputs) > 1 else {}
                # built once (traced once), iterated --epochs times per round
                ds = cache_dataset(cache, ex, targets=y, batch_size=batch, shuffle=True,
                                   seed=0, **kw).repeat(args.epochs)
                methods[f"cache_dataset, batch {batch}, output={out}"] = (
                    lambda ds=ds: _rate(ds, args.epochs * len(ex)))
            methods[f"floor: numpy.take of the rows, batch {batch}"] = (
                lambda b=batch: floor_take(cache, names, b, args.epochs * len(ex)))
        otf_ex = ex.iloc[:args.otf_images]
        one = OnTheFly(otf_ex, pipe, workers=0)
        methods["OnTheFly in this process (workers=0), batch 32"] = (
            lambda: _rate(one.dataset(batch_size=32), len(otf_ex)))
        otf = OnTheFly(otf_ex, pipe, workers=args.workers)
        otf_y = np.zeros(len(otf_ex), int)
        methods[f"OnTheFly, {args.workers} worker processes, batch 32"] = (
            lambda: _rate_tree(otf.dataset(targets=otf_y, batch_size=32, shuffle=True),
                               len(otf_ex)))
        try:
            for fn in methods.values():  # warm-up: tracing, page cache, workers started
                fn()
            rates: dict[str, list[tuple[float, float]]] = {k: [] for k in methods}
            for _ in range(args.rounds):
                for k, fn in methods.items():
                    rates[k].append(fn())
        finally:
            otf.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    lines = [f"`python bench/bench_tfdata.py --images {args.images} --otf-images "
             f"{args.otf_images} --workers {args.workers} --rounds {args.rounds} --epochs "
             f"{args.epochs}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.images} CT slices "
             "of 512×512 → 224×224×3 (cache: uint8 shards of 128, filled in "
             f"{fill_s:.1f} s; {args.epochs} shuffled passes per round), median of "
             f"{args.rounds} interleaved rounds after a warm-up; "
             f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
             f"{os.cpu_count()} CPU cores **shared with other jobs**, load average at the end "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
             "", "| pipeline | images/s (median) | min – max | images per CPU second |",
             "| --- | ---: | ---: | ---: |"]
    for k, v in rates.items():
        wall = [w for w, _ in v]
        cpu = f"{statistics.median(c for _, c in v):,.0f}"
        lines.append(f"| {k} | {statistics.median(wall):,.0f} | {min(wall):,.0f} – "
                     f"{max(wall):,.0f} | {cpu} |")
    lines += ["", "Images per CPU second: user + system time of this process (all its "
              "threads); for the worker processes, of this process and every worker "
              "(psutil, per process). `output=stored` is what an accelerator is fed: the uint8 bytes, "
              "converted to float32 on the device by `dicomml.data.tfdata.stored_to_float`."]
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        _write_readme(text)
    return 0


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
