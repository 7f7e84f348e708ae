"""Which series of a received study the run's model may predict, and why.

With the run's input contract (``RUN/contract.json``,
:class:`dicomml.data.contract.InputContract`) its :meth:`check` decides. A run without a
contract (trained before contracts existed) gets the rule ``predict`` applies to such runs:
image series of the run's (0008,0060) Modality (``data.modality``; any when unset).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["series_decisions"]


def series_decisions(run_dir, config: dict, series: pd.DataFrame) -> list[dict]:
    """One decision per row of ``series`` (an :meth:`Index.series` table).

    Returns dicts with ``series_key``, ``series`` (Series Instance UID), ``eligible``,
    ``rule`` and ``reason``.
    """
    contract = _contract(run_dir)
    uid_of = dict(zip(series["series_key"], series["series_instance_uid"].astype(str)))
    if contract is not None:
        return [{"series_key": d.series_key, "series": uid_of.get(d.series_key, ""),
                 "eligible": bool(d.eligible), "rule": d.rule, "reason": d.reason}
                for d in contract.check(series)]
    want = str(config.get("data", {}).get("modality") or "").upper()
    out = []
    for row in series.itertuples(index=False):
        mod = str(getattr(row, "modality", "") or "").upper()
        if not bool(getattr(row, "is_image", False)):
            ok, rule, why = False, "image", f"not an image series ({row.object_kind})"
        elif want and mod != want:
            ok, rule, why = False, "modality", f"modality {mod or '<none>'}, the model is {want}"
        else:
            ok, rule, why = True, "modality", f"modality {mod}" + ("" if want else " (any)")
        out.append({"series_key": row.series_key, "series": str(row.series_instance_uid),
                    "eligible": ok, "rule": rule, "reason": why})
    return out


def _contract(run_dir):
    if not (Path(run_dir) / "contract.json").exists():
        return None
    from dicomml.data.contract import InputContract

    return InputContract.from_run_dir(run_dir)
