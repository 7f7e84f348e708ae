"""Fuzz benchmark: structured hostile headers and byte-mutated real files through every path.

Inputs (in a temporary folder, removed afterwards, or ``--workdir DIR``, kept):

* one file of every kind of :mod:`dicomml.testing.hostile` (huge declared sizes, NaN / inf
  rescale and window, width 0, inconsistent bits, short / long pixel data, deep nesting,
  undefined-length items without delimiters, a 2.3 GB sparse private element, a DICOMDIR
  pointing outside its root and to itself), and the pylibjpeg-rle panic file of the issue 14
  tests, each in a folder next to 19 valid CT files;
* ``--mutated N`` byte-mutated copies of the pydicom samples of ``tests/hardening/test_fuzz``
  (the same mutations: bit flips, truncation, corrupted and huge lengths, wrong VRs,
  duplicated chunks, pixel stream bytes; a seeded generator), ``--per-folder`` (250) to a
  folder, each folder next to the 19 valid files.

Targets, each in its own worker process (so that its peak RSS is its own):

* per file (the hostile files and two valid ones of each folder): ``read_image``,
  ``read_series`` (each file alone, decoding in one shared process pool), ``show`` (what
  ``dicomml show FILE --all`` prints: :func:`dicomml.cli.show.summary` with one shared
  decoding pool, the crash isolation the CLI uses), ``dicomml preview`` (the CLI's ``main``
  in the worker), ``Pipeline.from_path``;
* per folder: ``read_series`` of the valid series (its Series Instance UID) among the hostile
  files, ``dicomml preprocess FOLDER`` and, with ``--predict``, ``dicomml predict RUN FOLDER
  --force`` (a small trained run is made first; ``--force`` predicts the series the run's
  input contract would skip, so that every file goes through reading and preprocessing).

Every call gets 60 s (SIGALRM), a folder 60 s per 20 files. Outcomes: ok, a DicommlError (by
type), a CLI exit status, another exception (a bug), a hang, a crash. The worker writes a
journal line before and after each call; a worker that dies costs the call it was in (a
``crash``) and the next worker goes on after it. Per file of a folder-level call: valid
files lost (not cached / not given a probability / not in the volume) and bad files *not
named* (neither used nor named by the cache's failure records, ``--failed-csv``,
``skipped.csv``, a reason in ``predictions.csv`` or the Index's skipped table); a cache
entry or a row of ``predictions.csv`` accounts for one file only (conflicting duplicates
share a SOP Instance UID). Peak RSS: each worker's VmHWM.

Usage::

    python bench/bench_fuzz.py                      # hostile kinds + 200 mutated files
    python bench/bench_fuzz.py --mutated 10000 --predict --json fuzz.json
    python bench/bench_fuzz.py --write-readme       # replace '## fuzz: hostile headers'
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIME_LIMIT = 60
#: mutated files per case folder (each next to the 19 valid files)
PER_FOLDER = 250
TARGETS = ("read_image", "read_series", "show", "preview", "pipeline", "preprocess")


# ----------------------------------------------------------------------------- inputs
def make_inputs(tmp: Path, n_mutated: int, seed: int, per_folder: int = PER_FOLDER,
                kinds: bool = True) -> list[Path]:
    """Case folders: each holds 19 valid files and the hostile file(s) of its case; the
    mutated files go ``per_folder`` to a folder (``mutated-000``, ...)."""
    import numpy as np

    from dicomml.testing.hostile import KINDS
    from tests.hardening._export import write_export
    from tests.hardening._panics import make_panicker
    from tests.hardening.test_fuzz import SOURCES, _source, mutate

    valid = tmp / "valid"
    write_export(valid, 19)
    cases = []

    def case(name: str) -> Path:
        folder = tmp / "cases" / name
        folder.mkdir(parents=True)
        for p in sorted(valid.rglob("*")):
            if p.is_file():
                (folder / f"valid_{p.name}").write_bytes(p.read_bytes())
        cases.append(folder)
        return folder

    if kinds:
        for name, fn in KINDS.items():
            fn(case(name) / "hostile")
        make_panicker(case("rle_panic") / "hostile")
    rng = np.random.default_rng(seed)
    mutations = ("bitflip", "truncate", "length", "huge_length", "wrong_vr", "stream",
                 "duplicate")
    folder = None
    for k in range(n_mutated):
        if k % per_folder == 0:
            folder = case(f"mutated-{k // per_folder:03d}") / "hostile"
            folder.mkdir()
        i = int(rng.integers(len(SOURCES)))
        raw, layout = _source(i)
        kind = mutations[k % len(mutations)]
        try:
            data = mutate(raw, layout, kind, *(int(x) for x in rng.integers(0, 2**31, 3)))
        except (IndexError, ValueError):  # wrong_vr on an implicit VR source
            data = mutate(raw, layout, "bitflip", k, k, k)
        (folder / f"m{k:05d}_{kind}.dcm").write_bytes(data)
    return cases


# ----------------------------------------------------------------------------- worker
class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _call(fn, limit: int) -> tuple[str, str | None]:
    """``(outcome, what went wrong)`` of one call under a time limit, output swallowed."""
    import contextlib
    import io
    import signal

    from dicomml.errors import DicommlError

    signal.alarm(limit)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            out = fn()
        if "Traceback" in err.getvalue():
            return "other:traceback", err.getvalue()[-300:]
        if isinstance(out, int) and not isinstance(out, bool):  # a CLI exit status
            return ("ok" if out == 0 else f"exit {out}"), None
        return "ok", None
    except _Hang:
        return "hang", f"no answer within {limit} s"
    except DicommlError as e:
        return type(e).__name__, None
    except BaseException as e:  # noqa: BLE001 - counted: this is what the bench is for
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return f"other:{type(e).__name__}", f"{type(e).__name__}: {str(e)[:160]}"
    finally:
        signal.alarm(0)


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return ([p for p in files if not p.name.startswith("valid_")],
            [p for p in files if p.name.startswith("valid_")])


def _accounting(folder: Path, scratch: str, c: int, target: str) -> dict:
    """Per file of a folder-level call: where each file went. ``silent`` lists hostile files
    the call neither used nor named (cache entry / failure record / skipped.csv / the
    Index's skipped table / a row of predictions.csv), ``lost`` valid files not used."""
    import csv

    from dicomml.io import Index

    hostile, valid = _folder_files(folder)
    db = f"{scratch}/i{c}.sqlite"
    if target == "predict":  # predict scans into a temporary Index: scan the folder here
        from dicomml.io import scan

        db = str(scan(folder, f"{scratch}/acc{c}.sqlite", progress=False, workers=0).db_path)
    with Index(db) as idx:
        inst = idx.instances()
        skipped = set(idx.skipped()["path"])
    sop = dict(zip(inst["path"], inst["sop_instance_uid"].astype(str)))
    series = dict(zip(inst["path"], inst["series_instance_uid"].astype(str)))
    images = set(inst.loc[inst["is_image"].astype(bool), "path"])
    if target == "preprocess":
        from dicomml.data.cache import TensorCache
        from dicomml.preprocess import Pipeline, PreprocessConfig

        cache = TensorCache.for_pipeline(f"{scratch}/c{c}", Pipeline(PreprocessConfig()))
        entries, failed = cache.index
        used = collections.Counter(k[0] for k in entries)
        report = Path(scratch) / f"failed{c}.csv"
        named = {str(r.get("path")) for r in failed.values()} | skipped | (
            {r["path"] for r in csv.DictReader(report.read_text().splitlines())}
            if report.exists() else set())
    else:
        out = Path(scratch) / f"p{c}"
        rows, skips = ([list(csv.DictReader(f.read_text().splitlines())) if f.exists() else []
                        for f in (out / "predictions.csv", out / "skipped.csv")])
        # conflicting duplicates are predicted one row each (no path column: counted)
        used = collections.Counter(r["sop_instance_uid"] for r in rows
                                   if any(v for k, v in r.items() if k.startswith("prob_")))
        named_sops = {r["sop_instance_uid"] for r in rows if r.get("reason")}
        named = {r["path"] for r in skips if r["path"]} | {
            p for p, s in sop.items() if s in named_sops}
        skip_series = {r["series_instance_uid"] for r in skips if r["level"] == "series"}
        named |= {p for p, s in series.items() if s in skip_series}
    where: collections.Counter = collections.Counter()
    silent = []
    claimed: collections.Counter = collections.Counter()  # a use stands for one file only
    for p in map(str, hostile):
        if p in skipped:
            where["scan skipped"] += 1
        elif p not in sop:
            silent.append(p)
        elif p not in images:
            where["not an image"] += 1
        elif p in named:
            where["failed (named)"] += 1
        elif claimed[sop[p]] < used[sop[p]]:
            where["used"] += 1
            claimed[sop[p]] += 1
        else:
            silent.append(p)
    lost = [p.name for p in valid if sop.get(str(p)) not in used]
    return {"where": dict(where), "silent": silent, "lost": lost}


def _worker(target: str, cases: list[str], scratch: str, run_dir: str | None,
            journal: str) -> None:
    """Runs in its own process: every call of ``target`` on the cases, each under a time
    limit, one journal line before (``start``) and after (the outcome) each call, so that a
    crash costs the parent one call (it restarts the worker after it)."""
    import json
    import signal
    import warnings

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _on_alarm)
    done = set()
    if os.path.exists(journal):
        for line in Path(journal).read_text().splitlines():
            rec = json.loads(line)
            done.add(rec["start"] if "start" in rec else rec["key"])
    jf = open(journal, "a", encoding="utf-8")

    def log(rec: dict) -> None:
        jf.write(json.dumps(rec) + "\n")
        jf.flush()
        os.fsync(jf.fileno())

    from dicomml.cli import build_parser, main, preview
    from dicomml.cli.show import summary
    from dicomml.io import read_image, read_series
    from dicomml.parallel import get_executor
    from dicomml.preprocess import Pipeline, PreprocessConfig

    pipe = Pipeline(PreprocessConfig())
    pool = get_executor("processes", workers=2, item_timeout=TIME_LIMIT) \
        if target in ("read_series", "show", "preview") else None
    if target == "predict":  # start-up (TensorFlow, Keras) is not the first case's time
        import keras  # noqa: F401

        import dicomml.evaluate.prediction  # noqa: F401
    for c, folder in enumerate(map(Path, cases)):
        hostile, valid = _folder_files(folder)
        budget = TIME_LIMIT * max(1, -(-(len(hostile) + len(valid)) // 20))
        calls = []
        if target in ("preprocess", "predict", "read_series"):
            calls.append(("folder", None))
        if target not in ("preprocess", "predict"):
            calls += [("file", p) for p in hostile + valid[:2]]
        for kind, p in calls:
            key = f"{folder.name}/{p.name if p else '*'}"
            if key in done:
                continue
            log({"start": key})
            rec = {"key": key, "valid": bool(p and p in valid)}
            t_call = time.monotonic()
            if kind == "folder" and target == "read_series":
                uid = str(read_image(valid[0]).series_instance_uid)
                box = {}

                def fn():
                    box["v"] = read_series(str(folder), series_uid=uid, isolate=True,
                                           executor=pool, workers=1)
                rec["outcome"], rec["why"] = _call(fn, budget)
                got = set(box["v"].paths) if "v" in box else set()
                rec["lost"] = [v.name for v in valid if str(v) not in got]
            elif kind == "folder":
                if target == "preprocess":
                    argv = ["preprocess", str(folder), "--db", f"{scratch}/i{c}.sqlite",
                            "--cache", f"{scratch}/c{c}", "--workers", "2", "--no-progress",
                            "--failed-csv", f"{scratch}/failed{c}.csv"]
                else:
                    argv = ["predict", run_dir, str(folder), "--out", f"{scratch}/p{c}",
                            "--no-sc", "--no-progress", "--workers", "2", "--force"]
                rec["outcome"], rec["why"] = _call(lambda: main(argv), budget)
                rec.update(_accounting(folder, scratch, c, target))
            else:
                if target == "read_image":
                    fn = (lambda q=p: read_image(q))
                elif target == "pipeline":
                    fn = (lambda q=p: pipe.from_path(q, 0))
                elif target == "read_series":
                    fn = (lambda q=p: read_series([str(q)], isolate=True, executor=pool,
                                                  workers=1))
                elif target == "show":  # what 'dicomml show FILE' prints, one pool for all
                    fn = (lambda q=p: summary(str(q), all_attributes=True, executor=pool))
                else:  # 'dicomml preview FILE -o PNG', one decoding pool for all
                    args = build_parser("preview").parse_args(
                        ["preview", str(p), "--output", f"{scratch}/p.png"])
                    fn = (lambda a=args: preview.run(a, executor=pool))
                rec["outcome"], rec["why"] = _call(fn, TIME_LIMIT)
                if rec["valid"] and rec["outcome"] not in ("ok", "exit 0"):
                    rec["lost"] = [p.name]
            rec["rss_mib"] = _hwm()
            rec["s"] = round(time.monotonic() - t_call, 3)
            log(rec)
    if pool is not None:
        pool.close()
    jf.close()


def _hwm() -> float:
    """Peak RSS (MiB) of this process since its exec: /proc VmHWM (ru_maxrss would also count
    the parent's pages at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_target(target: str, cases: list[Path], scratch: Path, run_dir: Path | None) -> dict:
    """Worker processes for ``target`` until every call is journaled: a worker that dies
    (a crash: a signal, or an exit without finishing) costs the call it was in, recorded as
    ``crash``, and the next worker goes on after it. Peak RSS is measured inside each
    worker (decoding workers it starts are processes of their own)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bench_fuzz as b; "
            "b._worker(sys.argv[2], __import__('json').loads(sys.argv[3]), sys.argv[4], "
            "sys.argv[5] or None, sys.argv[6])")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", RUST_BACKTRACE="0")
    journal = scratch / "journal.jsonl"
    t0 = time.monotonic()
    exits = []
    while True:
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "bench"), target,
                               json.dumps([str(c) for c in cases]), str(scratch),
                               str(run_dir or ""), str(journal)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        exits.append(proc.returncode)
        recs = [json.loads(x) for x in journal.read_text().splitlines()] \
            if journal.exists() else []
        started = [r["start"] for r in recs if "start" in r]
        finished = {r["key"] for r in recs if "key" in r}
        open_ = [k for k in started if k not in finished]
        if proc.returncode == 0 or not open_ or len(exits) > 200:
            break
        with journal.open("a") as f:  # the call the worker died in
            f.write(json.dumps({"key": open_[-1], "outcome": "crash",
                                "why": f"worker exit {proc.returncode}"}) + "\n")
    return summarize(target, journal, seconds=time.monotonic() - t0, exits=exits)


