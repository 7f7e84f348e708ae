"""A small mixed export for Index tests: two CT series, one MR, one secondary capture and
one file that is not DICOM, scanned into an Index next to it."""

from __future__ import annotations

from pathlib import Path

from dicomml.io import scan
from dicomml.testing import write_ct_series, write_mr_series
from dicomml.testing.other import write_secondary_capture


def write_mixed_export(root: Path) -> Path:
    """Write the export under ``root`` and scan it; the Index's path
    (``root``'s sibling ``<name>.sqlite``)."""
    write_ct_series(root / "a" / "ct1", n_slices=5, rows=16, columns=16, seed=1)
    write_ct_series(root / "a" / "ct2", n_slices=3, rows=16, columns=16, seed=2)
    write_mr_series(root / "b" / "mr", n_slices=4, rows=16, columns=16, seed=3)
    write_secondary_capture(root / "c" / "sc.dcm", seed=4)
    (root / "c" / "notes.txt").write_text("not DICOM")
    db = root.parent / (root.name + ".sqlite")
    scan(root, db, workers=0, progress=False)
    return db
