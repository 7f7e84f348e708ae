"""The Index at a million files: scan memory, re-scan against the walk floor, notebook queries.

Usage::

    python bench/bench_index.py --files 100000          # estimate first (about 1 GB of /tmp)
    python bench/bench_index.py --files 1000000         # the goal (about 5 GB, deleted after)

What it does, in one run:

1. Generates ``--files`` small CT files (8x8, Explicit VR Little Endian, about 1.7 KB) under
   ``--data`` (default: a new folder in the temp dir, deleted at the end unless ``--keep``):
   ``p000/s00000/IM0000``..., ``--per-series`` files per series, 100 series per folder, 10
   series per study. The first series is written by :func:`dicomml.testing.write_ct_series`;
   every other file is a byte copy with new Study, Series and SOP Instance UIDs of the same
   length, a Study Date that varies by study (a week apart, over 20 years), and every
   ``--mr-every``-th series (default 10th) turned into MR (the (0008,0060) Modality and the
   SOP Class UID patched), so that the selections below are selective; ``--mr-every 1``
   gives the MR selection of a ten times larger tree (every file MR).
2. *walk floor*: ``os.scandir`` + ``stat`` of every entry, recursively, in this process.
3. *first scan*: ``dicomml.io.scan(root, db, workers=--workers)`` in a fresh process; the peak
   RSS of that process plus its workers is sampled every 20 ms (psutil).
4. *re-scan*: the same scan of the unchanged tree (fresh process, the scan's own
   ``elapsed_s``; peak RSS as above), in ``--rounds`` rounds interleaved with the walk floor.
5. *queries*, ``--rounds`` times in a fresh process (median of 3 calls each, wall and CPU):
   ``Index.series()``, selections by modality, SOP Class UID and study date range, the MR
   selection with four ``columns=``, ``series_files`` of one series, ``summary()``.
6. Prints a Markdown section, written under ``## index`` in ``bench/README.md``
   (``--no-readme`` to skip). The load average is given with every figure.

``--baseline DIR`` (another checkout of dicomml, e.g. the main branch) adds its re-scan to
every round (walk floor, baseline re-scan, this checkout's re-scan: the same load for all
three) and its queries to every query round (baseline, then this checkout), so that a
change is measured against the code before it in the same run. A baseline without
``Index.instances(columns=...)`` cuts the four columns from its full frame.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_scan import _same_length_uid  # noqa: E402
from benchlib import run_line, tree_rss, write_section  # noqa: E402

CT_CLASS = b"1.2.840.10008.5.1.4.1.1.2\0"
MR_CLASS = b"1.2.840.10008.5.1.4.1.1.4\0"
MODALITY_CT = b"\x08\x00\x60\x00CS\x02\x00CT"
MODALITY_MR = b"\x08\x00\x60\x00CS\x02\x00MR"
STUDY_DATE = b"\x08\x00\x20\x00DA\x08\x00"


def _uids(data: bytes) -> dict[str, bytes]:
    import io
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {k: str(getattr(ds, k)).encode() for k in
            ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def make_tree(root: Path, n_files: int, per_series: int, mr_every: int = 10) -> int:
    """Write the tree (see the module docstring; every ``mr_every``-th series is MR);
    returns the number of files."""
    from dicomml.testing import write_ct_series

    base = root / ".template"
    write_ct_series(base, n_slices=per_series, rows=8, columns=8, seed=0, noise=0.0)
    originals = [p.read_bytes() for p in sorted(base.iterdir())]
    ids = [_uids(d) for d in originals]
    for d in originals:
        if d.count(MODALITY_CT) != 1 or CT_CLASS not in d or d.count(STUDY_DATE) != 1:
            raise RuntimeError("the template does not hold the elements this bench patches")
    day0 = datetime.date(2000, 1, 1)
    n_series = -(-n_files // per_series)
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for k in range(n_series):
        folder = root / f"p{k // 100:03d}" / f"s{k:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        study = k // 10
        date = (day0 + datetime.timedelta(days=study * 7 % 7305)).strftime("%Y%m%d").encode()
        for j, (data, u) in enumerate(zip(originals, ids)):
            if written == n_files:
                break
            data = data.replace(u["StudyInstanceUID"],
                                _same_length_uid(u["StudyInstanceUID"], study))
            data = data.replace(u["SeriesInstanceUID"],
                                _same_length_uid(u["SeriesInstanceUID"], k))
            data = data.replace(u["SOPInstanceUID"],
                                _same_length_uid(u["SOPInstanceUID"], k * per_series + j))
            at = data.index(STUDY_DATE) + len(STUDY_DATE)
            data = data[:at] + date + data[at + 8:]
            if k % mr_every == mr_every - 1:
                data = data.replace(MODALITY_CT, MODALITY_MR).replace(CT_CLASS, MR_CLASS)
            fd = os.open(folder / f"IM{j:04d}", flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            written += 1
    shutil.rmtree(base)
    return written


def walk_floor(root: str) -> tuple[float, int, float]:
    """Seconds to ``os.scandir`` + ``stat`` every entry under ``root``; files found; CPU
    seconds of this process meanwhile."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    n = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat()
                if entry.is_dir():
                    stack.append(entry.path)
                elif st.st_size >= 0:
                    n += 1
    return time.perf_counter() - t0, n, time.process_time() - c0


