"""The quantization-aware stage (config.qat.steps, #27): appended to a finished run it
runs alone, it is checkpointed and resumes after SIGKILL to the same weights, and it
stops on non-finite values like every stage."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from kreid.training.trainer import Trainer
from tests.training.test_trainer import REPO, _config, _train_cmd


def _qat_config(root, total=4, qat_steps=2):
    c = _config(root, total_steps=total, checkpoint_every=2, log_every=1)
    c.model.name = "lunet"
    c.qat.steps, c.qat.calibration_images = qat_steps, 16
    return c


def _fingerprint(path):
    return json.load(open(path + ".json"))["fingerprint"]


def test_qat_steps_added_to_a_finished_run_run_only_the_new_stage(tmp_path, synthetic_root):
    from kreid.models import load_model, qat
    from kreid.training import checkpoint

    work = str(tmp_path / "run")
    float_run = _qat_config(synthetic_root, qat_steps=0)
    Trainer(float_run, work, progress=False).run()
    before = _fingerprint(os.path.join(work, "embedding.keras"))
    result = Trainer(_qat_config(synthetic_root), work, progress=False).run()
    steps = [json.loads(x)["step"] for x in open(os.path.join(work, "log.jsonl"))]
    assert steps == [1, 2, 3, 4, 5, 6]                 # 5 and 6: the new stage only
    assert result.step == 6 and result.qat_path == os.path.join(work, "embedding.qat.keras")
    # the float model the QAT one is compared with is the float run's, untouched
    assert _fingerprint(os.path.join(work, "embedding.keras")) == before
    meta = json.load(open(result.qat_path + ".json"))
    assert meta["qat"]["steps"] == 2 and meta["step"] == 6
    model = load_model(result.qat_path)
    assert qat.is_qat(model) and meta["qat"]["ranges"] == len(qat.quantizers(model))
    _, groups = checkpoint.load(checkpoint.list_checkpoints(os.path.join(work, "checkpoints"))
                                [-1][1])
    assert len(groups["qat"]) == 2 * meta["qat"]["ranges"]
    # once more: nothing to train, nothing of the float model rewritten
    again = Trainer(_qat_config(synthetic_root), work, progress=False).run()
    assert again.step == 6 and _fingerprint(os.path.join(work, "embedding.keras")) == before
    assert _fingerprint(again.qat_path) == meta["fingerprint"]


def test_the_qat_stage_stops_on_non_finite_ranges(tmp_path, synthetic_root, monkeypatch):
    from kreid.errors import NonFiniteError
    from kreid.training import qat_stage

    start = qat_stage.QATStage.start

    def poisoned(self, *args, **kwargs):
        start(self, *args, **kwargs)
        self.quantizers[0].hi.assign(float("nan"))

    monkeypatch.setattr(qat_stage.QATStage, "start", poisoned)
    with pytest.raises(NonFiniteError, match="step 5: non-finite"):
        Trainer(_qat_config(synthetic_root), str(tmp_path), progress=False).run()
    assert not any("000000005" in f for f in os.listdir(tmp_path / "checkpoints"))


def test_sigkill_in_the_qat_stage_then_resume_reaches_the_same_weights(tmp_path,
                                                                       synthetic_root):
    from kreid.models import load_model

    extra = ["--config.model.name=lunet", "--config.qat.steps=4",
             "--config.qat.calibration_images=16", "--config.schedule.t0=2"]
    env = {**os.environ, "PYTHONPATH": REPO}

    def cmd(work):
        return [a for a in _train_cmd(work, synthetic_root, steps=4)
                if "model.name" not in a and "schedule.t0" not in a] + extra

    ref = subprocess.run(cmd(tmp_path / "ref"), env=env, capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    work = tmp_path / "killed"
    proc = subprocess.Popen(cmd(work), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, ckpts = time.time() + 600, work / "checkpoints"
    while time.time() < deadline and proc.poll() is None:      # killed inside the QAT stage
        if ckpts.is_dir() and any(f.startswith("ckpt-000000006") for f in os.listdir(ckpts)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "embedding.qat.keras").exists() and (work / "embedding.keras").exists()
    resumed = subprocess.run(cmd(work), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    x = np.random.default_rng(0).random((2, 64, 32, 3)).astype(np.float32)
    for name in ("embedding.keras", "embedding.qat.keras"):
        a, b = load_model(str(tmp_path / "ref" / name)), load_model(str(work / name))
        np.testing.assert_allclose(a(x), b(x), rtol=1e-4, atol=1e-4, err_msg=name)
    steps = [json.loads(x)["step"] for x in open(work / "log.jsonl")]
    assert steps[-1] == 8
