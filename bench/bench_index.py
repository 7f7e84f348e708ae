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
   length, a Study Date that varies by study (a week apart, over 20 years), and every 10th series turned into MR (the
   (0008,0060) Modality and the SOP Class UID patched), so that the selections below are
   selective.
2. *walk floor*: ``os.scandir`` + ``stat`` of every entry, recursively, in this process.
3. *first scan*: ``dicomml.io.scan(root, db, workers=--workers)`` in a fresh process; the peak
   RSS of that process plus its workers is sampled every 20 ms (psutil).
4. *re-scan*: the same scan of the unchanged tree (fresh process, the scan's own
   ``elapsed_s``; peak RSS as above), in ``--rounds`` rounds interleaved with the walk floor.
5. *queries* in a fresh process (median of 3 each): ``Index.series()``, selections by
   modality, SOP Class UID and study date range, ``series_files`` of one series,
   ``summary()``.
6. Prints a Markdown section, written under ``## index`` in ``bench/README.md``
   (``--no-readme`` to skip). The load average is given with every figure.

``--baseline DIR`` (another checkout of dicomml, e.g. the main branch) adds its re-scan to
every round (walk floor, baseline re-scan, this checkout's re-scan: the same load for all
three) and its queries after this checkout's, so that a change is measured against the
code before it in the same run.
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
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from dicomml.io import open_index
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
out = {}
with open_index(db=sys.argv[2]) as idx:
    key = None
    def series():
        global key
        df = idx.series()
        key = df.series_key.iloc[len(df) // 2]
        return len(df)
    queries = {
        "series table: Index.series()": series,
        "MR series: Index.series(modality='MR')": lambda: len(idx.series(modality="MR")),
        "MR instances: Index.instances(modality='MR')":
            lambda: len(idx.instances(modality="MR")),
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
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            n = fn()
            times.append(time.perf_counter() - t0)
        out[name] = {"s": statistics.median(times), "rows": n}
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
        for _ in range(args.rounds):
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
        queries, _ = run_child(_QUERIES, db, sample=False)
        query_load = load()
        base_queries = None
        if args.baseline is not None:
            base_queries, _ = run_child(_QUERIES, db, sample=False, repo=args.baseline)
            base_query_load = load()
        db_mib = os.path.getsize(db) / 2**20
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    floor = statistics.median(r[0] for r in rounds)
    rescan = statistics.median(r[1] for r in rounds)
    lines = [
        "## index",
        "",
        f"{run_line('bench_index.py', argv)}. Tree: {n:,} files of "
        f"8x8 CT ({args.per_series} per series, 100 series per folder), generated in "
        f"{gen_s:.0f} s, about {du_total / 2**30:.2f} GiB on disk; Index "
        f"{db_mib:.0f} MiB. Scans with `workers={args.workers}` in a fresh process each; "
        "peak RSS of that process and its workers (psutil, every 20 ms).",
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
    for name, q in queries.items():
        lines.append(f"| query: {name} | {q['s'] * 1000:.0f} ms ({q['rows']:,} rows) "
                     f"| {query_load} |")
    for name, q in (base_queries or {}).items():
        lines.append(f"| baseline query: {name} | {q['s'] * 1000:.0f} ms ({q['rows']:,} rows) "
                     f"| {base_query_load} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_readme:
        write_section(args.readme, "index", section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
