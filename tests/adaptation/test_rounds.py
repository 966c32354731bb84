"""Adaptation rounds end to end on a synthetic target with a domain shift, and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "lunet_synthetic.py")
SMALL = ["--config.model.name=mobilenet_edge", "--config.model.embedding_dim=32",
         "--config.image_size=(64, 32)", "--config.batch.p=6", "--config.batch.k=4",
         "--config.log_every=10", "--config.precision=float32",
         "--config.final_eval.enabled=True", "--config.losses={'batch_hard': "
         "{'weight': 1.0, 'margin': 'soft'}}"]


def _shifted_copy(src: str, dst: str) -> str:
    """The synthetic set seen by other cameras: a colour cast and a blur on every image."""
    import cv2

    for folder, _, files in os.walk(src):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), src)
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            if not name.endswith(".jpg"):
                with open(os.path.join(folder, name), "rb") as f, \
                        open(os.path.join(dst, rel), "wb") as g:
                    g.write(f.read())
                continue
            img = cv2.imread(os.path.join(folder, name)).astype(np.float32)
            img = cv2.GaussianBlur(img * np.array([0.55, 0.9, 1.35]), (0, 0), 1.2)
            cv2.imwrite(os.path.join(dst, rel), np.clip(img, 0, 255).astype(np.uint8))
    return dst


@pytest.fixture(scope="module")
def source_and_target(tmp_path_factory):
    from kreid.data import synthetic

    base = tmp_path_factory.mktemp("adapt")
    source = str(base / "source_data")
    synthetic.generate(source, num_identities=40, num_cameras=3, seed=0)
    plain = str(base / "target_plain")
    synthetic.generate(plain, num_identities=40, num_cameras=3, seed=7)
    target = _shifted_copy(plain, str(base / "target"))
    run = base / "source_run"
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "train.py"), f"--config={CONFIG}",
         f"--workdir={run}", f"--config.dataset.root={source}", *SMALL,
         "--config.total_steps=150", "--config.schedule.t0=100",
         "--config.schedule.t1=150", "--config.final_eval.enabled=False"],
        env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return str(run / "embedding.keras"), target


def _adapt_cmd(workdir, source, target, *extra):
    return [sys.executable, os.path.join(REPO, "bin", "adapt.py"), f"--config={CONFIG}",
            f"--workdir={workdir}", *SMALL, f"--config.init_from={source}",
            "--config.adapt.target.name=synthetic", f"--config.adapt.target.root={target}",
            "--config.adapt.rounds=2", "--config.adapt.steps=40", "--config.adapt.k1=10",
            "--config.adapt.k2=3", "--config.adapt.base_lr=3.5e-4", "--config.checkpoint_every=10",
            *extra]


def test_adaptation_raises_the_target_accuracy_and_survives_sigkill(source_and_target,
                                                                    tmp_path):
    source, target = source_and_target
    env = {**os.environ, "PYTHONPATH": REPO}
    work = tmp_path / "adapt"
    proc = subprocess.Popen(_adapt_cmd(work, source, target), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = work / "round_02" / "checkpoints"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(n.endswith(".npz") for n in os.listdir(ckpts)):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (work / "round_01" / "round.json").exists(), "killed before round 2 trained"
    assert not (work / "round_02" / "round.json").exists(), "finished before the kill"
    first = (work / "round_01" / "round.json").stat().st_mtime_ns
    labels = (work / "round_02" / "pseudo_labels.csv").read_text()
    done = subprocess.run(_adapt_cmd(work, source, target), env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr                 # round 2's training, mid-way
    assert (work / "round_01" / "round.json").stat().st_mtime_ns == first   # not redone
    assert (work / "round_02" / "pseudo_labels.csv").read_text() == labels
    summary = json.loads((work / "adapt.json").read_text())
    assert summary["model"] == str(work / "round_02" / "embedding.keras")
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        agreement = r["clusters"]["agreement"]             # hidden labels, reported only
        assert r["clusters"]["clusters"] >= 2 and 0 < agreement["purity"] <= 1
    direct, adapted = summary["direct"]["mAP"], rounds[-1]["test"]["mAP"]
    assert adapted > direct + 0.02, (direct, [r["test"] for r in rounds])
    assert "round 2/2 done" in done.stdout and "ETA" in done.stdout


def test_adaptation_config_errors_before_any_file(tmp_path):
    from kreid.adaptation.rounds import adapt
    from kreid.errors import ConfigValueError
    from kreid.training.config import load_config_file

    c = load_config_file(CONFIG)
    with pytest.raises(ConfigValueError, match="config.adapt.target.name"):
        adapt(c, str(tmp_path / "a"))
    c.adapt.target.name = "unlabelled"
    c.adapt.target.root = str(tmp_path)
    with pytest.raises(ConfigValueError, match="config.init_from"):
        adapt(c, str(tmp_path / "a"))
    c.init_from = str(tmp_path / "missing.keras")
    with pytest.raises(ConfigValueError, match="init_from=.*no such file"):
        adapt(c, str(tmp_path / "a"))
    c.init_from = ""
    c.adapt.eps = 1.5
    with pytest.raises(ConfigValueError, match=r"config.adapt.eps=1.5"):
        adapt(c, str(tmp_path / "a"))
    c.adapt.eps, c.adapt.epochs = 0.0, 0.0
    with pytest.raises(ConfigValueError, match=r"config.adapt: epochs or steps"):
        adapt(c, str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
