"""Input contract: InputContract.check on a large Index table vs a per-row Python loop.

Usage::

    python bench/bench_contract.py                  # 2,000 series x 100 instances
    python bench/bench_contract.py --series 200 --no-readme

A PACS export's Index rows (CT head with 10 % of the series failing one rule each: MR,
localizer, chest, 1 mm matrix...) are checked against a head-CT contract. The baseline is
the straightforward loop a script would write: for every row, test the rules with Python
comparisons, then group by series. Both must give the same (series, rule) decisions; the
figures (best of ``--repeat``) go into ``bench/README.md`` under ``## input contract``.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicomml.data.contract import InputContract  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"


def table(n_series: int, per: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        kind = rng.integers(0, 10)
        base = {"series_key": f"s{s}", "study_instance_uid": f"1.2.{s // 4}",
                "series_instance_uid": f"1.2.{s // 4}.{s}", "is_image": True,
                "object_kind": "image", "modality": "MR" if kind == 1 else "CT",
                "sop_class_uid": CT, "photometric_interpretation": "MONOCHROME2",
                "body_part_examined": "CHEST" if kind == 2 else "HEAD",
                "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER" if kind == 3
                else "ORIGINAL\\PRIMARY\\AXIAL",
                "pixel_spacing": (0.45, 0.45), "rows": 256 if kind == 4 else 512,
                "columns": 512, "bits_stored": 12, "pixel_representation": 0,
                "rescale_slope": 1.0, "rescale_intercept": -1024.0}
        rows += [base] * per
    return pd.DataFrame(rows)


def baseline(df: pd.DataFrame, c: InputContract) -> dict:
    """Per row, the first failed rule; per series, the first rule any row failed."""
    order = ["image", "modality", "sop_class", "photometric", "body_part", "image_type",
             "pixel_spacing", "matrix", "value_range"]
    out: dict[str, str] = {}
    for r in df.to_dict("records"):
        rule = ""
        if not r["is_image"]:
            rule = "image"
        elif r["modality"] not in c.modalities:
            rule = "modality"
        elif r["sop_class_uid"] not in c.sop_classes:
            rule = "sop_class"
        elif r["photometric_interpretation"] not in c.photometric:
            rule = "photometric"
        elif c.body_parts and r["body_part_examined"] not in c.body_parts:
            rule = "body_part"
        elif any(t in c.excluded_image_types for t in r["image_type"].split("\\")):
            rule = "image_type"
        elif not all(c.pixel_spacing[0] <= v <= c.pixel_spacing[1] for v in r["pixel_spacing"]):
            rule = "pixel_spacing"
        elif not (c.rows[0] <= r["rows"] <= c.rows[1]):
            rule = "matrix"
        prev = out.get(r["series_key"], "")
        if rule and (not prev or order.index(rule) < order.index(prev)):
            out[r["series_key"]] = rule
        else:
            out.setdefault(r["series_key"], prev)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--per", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-readme", action="store_true")
    a = ap.parse_args(argv)
    df = table(a.series, a.per)
    c = InputContract(modalities=["CT"], sop_classes=[CT], photometric=["MONOCHROME2"],
                      body_parts=["HEAD"], image_types=["ORIGINAL"],
                      pixel_spacing=(0.3, 0.7), rows=(384, 1024), columns=(384, 1024))
    t_base, t_ours = [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        want = baseline(df, c)
        t_base.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = {d.series_key: d.rule for d in c.check(df)}
        t_ours.append(time.perf_counter() - t0)
    assert got == want, "the two checks disagree"
    n = len(df)
    b, o = min(t_base), min(t_ours)
    text = (f"`python bench/bench_contract.py --series {a.series} --per {a.per}` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
            f"Python {platform.python_version()}, 2 CPU cores shared with other jobs; best "
            f"of {a.repeat}. {a.series} series x {a.per} instances = {n} Index rows, "
            f"{sum(1 for r in got.values() if r)} series ineligible; both give the same "
            "decisions.\n\n"
            "| method | rows/s | s per 100,000 rows | vs baseline |\n"
            "| --- | ---: | ---: | ---: |\n"
            f"| baseline: per-row Python loop over the rules | {n / b:,.0f} | "
            f"{b / n * 1e5:.3f} | 1.0x |\n"
            f"| dicomml InputContract.check (vectorised per rule) | {n / o:,.0f} | "
            f"{o / n * 1e5:.3f} | {b / o:.1f}x |\n")
    print(text)
    if not a.no_readme:
        readme = REPO / "bench" / "README.md"
        cur = readme.read_text(encoding="utf-8")
        section = "## input contract\n\n" + text
        if "## input contract\n" in cur:
            cur = re.sub(r"## input contract\n.*?(?=\n## |\Z)", section.rstrip("\n") + "\n",
                         cur, flags=re.S)
        else:
            cur = cur.rstrip("\n") + "\n\n" + section
        readme.write_text(cur, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
