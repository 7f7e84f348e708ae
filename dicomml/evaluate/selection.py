"""Which inputs a run may predict: its input contract applied series by series, and skips.

:func:`select_series` applies :meth:`dicomml.data.contract.InputContract.check` to every
series of an input's Index rows. Eligible series go on to the model; every other series is a
**skip** with the contract rule it failed. ``force=True`` predicts those series anyway (the
result objects then say so), except what the model can never see: a non-image object, a
Segmentation, a colour image for a grayscale model — these stay skipped, with the reason.

Every skip is one row of :data:`SKIP_COLUMNS` (what ``skipped.csv`` holds): ``level``
("file", "series", "image", "study"), the UIDs known at that level, ``path`` (a file of
it), ``rule`` and ``reason``. Rules are those of :data:`dicomml.data.contract.RULES` plus
``"unreadable"`` (the file or frame could not be read or preprocessed), ``"constant"``
(the run's preprocessing maps the image to one value), ``"no_contract"`` (forced without
a contract), ``"sr"`` / ``"heatmap"`` (a result object could not be written).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dicomml.data.contract import InputContract

__all__ = ["SKIP_COLUMNS", "Selection", "select_series", "skip_row", "never_forced"]

SKIP_COLUMNS = ("level", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                "frame", "path", "rule", "reason")
#: Segmentation-like SOP classes (PS3.4 B.5): label maps, not images of the body.
SEGMENTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7",
                        "1.2.840.10008.5.1.4.1.1.30")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT",
           "PALETTE COLOR")


def skip_row(level: str, rule: str, reason: str, *, path="", study="", series="", sop="",
             frame=None) -> dict:
    """One row of :data:`SKIP_COLUMNS`."""
    return {"level": level, "study_instance_uid": str(study or ""),
            "series_instance_uid": str(series or ""), "sop_instance_uid": str(sop or ""),
            "frame": "" if frame is None else int(frame), "path": str(path or ""),
            "rule": rule, "reason": reason}


@dataclass
class Selection:
    """What :func:`select_series` decided."""

    #: The instance rows of the series to predict (eligible and forced).
    instances: pd.DataFrame
    #: One dict per series: series_key, UIDs, modality, n_instances, eligible, rule,
    #: reason, decision ("predict", "forced" or "skipped").
    series: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    #: series_instance_uid → the rule it was forced past.
    forced: dict[str, str] = field(default_factory=dict)


def never_forced(rows: pd.DataFrame, rgb_model: bool) -> str:
    """Why no ``--force`` gives these instances (one series) to the model; "" if it may."""
    def col(name):
        return rows[name].fillna("").astype(str).str.strip().str.upper() \
            if name in rows else pd.Series([], dtype=str)

    if "is_image" in rows and not rows["is_image"].fillna(True).astype(bool).all():
        return "not an image: never given to the model"
    if col("sop_class_uid").isin(SEGMENTATION_CLASSES).any() or (col("modality") == "SEG").any():
        return "a segmentation (label map), not an image of the body: never given to the model"
    colour = col("photometric_interpretation").isin(_COLOUR).any()
    if not rgb_model and colour:
        return "a colour image for a grayscale model: never given to the model"
    if rgb_model and not colour and len(col("photometric_interpretation")):
        return "a grayscale image for a colour (mode 'rgb') model: never given to the model"
    return ""


def select_series(instances: pd.DataFrame, contract: InputContract | None, *,
                  force: bool = False, rgb_model: bool = False) -> Selection:
    """Apply ``contract`` to every series of ``instances`` (Index rows).

    Parameters
    ----------
    instances : pandas.DataFrame
        :meth:`dicomml.io.Index.instances` of the input.
    contract : InputContract or None
        None only with ``force`` (a run without ``contract.json``).
    force : bool
        Predict series outside the contract too (not those of :func:`never_forced`).
    rgb_model : bool
        The run's preprocessing is mode ``"rgb"``.
    """
    key = "series_key" if "series_key" in instances else "series_instance_uid"
    if contract is None:
        decisions = InputContract().check(instances)  # no rule set: "image" only
    else:
        decisions = contract.check(instances)
    groups = instances.groupby(instances[key].astype(str), sort=False).groups
    keep, series, skipped, forced = [], [], [], {}
    for d in decisions:
        idx = groups[d.series_key]
        rows = instances.loc[idx]
        entry = {"series_key": d.series_key, "study_instance_uid": d.study_instance_uid,
                 "series_instance_uid": d.series_instance_uid, "modality": d.modality,
                 "n_instances": d.n_instances, "eligible": d.eligible, "rule": d.rule,
                 "reason": d.reason}
        rule, reason = d.rule, d.reason
        if contract is None and d.eligible:
            rule, reason = "no_contract", "the run has no contract.json"
        if rule and force:
            why = never_forced(rows, rgb_model)
            if why:
                reason = f"{reason}; {why}" if reason else why
                rule = rule or "image"
            else:
                entry["decision"] = "forced"
                forced[d.series_instance_uid] = rule
                keep.append(idx)
                series.append(entry)
                continue
        elif not rule:
            why = never_forced(rows, rgb_model)
            if why:  # a contract that allows it (written by hand): still not given
                rule, reason = "photometric", why
        if rule:
            entry.update(decision="skipped", rule=rule, reason=reason)
            first = rows.iloc[0]
            skipped.append(skip_row("series", rule, reason, path=first.get("path", ""),
                                    study=d.study_instance_uid,
                                    series=d.series_instance_uid))
        else:
            entry["decision"] = "predict"
            keep.append(idx)
        series.append(entry)
    chosen = instances.loc[[i for idx in keep for i in idx]] if keep else instances.iloc[:0]
    return Selection(chosen, series, skipped, forced)