_SCAN = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from dicomml.io import scan
sys.path.insert(0, sys.argv[1] + "/bench")
from benchlib import tree_cpu
c0 = tree_cpu()
r = scan(sys.argv[2], sys.argv[3], workers=int(sys.argv[4]), progress=False)
print(json.dumps({"elapsed_s": r.elapsed_s, "seen": r.files_seen, "read": r.files_read,
                  "skipped": len(r.skipped), "cpu_s": tree_cpu() - c0}))
"""

_QUERIES = r"""
import inspect, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from dicomml.io import Index, open_index
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
NARROW = ["path", "series_key", "sop_instance_uid", "instance_number"]
# code before Index.instances(columns=...): the same columns cut from the full frame
NATIVE = "columns" in inspect.signature(Index.instances).parameters
out = {}
with open_index(db=sys.argv[2]) as idx:
    key = None
    def series():
        global key
        df = idx.series()
        key = df.series_key.iloc[len(df) // 2]
        return len(df)
    def narrow():
        if NATIVE:
            return len(idx.instances(modality="MR", columns=NARROW))
        return len(idx.instances(modality="MR")[NARROW])
    queries = {
        "series table: Index.series()": series,
        "MR series: Index.series(modality='MR')": lambda: len(idx.series(modality="MR")),
        "MR instances: Index.instances(modality='MR')":
            lambda: len(idx.instances(modality="MR")),
        "MR instances, 4 columns: Index.instances(modality='MR', columns=['path', "
        "'series_key', 'sop_instance_uid', 'instance_number'])": narrow,
        "instances of one SOP class (MR Image Storage): Index.instances(sop_class_uid=...)":
            lambda: len(idx.instances(sop_class_uid=MR)),
        "studies of one month: Index.studies(study_date=('20000101', '20000131'))":
            lambda: len(idx.studies(study_date=("20000101", "20000131"))),
        "instances of one month: Index.instances(study_date=('20000101', '20000131'))":
            lambda: len(idx.instances(study_date=("20000101", "20000131"))),
        "instances of one series: Index.series_files(key)": lambda: len(idx.series_files(key)),
        "summary(): counts of patients, studies, series": lambda: idx.summary()["series"],
    }
    for name, fn in queries.items():
        times, cpus = [], []
        for _ in range(3):
            c0, t0 = time.process_time(), time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        out[name] = {"s": statistics.median(times), "cpu_s": statistics.median(cpus),
                     "rows": n}
print(json.dumps(out))
"""


def run_child(code: str, *args, sample: bool = True, repo: Path = HERE.parent
              ) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter with the dicomml of ``repo`` (default this
    checkout); (its JSON output, peak RSS of its tree in MiB)."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(repo), *map(str, args)],
                            stdout=subprocess.PIPE)
    peak = 0
    while sample and proc.poll() is None:
        try:
            peak = max(peak, tree_rss(proc.pid))
        except Exception:  # noqa: BLE001 - the process ended between poll and read
            pass
        time.sleep(0.02)
    out = proc.communicate()[0].decode().strip()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed with status {proc.returncode}")
    return json.loads(out.splitlines()[-1]), peak / 2**20


def load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-series", type=int, default=100)
    ap.add_argument("--mr-every", type=int, default=10,
                    help="every N-th series is MR (1: every file, so that a smaller tree "
                         "gives the MR selection of a larger one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, default=None,
                    help="folder for the tree and the Index (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the tree and the Index")
    ap.add_argument("--reuse-index", action="store_true",
                    help="keep the Index of an earlier --keep run: no first scan")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another dicomml checkout whose re-scan and queries are measured in "
                         "the same rounds (e.g. the main branch)")
    ap.add_argument("--queries-only", action="store_true",
                    help="with --reuse-index: no walk floor and no re-scan, the queries only")
    ap.add_argument("--readme", type=Path, default=HERE / "README.md")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)

    data = args.data or Path(tempfile.mkdtemp(prefix="dicomml-bench-index-"))
    root, db = data / "tree", data / "index.sqlite"
    try:
        t0 = time.perf_counter()
        if not root.exists():
            root.mkdir(parents=True)
            n = make_tree(root, args.files, args.per_series, args.mr_every)
        else:
            n = walk_floor(str(root))[1]
        gen_s = time.perf_counter() - t0
        du = sum(f.stat().st_blocks * 512 for f in (root / "p000").rglob("*") if f.is_file())
        du_total = du * (n / max(1, min(n, 100 * args.per_series)))
        print(f"tree: {n} files in {gen_s:.0f} s (about {du_total / 2**30:.2f} GiB on disk)",
              file=sys.stderr)
        walk_floor(str(root))  # warm the dentry and inode caches
        if args.reuse_index and db.exists():
            first, first_peak, first_load = None, 0.0, load()
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            first, first_peak = run_child(_SCAN, root, db, args.workers)
            first_load = load()
        print(f"first scan: {first} peak {first_peak:.0f} MiB, load {first_load}",
              file=sys.stderr)
        rounds, base_rounds = [], []
        for _ in range(0 if args.queries_only else args.rounds):
            floor_s, _n, floor_cpu = walk_floor(str(root))
            if args.baseline is not None:
                base, base_peak = run_child(_SCAN, root, db, args.workers, repo=args.baseline)
                base_rounds.append((base["elapsed_s"], base["cpu_s"], base_peak, load()))
            again, peak = run_child(_SCAN, root, db, args.workers)
            rounds.append((floor_s, again["elapsed_s"], peak, again["read"], load(),
                           floor_cpu, again["cpu_s"]))
            print(f"walk {floor_s:.2f} s, re-scan {again['elapsed_s']:.2f} s "
                  f"(CPU {floor_cpu:.2f} s / {again['cpu_s']:.2f} s) "
                  f"({again['read']} read), peak {peak:.0f} MiB, load {rounds[-1][4]}",
                  file=sys.stderr)
        query_rounds, base_query_rounds, query_loads = [], [], []
        for _ in range(args.rounds):  # interleaved with the baseline's: the same load
            if args.baseline is not None:
                base_query_rounds.append(
                    run_child(_QUERIES, db, sample=False, repo=args.baseline)[0])
            query_rounds.append(run_child(_QUERIES, db, sample=False)[0])
            query_loads.append(load())
            print(f"queries: load {query_loads[-1]}", file=sys.stderr)
        db_mib = os.path.getsize(db) / 2**20
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    lines = [
        "## index",
        "",
        f"{run_line('bench_index.py', argv)}. Tree: {n:,} files of "
        f"8x8 CT ({args.per_series} per series, 100 series per folder, "
        + ("every series MR" if args.mr_every == 1 else f"one series in {args.mr_every} MR")
        + "), generated in "
        f"{gen_s:.0f} s, about {du_total / 2**30:.2f} GiB on disk; Index "
        f"{db_mib:.0f} MiB. Scans with `workers={args.workers}` in a fresh process each; "
        "peak RSS of that process and its workers (psutil, every 20 ms). Queries: "
        f"{args.rounds} rounds of a fresh process each (median of 3 calls per round), "
        "medians over the rounds"
        + (", interleaved with the baseline's" if args.baseline is not None else "") + ".",
        "",
        "| step | figure | load average (1 / 5 / 15 min) |",
        "| --- | ---: | --- |",
    ]
    if first is not None:
        lines.append(f"| first scan | {first['elapsed_s']:.1f} s ("
                     f"{first['read'] / first['elapsed_s']:.0f} files/s, CPU of the process "
                     f"and its workers {first['cpu_s']:.1f} s), peak RSS {first_peak:.0f} MiB "
                     f"| {first_load} |")
    for i, (f_s, r_s, peak, read, ld, f_cpu, r_cpu) in enumerate(rounds, 1):
        lines.append(f"| round {i}: walk floor / re-scan (unchanged, {read} read) | wall "
                     f"{f_s:.2f} s / {r_s:.2f} s = {r_s / f_s:.2f}x; CPU {f_cpu:.2f} s / "
                     f"{r_cpu:.2f} s = {r_cpu / f_cpu:.2f}x; re-scan peak RSS {peak:.0f} MiB "
                     f"| {ld} |")
    if rounds:
        floor = statistics.median(r[0] for r in rounds)
        rescan = statistics.median(r[1] for r in rounds)
        cpu_ratio = statistics.median(r[6] / r[5] for r in rounds)
        lines.append(f"| median re-scan / walk floor | wall {rescan / floor:.2f}x, CPU "
                     f"{cpu_ratio:.2f}x (goal <= 2) | |")
    for i, ((b_s, b_cpu, b_peak, b_ld), r) in enumerate(zip(base_rounds, rounds), 1):
        lines.append(f"| round {i}, baseline `{args.baseline}`: walk floor / re-scan | wall "
                     f"{r[0]:.2f} s / {b_s:.2f} s = {b_s / r[0]:.2f}x; CPU {r[5]:.2f} s / "
                     f"{b_cpu:.2f} s = {b_cpu / r[5]:.2f}x; peak RSS {b_peak:.0f} MiB | {b_ld} |")
    if base_rounds:
        lines.append("| median baseline re-scan / walk floor | wall "
                     f"{statistics.median(b[0] / r[0] for b, r in zip(base_rounds, rounds)):.2f}x"
                     f", CPU {statistics.median(b[1] / r[5] for b, r in zip(base_rounds, rounds)):.2f}"
                     "x | |")

    def figure(results: list[dict], name: str) -> str:
        wall = statistics.median(q[name]["s"] for q in results) * 1000
        cpu = statistics.median(q[name]["cpu_s"] for q in results) * 1000
        return f"wall {wall:.0f} ms, CPU {cpu:.0f} ms ({results[0][name]['rows']:,} rows)"

    span = (f"{query_loads[0]} to {query_loads[-1]}" if len(query_loads) > 1
            else query_loads[0])
    for name in query_rounds[0]:
        base = (f"; baseline: {figure(base_query_rounds, name)}" if base_query_rounds
                else "")
        lines.append(f"| query: {name} | {figure(query_rounds, name)}{base} | {span} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_readme:
        write_section(args.readme, "index", section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
