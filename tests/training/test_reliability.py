"""Training never writes or resumes NaN, names corrupt images, survives a full disk,
logs each step once after a resume, and names unknown config keys (#12.3, 4, 7)."""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kreid.data import synthetic
from kreid.errors import ImageReadError, NonFiniteError
from kreid.training import checkpoint
from kreid.training.config import base_config, unknown_override
from kreid.training.trainer import Trainer
from kreid_edge.files import WriteError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(root, **over):
    c = base_config()
    c.dataset.root = root
    c.model.name, c.model.embedding_dim, c.image_size = "mobilenet_edge", 16, (64, 32)
    c.batch.p, c.batch.k = 4, 2
    c.total_steps, c.log_every, c.checkpoint_every, c.histogram_every = 4, 1, 2, 100
    c.schedule = dict(kind="constant", base_lr=1e-3)
    c.final_eval.enabled = False
    for k, v in over.items():
        setattr(c, k, v)
    return c


def _poison(variable):
    variable.assign(np.full(variable.shape, np.nan, np.float32))


def test_nan_model_output_stops_at_step_one(tmp_path, synthetic_root):
    trainer = Trainer(_config(synthetic_root), str(tmp_path), progress=False)
    _poison(trainer.model.weights[0])
    with pytest.raises(NonFiniteError, match=r"step 1: .*embeddings.*gradients of \d+ var"):
        trainer.run()
    assert not checkpoint.list_checkpoints(str(tmp_path / "checkpoints"))


def test_nan_loss_term_is_named(tmp_path, synthetic_root):
    import ml_collections

    c = _config(synthetic_root, losses=ml_collections.ConfigDict(
        {"am_softmax": {"weight": 1.0}, "batch_hard": {"weight": 1.0}}))
    trainer = Trainer(c, str(tmp_path), progress=False)
    _poison(trainer.heads["am_softmax"].weights[0])
    with pytest.raises(NonFiniteError, match=r"step 1: .*loss terms .*am_softmax") as err:
        trainer.run()
    assert "batch_hard" not in str(err.value).split("gradients")[0]


def test_diverging_run_never_writes_a_non_finite_checkpoint(tmp_path, synthetic_root):
    c = _config(synthetic_root, total_steps=8, checkpoint_every=1)
    c.schedule.base_lr = 1e30
    with pytest.raises(NonFiniteError, match="step"):
        Trainer(c, str(tmp_path), progress=False).run()
    for _, path in checkpoint.list_checkpoints(str(tmp_path / "checkpoints")):
        checkpoint.load(path)                      # every checkpoint left is finite


def test_resume_refuses_a_non_finite_checkpoint(tmp_path, synthetic_root):
    c = _config(synthetic_root, total_steps=2)
    Trainer(c, str(tmp_path), progress=False).run()
    (_, path), = checkpoint.list_checkpoints(str(tmp_path / "checkpoints"))
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    key = sorted(k for k in arrays if k.startswith("model/"))[3]
    arrays[key] = arrays[key] * np.nan
    np.savez(path, **arrays)                       # corrupted behind kreid's back
    c.total_steps = 4
    with pytest.raises(NonFiniteError, match=os.path.basename(path)):
        Trainer(c, str(tmp_path), progress=False)


def test_checkpoint_save_refuses_nan_and_full_disk_leaves_no_temp(tmp_path, monkeypatch):
    with pytest.raises(NonFiniteError, match="step 3"):
        checkpoint.save(str(tmp_path), 3, {"model": [np.array([1.0, np.nan])]}, {})
    assert os.listdir(tmp_path) == []

    def full_disk(f, **arrays):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    with pytest.raises(WriteError, match=r"ckpt-000000005\.npz.*No space left"):
        checkpoint.save(str(tmp_path), 5, {"model": [np.ones(3)]}, {})
    assert os.listdir(tmp_path) == []              # no .tmp-* left behind


