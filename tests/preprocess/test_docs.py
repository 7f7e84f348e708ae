"""The runnable examples in the preprocess docstrings are true; a Pipeline pickles (workers)."""

from __future__ import annotations

import doctest
import importlib
import pickle

import numpy as np
import pytest

from dicomml.preprocess import Pipeline, PreprocessConfig

MODULES = ["dicomml.preprocess.window", "dicomml.preprocess.resize",
           "dicomml.preprocess.pipeline", "dicomml.preprocess.presets",
           "dicomml.preprocess.config", "dicomml.preprocess.augment"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_pipeline_pickles_for_worker_processes():
    p = Pipeline(PreprocessConfig(windows=("lung", "mediastinum", "bone"), size=32))
    q = pickle.loads(pickle.dumps(p))
    x = np.random.default_rng(2).normal(0, 500, (40, 40)).astype(np.float32)
    np.testing.assert_array_equal(p(x), q(x))
    assert q.config == p.config and q.config_hash() == p.config_hash()
