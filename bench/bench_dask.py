"""Dask against in-process: the tensor cache fill and the scan, results compared.

Usage::

    python bench/bench_dask.py                        # 4,000 files, 3 interleaved rounds
    python bench/bench_dask.py --files 10000 --rounds 5 --workers 2

What it does, in one run:

1. Generates (or reuses, ``--data``) a tree of small CT slices (``--rows`` x ``--rows``,
   default 32, Explicit VR Little Endian, 100 per series) with ``bench_scale.make_tree``,
   scans it once in this process for the examples of the cache fill (untimed).
2. Starts the executors once (their start-up is timed apart):
   *in-process*; ``--workers`` *local processes* (:mod:`dicomml.parallel`); a Dask
   ``LocalCluster(n_workers=--workers, threads_per_worker=1, dashboard_address=None)``
   (``get_executor("dask", workers=N)``); and a real ``dask scheduler`` + ``dask worker
   --nworkers N --nthreads 1`` pair started as separate programs on 127.0.0.1 (no
   dashboard), to which ``get_executor("dask", scheduler="tcp://127.0.0.1:PORT")``
   connects, as to a remote cluster.
3. In ``--rounds`` rounds, each running every executor once in turn (interleaved, so a
   change of load hits them alike): ``TensorCache.fill`` of every example into a new cache
   folder (default preprocessing: 224x224x3 uint8 shards of 128) and ``scan`` into a new
   Index. Wall time, and CPU time of this process and of every process it started
   (scheduler, nannies, workers, forkserver children: counted per process with psutil
   before the executor is closed, :func:`benchlib.tree_cpu`), load average at the end.
4. Checks that every executor wrote the same shards (SHA-256 of every ``.npy`` and
   ``.json``) and the same Index rows as in-process; a difference fails the run.
5. Prints a Markdown section, written under ``## dask`` in ``bench/README.md``
   (``--no-readme`` to skip).

Keep the ``if __name__ == "__main__":`` guard: Dask's worker processes import the main
module when they start.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from benchlib import run_line, tree_cpu, write_section  # noqa: E402

EXECUTORS = ("inprocess", "processes", "dask-local", "dask-remote")
STAGES = ("cache", "scan")
#: Environment of the workers' processes (Dask's nannies otherwise set
#: MALLOC_TRIM_THRESHOLD_=65536, which sends every tensor-sized buffer through mmap/munmap).
REMOTE_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": 33554432, "MALLOC_MMAP_THRESHOLD_": 33554432,
                  "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}

REMOTE_NOTES = """\
**What a remote cluster needs** (`dicomml preprocess --scheduler tcp://HOST:8786`,
`get_executor("dask", scheduler=...)`):

* **dicomml on every worker**, the same version as the client: start `dask worker` from an
  environment where `import dicomml` works (the tasks are dicomml's own functions, sent by
  reference, and the preprocessing configuration travels with them).
* **The same paths everywhere**: the DICOM files (the scanned folder, the paths of the
  examples) and the cache folder must be mounted at the same absolute paths on the workers
  as on the client. Workers read the files and write each shard (`.npy`, then its `.json`
  index, both atomically) straight into the cache folder; the client receives only counts
  and failure records, never tensors. The scan ships header rows back to the client in
  batches of up to 2,048 files per task, and the client alone writes the SQLite Index
  (SQLite must not be written from several hosts: its file locks are unreliable on network
  file systems).
* **Scheduler settings**: `distributed.scheduler.allowed-failures: 0` keeps the
  at-most-twice guarantee of crash isolation (Dask's default re-runs a crashing task three
  times); one thread per worker process (`--nthreads 1`: header parsing and preprocessing
  hold the GIL); `distributed.nanny.pre-spawn-environ` with `MALLOC_TRIM_THRESHOLD_` and
  `MALLOC_MMAP_THRESHOLD_` of 32 MiB (the nanny's default of 64 KiB makes every tensor an
  mmap/munmap). This bench writes these into a Dask configuration file (`DASK_CONFIG`) for
  its `dask scheduler` + `dask worker` pair, as an administrator would.
