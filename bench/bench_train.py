"""Benchmark: training-step rate of the reference CNN vs the rate the tf.data pipelines deliver.

Measures, in images per second:

1. training steps of the reference CNN (224×224×3, batch 32) on in-memory tensors;
2. the tensor cache read by ``dicomml.data.cache_dataset`` (memory-mapped uint8 shards,
   shuffled, batched, prefetched, converted to float32);
3. on-the-fly decoding + preprocessing of DICOM files in worker processes
   (``dicomml.data.OnTheFly``).

Goals: cache-fed ≥ 20× the training-step rate; on-the-fly with workers ≥ the training rate.

Usage::

    python bench/bench_train.py                      # short (shared machine)
    python bench/bench_train.py --steps 20 --patients 48 --write-readme
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np


def _rate(n_images: int, seconds: float) -> float:
    return n_images / seconds if seconds > 0 else float("inf")


def bench_train_steps(steps: int, batch: int = 32) -> float:
    import keras

    from dicomml.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((batch, 224, 224, 3), dtype=np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, batch)]
    model.train_on_batch(x, y)  # build + trace
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return _rate(steps * batch, time.perf_counter() - t0)


def _task(folder: str, patients: int):
    from dicomml.data.slices import SliceSelection
    from dicomml.testing.task import write_head_ct_task
    from dicomml.train.config import RunConfig
    from dicomml.train.trainer import prepare_manifest

    labels = write_head_ct_task(os.path.join(folder, "dicom"), n_patients=patients, seed=0)
    cfg = RunConfig.from_dict({"data": {"folder": os.path.join(folder, "dicom"),
                                        "index": os.path.join(folder, "index.sqlite"),
                                        "labels": str(labels), "workers": 0}})
    m, _ = prepare_manifest(cfg, progress=False)
    assert cfg.data.slices == SliceSelection()
    return m.df


def bench_cache(examples, folder: str, epochs: int, batch: int = 32) -> tuple[float, float]:
    from dicomml.data import TensorCache, cache_dataset
    from dicomml.preprocess import Pipeline

    pipe = Pipeline()
    cache = TensorCache.for_pipeline(os.path.join(folder, "cache"), pipe)
    t0 = time.perf_counter()
    cache.fill(examples, pipe, workers=2, progress=False)
    fill_rate = _rate(len(examples), time.perf_counter() - t0)
    ds = cache_dataset(cache, examples, targets=np.zeros(len(examples), int), batch_size=batch,
                       shuffle=True, seed=0)
    for _ in ds.take(1):  # warm-up: tracing and first page-in
        pass
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _y in ds:
            n += int(x.shape[0])
    return _rate(n, time.perf_counter() - t0), fill_rate


def bench_on_the_fly(examples, workers: int, batch: int = 32) -> float:
    from dicomml.data import OnTheFly
    from dicomml.preprocess import Pipeline

    with OnTheFly(examples, Pipeline(), workers=workers) as otf:
        ds = otf.dataset(targets=np.zeros(len(examples), int), batch_size=batch, shuffle=True)
        for _ in ds.take(1):  # start the workers
            pass
        t0 = time.perf_counter()
        n = 0
        for x, _y in ds:
            n += int(x.shape[0])
        return _rate(n, time.perf_counter() - t0)


def write_readme(text: str, path: str) -> None:
    """Replace the ``## train`` section of bench/README.md (only that section)."""
    from dicomml._atomic import atomic_write_text

    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## train"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines)
                                                else "")
    atomic_write_text(path, new)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="timed training steps (batch 32)")
    ap.add_argument("--patients", type=int, default=12, help="studies of the generated task")
    ap.add_argument("--cache-epochs", type=int, default=3, help="passes over the cache")
    ap.add_argument("--workers", type=int, default=2, help="on-the-fly worker processes")
    ap.add_argument("--write-readme", action="store_true", help="update bench/README.md")
    args = ap.parse_args(argv)

    train = bench_train_steps(args.steps)
    with tempfile.TemporaryDirectory(prefix="dicomml-bench-train-") as tmp:
        ex = _task(tmp, args.patients)
        cache, fill = bench_cache(ex, tmp, args.cache_epochs)
        otf = bench_on_the_fly(ex, args.workers)
    rows = [("training steps, reference CNN, batch 32", train, 1.0),
            ("tf.data from the tensor cache (uint8 shards, memory-mapped)", cache,
             cache / train),
            (f"tf.data decoding DICOM on the fly, {args.workers} worker processes", otf,
             otf / train),
            ("filling the cache (decode + preprocess + write, 2 workers)", fill, fill / train)]
    load = os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = ["## train", "",
            f"`python bench/bench_train.py --steps {args.steps} --patients {args.patients} "
            f"--cache-epochs {args.cache_epochs} --workers {args.workers}` on {now}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
            "(the machine is shared: figures are noisy).",
            "", f"Head-CT task of {args.patients} studies ({len(ex)} slices of 256×256), "
            "default preprocessing (brain/subdural/bone, 224×224×3, unit).", "",
            "| what | images/s | × training rate |", "| --- | ---: | ---: |"]
    text += [f"| {name} | {rate:.1f} | {ratio:.1f}× |" for name, rate, ratio in rows]
    text += ["", f"Goals: cache-fed ≥ 20× the training rate: {cache / train:.1f}× "
             f"({'met' if cache / train >= 20 else 'NOT met'}); on the fly with workers ≥ the "
             f"training rate: {otf / train:.1f}× ({'met' if otf >= train else 'NOT met'}).", ""]
    out = "\n".join(text)
    print(out)
    if args.write_readme:
        write_readme(out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