def summarize(target: str, journal: Path, *, seconds: float | None = None,
              exits: list[int] | None = None) -> dict:
    """The figures of one target from its journal (a finished or an interrupted run)."""
    recs = [r for r in (json.loads(x) for x in journal.read_text().splitlines()) if "key" in r]
    if seconds is None:
        seconds = sum(r.get("s", 0.0) for r in recs)
    exits = exits or [0]
    counts = collections.Counter(r["outcome"] for r in recs)
    where: collections.Counter = collections.Counter()
    for r in recs:
        where.update(r.get("where", {}))
    result = {
        "counts": dict(counts), "where": dict(where),
        "lost": [f"{r['key']}: {x}" for r in recs for x in r.get("lost", [])],
        "silent": [x for r in recs for x in r.get("silent", [])],
        "others": [f"{r['key']}: {r['outcome']}: {r.get('why')}" for r in recs
                   if r["outcome"].startswith("other") or r["outcome"] in ("hang", "crash")],
        "rss_mib": max([r.get("rss_mib", 0.0) for r in recs] or [float("nan")]),
        "calls": len(recs), "target": target, "seconds": seconds, "exit": exits[-1],
        "restarts": len(exits) - 1}
    return result


def make_run(tmp: Path) -> Path:
    from tests.evaluate.runfolder import make_run as _make

    return _make(tmp / "run", n_patients=8)


