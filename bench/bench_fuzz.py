"""Fuzz benchmark: structured hostile headers and byte-mutated real files through every path.

Inputs (in a temporary folder, removed afterwards):

* one file of every kind of :mod:`dicomml.testing.hostile` (huge declared sizes, NaN / inf
  rescale and window, width 0, inconsistent bits, short / long pixel data, deep nesting,
  undefined-length items without delimiters, a 2.3 GB sparse private element, a DICOMDIR
  pointing outside its root and to itself), and the pylibjpeg-rle panic file of the issue 14
  tests, each in a folder next to 19 valid CT files;
* ``--mutated N`` byte-mutated copies of the pydicom samples of ``tests/hardening/test_fuzz``
  (the same mutations: bit flips, truncation, corrupted and huge lengths, wrong VRs,
  duplicated chunks, pixel stream bytes; a seeded generator), in one folder with the 19 valid
  files.

Targets, each in its own process (so that its peak RSS is its own): ``read_image``,
``read_series`` (per folder), ``dicomml show``, ``dicomml preview``, ``Pipeline.from_path``,
``dicomml preprocess`` (per folder: every valid file must be cached), and with ``--predict``
``dicomml predict`` (a small trained run is made first). Every call gets 60 s (SIGALRM);
outcomes: ok, a DicommlError (by type), a CLI exit status, another exception (a bug), a
hang, a crash (the process died). A call over a whole folder (read_series, preprocess,
predict) gets 60 s per 20 files. Figures: counts per target, peak RSS per process, valid files lost.

Usage::

    python bench/bench_fuzz.py                      # hostile kinds + 200 mutated files
    python bench/bench_fuzz.py --mutated 2000 --predict
    python bench/bench_fuzz.py --write-readme       # replace '## fuzz: hostile headers'
"""

from __future__ import annotations

import argparse
import collections
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
TARGETS = ("read_image", "read_series", "show", "preview", "pipeline", "preprocess")


# ----------------------------------------------------------------------------- inputs
def make_inputs(tmp: Path, n_mutated: int, seed: int) -> list[Path]:
    """Case folders: each holds 19 valid files and the hostile file(s) of its case."""
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

    for name, fn in KINDS.items():
        fn(case(name) / "hostile")
    make_panicker(case("rle_panic") / "hostile")
    if n_mutated:
        folder = case("mutated") / "hostile"
        folder.mkdir()
        rng = np.random.default_rng(seed)
        kinds = ("bitflip", "truncate", "length", "huge_length", "wrong_vr", "stream",
                 "duplicate")
        for k in range(n_mutated):
            i = int(rng.integers(len(SOURCES)))
            raw, layout = _source(i)
            kind = kinds[k % len(kinds)]
            try:
                data = mutate(raw, layout, kind, *(int(x) for x in rng.integers(0, 2**31, 3)))
            except (IndexError, ValueError):  # wrong_vr on an implicit VR source
                data = mutate(raw, layout, "bitflip", k, k, k)
            (folder / f"m{k:05d}_{kind}.dcm").write_bytes(data)
    return cases


