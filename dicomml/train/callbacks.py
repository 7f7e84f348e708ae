"""Callbacks of the trainer: resumable state, atomic best checkpoint, history, curves."""

from __future__ import annotations

import csv
import io
import json
import math
import os

import keras
import numpy as np

from dicomml._atomic import atomic_write_text

__all__ = ["RunState", "save_model_atomic", "read_state", "plot_history"]


def save_model_atomic(model: keras.Model, path: str) -> None:
    """``model.save(path)`` through a temporary ``.keras`` file and a rename."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_state(run_dir: str) -> dict | None:
    """The resume state (``checkpoints/state.json``) or None."""
    path = os.path.join(run_dir, "checkpoints", "state.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _clean(v):
    v = float(np.asarray(v))
    return v if math.isfinite(v) else None


def _history_csv(rows: list[dict]) -> str:
    keys = sorted({k for r in rows for k in r if k != "epoch"})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *keys])
    for r in rows:
        w.writerow([r["epoch"], *["" if r.get(k) is None else repr(r[k]) for k in keys]])
    return buf.getvalue()


class RunState(keras.callbacks.Callback):
    """Each epoch: keep the best model, write ``history.csv``, save the resume state.

    Order at the end of epoch ``e`` (each write atomic): the best model to
    ``RUN_DIR/model.keras`` when ``monitor`` improved; the full model with its optimizer
    state to ``checkpoints/epoch-<e>.keras``; ``checkpoints/state.json`` (last finished
    epoch, best value, history rows) pointing at it; ``history.csv`` (the CSVLogger format:
    ``epoch`` then the sorted metric names); finally the previous epoch file is deleted.
    A run killed at any point resumes from the newest state, whose checkpoint exists.
    """

    def __init__(self, run_dir: str, monitor: str = "val_loss", history: list | None = None,
                 best: float | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = "max" if any(s in monitor for s in ("auc", "acc")) else "min"
        self.rows = list(history or [])
        self.best = best
        os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)

    def _improved(self, value) -> bool:
        if value is None:
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        lr = getattr(self.model.optimizer, "learning_rate", None)
        if lr is not None and "learning_rate" not in logs:
            logs["learning_rate"] = lr
        row = {"epoch": int(epoch), **{k: _clean(v) for k, v in logs.items()}}
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        value = row.get(self.monitor, row.get(self.monitor.removeprefix("val_")))
        if self._improved(value):
            self.best = value
            save_model_atomic(self.model, os.path.join(self.run_dir, "model.keras"))
        ck = os.path.join(self.run_dir, "checkpoints")
        name = f"epoch-{epoch:04d}.keras"
        save_model_atomic(self.model, os.path.join(ck, name))
        state = {"epoch": int(epoch), "checkpoint": name, "monitor": self.monitor,
                 "best": self.best, "history": self.rows}
        atomic_write_text(os.path.join(ck, "state.json"), json.dumps(state, indent=1))
        atomic_write_text(os.path.join(self.run_dir, "history.csv"), _history_csv(self.rows))
        for f in os.listdir(ck):
            if f.startswith("epoch-") and f.endswith(".keras") and f != name:
                os.unlink(os.path.join(ck, f))


def plot_history(rows: list[dict], path: str) -> None:
    """Loss and metric curves (train and validation) per epoch, written atomically as PNG."""
    from matplotlib.figure import Figure

    from dicomml._atomic import atomic_write_bytes

    metrics = sorted({k.removeprefix("val_") for r in rows for k in r
                      if k not in ("epoch", "learning_rate")})
    fig = Figure(figsize=(4.5 * max(1, len(metrics)), 3.6))
    epochs = [r["epoch"] + 1 for r in rows]
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, max(1, len(metrics)), i + 1)
        for key, style in ((m, "-o"), (f"val_{m}", "--s")):
            ys = [r.get(key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], style, ms=3,
                        label="validation" if key.startswith("val_") else "train")
        ax.set_title(m)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
