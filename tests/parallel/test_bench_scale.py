"""Smoke test of bench/bench_scale.py on a tiny tree (the real run is by hand)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_scale.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tree_has_distinct_instances_and_tiers_link_to_it(tmp_path):
    import pydicom

    bench = _load()
    tree = bench.make_tree(tmp_path, 25, rows=8, per_series=10)
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(files) == 30  # rounded up to whole series
    uids = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len({d.SOPInstanceUID for d in uids}) == 30
    assert len({d.SeriesInstanceUID for d in uids}) == 3
    # copies keep the byte layout of their original (UIDs of the same length)
    for f in files:
        assert f.stat().st_size == (tree / "s00000" / f.name).stat().st_size
    tier = bench.make_tier(tree, tmp_path, 25, per_series=10)
    assert bench.warm(tier) == 25
    # two whole series linked as folders, five files of the third linked one by one
    assert sorted((p.name, os.path.islink(p)) for p in tier.iterdir()) == [
        ("s00000", True), ("s00001", True), ("s00002", False)]
    assert len([p for p in (tier / "s00002").iterdir() if os.path.islink(p)]) == 5
    assert bench.make_tree(tmp_path, 20, rows=8, per_series=10) == tree  # reused


def test_main_writes_its_section_and_plot(tmp_path):
    bench = _load()
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## scan\n\nkeep me\n\n## scale\n\nold figures\n")
    png = tmp_path / "scale.png"
    assert bench.main(["--data", str(tmp_path / "data"), "--sizes", "20,40", "--rows", "8",
                       "--per-series", "10", "--executors", "inprocess,processes",
                       "--readme", str(readme), "--plot", str(png)]) == 0
    text = readme.read_text()
    assert "## scan\n\nkeep me\n" in text and "old figures" not in text
    rows = [line for line in text.splitlines() if line.startswith("| 20 |")
            or line.startswith("| 40 |")]
    assert [r.split(" | ")[1] for r in rows] == ["in-process", "2 local processes"] * 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
