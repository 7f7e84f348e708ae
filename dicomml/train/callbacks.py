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

__all__ = ["RunState", "save_model_atomic", "read_state", "plot_history", "EpochSeeds",
           "ResumableEarlyStopping", "ResumableReduceLROnPlateau", "improves", "tie_break_of",
           "mode_of"]


def mode_of(monitor: str) -> str:
    """``"max"`` for a monitored ROC AUC or accuracy, ``"min"`` otherwise (a loss)."""
    return "max" if any(s in monitor for s in ("auc", "acc")) else "min"


def tie_break_of(monitor: str) -> str | None:
    """The metric that breaks ties of ``monitor``: a ROC AUC ties often on a small
    validation split (1.0 for several epochs), and the tie goes to the lower loss of the
    same split (``val_auc`` → ``val_loss``); None for other monitors."""
    return monitor.replace("auc", "loss") if "auc" in monitor else None


def improves(value, best, mode: str, tie=None, best_tie=None) -> bool:
    """Whether the monitored ``value`` improves on ``best`` (``mode`` "max" or "min"; the
    first value always does). An equal value improves when its tie-break metric
    (:func:`tie_break_of`, lower is better) is lower than the best's. The one rule of the
    best checkpoint (:class:`RunState`) and of early stopping
    (:class:`ResumableEarlyStopping`) and of the learning-rate reduction
    (:class:`ResumableReduceLROnPlateau`)."""
    if value is None:
        return False
    if best is None:
        return True
    if value == best:
        return tie is not None and best_tie is not None and tie < best_tie
    return value < best if mode == "min" else value > best


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


