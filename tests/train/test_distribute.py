"""tf.distribute on CPU: MirroredStrategy over 2 logical CPUs and MultiWorkerMirroredStrategy
with two local workers (TF_CONFIG on loopback) follow the single-device run.

Every run is a fresh subprocess (the strategies configure TensorFlow at start-up): this file
is also the child script (``python -m tests.train.test_distribute MODE CONFIG RUN_DIR OUT``).

Same seed, same data (a prefilled tensor cache), same global batch of 4 (2 per replica),
plain SGD, a small reference CNN without dropout or batch normalization. The only difference
allowed is the order of floating-point additions: the single device reduces the loss over 4
examples at once, the replicas over 2 each and then sum the two gradients (all-reduce). Each
such reordering changes a float32 result by a few ulps (relative 1e-7), and 6 SGD steps at
learning rate 0.05 on a network this small do not amplify it much: measured, the weights
differ by at most 1.5e-8 (largest weight 0.73) and the loss histories agree to 1e-7. The
tolerance ``rtol=1e-4, atol=1e-5`` leaves over two orders of magnitude of margin, while a
real mismatch is far above it: a different example order (a stateful tf.data shuffle,
which Keras re-creates a different number of times with a strategy) moved the weights by
1.3e-2 and the first epoch's loss in the third decimal; a loss not scaled by 1/replicas
doubles every step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RTOL, ATOL = 1e-4, 1e-5


def _child(mode: str, config: str, run_dir: str, out: str) -> int:
    """Run one training in this (fresh) process and save its final weights to ``out``."""
    import tensorflow as tf

    if mode == "mirrored":  # before TensorFlow initializes: split the CPU in two
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dicomml.train.config import RunConfig
    from dicomml.train.trainer import Trainer

    with open(config, encoding="utf-8") as f:
        cfg = RunConfig.from_dict(json.load(f))
    strategy = {"single": "default", "mirrored": "mirrored",
                "worker": "multi_worker_mirrored"}[mode]
    res = Trainer(cfg.replace(train={"strategy": strategy})).fit(run_dir, progress=False)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # outside any scope: 1
    weights = res.model.get_weights()
    np.savez(out, *weights)
    print(json.dumps({"replicas_outside": replicas, "epochs_run": res.epochs_run,
                      "history": res.history.to_dict(orient="list")}))
    return 0


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT,
           "CUDA_VISIBLE_DEVICES": "", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _start(mode, config, run_dir, out, **env):
    return subprocess.Popen([sys.executable, "-m", "tests.train.test_distribute", mode,
                             str(config), str(run_dir), str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(**env))


def _wait(procs, timeout=240):
    """Wait for every process; when one fails or time runs out, kill the others (a worker
    whose peer died waits for it forever)."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outs = []
    for p in procs:
        o, e = p.communicate()
        assert p.returncode == 0, f"status {p.returncode}: " + e.decode()[-4000:]
        outs.append(json.loads(o.decode().strip().splitlines()[-1]))
    return outs


