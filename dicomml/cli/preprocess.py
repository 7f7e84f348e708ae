"""``dicomml preprocess``: fill the tensor cache (resumable, in worker processes)."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "preprocess images into the resumable tensor cache (uint8/float16 shards)"
EXAMPLE = """example:
  dicomml preprocess --config sample_dicom/train.toml
  dicomml preprocess sample_dicom/head_ct_task --cache /tmp/cache --workers 2
  dicomml preprocess sample_dicom/head_ct_task --cache /tmp/cache --dask-local 2

With --config, the examples are those of the training configuration (labels joined, slices
selected) and the cache is its data.cache; otherwise every image frame under SOURCE (a
folder or an Index database) is cached with the [preprocess] table of --preprocess (or the
defaults). Interrupt it at any time: a re-run finishes the missing shards only."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", help="a DICOM folder or an Index database (.sqlite)")
    p.add_argument("--config", metavar="FILE", help="training configuration (TOML)")
    p.add_argument("--cache", metavar="DIR", help="the cache folder (overrides data.cache)")
    p.add_argument("--preprocess", metavar="FILE",
                   help="TOML file with a [preprocess] table (without --config)")
    p.add_argument("--db", metavar="FILE", help="Index database for SOURCE (default: user cache)")
    p.add_argument("--failed-csv", metavar="FILE", help="write the files that failed here")
    from dicomml.cli._common import add_progress_argument

    add_progress_argument(p)
    from dicomml.parallel import add_executor_arguments

    add_executor_arguments(p)


def _examples_from_source(args):
    from dicomml.data.config import DataConfig
    from dicomml.data.selection import select_examples
    from dicomml.io import open_index, scan

    if os.path.isdir(args.source):
        db = scan(args.source, db=args.db, workers=args.workers,
                  progress=not args.no_progress).db_path
    else:
        db = args.source
    with open_index(db=db) as index:
        inst = index.instances()
    return select_examples(inst, DataConfig()).examples  # every frame of every image


def conflicting_duplicates(examples):
    """``(kept, dropped)``: the examples the cache computes and those it cannot hold.

    The cache is keyed by (SOP Instance UID, frame) (PS3.3 C.12.1.1.1: the UID names one
    instance); when several files share a key (the scan's *conflicting duplicates*: same UID,
    other content), the first in the examples' order is cached and every other one is
    returned in ``dropped`` with a ``reason`` naming the kept file, so that it is reported,
    never silently left out.
    """
    keys = ["sop_instance_uid", "frame"]
    dup = examples.duplicated(subset=keys, keep="first")
    if not dup.any():
        return examples, examples.iloc[:0].assign(reason=[])
    first = examples[~dup].set_index(keys)["path"]
    dropped = examples[dup].copy()
    twin = [first.get((s, f)) for s, f in zip(dropped["sop_instance_uid"], dropped["frame"])]
    dropped["reason"] = [f"not cached: conflicting duplicate of {t} (same SOP Instance UID "
                         "and frame, other content); remove or fix one of them" for t in twin]
    return examples[~dup], dropped


def run(args) -> int:
    from dicomml._atomic import atomic_write_text
    from dicomml.data.cache import TensorCache, make_executor
    from dicomml.errors import ConfigError
    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.train.toml_io import load_toml

    if bool(args.config) == bool(args.source):
        raise ConfigError("give either --config FILE or a SOURCE folder/database (not both)")
    from dicomml.cli._common import require_paths

    require_paths([args.source] if args.source else [], "SOURCE")
    if args.config:
        from dicomml.train.config import load_config
        from dicomml.train.trainer import prepare_manifest

        cfg = load_config(args.config)
        if args.workers is not None:
            cfg = cfg.replace(data={"workers": args.workers})
        manifest, _ = prepare_manifest(cfg, progress=not args.no_progress)
        examples = manifest.df
        pcfg = cfg.preprocess_config()
        cache_dir = args.cache or cfg.data.cache
        workers = cfg.data.workers
    else:
        examples = _examples_from_source(args)
        table = load_toml(args.preprocess).get("preprocess", {}) if args.preprocess else {}
        pcfg = PreprocessConfig.from_dict(table)
        cache_dir = args.cache
        workers = args.workers
    if not cache_dir:
        raise ConfigError("no cache folder: set data.cache in the configuration or --cache DIR")
    from dicomml.cli._common import require_output_dir

    require_output_dir(cache_dir, option="--cache" if args.cache else "data.cache")
    if not len(examples):
        print(f"dicomml preprocess: no image frames in {args.source or args.config}: nothing "
              "to cache", file=sys.stderr)
        return 1
    examples, dropped = conflicting_duplicates(examples)
    pipeline = Pipeline(pcfg)
    cache = TensorCache.for_pipeline(cache_dir, pipeline)
    if args.scheduler or args.dask_local or args.item_timeout:
        from dicomml.parallel import executor_from_args

        executor = executor_from_args(args)
    else:
        executor = make_executor("processes", workers)
    try:
        rep = cache.fill(examples, pipeline, executor=executor, progress=not args.no_progress)
    finally:
        executor.close()
    print(f"cache {cache.folder}: {rep.requested} examples, {rep.already_cached} already "
          f"cached, {rep.computed} computed in {rep.shards_written} shards ({cache.dtype}), "
          f"{len(rep.failed)} failed" + (f", {len(rep.not_cached)} not computed (retried by "
                                          "the next run)" if len(rep.not_cached) else "")
          + (f", {len(dropped)} conflicting duplicate(s) not cached" if len(dropped) else ""))
    for r in rep.not_cached.head(20).itertuples():
        print(f"  not computed {r.path} frame {r.frame}: {r.reason}", file=sys.stderr)
    if len(rep.failed) or len(rep.not_cached) or len(dropped):
        import pandas as pd

        failed = pd.concat([rep.failed, dropped[list(rep.failed.columns)]],
                           ignore_index=True) if len(dropped) else rep.failed
        if args.failed_csv:
            atomic_write_text(args.failed_csv, failed.to_csv(index=False))
        for r in failed.head(20).itertuples():
            print(f"  skipped {r.path} frame {r.frame}: {r.reason}", file=sys.stderr)
        return 1
    return 0