* Workers need no access to the Index file, and the client no access to the workers' disks.
"""


def label(kind: str, workers: int) -> str:
    return {"inprocess": "in-process", "processes": f"{workers} local processes",
            "dask-local": f"Dask LocalCluster({workers})",
            "dask-remote": f"dask scheduler + dask worker --nworkers {workers} (loopback)",
            }[kind]


class RemoteCluster:
    """``dask scheduler`` and ``dask worker`` started as programs, on 127.0.0.1."""

    def __init__(self, workers: int, tmp: Path):
        bindir = Path(sys.executable).parent
        dask = str(bindir / "dask") if (bindir / "dask").exists() else "dask"
        self.file = tmp / "scheduler.json"
        # the settings the LocalCluster of dicomml.parallel uses, as a remote cluster's
        # administrator would give them: a Dask configuration file (JSON is YAML)
        conf = tmp / "dask-config"
        conf.mkdir()
        (conf / "dicomml.yaml").write_text(json.dumps({"distributed": {
            "scheduler": {"allowed-failures": 0, "worker-saturation": 1.0},
            "nanny": {"pre-spawn-environ": REMOTE_ENVIRON}}}))
        env = {**os.environ, "DASK_CONFIG": str(conf),
               "PYTHONPATH": os.pathsep.join([str(HERE.parent),
                                              os.environ.get("PYTHONPATH", "")])}
        log = open(tmp / "cluster.log", "wb")  # noqa: SIM115 - closed in close()
        self._log = log
        self.procs = [subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.file)], env=env, stdout=log, stderr=log)]
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                self.close()
                raise RuntimeError(f"dask scheduler did not start (see {tmp}/cluster.log)")
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.procs.append(subprocess.Popen(
            [dask, "worker", self.address, "--nworkers", str(workers), "--nthreads", "1",
             "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(tmp / "w")],
            env=env, stdout=log, stderr=log))

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self._log.close()


def make_executor(kind: str, workers: int, tmp: Path):
    """(executor, extra thing to close or None)."""
    from dicomml.parallel import get_executor

    if kind == "inprocess":
        return get_executor("inprocess"), None
    if kind == "processes":
        ex = get_executor("processes", workers=workers,
                          preload=["dicomml.data.cache", "dicomml.preprocess", "dicomml.io"])
        ex.start(wait=True)
        return ex, None
    if kind == "dask-local":
        return get_executor("dask", workers=workers), None
    cluster = RemoteCluster(workers, tmp)
    ex = get_executor("dask", scheduler=cluster.address, timeout=60)
    ex.client.wait_for_workers(workers, timeout=60)
    return ex, cluster


def digest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.glob("shard-*"))}


def index_rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(instances)") if r[1] != "mtime"]
        return con.execute(f"SELECT {', '.join(cols)} FROM instances ORDER BY path").fetchall()
    finally:
        con.close()


def run_stage(stage: str, ex, root: Path, examples, tmp: Path, tag: str):
    """(wall s, CPU s of the whole process tree, result to compare)."""
    from dicomml.data.cache import TensorCache
    from dicomml.io import scan
    from dicomml.preprocess import Pipeline, PreprocessConfig

    c0 = tree_cpu()
    t0 = time.perf_counter()
    if stage == "cache":
        pipe = Pipeline(PreprocessConfig())
        folder = tmp / f"cache-{tag}"
        cache = TensorCache.for_pipeline(folder, pipe)
        rep = cache.fill(examples, pipe, executor=ex, progress=False)
        wall = time.perf_counter() - t0
        cpu = tree_cpu() - c0
        if len(rep.failed) or len(rep.not_cached):
            raise RuntimeError(f"{tag}: {len(rep.failed)} failed, {len(rep.not_cached)} not "
                               "cached")
        result = digest(Path(cache.folder))
        shutil.rmtree(folder)
    else:
        db = tmp / f"index-{tag}.sqlite"
        r = scan(root, db, executor=ex, progress=False)
        wall = time.perf_counter() - t0
        cpu = tree_cpu() - c0
        if r.skipped:
            raise RuntimeError(f"{tag}: {len(r.skipped)} files skipped")
        result = index_rows(db)
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    return wall, cpu, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--executors", default=",".join(EXECUTORS))
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--data", type=Path, default=None, help="generated files (reused)")
    ap.add_argument("--readme", type=Path, default=HERE / "README.md")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)
    kinds = [k for k in args.executors.split(",") if k]
    kinds = ["inprocess"] + [k for k in kinds if k != "inprocess"] if "inprocess" in kinds \
        else kinds
    stages = [s for s in args.stages.split(",") if s]
    if "inprocess" not in kinds or set(kinds) - set(EXECUTORS) or set(stages) - set(STAGES):
        ap.error(f"--executors among {EXECUTORS} (in-process included: the reference), "
                 f"--stages among {STAGES}")

    import pandas as pd

    from bench_scale import make_tier, make_tree
    from dicomml.data.slices import SliceSelection, select_slices
    from dicomml.io import open_index, scan

    data = args.data or Path(tempfile.gettempdir()) / "dicomml-bench-dask"
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-dask-run-"))
    tree = make_tree(data, args.files, args.rows, 100)
    root = make_tier(tree, data, args.files, 100)
    scan(root, tmp / "examples.sqlite", workers=0, progress=False)
    with open_index(db=tmp / "examples.sqlite") as idx:
        inst = idx.instances()
    examples = select_slices(inst[inst["is_image"].astype(bool)], SliceSelection("all"))
    examples = pd.DataFrame(examples[["path", "sop_instance_uid", "frame"]])

    executors, extras, startup = {}, [], {}
    results: dict = {(s, k): [] for s in stages for k in kinds}
    reference: dict = {}
    try:
        for kind in kinds:
            t0 = time.perf_counter()
            executors[kind], extra = make_executor(kind, args.workers, tmp)
            startup[kind] = time.perf_counter() - t0
            if extra is not None:
                extras.append(extra)
        for rnd in range(args.rounds):
            for stage in stages:
                order = kinds if rnd == 0 else (kinds[1:] + kinds[:1] if rnd % 2 else
                                                kinds[::-1])
                for kind in order:
                    wall, cpu, out = run_stage(stage, executors[kind], root, examples, tmp,
                                               f"{kind}-{rnd}")
                    if kind == "inprocess":  # the first run of round 1: the reference
                        reference.setdefault(stage, out)
                    if out != reference[stage]:
                        raise RuntimeError(f"{kind} {stage}: the result differs from "
                                           "in-process")
                    load = os.getloadavg()[0]
                    results[(stage, kind)].append((wall, cpu, load))
                    print(f"round {rnd + 1} {stage:5s} {label(kind, args.workers):55s} "
                          f"{wall:7.2f} s  CPU {cpu:7.2f} s  load {load:.1f}", file=sys.stderr)
    finally:
        for ex in executors.values():
            ex.close()
        for extra in extras:
            extra.close()
        shutil.rmtree(tmp, ignore_errors=True)

    lines = ["## dask", "",
             f"{run_line('bench_dask.py', argv)}. {args.files:,} CT "
             f"slices of {args.rows}x{args.rows}; medians of {args.rounds} interleaved "
             "rounds (executors started once, start-up given apart); CPU = user + system "
             "time of this process and every process it started (psutil, per process); "
             "results identical to in-process (shard SHA-256, Index rows) in every round.",
             ""]
    for stage in stages:
        what = ("cache fill (`TensorCache.fill`, 224x224x3 uint8 shards of 128)"
                if stage == "cache" else "scan (`dicomml.io.scan`, a new Index each time)")
        lines += [f"**{what}**", "",
                  "| executor | wall (s) | x in-process | CPU (s) | start-up (s) | runs (s) "
                  "| load average at each run |",
                  "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
        base = statistics.median(r[0] for r in results[(stage, "inprocess")])
        for kind in kinds:
            runs = results[(stage, kind)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            lines.append(f"| {label(kind, args.workers)} | {wall:.2f} | {base / wall:.2f} | "
                         f"{cpu:.2f} | {startup[kind]:.2f} | "
                         + ", ".join(f"{r[0]:.2f}" for r in runs) + " | "
                         + ", ".join(f"{r[2]:.1f}" for r in runs) + " |")
        lines.append("")
    section = "\n".join(lines) + "\n" + REMOTE_NOTES
    print(section)
    if not args.no_readme:
        write_section(args.readme, "dask", section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
