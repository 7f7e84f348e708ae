"""The accelerator path on CPU: uint8 batches from the cache (``output="stored"``), converted
by ``stored_to_float`` inside the model, under ``MirroredStrategy`` over two logical CPUs and
the ``mixed_float16`` policy, train and predict as the float32 batches do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dicomml.data import TensorCache, cache_dataset
from dicomml.data.tfdata import stored_to_float
from tests.data._fake import FakePipeline, write_files

folder = sys.argv[1]
ex = write_files(folder + "/src", range(8))
pipe = FakePipeline()
cache = TensorCache.for_pipeline(folder + "/c", pipe, shard_size=3)
cache.fill(ex, pipe, executor="inprocess", progress=False)
y = np.arange(8) % 2
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.mixed_precision.set_global_policy("mixed_float16")

def model(stored):
    keras.utils.set_random_seed(0)
    inp = keras.Input((224, 224, 3), dtype="uint8" if stored else "float32")
    x = keras.layers.Lambda(stored_to_float)(inp) if stored else inp
    x = keras.layers.Conv2D(4, 3, strides=4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", dtype="float32")(x)
    m = keras.Model(inp, out)
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    return m

res = {"replicas": strategy.num_replicas_in_sync}
for stored in (True, False):
    out = "stored" if stored else "float32"
    with strategy.scope():
        m = model(stored)
    ds = cache_dataset(cache, ex, targets=y, batch_size=4, output=out)
    res[out + "_dtype"] = ds.element_spec[0].dtype.name
    res[out + "_loss"] = m.fit(ds, epochs=2, verbose=0).history["loss"]
    res[out + "_pred"] = m.predict(cache_dataset(cache, ex, batch_size=4, output=out),
                                   verbose=0).tolist()
    res[out + "_policy"] = m.layers[-2].compute_dtype
print(json.dumps(res))
"""


@pytest.mark.slow
def test_stored_batches_train_like_float32_under_mirrored_and_mixed_precision(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=600, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2
    assert res["stored_dtype"] == "uint8" and res["float32_dtype"] == "float32"
    assert res["stored_policy"] == "float16"  # the mixed_float16 policy computes in float16
    np.testing.assert_array_equal(res["stored_loss"], res["float32_loss"])
    np.testing.assert_array_equal(res["stored_pred"], res["float32_pred"])
    assert np.isfinite(res["stored_pred"]).all() and len(res["stored_pred"]) == 8