# ----------------------------------------------------------------------------- worker
def _worker(target: str, cases: list[str], scratch: str, run_dir: str | None) -> dict:
    """Runs in its own process: every call of ``target`` on the cases, with a time limit."""
    import contextlib
    import io
    import signal
    import warnings

    from dicomml.errors import DicommlError

    warnings.simplefilter("ignore")

    class Hang(BaseException):
        pass

    def on_alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    counts: collections.Counter = collections.Counter()
    lost: list[str] = []
    others: list[str] = []

    def call(fn, what: str, limit: int = TIME_LIMIT) -> str:
        signal.alarm(limit)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                out = fn()
            if "Traceback" in err.getvalue():
                return "other:traceback"
            if isinstance(out, int) and not isinstance(out, bool):  # a CLI exit status
                return "ok" if out == 0 else f"exit {out}"
            return "ok"
        except Hang:
            others.append(f"{what}: no answer within {limit} s")
            return "hang"
        except DicommlError as e:
            return type(e).__name__
        except BaseException as e:  # noqa: BLE001 - counted: this is what the bench is for
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            others.append(f"{what}: {type(e).__name__}: {str(e)[:120]}")
            return f"other:{type(e).__name__}"
        finally:
            signal.alarm(0)

    from dicomml.cli import main
    from dicomml.io import read_image, read_series
    from dicomml.preprocess import Pipeline, PreprocessConfig

    pipe = Pipeline(PreprocessConfig())
    if target == "predict":  # start-up (TensorFlow, Keras) is not the first case's time
        import keras  # noqa: F401

        import dicomml.evaluate.prediction  # noqa: F401
    for c, folder in enumerate(map(Path, cases)):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        hostile = [p for p in files if not p.name.startswith("valid_")]
        valid = [p for p in files if p.name.startswith("valid_")]
        # a folder-level call handles every file of its folder: 60 s per 20 files
        budget = TIME_LIMIT * max(1, -(-len(files) // 20))
        if target in ("read_series", "preprocess", "predict"):
            if target == "read_series":
                outcome = call(lambda: read_series(sorted(map(str, files))), folder.name,
                               budget)
            elif target == "preprocess":
                log = io.StringIO()

                def run_preprocess():
                    with contextlib.redirect_stdout(log):
                        return main(["preprocess", str(folder), "--db",
                                     f"{scratch}/i{c}.sqlite", "--cache", f"{scratch}/c{c}",
                                     "--workers", "2", "--quiet"])
                outcome = call(run_preprocess, folder.name, budget)
                from dicomml.data.cache import TensorCache

                cache = TensorCache.for_pipeline(f"{scratch}/c{c}", pipe)
                if len(cache) < len(valid):
                    lost.append(f"{folder.name}: {len(cache)} of {len(valid)} valid cached")
            else:
                outcome = call(lambda: main(["predict", run_dir, str(folder), "--out",
                                             f"{scratch}/p{c}", "--no-sc", "--no-progress",
                                             "--workers", "2"]), folder.name, budget)
                import csv

                table = Path(scratch) / f"p{c}" / "predictions.csv"
                rows = list(csv.DictReader(table.open())) if table.exists() else []
                scored = [r for r in rows if any(v for k, v in r.items()
                                                 if k.startswith("prob_"))]
                if len(scored) < len(valid):
                    lost.append(f"{folder.name}: {len(scored)} of {len(valid)} predicted")
            counts[outcome] += 1
            continue
        for p in hostile + valid[:2]:
            if target == "read_image":
                fn = (lambda q=p: read_image(q))
            elif target == "pipeline":
                fn = (lambda q=p: pipe.from_path(q, 0))
            elif target == "show":
                fn = (lambda q=p: main(["show", str(q)]))
            else:
                fn = (lambda q=p: main(["preview", str(q), "--output", f"{scratch}/p.png"]))
            outcome = call(fn, f"{folder.name}/{p.name}")
            counts[outcome] += 1
            if p in valid and outcome not in ("ok", "exit 0"):
                lost.append(f"{folder.name}/{p.name}: {outcome}")
    return {"counts": dict(counts), "lost": lost, "others": others[:20], "rss_mib": _hwm()}


def _hwm() -> float:
    """Peak RSS (MiB) of this process since its exec: /proc VmHWM (ru_maxrss would also count
    the parent's pages at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_target(target: str, cases: list[Path], scratch: Path, run_dir: Path | None) -> dict:
    """One process for ``target`` (its peak RSS is measured inside it: decoding workers it
    starts, for preprocess and predict, are processes of their own)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_fuzz as b; "
            "print('RESULT' + json.dumps(b._worker(sys.argv[2], json.loads(sys.argv[3]), "
            "sys.argv[4], sys.argv[5] or None)))")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", RUST_BACKTRACE="0")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "bench"), target,
                             json.dumps([str(c) for c in cases]), str(scratch),
                             str(run_dir or "")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out, _ = proc.communicate()
    line = next((x for x in out.splitlines() if x.startswith("RESULT")), None)
    result = json.loads(line[6:]) if line else {"counts": {"crash": 1}, "lost": [],
                                                 "others": [f"exit {proc.returncode}"],
                                                 "rss_mib": float("nan")}
    result.update(target=target, seconds=time.monotonic() - t0, exit=proc.returncode)
    return result


def make_run(tmp: Path) -> Path:
    from tests.evaluate.runfolder import make_run as _make

    return _make(tmp / "run", n_patients=8)


def render(results: list[dict], n_cases: int, n_mutated: int, total_s: float) -> str:
    outcomes = sorted({k for r in results for k in r["counts"]})
    lines = [f"Inputs: {n_cases - (1 if n_mutated else 0)} structured hostile files (one per "
             f"kind of `dicomml.testing.hostile` and the RLE panic file), "
             f"{n_mutated} byte-mutated sample files, each case folder next to 19 valid CT "
             f"files; 60 s per call; {total_s:.0f} s in all on this shared 2-CPU machine.",
             "", "| target | " + " | ".join(outcomes) + " | other exc. | hangs | crashes | "
             "valid lost | peak RSS |",
             "| --- |" + " ---: |" * (len(outcomes) + 5)]
    for r in results:
        c = r["counts"]
        other = sum(v for k, v in c.items() if k.startswith("other"))
        lines.append(f"| {r['target']} | " + " | ".join(str(c.get(k, 0)) for k in outcomes)
                     + f" | {other} | {c.get('hang', 0)} | {c.get('crash', 0)} | "
                     f"{len(r['lost'])} | {r['rss_mib']:.0f} MiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutated", type=int, default=200)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--predict", action="store_true", help="also dicomml predict (slow)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dicomml-bench-fuzz-") as tmp:
        tmp = Path(tmp)
        cases = make_inputs(tmp, args.mutated, args.seed)
        targets = [t for t in args.targets.split(",") if t] + (["predict"] if args.predict
                                                                 else [])
        run_dir = make_run(tmp) if args.predict else None
        results = []
        for target in targets:
            scratch = tmp / f"scratch-{target}"
            scratch.mkdir()
            r = run_target(target, cases, scratch, run_dir)
            results.append(r)
            print(f"{target}: {r['counts']} lost={len(r['lost'])} rss={r['rss_mib']:.0f} MiB "
                  f"{r['seconds']:.0f} s", file=sys.stderr)
            for line in r["lost"][:5] + r["others"][:5]:
                print(f"  {line}", file=sys.stderr)
    text = render(results, len(cases), args.mutated, time.monotonic() - t0)
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
              or r["lost"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
