"""config.precision: mixed bfloat16 training, float32 artifacts, checkpoints shared with float32."""

import os
import sys

import keras
import numpy as np
import pytest

from kreid.training import precision
from kreid.training.trainer import Trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer import _config  # noqa: E402


def test_unknown_precision_names_the_field():
    with pytest.raises(ValueError, match="config.precision must be one of float32, "
                                         "mixed_bfloat16, auto, got 'mixed_float16'"):
        precision.validate("mixed_float16")


def test_auto_picks_bfloat16_only_on_native_hardware(monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: "CPU avx512_bf16")
    assert precision.resolve("auto") == "mixed_bfloat16"
    with precision.policy("auto"):
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: None)
    assert precision.resolve("auto") == "float32"
    with precision.policy("auto"):
        assert keras.layers.Dense(2).compute_dtype == "float32"
    assert precision.resolve("float32") == "float32"
    assert precision.resolve("mixed_bfloat16") == "mixed_bfloat16"    # asked for: kept


def test_policy_is_restored_and_applies_only_inside():
    before = keras.mixed_precision.dtype_policy().name
    with precision.policy("mixed_bfloat16"):
        inside = keras.layers.Dense(2)
    outside = keras.layers.Dense(2)
    assert inside.compute_dtype == "bfloat16" and inside.variable_dtype == "float32"
    assert outside.compute_dtype == "float32"
    assert keras.mixed_precision.dtype_policy().name == before
    with pytest.raises(RuntimeError):
        with precision.policy("mixed_bfloat16"):
            raise RuntimeError("boom")
    assert keras.mixed_precision.dtype_policy().name == before


def test_a_gpu_decides_alone(monkeypatch):
    """With a GPU visible, a bfloat16 CPU does not make "auto" choose bfloat16."""
    import collections

    import tensorflow as tf

    gpu = collections.namedtuple("Device", "name device_type")("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [gpu] if kind == "GPU" else [])
    for capability, native in (((7, 0), False), ((8, 0), True)):
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda d, c=capability: {"compute_capability": c})
        assert (precision.native_bfloat16() is not None) == native
        assert precision.resolve("auto") == ("mixed_bfloat16" if native else "float32")


def test_auto_trains_in_what_it_resolves_to_and_records_it(tmp_path, synthetic_root,
                                                            monkeypatch):
    import json

    for found, expected in (("CPU avx512_bf16", "mixed_bfloat16"), (None, "float32")):
        monkeypatch.setattr(precision, "native_bfloat16", lambda found=found: found)
        work = tmp_path / expected
        trainer = Trainer(_config(synthetic_root, precision="auto", total_steps=2), str(work),
                          progress=False)
        assert trainer.precision == expected
        assert {layer.compute_dtype for layer in trainer.model._flatten_layers()
                if layer.weights} == {"bfloat16" if found else "float32"}
        trainer.run()
        record = json.load(open(work / "config.json"))
        assert record["precision"] == "auto" and record["precision_resolved"] == expected
        assert json.load(open(work / "embedding.keras.json"))["trained_precision"] == expected


def test_bfloat16_run_trains_and_saves_a_float32_model(tmp_path, synthetic_root):
    c = _config(synthetic_root, precision="mixed_bfloat16")
    trainer = Trainer(c, str(tmp_path / "bf16"), progress=False)
    bf16 = trainer.model
    assert {layer.compute_dtype for layer in bf16._flatten_layers()
            if layer.weights} == {"bfloat16"}
    initial = [w.copy() for w in bf16.get_weights()]
    trainer.run()
    loaded = keras.models.load_model(str(tmp_path / "bf16" / "embedding.keras"), safe_mode=True)
    assert {layer.compute_dtype for layer in loaded._flatten_layers()} == {"float32"}
    # the saved float32 model holds exactly the trained weights (not the initial ones),
    # and the bfloat16 model's forward pass agrees with it to bfloat16's precision
    trained = bf16.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(initial, trained))
    assert len(loaded.get_weights()) == len(trained)
    for a, b in zip(loaded.get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).uniform(0, 1, (4, 64, 32, 3)).astype(np.float32)
    ours = loaded(images, training=False).numpy()
    theirs = np.asarray(bf16(images, training=False), np.float32)
    assert ours.dtype == np.float32 and np.isfinite(ours).all()
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() > 0.99
    assert trainer.embedder()(images).dtype == np.float32