def render(results: list[dict], n_kinds: int, n_mutated: int, per_folder: int,
           total_s: float) -> str:
    outcomes = sorted({k for r in results for k in r["counts"]
                       if not k.startswith("other") and k not in ("hang", "crash")})
    lines = [f"Inputs: {n_kinds} structured hostile files (one per kind of "
             f"`dicomml.testing.hostile` and the RLE panic file) and {n_mutated} byte-mutated "
             f"sample files ({per_folder} to a folder), each case folder next to 19 valid CT "
             f"files; 60 s per call (a folder: 60 s per 20 files); {total_s:.0f} s in all.",
             "", "| target | calls | " + " | ".join(outcomes) + " | other exc. | hangs | "
             "crashes | valid lost | bad files not named | peak RSS | s |",
             "| --- | ---: |" + " ---: |" * (len(outcomes) + 7)]
    for r in results:
        c = r["counts"]
        other = sum(v for k, v in c.items() if k.startswith("other"))
        lines.append(f"| {r['target']} | {r['calls']} | "
                     + " | ".join(str(c.get(k, 0)) for k in outcomes)
                     + f" | {other} | {c.get('hang', 0)} | {c.get('crash', 0)} | "
                     f"{len(r['lost'])} | {len(r['silent'])} | {r['rss_mib']:.0f} MiB | "
                     f"{r['seconds']:.0f} |")
    wheres = [r for r in results if r["where"]]
    if wheres:
        lines += ["", "Where the bad files of the folder-level calls went:", ""]
        for r in wheres:
            lines.append(f"* {r['target']}: " + ", ".join(
                f"{k} {v}" for k, v in sorted(r["where"].items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutated", type=int, default=200)
    ap.add_argument("--per-folder", type=int, default=PER_FOLDER,
                    help=f"mutated files per case folder (default {PER_FOLDER})")
    ap.add_argument("--no-kinds", action="store_true",
                    help="only the mutated files (not the structured hostile kinds)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--predict", action="store_true", help="also dicomml predict (slow)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--json", metavar="FILE", help="also write every result here")
    ap.add_argument("--workdir", metavar="DIR",
                    help="an empty folder for the inputs and journals, kept afterwards "
                         "(default: a temporary folder, removed)")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--summarize", metavar="WORKDIR", nargs="+",
                    help="only print the table of earlier runs' journals (--workdir folders; "
                         "an interrupted run counts what it did)")
    args = ap.parse_args(argv)
    if args.summarize:
        results = [summarize(j.parent.name[len("scratch-"):], j) for w in args.summarize
                   for j in sorted(Path(w).glob("scratch-*/journal.jsonl"))]
        first = Path(args.summarize[0])
        n_mut = sum(1 for _ in first.glob("cases/mutated-*/hostile/*"))
        n_kinds = sum(1 for c in first.glob("cases/*") if not c.name.startswith("mutated-"))
        print(render(results, n_kinds, n_mut, args.per_folder,
                     sum(r["seconds"] for r in results)))
        return 0
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="dicomml-bench-fuzz-")))
        cases = make_inputs(tmp, args.mutated, args.seed, args.per_folder, not args.no_kinds)
        n_kinds = sum(1 for c in cases if not c.name.startswith("mutated-"))
        targets = [t for t in args.targets.split(",") if t] + (["predict"] if args.predict
                                                                 else [])
        run_dir = make_run(tmp) if args.predict else None
        results = []
        for target in targets:
            scratch = tmp / f"scratch-{target}"
            scratch.mkdir()
            r = run_target(target, cases, scratch, run_dir)
            results.append(r)
            print(f"{target}: {r['counts']} {r['where']} lost={len(r['lost'])} "
                  f"silent={len(r['silent'])} rss={r['rss_mib']:.0f} MiB "
                  f"{r['seconds']:.0f} s", file=sys.stderr)
            for line in r["lost"][:5] + r["silent"][:5] + r["others"][:8]:
                print(f"  {line}", file=sys.stderr)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    text = render(results, n_kinds, args.mutated, args.per_folder, time.monotonic() - t0)
    print(text)
    if args.write_readme:
        readme = ROOT / "bench" / "README.md"
        body = readme.read_text()
        head = "## fuzz: hostile headers"
        section = f"{head}\n\n`python bench/bench_fuzz.py {' '.join(argv or sys.argv[1:])}`" \
                  f"\n\n{text}\n"
        if head in body:
            start = body.index(head)
            end = body.find("\n## ", start + len(head))
            body = body[:start] + section + (body[end:] if end >= 0 else "")
        else:
            body = body.rstrip("\n") + "\n\n" + section
        readme.write_text(body)
    bad = any(any(k.startswith("other") or k in ("hang", "crash") for k in r["counts"])
              or r["lost"] or r["silent"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
