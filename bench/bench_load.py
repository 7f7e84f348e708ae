"""Load test: a large mixed export through scan and the tensor cache, memory and descriptors.

Usage::

    python bench/bench_load.py                 # 5,000 files (default), cache over 1,000 images
    python bench/bench_load.py --files 50000   # the full size (about 430 MB of files)
    python bench/bench_load.py --files 500 --cache-files 200 --no-readme   # quick look

What it does:

1. Writes ``--files`` files under ``--data`` (default: a temporary folder, removed at the
   end): 64×64 CT images (each a distinct instance: the UIDs of one template are replaced
   byte for byte, see ``tests/hardening/_export.py``), and every 10th file broken in turn —
   truncated, not DICOM, empty (hard links to one prototype of each, to save disk).
2. ``dicomml.io.scan`` of the whole export with ``--workers`` processes, in this process.
3. ``TensorCache.fill`` (the training engineer's cache, default preprocessing, uint8 shards)
   over the first ``--cache-files`` images of the Index, with ``--workers`` processes.
4. Meanwhile a thread samples every 50 ms the RSS of this process plus all its children
   (psutil) and the open file descriptors (``/proc/<pid>/fd``) of the same process tree.
   Reported per phase: the peak RSS, the RSS at 10 %, 50 % and 90 % of the phase (flat
   memory: these stay close whatever the number of files), the descriptor counts of this
   process before, during (max) and after, and of the whole tree during (max).
5. Prints a Markdown table and writes it into ``bench/README.md`` under ``## load``
   (``--no-readme`` to skip).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler(threading.Thread):
    """Samples (time, tree RSS bytes, own fds, tree fds) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int, int, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop_event.is_set():
            rss, fds = 0, 0
            procs = [self.proc]
            try:
                procs += self.proc.children(recursive=True)
            except psutil.Error:
                pass
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    fds += fd_count(p.pid)
                except psutil.Error:
                    pass
            self.samples.append((time.monotonic(), rss, fd_count(os.getpid()), fds))
            self.stop_event.wait(self.interval)

    def stop(self) -> list[tuple[float, int, int, int]]:
        self.stop_event.set()
        self.join()
        return self.samples


def measure(name: str, fn) -> dict:
    before = fd_count(os.getpid())
    sampler = Sampler()
    sampler.start()
    t0 = time.monotonic()
    result = fn()
    elapsed = time.monotonic() - t0
    samples = sampler.stop()
    after = fd_count(os.getpid())
    rss = [s[1] for s in samples] or [0]

    def at(frac: float) -> float:
        return rss[min(len(rss) - 1, int(frac * len(rss)))] / 2 ** 20

    return {"phase": name, "seconds": elapsed, "peak_mib": max(rss) / 2 ** 20,
            "rss10": at(0.1), "rss50": at(0.5), "rss90": at(0.9),
            "fd_before": before, "fd_during": max((s[2] for s in samples), default=before),
            "fd_after": after, "tree_fd_max": max((s[3] for s in samples), default=0),
            "result": result}


def write_data(folder: Path, n: int) -> dict:
    from tests.hardening._export import instance_bytes, template

    tpl = template()
    protos = {"truncated": tpl[:len(tpl) // 2], "not_dicom": b"GIF89a" + bytes(200), "empty": b""}
    proto_dir = folder / "_protos"
    proto_dir.mkdir(parents=True, exist_ok=True)
    for k, data in protos.items():
        (proto_dir / k).write_bytes(data)
    counts = {"valid": 0, "truncated": 0, "not_dicom": 0, "empty": 0}
    kinds = list(protos)
    for i in range(n):
        d = folder / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(exist_ok=True)
        target = d / f"f{i:06d}.dcm"
        if i % 10 == 9:
            kind = kinds[(i // 10) % 3]
            os.link(proto_dir / kind, target)
        else:
            kind = "valid"
            target.write_bytes(instance_bytes(tpl, i))
        counts[kind] += 1
    shutil.rmtree(proto_dir)  # the hard links stay
    return counts


def table(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| phase | items | time (s) | peak RSS (MiB) | RSS at 10/50/90 % (MiB) | "
             "fds before / during / after | tree fds (max) |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['phase']} | {r['items']} | {r['seconds']:.1f} | "
                     f"{r['peak_mib']:.0f} | {r['rss10']:.0f} / {r['rss50']:.0f} / "
                     f"{r['rss90']:.0f} | {r['fd_before']} / {r['fd_during']} / "
                     f"{r['fd_after']} | {r['tree_fd_max']} |")
    return "\n".join(lines)


def update_readme(section: str, text: str) -> None:
    readme = REPO / "bench" / "README.md"
    content = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {section}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"## {section}\n\n{text.strip()}\n\n"
    content = pattern.sub(lambda m: block, content) if pattern.search(content) else \
        content.rstrip("\n") + "\n\n" + block
    from dicomml._atomic import atomic_write_text

    atomic_write_text(readme, content)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--cache-files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)

    import pandas as pd

    from dicomml.data.cache import TensorCache
    from dicomml.io import scan
    from dicomml.preprocess import Pipeline, PreprocessConfig

    tmp = Path(tempfile.mkdtemp(prefix="dicomml-load-")) if args.data is None else args.data
    try:
        src = tmp / "export"
        t0 = time.monotonic()
        counts = write_data(src, args.files)
        print(f"wrote {args.files} files in {time.monotonic() - t0:.1f} s: {counts}",
              file=sys.stderr)
        rows = []
        r = measure("scan", lambda: scan(src, tmp / "index.sqlite", progress=False,
                                         workers=args.workers))
        res = r["result"]
        assert res.summary["instances"] == counts["valid"], res.summary
        assert len(res.skipped) == args.files - counts["valid"]
        r["items"] = f"{args.files:,} files ({len(res.skipped):,} skipped)"
        rows.append(r)
        with res.index() as idx:
            inst = idx.instances()
        inst = inst[inst["is_image"].astype(bool)].sort_values("path").head(args.cache_files)
        ex = pd.DataFrame({"path": inst["path"].astype(str).to_numpy(), "frame": 0,
                           "sop_instance_uid": inst["sop_instance_uid"].astype(str).to_numpy()})
        pipe = Pipeline(PreprocessConfig())
        cache = TensorCache.for_pipeline(tmp / "cache", pipe)
        r = measure("cache fill", lambda: cache.fill(ex, pipe, workers=args.workers,
                                                     progress=False))
        rep = r["result"]
        assert rep.computed == len(ex) and len(rep.failed) == 0, rep
        r["items"] = f"{len(ex):,} images"
        rows.append(r)
        header = (f"`python bench/bench_load.py --files {args.files} --cache-files "
                  f"{args.cache_files} --workers {args.workers}` ({os.cpu_count()} CPUs, "
                  f"shared machine; {time.strftime('%Y-%m-%d')}). Export: "
                  f"{counts['valid']:,} valid 64×64 CT files, {counts['truncated']:,} "
                  f"truncated, {counts['not_dicom']:,} not DICOM, {counts['empty']:,} empty. "
                  "RSS is this process plus all its workers; fds of this process.")
        text = table(rows, header)
        print(text)
        if not args.no_readme:
            update_readme("load", text)
        for r in rows:
            if r["fd_after"] > r["fd_before"] + 2:
                print(f"WARNING: {r['phase']}: {r['fd_after'] - r['fd_before']} descriptors "
                      "left open", file=sys.stderr)
                return 1
        return 0
    finally:
        if args.data is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
