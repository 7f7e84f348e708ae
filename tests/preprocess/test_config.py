"""PreprocessConfig: TOML-friendly round trip, stable hash, validation with "did you mean"."""

from __future__ import annotations

import hashlib
import json
import tomllib

import numpy as np
import pytest

from dicomml.errors import ConfigError
from dicomml.preprocess import AugmentConfig, Pipeline, PreprocessConfig


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"not a TOML scalar/array: {v!r}")


def _to_toml(d: dict, table: str = "preprocess") -> str:
    """A tiny TOML writer for the test (tables and scalars only)."""
    lines, sub = [f"[{table}]"], []
    for k, v in d.items():
        if isinstance(v, dict):
            sub.append(_to_toml(v, f"{table}.{k}"))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n" + "\n".join(sub)


def _assert_toml_types(v):
    if isinstance(v, dict):
        for k, x in v.items():
            assert isinstance(k, str)
            _assert_toml_types(x)
    elif isinstance(v, list):
        for x in v:
            _assert_toml_types(x)
    else:
        assert type(v) in (str, int, float, bool), (v, type(v))


CONFIGS = [
    PreprocessConfig(),
    PreprocessConfig(windows=("lung",), mode="replicate", size=128, resize="crop",
                     normalize="imagenet"),
    PreprocessConfig(windows=((40, 80), "file:BRAIN", "p1-p99"), fov_mm=250,
                     voi_function="LINEAR_EXACT", augment=AugmentConfig(rotate_deg=5, seed=7)),
    PreprocessConfig(mode="rgb", normalize="zscore"),
    PreprocessConfig(windows=("stroke",), mode="2.5d"),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_toml_round_trip(cfg):
    d = cfg.to_dict()
    _assert_toml_types(d)
    back = PreprocessConfig.from_dict(tomllib.loads(_to_toml(d))["preprocess"])
    assert back == cfg
    assert back.config_hash() == cfg.config_hash()


def test_hash_is_sha256_of_canonical_json():
    cfg = CONFIGS[2]
    expected = {
        "version": 1, "windows": [[40.0, 80.0], "file:BRAIN", "p1-p99"], "mode": "windows",
        "size": 224, "resize": "pad", "normalize": "unit", "voi_function": "LINEAR_EXACT",
        "fov_mm": 250.0,
    }  # the augmentation ranges act on cached tensors: not part of the cache key
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"))
    assert cfg.config_hash() == hashlib.sha256(text.encode()).hexdigest()
    assert cfg.to_dict()["augment"]["seed"] == 7  # but recorded in the run's config.toml


def test_augmentation_is_out_of_the_cache_key():
    a = PreprocessConfig(augment=AugmentConfig(rotate_deg=5, flip_lr=0.0))
    b = PreprocessConfig(augment=AugmentConfig(rotate_deg=0, seed=3))
    assert a != b and a.config_hash() == b.config_hash()


def test_a_single_window_string_is_one_window():
    cfg = PreprocessConfig.from_dict({"windows": "lung", "mode": "replicate"})
    assert cfg.windows == ("lung",)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg


def test_equal_spellings_equal_hash_and_different_configs_differ():
    a = PreprocessConfig(windows=("BRAIN", [80, 200], "Bone"), mode="WINDOWS",
                         voi_function="linear")
    b = PreprocessConfig(windows=("brain", (80.0, 200.0), "bone"))
    assert a == b and a.config_hash() == b.config_hash()
    hashes = {c.config_hash() for c in CONFIGS}
    assert len(hashes) == len(CONFIGS)
    assert PreprocessConfig(size=225).config_hash() != PreprocessConfig().config_hash()


def test_frozen():
    with pytest.raises(AttributeError):
        PreprocessConfig().size = 10


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="windws"), "Did you mean 'windows'"),
    (dict(resize="padd"), "Did you mean 'pad'"),
    (dict(normalize="imagnet"), "Did you mean 'imagenet'"),
    (dict(windows=("brain",)), "needs 3 window"),
    (dict(windows=("brain", "bone"), mode="2.5d"), "needs 1 window"),
    (dict(size=0), "size"),
    (dict(fov_mm=-3), "fov_mm"),
    (dict(version=99), "version"),
    (dict(augment={"flip_lr": 2}), "probability"),
])
def test_invalid_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PreprocessConfig(**kwargs)


def test_unknown_keys_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'normalize'"):
        PreprocessConfig.from_dict({"normalise": "unit"})
    with pytest.raises(ConfigError, match="Did you mean 'rotate_deg'"):
        PreprocessConfig.from_dict({"augment": {"rotate": 3}})


def test_pipeline_rebuilt_from_dict_gives_same_tensor():
    cfg = CONFIGS[1]
    x = np.random.default_rng(0).normal(-500, 300, (90, 70)).astype(np.float32)
    again = Pipeline(PreprocessConfig.from_dict(cfg.to_dict()))
    np.testing.assert_array_equal(Pipeline(cfg)(x), again(x))
    np.testing.assert_array_equal(Pipeline(cfg)(x, training=True, rng=4),
                                  again(x, training=True, rng=4))