def test_truncated_training_jpeg_is_named(tmp_path):
    root = str(tmp_path / "syn")
    synthetic.generate(root, num_identities=4, num_cameras=2, seed=0, images_per_camera=(2, 2))
    train = os.path.join(root, "bounding_box_train")
    victim = sorted(os.listdir(train))[0]
    data = open(os.path.join(train, victim), "rb").read()
    with open(os.path.join(train, victim), "wb") as f:
        f.write(data[:len(data) // 2])
    c = _config(root, total_steps=2)
    c.batch.p, c.batch.k = 2, 4                   # both training identities, all images
    with pytest.raises(ImageReadError, match=victim) as err:
        Trainer(c, str(tmp_path / "run"), progress=False).run()
    assert "skip_corrupt" in str(err.value)


def test_log_has_each_step_once_after_resume(tmp_path, synthetic_root):
    c = _config(synthetic_root)
    Trainer(c, str(tmp_path), progress=False).run()
    # the run is killed after logging step 4 but before its checkpoint landed
    newest = checkpoint.list_checkpoints(str(tmp_path / "checkpoints"))[-1][1]
    os.remove(newest)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 4, "loss/tot')           # a line cut by the kill
    Trainer(c, str(tmp_path), progress=False).run()
    steps = [json.loads(x)["step"] for x in open(tmp_path / "log.jsonl")]
    assert steps == [1, 2, 3, 4]


def test_unknown_config_key_is_named_with_the_valid_ones(tmp_path):
    c = base_config()
    assert unknown_override(c, ["--config.batch.p=3", "--workdir=x"]) is None
    msg = unknown_override(c, ["--config.batch.q=3"])
    assert "'q'" in msg and "config.batch" in msg and "camera_balanced, k, p, short" in msg
    assert "'nope'" in unknown_override(c, ["--config.nope=1"])
    out = subprocess.run([sys.executable, "bin/train.py", "--config=configs/lunet_synthetic.py",
                          f"--workdir={tmp_path}", "--config.batch.q=3"], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 2
    assert "unknown key 'q' in config.batch" in out.stderr
    assert "Traceback" not in out.stderr
    assert not os.listdir(tmp_path)


def test_default_synthetic_dataset_refuses_a_real_dataset_folder(tmp_path):
    from kreid.errors import ForeignDataError
    from tests.conftest import write_image

    market = tmp_path / "Market-1501"
    img = write_image(str(market / "bounding_box_train" / "0002_c1s1_000451_03.jpg"))
    with pytest.raises(ForeignDataError, match="0002_c1s1_000451_03.jpg"):
        Trainer(_config(str(market)), str(tmp_path / "run"), progress=False)
    assert os.path.isfile(img)
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


# ---------------------------------------------------------------- checkpoint keys (#15.5)
class _Var:
    def __init__(self, path, value):
        self.path, self.value = path, np.asarray(value, np.float32)
        self.shape = self.value.shape

    def numpy(self):
        return self.value

    def assign(self, value):
        self.value = np.asarray(value)


def test_checkpoints_load_by_variable_path_not_position(tmp_path):
    a, b = _Var("net/conv/kernel", [1.0, 2.0]), _Var("net/dense/kernel", [3.0, 4.0])
    path = checkpoint.save(str(tmp_path), 1, {"model": [a, b]}, {"stage": 0})
    _, groups = checkpoint.load(path)
    assert sorted(groups["model"]) == ["net/conv/kernel", "net/dense/kernel"]
    fresh = [_Var("net/dense/kernel", [0, 0]), _Var("net/conv/kernel", [0, 0])]   # reordered
    checkpoint.assign(fresh, groups["model"], "model")
    assert fresh[0].value.tolist() == [3, 4] and fresh[1].value.tolist() == [1, 2]
    renamed = [_Var("net/conv/kernel", [0, 0]), _Var("net/other/kernel", [0, 0])]
    with pytest.raises(ValueError, match=r"net/other/kernel.*net/dense/kernel"):
        checkpoint.assign(renamed, groups["model"], "model")


def test_positional_checkpoint_of_earlier_versions_still_loads(tmp_path):
    path = str(tmp_path / "ckpt-000000004.npz")
    np.savez(path, __meta__=np.array(json.dumps({"step": 4, "stage": 0})),
             **{"model/00000": np.ones(2, np.float32), "model/00001": np.zeros(3, np.float32)})
    meta, groups = checkpoint.load(path)
    vs = [_Var("a", [5, 5]), _Var("b", [5, 5, 5])]
    checkpoint.assign(vs, groups["model"], "model")
    assert vs[0].value.tolist() == [1, 1] and vs[1].value.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        checkpoint.assign([_Var("a", [5, 5, 5]), _Var("b", [5, 5])], groups["model"], "model")