def test_bfloat16_checkpoint_resumes_in_float32(tmp_path, synthetic_root):
    work = str(tmp_path / "run")
    c = _config(synthetic_root, precision="mixed_bfloat16", total_steps=2)
    c.schedule.t0, c.schedule.t1 = 1, 2
    Trainer(c, work, progress=False).run()
    resumed = Trainer(_config(synthetic_root, total_steps=4), work, progress=False)
    assert resumed.step == 2
    assert {layer.compute_dtype for layer in resumed.model._flatten_layers()} == {"float32"}
    resumed.run()
    assert resumed.step == 4


@pytest.mark.parametrize("name", ["lunet", "mobilenet_v2", "resnet_edge", "trinet"])
def test_float32_copy_of_every_architecture(name):
    from kreid import models

    with precision.policy("mixed_bfloat16"):
        model = models.build(name, (64, 32, 3), 16)
    copy = precision.float32_copy(model)
    assert {layer.compute_dtype for layer in copy._flatten_layers()} == {"float32"}
    assert [w.path for w in copy.weights] == [w.path for w in model.weights]
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert copy.get_layer("backbone") is not None      # freeze_backbone still finds it
    out = copy(np.zeros((1, 64, 32, 3), np.float32), training=False)
    assert out.dtype == "float32" and np.isfinite(np.asarray(out)).all()
    assert precision.float32_copy(copy) is copy


def test_trainer_refuses_an_unknown_precision_before_any_work(tmp_path, synthetic_root):
    from kreid.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="config.precision='float16': choose one of "
                                               "float32, mixed_bfloat16, auto"):
        Trainer(_config(synthetic_root, precision="float16"), str(tmp_path / "w"),
                progress=False)
    assert not (tmp_path / "w").exists()


def test_resume_that_resolves_auto_otherwise_warns(tmp_path, synthetic_root, monkeypatch,
                                                    caplog):
    """Started where "auto" meant float32, resumed where it means bfloat16: it goes on
    (checkpoints are float32), says that the later steps train in bfloat16 and records
    both parts."""
    import json
    import logging

    work = str(tmp_path / "run")
    monkeypatch.setattr(precision, "native_bfloat16", lambda: None)
    Trainer(_config(synthetic_root, precision="auto", total_steps=2), work,
            progress=False).run()
    monkeypatch.setattr(precision, "native_bfloat16", lambda: "CPU avx512_bf16")
    with caplog.at_level(logging.WARNING, logger="kreid.training.trainer"):
        trainer = Trainer(_config(synthetic_root, precision="auto", total_steps=4), work,
                          progress=False)
    assert trainer.step == 2 and trainer.precision == "mixed_bfloat16"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("resolved to mixed_bfloat16 here, but to float32 for the steps from 0 on" in m
               and "the steps from 2 on train in mixed_bfloat16" in m for m in warned), warned
    trainer.run()
    record = json.load(open(os.path.join(work, "config.json")))
    assert record["precision_history"] == [{"from_step": 0, "precision": "float32"},
                                           {"from_step": 2, "precision": "mixed_bfloat16"}]
    assert record["precision_resolved"] == "mixed_bfloat16"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kreid.training.trainer"):
        Trainer(_config(synthetic_root, precision="auto", total_steps=4), str(tmp_path / "new"),
                progress=False)
    assert not [r for r in caplog.records if "resolved to" in r.getMessage()]
