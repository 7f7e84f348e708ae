"""``dicomml train``: train a model from a TOML configuration into a run folder."""

from __future__ import annotations

import argparse
import sys

HELP = "train a model (scan, manifest, split, cache, fit) into a run folder; resumable"
EXAMPLE = """example:
  dicomml train --config sample_dicom/train.toml --out runs/head_ct
  KERAS_MAX_EPOCHS=1 dicomml train --config sample_dicom/train.toml --out /tmp/smoke

Run it again with the same --out after an interruption: it resumes at the next epoch.
The run folder holds config.toml, manifest.csv, model.keras, history.csv, checkpoints/,
logs/ (TensorBoard) and plots/training_curves.png."""


def _help_with_reference(parser: argparse.ArgumentParser) -> str:
    """The usual help, then the configuration reference (built only when --help asks)."""
    from dicomml.train.config_doc import config_reference

    return argparse.ArgumentParser.format_help(parser) + "\n" + config_reference()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dicomml.parallel import workers_argument

    p.format_help = lambda: _help_with_reference(p)
    p.add_argument("--config", required=True, metavar="FILE",
                   help="training configuration (TOML; see sample_dicom/train.toml)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--batch-size", type=int, help="override train.batch_size")
    p.add_argument("--seed", type=int, help="override train.seed (the training seed)")
    p.add_argument("--split-seed", type=int, help="override split.seed (which patients go "
                   "to train / val / test)")
    p.add_argument("--workers", type=workers_argument,
                   help="override data.workers (0: no worker processes; -1: every CPU)")
    p.add_argument("--no-cache", action="store_true",
                   help="decode on the fly in worker processes instead of the tensor cache")
    from dicomml.cli._common import add_progress_argument

    add_progress_argument(p)


def run(args) -> int:
    from dicomml.train.config import load_config
    from dicomml.train.trainer import Trainer

    from dicomml.cli._common import require_output_dir

    require_output_dir(args.out)
    cfg = load_config(args.config)
    train, data, split = {}, {}, {}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    if args.seed is not None:
        train["seed"] = args.seed
    if args.split_seed is not None:
        split["seed"] = args.split_seed
    if args.no_progress:
        train["verbose"] = 0
    if args.workers is not None:
        data["workers"] = args.workers
    if args.no_cache:
        data["cache"] = ""
    cfg = cfg.replace(train=train, data=data, split=split)
    res = Trainer(cfg).fit(args.out, progress=not args.no_progress)
    last = res.history.iloc[-1].to_dict() if len(res.history) else {}
    shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items()
                      if k != "epoch" and isinstance(v, float))
    print(f"trained {len(res.history)} epochs into {res.run_dir}"
          + (f" (resumed at epoch {res.resumed_from + 1})" if res.resumed_from else "")
          + (f"; last epoch: {shown}" if shown else "")
          + (f"; model.keras is epoch {res.best_epoch}" if res.best_epoch else ""))
    if len(res.failed):
        print(f"dicomml train: {len(res.failed)} examples could not be decoded and were "
              f"skipped; see {res.run_dir}/failed.csv", file=sys.stderr)
        return 1
    return 0
