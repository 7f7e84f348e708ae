"""Benchmark: scan + read every series of a real MR export, against dcm2niix.

For each dataset (dcm2niix's validation sets ``dcm_qa_nih`` and ``dcm_qa_xa30`` in
``../shared/realdata/dcm_qa``), in one run on the same files (warm page cache):

* **dicomml** - :func:`dicomml.io.scan` of ``In/`` into a fresh Index (on tmpfs, as
  dcm2niix's output), then
  :func:`dicomml.io.read_series` of every image series key (mosaics cut, 4-D read whole),
  in one process as a notebook does: the reads reuse the scan's parse of each enhanced
  file's functional groups (:func:`dicomml.io.functional_groups.recall`) and the header
  layouts it learnt (:mod:`dicomml.io.layout`); nothing is kept from one round to the next
  (the memo and the layouts are emptied at the start of each);
* **dcm2niix** - Debian's ``dcm2niix -b y -z n -f %p_%s`` (the datasets' ``batch.sh``
  options: NIfTI and a BIDS sidecar per series) converting the same ``In/`` folder, its
  output on tmpfs (``/dev/shm``) so that writing costs no disk time.

Interleaved rounds (a burst of load from other jobs hits both alike), ratio of medians.

A second table times the functional-group parser alone on the enhanced files of
``dcm_qa_xa30``: :func:`dicomml.io.functional_groups.groups_of_file` (its compiled walk,
and its Python walk) against pydicom's
``dcmread(stop_before_pixels=True, specific_tags=[(5200,9229), (5200,9230)])`` (what the
scan and ``read_series`` used before), same files, interleaved rounds. A third reads each
grayscale enhanced file whole: :func:`dicomml.io.read_image` against pydicom (``dcmread`` +
``pixel_array`` + ``apply_modality_lut``, values asserted equal) and SimpleITK's
``ReadImage`` (GDCM).

Usage::

    python bench/bench_realdata.py                  # 5 rounds
    python bench/bench_realdata.py --repeat 3
    python bench/bench_realdata.py --write-readme   # also replace '## realdata' in README.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".." / "shared" / "realdata" / "dcm_qa"
DATASETS = ("dcm_qa_nih", "dcm_qa_xa30")


def dicomml_all(folder: Path, tmp: Path) -> tuple[int, int]:
    """Scan ``folder`` into a fresh Index and read every image series: (series, voxels).

    Nothing is remembered from an earlier round (the functional-group memo and the header
    layouts are emptied): the reads reuse only what this round's scan learnt, as after a
    first scan of a folder."""
    from dicomml.io import Index, read_series, scan
    from dicomml.io.functional_groups import forget

    forget()
    try:  # the header layouts of earlier rounds (dicomml.io.layout), where there are any
        from dicomml.io.layout import forget as forget_layouts
    except ImportError:
        pass
    else:
        forget_layouts()

    db = tmp / f"index-{time.monotonic_ns()}.sqlite"
    scan(folder, db, progress=False)
    n = voxels = 0
    with Index(db) as idx:
        series = idx.series()
        if "object_kind" in series:
            series = series[series["object_kind"] == "image"]
        for key in series["series_key"]:
            try:
                vol = read_series((key, idx))
            except Exception:  # noqa: BLE001 - a series that cannot be read is not counted
                continue
            n += 1
            voxels += vol.pixels.size
    db.unlink()
    return n, voxels


def _tmpfs() -> Path:
    """``/dev/shm`` where there is one (tmpfs), else the temporary folder."""
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def dcm2niix_all(folder: Path, exe: str) -> int:
    """Convert ``folder`` with dcm2niix into a fresh tmpfs folder: the number of NIfTI files."""
    out = Path(tempfile.mkdtemp(prefix="dicomml-bench-d2n-", dir=_tmpfs()))
    try:
        subprocess.run([exe, "-b", "y", "-z", "n", "-f", "%p_%s", "-o", str(out), str(folder)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return len(list(out.glob("*.nii")))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def enhanced_files() -> list[Path]:
    """The files of ``dcm_qa_xa30`` with a (5200,9230) Per-Frame Functional Groups Sequence."""
    import pydicom

    out = []
    for p in sorted((DATA / "dcm_qa_xa30" / "In").resolve().rglob("*")):
        if p.is_file():
            ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=[0x52009230])
            if "PerFrameFunctionalGroupsSequence" in ds:
                out.append(p)
    return out


def _samples(path) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True,
                               specific_tags=[0x00280002]).get("SamplesPerPixel", 1))


def parse_fast(files, compiled: bool = True) -> int:
    """:func:`groups_of_file` of every file, with the compiled walk or the Python one."""
    import dicomml.io.functional_groups as fg

    saved = fg.COMPILED
    fg.COMPILED = compiled
    try:
        return sum(len(fg.groups_of_file(p).per_frame) for p in files)
    finally:
        fg.COMPILED = saved


def parse_pydicom(files) -> int:
    import pydicom

    return sum(len(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=[
        0x52009229, 0x52009230]).PerFrameFunctionalGroupsSequence) for p in files)


def read_dicomml(files) -> list:
    """``read_image`` of every file (all frames, modality values), each file's groups parsed
    anew (the functional-group memo emptied first: no earlier read is reused)."""
    from dicomml.io import read_image
    from dicomml.io.functional_groups import forget

    forget()
    return [read_image(p).pixels for p in files]


def read_pydicom(files) -> list:
    """The straightforward way: ``dcmread`` + ``pixel_array`` + ``apply_modality_lut``."""
    import warnings

    import pydicom
    from pydicom.pixels import apply_modality_lut

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in files:
            ds = pydicom.dcmread(p)
            out.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
    return out


def read_sitk(files) -> list | None:
    """SimpleITK (GDCM) ``ReadImage`` of every file, or None without SimpleITK."""
    try:
        import SimpleITK as sitk
    except ImportError:
        return None
    return [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in files]


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    c0, t0 = _cpu(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, _cpu() - c0, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args(argv)
    exe = shutil.which("dcm2niix")
    if exe is None:
        print("dcm2niix is not installed (Debian package dcm2niix)", file=sys.stderr)
        return 2
    # The compiled walk of the functional groups from the first frame: a process imports it
    # after its first COMPILE_AFTER frames (10,000), so a long export runs with it; here the
    # warm-up round pays the import, as the start of such an export does.
    import dicomml.io.functional_groups as fg

    fg.COMPILE_AFTER = 0
    rows = []
    # the Index on tmpfs, as dcm2niix's output is (dcm2niix_all): writing costs neither one
    # disk time (an Index on disk adds the fsync of SQLite's checkpoint, ~3 ms per scan here)
    tmp = Path(tempfile.mkdtemp(prefix="dicomml-bench-realdata-", dir=_tmpfs()))
    try:
        for name in DATASETS:
            folder = (DATA / name / "In").resolve()
            n_files = sum(1 for p in folder.rglob("*") if p.is_file())
            methods = {"dicomml": lambda: dicomml_all(folder, tmp),
                       "dcm2niix": lambda: dcm2niix_all(folder, exe)}
            results = {k: fn() for k, fn in methods.items()}  # warm-up: imports, page cache
            times = {k: [] for k in methods}
            cpus = {k: [] for k in methods}
            for _ in range(args.repeat):
                for k, fn in methods.items():
                    wall, cpu, _ = timed(fn)
                    times[k].append(wall)
                    cpus[k].append(cpu)
            med = {k: float(np.median(v)) for k, v in times.items()}
            med_cpu = {k: float(np.median(v)) for k, v in cpus.items()}
            rows.append((name, n_files, results, med, med_cpu))
        files = enhanced_files()
        parsers = {"fast": lambda: parse_fast(files),
                   "python": lambda: parse_fast(files, compiled=False),
                   "pydicom": lambda: parse_pydicom(files)}
        frames = {k: fn() for k, fn in parsers.items()}
        assert frames["fast"] == frames["python"] == frames["pydicom"]
        parse_cpu = {k: [] for k in parsers}
        for _ in range(args.repeat):
            for k, fn in parsers.items():
                parse_cpu[k].append(timed(fn)[1])
        parse_med = {k: float(np.median(v)) for k, v in parse_cpu.items()}
        gray = [p for p in files if _samples(p) == 1]  # read_image: all but the colour maps
        readers = {"dicomml": lambda: read_dicomml(gray), "pydicom": lambda: read_pydicom(gray)}
        if read_sitk(gray[:1]) is not None:
            readers["SimpleITK"] = lambda: read_sitk(gray)
        got = {k: fn() for k, fn in readers.items()}  # warm-up, and the values compared
        assert all(a.shape == b.shape for a, b in zip(got["dicomml"], got["pydicom"]))
        # pydicom's apply_modality_lut takes no per-frame Pixel Value Transformation: the
        # phase and ASL files (slope 2, intercept -4096 per frame) differ; dicomml's values
        # are dcm2niix's there (tests/io/test_realdata_volumes.py)
        differ = [p.parent.name for p, a, b in zip(gray, got["dicomml"], got["pydicom"])
                  if not np.array_equal(a, b)]
        n_frames = sum(a.shape[0] for a in got["dicomml"])
        del got
        read_times = {k: [] for k in readers}
        for _ in range(args.repeat):
            for k, fn in readers.items():
                wall, cpu, _ = timed(fn)
                read_times[k].append((wall, cpu))
        read_med = {k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v])))
                    for k, v in read_times.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    lines = [f"`python bench/bench_realdata.py --repeat {args.repeat}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: median of {args.repeat} "
             "interleaved rounds after one warm-up round, warm page cache; dicomml = scan "
             "into a fresh Index on /dev/shm + read_series of every image series key (default workers); "
             "dcm2niix = `dcm2niix -b y -z n -f %p_%s` to /dev/shm. Python "
             f"{platform.python_version()}, {os.cpu_count()} CPU cores **shared with other "
             f"jobs**, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
             "",
             "| dataset | files | dicomml series read | dcm2niix NIfTI files | dicomml s | "
             "dcm2niix s | ratio (wall) | dicomml CPU s | dcm2niix CPU s | ratio (CPU) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, n_files, res, med, cpu in rows:
        lines.append(f"| {name} | {n_files} | {res['dicomml'][0]} | {res['dcm2niix']} | "
                     f"{med['dicomml']:.3f} | {med['dcm2niix']:.3f} | "
                     f"{med['dicomml'] / med['dcm2niix']:.2f}× | {cpu['dicomml']:.3f} | "
                     f"{cpu['dcm2niix']:.3f} | {cpu['dicomml'] / cpu['dcm2niix']:.2f}× |")
    lines += ["", f"Functional groups of the {len(files)} enhanced files of dcm_qa_xa30 "
              f"({frames['fast']} frames), CPU s, median of {args.repeat} interleaved rounds:",
              "", "| parser | CPU s | per frame µs | ratio |", "| --- | ---: | ---: | ---: |"]
    parser_names = {"fast": "dicomml.io.functional_groups (compiled walk)",
                    "python": "dicomml.io.functional_groups (Python walk)",
                    "pydicom": "pydicom dcmread"}
    for k in ("fast", "python", "pydicom"):
        lines.append(f"| {parser_names[k]} | {parse_med[k]:.3f} | "
                     f"{1e6 * parse_med[k] / frames[k]:.0f} | "
                     f"{parse_med[k] / parse_med['fast']:.1f}× |")
    lines += ["", f"`read_image` of the {len(gray)} grayscale enhanced files of dcm_qa_xa30 "
              f"({n_frames} frames; all frames, modality values), median of {args.repeat} "
              f"interleaved rounds. pydicom's values equal dicomml's in {len(gray) - len(differ)}"
              f" files; in {len(differ)} ({', '.join(sorted(set(differ)))}) its "
              "`apply_modality_lut` leaves out the per-frame (0028,9145) Pixel Value "
              "Transformation (slope 2, intercept -4096) that dicomml applies as dcm2niix does:",
              "",
              "| reader | wall s | CPU s | ms per file | ratio (wall) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    names = {"dicomml": "dicomml.io.read_image",
             "pydicom": "pydicom dcmread + pixel_array + apply_modality_lut",
             "SimpleITK": "SimpleITK.ReadImage (GDCM)"}
    for k, (wall, cpu) in read_med.items():
        lines.append(f"| {names[k]} | {wall:.3f} | {cpu:.3f} | {1e3 * wall / len(gray):.1f} | "
                     f"{wall / read_med['dicomml'][0]:.1f}× |")
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        _write_readme(text)
    return 0


def _write_readme(text: str) -> None:
    from bench_load import update_readme  # bench/ is on sys.path when run as a script

    update_readme("realdata", "Generated by `python bench/bench_realdata.py --write-readme` "
                  "(goal: dicomml ≤ 1.0× dcm2niix's time).\n\n" + text)


if __name__ == "__main__":
    raise SystemExit(main())
