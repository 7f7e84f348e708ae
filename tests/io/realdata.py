"""Access to dcm2niix's validation datasets in ``../shared/realdata/dcm_qa`` (see its README).

Outside CI a missing folder skips; with ``CI`` set it fails (the folder is part of the checkout
layout that CI provides).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa"


def dataset(name: str) -> Path:
    """Folder of one dataset (``dcm_qa_ts``, ``dcm_qa_nih``, ...); skip or fail when absent."""
    path = (ROOT / name).resolve()
    if not (path / "In").is_dir():
        msg = f"real-data set {name} not found at {path} (../shared/realdata, see its README)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


dataset.__test__ = False