def _weights(path):
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def _predict(run_dir, x):
    import keras

    with open(os.path.join(run_dir, "checkpoints", "state.json"), encoding="utf-8") as f:
        ck = json.load(f)["checkpoint"]
    model = keras.saving.load_model(os.path.join(run_dir, "checkpoints", ck))
    return model.predict(x, verbose=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import tensorflow  # noqa: F401 - a hard dependency: a broken install fails
    from dicomml.testing.task import write_head_ct_task

    d = tmp_path_factory.mktemp("dist")
    labels = write_head_ct_task(d / "dicom", n_patients=6, seed=5, slices=(3, 3), rows=48,
                                columns=48)
    base = {
        "data": {"index": str(d / "index.sqlite"), "labels": str(labels),
                 "cache": str(d / "cache"), "workers": 0,
                 "slices": {"mode": "central", "n": 2}},
        # 6 patients → 4 train (8 examples = 2 global batches), 1 val, 1 test
        "split": {"train": 0.66, "val": 0.17, "test": 0.17, "seed": 1},
        "model": {"name": "reference_cnn", "filters": [4, 4, 4], "dense_units": 8},
        "train": {"epochs": 3, "batch_size": 4, "optimizer": "sgd", "learning_rate": 0.05,
                  "seed": 7, "deterministic": True, "verbose": 0, "tensorboard": False,
                  "mixed_precision": "off", "metrics": ["accuracy"]},
    }
    # the single-device reference scans the folder and fills the cache the others read
    first = {**base, "data": {**base["data"], "folder": str(d / "dicom")}}
    (d / "single.json").write_text(json.dumps(first))
    (d / "dist.json").write_text(json.dumps(base))
    t0 = time.monotonic()
    out = _wait([_start("single", d / "single.json", d / "run-single", d / "single.npz")])[0]
    return {"dir": d, "single": out, "t_single": time.monotonic() - t0}


def _same(a_dir, a_npz, b_dir, b_npz, a_hist, b_hist):
    wa, wb = _weights(a_npz), _weights(b_npz)
    assert [w.shape for w in wa] == [w.shape for w in wb]
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL)
    assert a_hist["epoch"] == b_hist["epoch"] == [0, 1, 2]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(b_hist[key], a_hist[key], rtol=RTOL, atol=ATOL)
    # the written run folders agree too: history.csv and the last checkpoint's predictions
    ha = pd.read_csv(os.path.join(a_dir, "history.csv"))
    hb = pd.read_csv(os.path.join(b_dir, "history.csv"))
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=RTOL, atol=ATOL)
    x = np.random.default_rng(0).random((5, 224, 224, 3), dtype=np.float32)
    np.testing.assert_allclose(_predict(b_dir, x), _predict(a_dir, x), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_reference_run_learns(setup):
    """Guard against a vacuous comparison: the loss moves by far more than the tolerance."""
    loss = np.asarray(setup["single"]["history"]["loss"])
    assert abs(loss[1] - loss[0]) > 10 * (ATOL + RTOL * abs(loss[1]))
    assert setup["single"]["replicas_outside"] == 1


@pytest.mark.slow
def test_mirrored_two_logical_cpus_matches_single(setup):
    d = setup["dir"]
    out = _wait([_start("mirrored", d / "dist.json", d / "run-mirrored", d / "mirrored.npz")])
    _same(d / "run-single", d / "single.npz", d / "run-mirrored", d / "mirrored.npz",
          setup["single"]["history"], out[0]["history"])


@pytest.mark.slow
def test_multi_worker_two_local_workers_matches_single(setup):
    d = setup["dir"]
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = d / "run-mwms"
    procs = [_start("worker", d / "dist.json", run, d / f"worker{i}.npz",
                    TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}))
             for i in range(2)]
    outs = _wait(procs)
    # both workers hold the same (mirrored) variables
    for a, b in zip(_weights(d / "worker0.npz"), _weights(d / "worker1.npz")):
        np.testing.assert_array_equal(a, b)
    _same(d / "run-single", d / "single.npz", run, d / "worker0.npz",
          setup["single"]["history"], outs[0]["history"])
    assert outs[1]["history"] == outs[0]["history"]
    # only the chief wrote the run folder; the other worker's scratch folder is gone
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0002.keras", "state.json"]


def test_repeated_shuffle_order_depends_only_on_seed_and_epoch(tmp_path):
    """The fix behind the equality above: Keras pulls a batch and re-creates the iterator
    under a strategy; a stateful ``shuffle`` then starts at another permutation."""
    import tensorflow as tf
    from dicomml.data.cache import TensorCache
    from dicomml.data.tfdata import cache_dataset
    from tests.data._fake import FakePipeline, write_files

    ex = write_files(tmp_path / "src", range(6))
    pipe = FakePipeline()
    cache = TensorCache.for_pipeline(tmp_path / "cache", pipe, shard_size=4)
    cache.fill(ex, pipe, executor="inprocess", progress=False)
    ds = cache_dataset(cache, ex, targets=ex["seed"].to_numpy() % 2, batch_size=4,
                       shuffle=True, seed=3, repeat=True)
    means = {s: float(pipe.expected(s, 0).mean()) for s in ex["seed"]}

    def seeds(iterator, n_batches):  # identify each example by its tensor's mean
        out = []
        for _ in range(n_batches):
            x, _y = next(iterator)
            for m in x.numpy().reshape(len(x), -1).mean(axis=1):
                out.append(min(means, key=lambda s: abs(means[s] - m)))
        return out

    first = iter(ds)
    next(first)  # what Keras does before fit under a strategy
    a = seeds(iter(ds), 6)  # a new iterator starts again at epoch 0
    b = seeds(iter(ds), 6)
    assert a == b
    epochs = [a[:6], a[6:12], a[12:]]  # batches of 4 + 2 per epoch of 6 examples
    assert all(sorted(e) == list(range(6)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3  # reshuffled each epoch
    want = tf.random.experimental.stateless_shuffle(tf.range(6, dtype=tf.int64),
                                                    seed=[3, 1]).numpy()
    assert epochs[1] == [int(ex["seed"].iloc[i]) for i in want]


def test_is_chief_rules():
    from dicomml.errors import ConfigError
    from dicomml.train.trainer import is_chief

    two = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert is_chief("")
    assert is_chief(json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}}))
    assert not is_chief(json.dumps({"cluster": two, "task": {"type": "worker", "index": 1}}))
    with_chief = {"chief": ["127.0.0.1:3"], **two}
    assert is_chief(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))
    assert not is_chief(json.dumps({"cluster": with_chief,
                                    "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        is_chief("{not json")


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:5]))
