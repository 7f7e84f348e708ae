"""Epochs are numbered from 1 in every picture (history.csv keeps Keras' 0-based column)."""

from __future__ import annotations

import pandas as pd
from PIL import Image


def test_read_history_counts_epochs_from_1(tmp_path):
    from dicomml.evaluate.plots import plot_training_curves, read_history

    csv = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.9, 0.7, 0.6],
                  "val_loss": [1.0, 0.8, 0.75]}).to_csv(csv, index=False)
    h = read_history(csv)
    assert h["epoch"].tolist() == [1, 2, 3]
    assert pd.read_csv(csv)["epoch"].tolist() == [0, 1, 2]  # the file itself is untouched
    png = plot_training_curves(csv, tmp_path / "curves.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert read_history(tmp_path / "missing.csv") is None
    (tmp_path / "empty.csv").write_text("")
    assert read_history(tmp_path / "empty.csv") is None
    assert plot_training_curves(tmp_path / "empty.csv", tmp_path / "x.png") is None
