"""Benchmark: ``dicomml serve`` as a node of a real Orthanc.

Measures

1. latency: from the last instance of a study received (dcmtk ``storescu`` returned) to
   its SR stored in Orthanc (polled over REST every 50 ms), minus the quiet period
   ``--stable-seconds`` (goal: ≤ 5 s for a 40-slice CT on two CPU cores);
2. throughput: studies per minute with 20 concurrent ``storescu`` senders, against the
   model's own rate: ``dicomml.evaluate.predict`` called once per study in a warm process
   (what the node does per study), and once on all the studies together (batched).

Orthanc runs in a private network namespace (needs root, as the tests); the model is the
tiny run of ``tests/evaluate/runfolder.py`` with its input contract widened to 512x512
images. Usage::

    nice -n 5 python bench/bench_serve.py                  # 40 x 512², 20 x 10 x 512²
    nice -n 5 python bench/bench_serve.py --repeats 1 --senders 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ct(folder: Path, seed: int, n: int, size: int):
    from dicomml.testing import write_ct_series

    return write_ct_series(folder / f"ct{seed}", seed=seed, n_slices=n, rows=size,
                           columns=size, body="head")


def _study_uid(paths) -> str:
    import pydicom

    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def _has_sr(orthanc, uid: str) -> bool:
    from tests.serve.harness import rest

    ids = [i["ID"] for i in rest(orthanc, "/tools/lookup", uid.encode(), method="POST")
           if i["Type"] == "Study"]
    return bool(ids) and any(s["MainDicomTags"].get("Modality") == "SR"
                             for s in rest(orthanc, f"/studies/{ids[0]}/series"))


def _wait_sr(orthanc, uid: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _has_sr(orthanc, uid):
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"no SR for a study within {timeout} s")


def bench(args) -> None:
    from tests.evaluate.runfolder import make_run
    from tests.pacs.orthanc import orthanc_in_netns
    from tests.serve.harness import NodeProcess, storescu

    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-serve-"))
    run = make_run(tmp / "model")
    # the tiny run is trained on 64x64 images; accept 512x512 CT too, as a [contract]
    # override in the training TOML would (the model sees 224x224 either way)
    from dicomml.data.contract import InputContract

    InputContract.from_run_dir(run).with_overrides(
        {"pixel_spacing": (0.2, 6.0), "rows": (32, 1024), "columns": (32, 1024)}).write(run)
    with orthanc_in_netns() as orthanc:
        node = NodeProcess(run, tmp / "spool", orthanc, stable=args.stable,
                           extra=("--max-concurrent", str(args.concurrent)))
        node.start()
        try:
            warm = _ct(tmp, 1, 3, 64)  # loads TensorFlow and the model once
            storescu(warm)
            _wait_sr(orthanc, _study_uid(warm))
            lat = []
            for r in range(args.repeats):
                paths = _ct(tmp, 10 + r, args.slices, args.size)
                rc = storescu(paths)
                t_last = time.monotonic()
                assert rc.returncode == 0, rc.stderr
                lat.append(_wait_sr(orthanc, _study_uid(paths)) - t_last - args.stable)
            studies = [_ct(tmp, 100 + i, args.tp_slices, args.size)
                       for i in range(args.senders)]
            t0 = time.monotonic()
            threads = [threading.Thread(target=storescu, args=(p,)) for p in studies]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done = max(_wait_sr(orthanc, _study_uid(p)) for p in studies)
            node_rate = len(studies) / (done - t0) * 60
            node_status = node.status()
        finally:
            node.kill()
    # the model's own rate on the same studies, in this (warm) process
    from dicomml.evaluate.prediction import predict

    predict(run, studies[0][0].parent, tmp / "p-warm", workers=0, progress=False)
    t0 = time.perf_counter()
    for i, p in enumerate(studies):
        predict(run, p[0].parent, tmp / f"p{i}", workers=0, progress=False)
    per_study = len(studies) / (time.perf_counter() - t0) * 60
    both = tmp / "all"
    both.mkdir()
    for p in studies:
        os.symlink(p[0].parent, both / p[0].parent.name)
    t0 = time.perf_counter()
    predict(run, both, tmp / "p-all", workers=0, progress=False)
    batched = len(studies) / (time.perf_counter() - t0) * 60

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; quiet period {args.stable} s")
    print("| measure | value |\n| --- | ---: |")
    print(f"| latency, {args.slices}-slice CT {args.size}² (last instance → SR in Orthanc, "
          f"minus quiet period), median of {len(lat)} | {sorted(lat)[len(lat) // 2]:.2f} s |")
    print(f"| node's own latency record (median) | "
          f"{node_status['latency_s']['median']:.2f} s |")
    print(f"| node: {args.senders} concurrent senders, {args.tp_slices}-slice CT, "
          f"max_concurrent {args.concurrent} | {node_rate:.1f} studies/min |")
    print(f"| predict() once per study (warm process) | {per_study:.1f} studies/min |")
    print(f"| predict() on all {len(studies)} studies at once | {batched:.1f} studies/min |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--senders", type=int, default=20)
    ap.add_argument("--tp-slices", type=int, default=10)
    ap.add_argument("--stable", type=float, default=2.0)
    ap.add_argument("--concurrent", type=int, default=2)
    bench(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