class _Resumable:
    """Mixin: a Keras callback whose counters survive a resume.

    ``state()`` returns the attributes named by ``STATE`` (JSON-ready); the ``resume``
    dictionary given to the constructor is put back after ``on_train_begin`` (where Keras
    resets them), so a run resumed at epoch ``k`` continues counting as the uninterrupted
    run did.
    """

    STATE: tuple = ()

    def __init__(self, *args, resume: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._resume = dict(resume or {})

    def state(self) -> dict:
        out = {}
        for k in self.STATE:
            v = getattr(self, k, None)
            out[k] = None if v is None else (_clean(v) if k in ("best", "best_tie")
                                             else int(v))
        return out

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for k in self.STATE:
            if self._resume.get(k) is not None:
                setattr(self, k, self._resume[k])


class _TieBroken:
    """Mixin of a Keras monitor callback: improvements by :func:`improves` (the best
    checkpoint's rule), with the monitor's direction, its tie-break metric and the tie
    value of the best epoch (``best_tie``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tie_break = tie_break_of(self.monitor)
        self.best_tie = None
        if self.mode not in ("min", "max"):  # "auto": the direction RunState takes
            self.mode = mode_of(self.monitor)

    def on_train_begin(self, logs=None):
        self.best_tie = None
        super().on_train_begin(logs)

    def improved(self, current, logs: dict) -> bool:
        """Whether ``current`` (the monitor's value this epoch) improves on ``best``; if so,
        it and its tie value become the best."""
        current = _clean(current)
        tie = _clean(logs[self.tie_break]) if logs.get(self.tie_break) is not None else None
        if not improves(current, self.best, self.mode, tie, self.best_tie):
            return False
        self.best, self.best_tie = current, tie
        return True


class ResumableEarlyStopping(_Resumable, _TieBroken, keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` whose ``wait``/``best``/``best_epoch`` survive a
    resume, and whose improvements are those of the best checkpoint (:func:`improves`): a
    tied ROC AUC with a lower loss restarts the patience, as it replaces ``model.keras``
    (Keras counts only a strictly higher AUC, so a validation AUC that reached 1.0 stopped
    the training ``patience`` epochs later while the loss still fell). ``min_delta``,
    ``baseline`` and ``restore_best_weights`` are not used."""

    STATE = ("wait", "best", "best_epoch", "stopped_epoch", "best_tie")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self.improved(current, logs):
            self.best_epoch, self.wait = epoch, 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class ResumableReduceLROnPlateau(_Resumable, _TieBroken, keras.callbacks.ReduceLROnPlateau):
    """``keras.callbacks.ReduceLROnPlateau`` whose ``wait``/``best``/``cooldown_counter``
    survive a resume (the reduced learning rate itself is in the optimizer's checkpoint),
    and whose improvements are those of the best checkpoint and of early stopping
    (:func:`improves`: a tied ROC AUC with a lower loss is one; Keras counts only a value
    better by ``min_delta``, so a validation AUC at 1.0 cut the rate while ``model.keras``
    was still being replaced). ``min_delta`` is not used; one optimizer."""

    STATE = ("wait", "best", "cooldown_counter", "best_tie")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
        logs["learning_rate"] = lr
        current = logs.get(self.monitor)
        if current is None:
            raise KeyError(f"ReduceLROnPlateau monitors {self.monitor!r}, which the epoch's "
                           f"logs do not hold: {sorted(logs)}")
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.improved(current, logs):
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > np.float32(self.min_lr):
                opt.learning_rate = max(lr * self.factor, self.min_lr)
                self.cooldown_counter, self.wait = self.cooldown, 0


def seed_generators(model) -> list:
    """The ``keras.random.SeedGenerator`` objects of ``model``'s layers (dropout...), in
    layer order."""
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        out.extend(getattr(layer, "_seed_generators", ()) or ())
    return out


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch start, set the layers' random state from ``(seed, epoch)`` alone.

    Keras does not save a ``SeedGenerator``'s state in ``.keras`` files (a loaded model's
    dropout draws start elsewhere), so a resumed run would draw other dropout masks than the
    uninterrupted one. Epoch ``e`` therefore starts every seed generator ``k`` at the state
    ``[hash(seed, e, k), 0]`` and reseeds the global generators with
    ``keras.utils.set_random_seed(seed + e)``, in every run.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        keras.utils.set_random_seed((self.seed + int(epoch)) % (2 ** 32))
        for k, sg in enumerate(seed_generators(self.model)):
            ss = np.random.SeedSequence([self.seed % (2 ** 32), int(epoch), k])
            first = int(ss.generate_state(1, np.uint32)[0] >> 1)  # below 2**31 (int32 ok)
            dtype = keras.backend.standardize_dtype(sg.state.dtype)
            sg.state.assign(np.array([first, 0], dtype=dtype))


class RunState(keras.callbacks.Callback):
    """Each epoch: keep the best model, write ``history.csv``, save the resume state.

    Order at the end of epoch ``e`` (each write atomic): the best model to
    ``RUN_DIR/model.keras`` when ``monitor`` improved; the full model with its optimizer
    state to ``checkpoints/epoch-<e>.keras``; ``checkpoints/state.json`` (last finished
    epoch, best value and the epoch it came from, history rows, the learning rate, the counters of the ``resumables``
    callbacks, whether training was stopped early) pointing at it; ``history.csv`` (the
    CSVLogger format: ``epoch`` then the sorted metric names); finally the previous epoch
    file is deleted. A run killed at any point resumes from the newest state, whose
    checkpoint exists. Put it after the other callbacks, so that their end-of-epoch
    updates are in the state it saves.
    """

    def __init__(self, run_dir: str, monitor: str = "val_loss", history: list | None = None,
                 best: float | None = None, resumables: dict | None = None,
                 best_epoch: int | None = None):
        super().__init__()
        #: the epoch (0-based) whose weights are ``model.keras``
        self.best_epoch = best_epoch
        self.tie_break = tie_break_of(monitor)
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = mode_of(monitor)
        self.rows = list(history or [])
        self.best = best
        self.resumables = dict(resumables or {})
        ck = os.path.join(run_dir, "checkpoints")
        os.makedirs(ck, exist_ok=True)
        for folder in (ck, run_dir):  # temporary files of a save that was killed
            for f in os.listdir(folder):
                if f.startswith(".") and f.endswith(".tmp.keras"):
                    try:
                        os.unlink(os.path.join(folder, f))
                    except OSError:
                        pass

    def _improved(self, value, row) -> bool:
        prev = next((r for r in self.rows if r["epoch"] == self.best_epoch), {})
        key = self.tie_break
        return improves(value, self.best, self.mode, row.get(key) if key else None,
                        prev.get(key) if key else None)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        lr = getattr(self.model.optimizer, "learning_rate", None)
        if lr is not None and "learning_rate" not in logs:
            logs["learning_rate"] = lr
        row = {"epoch": int(epoch), **{k: _clean(v) for k, v in logs.items()}}
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        value = row.get(self.monitor, row.get(self.monitor.removeprefix("val_")))
        if self._improved(value, row):
            self.best = value
            self.best_epoch = int(epoch)
            save_model_atomic(self.model, os.path.join(self.run_dir, "model.keras"))
        ck = os.path.join(self.run_dir, "checkpoints")
        name = f"epoch-{epoch:04d}.keras"
        save_model_atomic(self.model, os.path.join(ck, name))
        state = {"epoch": int(epoch), "checkpoint": name, "monitor": self.monitor,
                 "best": self.best, "best_epoch": self.best_epoch,
                 "learning_rate": None if lr is None else _clean(lr),
                 "stopped": bool(getattr(self.model, "stop_training", False)),
                 "callbacks": {k: cb.state() for k, cb in self.resumables.items()},
                 "history": self.rows}
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
