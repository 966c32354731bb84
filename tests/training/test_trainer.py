"""Schedules, the trainer on the synthetic set, multi-stage runs, and SIGKILL + resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import ml_collections
import numpy as np
import pytest

from kreid.training import schedules
from kreid.data.records import holdout
from kreid.training.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "configs"))
import lunet_synthetic  # noqa: E402


def test_exponential_schedule_eq9_and_beta1_switch():
    c = schedules.ScheduleConfig(kind="exponential", base_lr=3e-4, t0=15000, t1=25000)
    lr = schedules.sample(c, [0, 14999, 15000, 20000, 25000, 30000])
    np.testing.assert_allclose(lr, [3e-4, 3e-4, 3e-4, 3e-4 * 0.001 ** 0.5, 3e-7, 3e-7],
                               rtol=1e-5)
    assert schedules.adam_beta1(c, 14999) == 0.9 and schedules.adam_beta1(c, 15000) == 0.5
    w = schedules.ScheduleConfig(kind="exponential", base_lr=3e-4, t0=100, t1=200,
                                 warmup_steps=40, warmup_from=3e-5)
    lr = schedules.sample(w, [0, 20, 40, 100, 150, 200])
    np.testing.assert_allclose(lr, [3e-5, 3e-5 + 0.5 * (3e-4 - 3e-5), 3e-4, 3e-4,
                                    3e-4 * 0.001 ** 0.5, 3e-7], rtol=1e-5)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.learning_rate(schedules.ScheduleConfig(kind="exponential", t0=5, t1=9,
                                                         warmup_steps=6), 0)
    edge = schedules.ScheduleConfig(kind="exponential", base_lr=1e-3, t0=5, t1=9, warmup_steps=5,
                                    warmup_from=0.0)        # warm-up up to t0 is allowed
    np.testing.assert_allclose(schedules.sample(edge, [0, 4, 5, 9]), [0.0, 8e-4, 1e-3, 1e-6],
                               rtol=1e-5)


def test_bad_schedule_is_refused_before_training(synthetic_root, tmp_path):
    from kreid.errors import ConfigValueError

    c = _config(synthetic_root)
    c.schedule.warmup_steps = 3                      # t0 is 2
    with pytest.raises(ConfigValueError, match=r"^config.schedule: .*warmup_steps"):
        Trainer(c, str(tmp_path / "w"), progress=False)
    c = _config(synthetic_root)
    c.schedule.t1 = 2
    with pytest.raises(ConfigValueError, match=r"^config.schedule: .*t1 > t0"):
        Trainer(c, str(tmp_path / "t"), progress=False)
    c = _config(synthetic_root)         # a stage's own schedule is named as the stage's
    c.stages = [dict(steps=2), dict(steps=2, schedule=dict(kind="step", every=0))]
    with pytest.raises(ConfigValueError, match=r"^config.stages\[1\].schedule: .*every > 0"):
        Trainer(c, str(tmp_path / "s"), progress=False)
    for work in ("w", "t", "s"):        # refused before any file is written
        assert not os.path.exists(tmp_path / work)


def test_warmup_step_and_step_schedules():
    c = schedules.ScheduleConfig(kind="warmup_step", base_lr=1e-3, warmup_steps=20,
                                 warmup_from=1e-5, milestones=[90, 130], gamma=0.1)
    lr = schedules.sample(c, [0, 10, 20, 89, 90, 130])
    np.testing.assert_allclose(lr, [1e-5, 1e-5 + 0.5 * (1e-3 - 1e-5), 1e-3, 1e-3, 1e-4, 1e-5],
                               rtol=1e-5)
    s = schedules.ScheduleConfig(kind="step", base_lr=0.005, every=20, gamma=0.1)
    np.testing.assert_allclose(schedules.sample(s, [0, 19, 20, 45]), [5e-3, 5e-3, 5e-4, 5e-5],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="t1 > t0"):
        schedules.learning_rate(schedules.ScheduleConfig(kind="exponential", t0=5, t1=5), 0)


def _config(root, **over):
    c = lunet_synthetic.get_config()
    c.dataset.root = root
    c.model.name = "mobilenet_edge"
    c.model.embedding_dim = 32
    c.image_size = (64, 32)
    c.batch.p, c.batch.k = 4, 2
    c.total_steps = 4
    c.log_every = 2
    c.checkpoint_every = 2
    c.histogram_every = 2
    c.schedule.t0, c.schedule.t1 = 2, 4
    c.final_eval.enabled = False
    c.precision = "float32"      # the demo's "auto" would make these tests depend on the CPU
    for k, v in over.items():
        setattr(c, k, v)
    return c


def test_holdout_split(synthetic_root):
    from kreid.data import datasets

    ds = datasets.load("synthetic", synthetic_root)
    train, q, g = holdout(ds.train, 3, seed=0)
    assert len({r.pid for r in q}) == 3 and not {r.pid for r in q} & {r.pid for r in train}
    assert sorted({r.label for r in train}) == list(range(ds.num_train_ids - 3))


@pytest.mark.parametrize("losses", [
    {"bnneck_ce": {"weight": 1.0}, "triplet": {"weight": 1.0, "margin": 0.3}},
    {"ntuplet": {"weight": 1.0, "n": 3, "num_tuplets": 4}, "point_to_set": {"weight": 1.0},
     "prototypical": {"weight": 0.5}, "lifted_generalized": {"weight": 0.1, "margin": 1.0}}])
def test_trainer_runs_loss_mixtures(tmp_path, synthetic_root, losses):
    c = _config(synthetic_root, losses=ml_collections.ConfigDict(losses))
    c.validation.holdout_ids, c.validation.every = 3, 4
    Trainer(c, str(tmp_path), progress=False).run()
    lines = [json.loads(x) for x in open(tmp_path / "log.jsonl")]
    assert [x["step"] for x in lines if "loss/total" in x] == [2, 4]
    assert any("val/mAP" in x for x in lines)
    assert all(np.isfinite(x["loss/total"]) for x in lines if "loss/total" in x)
    model = keras.models.load_model(str(tmp_path / "embedding.keras"), safe_mode=True)
    assert model.output.shape == (None, 32)
    sidecar = json.load(open(tmp_path / "embedding.keras.json"))
    assert sidecar["preprocessing"] == "scale" and sidecar["input_size"] == [64, 32]
    assert os.path.isfile(tmp_path / "final.keras")


def test_three_stage_mpn_fixes_the_network_in_stage_two(tmp_path, synthetic_root):
    stages = [{"steps": 2, "losses": {"bnneck_ce": {"weight": 1.0},
                                      "batch_hard": {"weight": 1.0}}},
              {"steps": 2, "losses": {"mpn": {"weight": 1.0}, "bnneck_ce": {"weight": 1.0}},
               "freeze_model": True, "schedule": {"base_lr": 1e-4}},
              {"steps": 2, "losses": {"mpn": {"weight": 1.0}, "batch_hard": {"weight": 1.0},
                                      "bnneck_ce": {"weight": 1.0}}}]
    c = _config(synthetic_root, stages=stages, checkpoint_every=1, keep_checkpoints=10)
    c.schedule.kind = "constant"
    trainer = Trainer(c, str(tmp_path), progress=False)
    backbone = trainer.model.get_layer("backbone")
    before = [w.numpy().copy() for w in backbone.trainable_weights]
    trainer.run()
    assert trainer.step == 6
    from kreid.training import checkpoint
    found = dict(checkpoint.list_checkpoints(str(tmp_path / "checkpoints")))
    assert sorted(found) == [1, 2, 3, 4, 5, 6]
    (m2, g2), (m4, g4) = checkpoint.load(found[2]), checkpoint.load(found[4])
    assert (m2["stage"], m4["stage"]) == (0, 1)              # steps 3-4 are stage 2
    # stage 2, "we fix the network": every model weight, BN statistics included, unchanged
    assert g2["model"].keys() == g4["model"].keys()
    assert all(np.array_equal(g2["model"][k], g4["model"][k]) for k in g2["model"])
    # ... while the meta learner, its temperature and the classifier FC train
    moved = [k for k in g4["heads"] if k in g2["heads"]
             and not np.array_equal(g2["heads"][k], g4["heads"][k])]
    assert any("mpn_head/phi" in k for k in moved) and any("log_tau" in k for k in moved)
    assert any("classifier" in k for k in moved)
    after = [w.numpy() for w in backbone.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))   # stages 1 and 3 train


def _train_cmd(workdir, root, steps=8, every=2):
    return [sys.executable, os.path.join(REPO, "bin", "train.py"),
            f"--config={os.path.join(REPO, 'configs', 'lunet_synthetic.py')}",
            f"--workdir={workdir}", f"--config.dataset.root={root}",
            "--config.model.name=mobilenet_edge", "--config.model.embedding_dim=32",
            "--config.image_size=(64, 32)", "--config.batch.p=4", "--config.batch.k=2",
            f"--config.total_steps={steps}", f"--config.checkpoint_every={every}",
            "--config.log_every=2", "--config.schedule.t0=4", f"--config.schedule.t1={steps}",
            "--config.final_eval.enabled=False", "--config.deterministic=True",
            "--config.precision=float32"]       # not the demo's "auto": the same on any CPU


def test_sigkill_then_resume_reaches_the_same_final_state(tmp_path, synthetic_root):
    env = {**os.environ, "PYTHONPATH": REPO}
    ref = subprocess.run(_train_cmd(tmp_path / "ref", synthetic_root), env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    work = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(work, synthetic_root), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    ckpts = work / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(f.startswith("ckpt-000000004") for f in os.listdir(ckpts)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "embedding.keras").exists()          # really killed before the end
    done = sorted(os.listdir(ckpts))
    assert done and all(f.startswith("ckpt-") for f in done)  # no half-written file left
    resumed = subprocess.run(_train_cmd(work, synthetic_root), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a = keras.models.load_model(str(tmp_path / "ref" / "embedding.keras"))
    b = keras.models.load_model(str(work / "embedding.keras"))
    x = np.random.default_rng(0).random((2, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(a(x), b(x), rtol=1e-4, atol=1e-4)
    steps = [json.loads(x)["step"] for x in open(work / "log.jsonl")]
    assert steps[-1] == 8


@pytest.mark.parametrize("losses", [
    {"triplet": {"weight": 1.0, "margin": 0.5, "mining": "ohm"}},
    {"rptm": {"weight": 1.0, "margin": "soft"}, "bnneck_ce": {"weight": 0.5}}])
def test_trainer_with_offline_miners(tmp_path, synthetic_root, losses):
    c = _config(synthetic_root, losses=ml_collections.ConfigDict(losses))
    c.ohm.every, c.ohm.identities = 2, 6
    c.rptm.workers = 1
    trainer = Trainer(c, str(tmp_path), progress=False)
    trainer.run()
    assert trainer.step == 4
    if "triplet" in losses:
        assert trainer.batch_size == 6 and trainer.sampler.triplets.shape[1] == 3
    else:
        assert any(d.startswith("rptm_") for d in os.listdir(tmp_path / "rptm_cache"))


CONFIGS = ["trinet_market1501", "lunet_market1501", "lunet_mars_table1", "am0bh_market1501",
           "am0bh_attr_market1501", "unicls_mpn_market1501", "rptm_veri776", "lunet_synthetic",
           "cuhk03_labeled_cpu", "cuhk03_am0bh_cpu", "cuhk03_lunet_cpu", "trinet_cuhk03_cpu"]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_paper_config_loads_and_names_its_target(name):
    import importlib

    module = importlib.import_module(name)
    assert "Target" in module.__doc__ and "Table" in module.__doc__ or name in (
        "lunet_synthetic",)
    c = module.get_config()
    from kreid.training.objective import parse_losses
    for stage in (c.stages or [{"losses": c.losses}]):
        assert parse_losses(dict(stage["losses"]))
    from kreid import models
    assert c.model.name in models.names()
    from kreid.data import datasets
    assert c.dataset.name in datasets.names()


def test_table1_grid_cells():
    import lunet_mars_table1 as t1

    # Sec. 3.4: "a validation set of 150 persons ... we do not perform any data augmentation"
    c = t1.get_config()
    assert c.validation.holdout_ids == 150 and tuple(c.image_size) == (64, 32)
    assert not (c.augment.crop or c.augment.flip or c.augment.erasing_prob or c.augment.jitter
                or c.augment.padding)

    assert t1.get_config("batch_all_nonzero-0.5").losses.batch_all.nonzero_average is True
    assert t1.get_config("triplet_ohm-0.2").losses.triplet.mining == "ohm"
    assert t1.get_config("batch_hard-soft").losses.batch_hard.margin == "soft"
    with pytest.raises(ValueError, match="Table 1 loss"):
        t1.get_config("bogus-1")


def test_unknown_model_name_lists_the_registered_ones(synthetic_root, tmp_path):
    from kreid.errors import ConfigValueError

    c = _config(synthetic_root)
    c.model.name = "resnet_edgee"
    with pytest.raises(ConfigValueError, match=r"^config.model.name: unknown model "
                       "'resnet_edgee'; registered: .*resnet_edge"):
        Trainer(c, str(tmp_path), progress=False)


@pytest.mark.parametrize("kwargs, says", [
    ({"head": "bot"}, "head must be 'fc' or 'pool', got 'bot'"),
    ({"last_stride": 3}, "last_stride must be 1 or 2, got 3"),
    ({"heads": "fc"}, "mobilenet_v2 takes no argument heads; its arguments: weights, "
                      "last_stride, head"),
    ({"embedding_dim": 64}, "embedding_dim is its own setting (config.model.embedding_dim)"),
    ({"weights": "imagenet"}, "Keras' MobileNetV2 ImageNet weights pad differently"),
])
def test_bad_model_kwargs_name_the_config_field(synthetic_root, tmp_path, kwargs, says):
    """A model's own argument errors reach the user naming config.model, before training."""
    from kreid.errors import ConfigValueError

    c = _config(synthetic_root)
    c.model.name, c.model.kwargs = "mobilenet_v2", kwargs
    with pytest.raises(ConfigValueError, match=r"^config.model \(name='mobilenet_v2', "
                       r"embedding_dim=32, kwargs=\{.*\}\): .*" + re.escape(says)):
        Trainer(c, str(tmp_path), progress=False)
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_attribute_run_exports_f_id_only(tmp_path, synthetic_root):
    """The embedding a model with attribute heads is tested with is f_id (Sabri et al.)."""
    c = _config(synthetic_root, losses=ml_collections.ConfigDict(
        {"am_softmax": {"weight": 1.0}, "batch_hard": {"weight": 0.33},
         "attributes": {"weight": 0.25, "slice_dim": 2}}))
    c.model.embedding_dim, c.total_steps = 48, 2
    trainer = Trainer(c, str(tmp_path), progress=False)
    trainer.run()
    attr_dim = trainer.reserved_dim
    assert attr_dim == 2 * trainer.num_attributes > 0
    saved = keras.models.load_model(str(tmp_path / "embedding.keras"))
    x = np.random.default_rng(0).random((2, 64, 32, 3)).astype(np.float32)
    full = trainer.model(x, training=False).numpy()
    np.testing.assert_allclose(saved(x).numpy(), full[:, attr_dim:], rtol=1e-5, atol=1e-6)
    side = json.load(open(tmp_path / "embedding.keras.json"))
    assert side["embedding_dim"] == 48 - attr_dim


def test_stream_stops_at_refreshes_ends_and_every_stream_steps(monkeypatch):
    from kreid.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "STREAM_STEPS", 3)
    stop = Trainer._stream_stop
    assert [stop(0, 10, 0), stop(3, 10, 0), stop(9, 10, 0)] == [3, 6, 10]
    assert [stop(0, 10, 4), stop(3, 10, 4), stop(5, 10, 4), stop(8, 10, 4)] == [3, 4, 8, 10]


def test_short_streams_give_the_same_run(tmp_path, synthetic_root, monkeypatch):
    """Streams rebuilt every 3 steps, across offline-mining refreshes every 2, draw the
    batches one stream would: the same losses step by step, and the run reaches its end."""
    from kreid.training import trainer as trainer_module

    def losses_of(work, stream_steps):
        monkeypatch.setattr(trainer_module, "STREAM_STEPS", stream_steps)
        c = _config(synthetic_root, total_steps=7, log_every=1, checkpoint_every=0,
                    histogram_every=0, losses=ml_collections.ConfigDict(
                        {"triplet": {"weight": 1.0, "margin": 0.5, "mining": "ohm"}}))
        c.schedule.t0, c.schedule.t1 = 3, 7
        c.ohm.every, c.ohm.identities = 2, 6
        c.deterministic = True
        trainer = Trainer(c, str(tmp_path / work), progress=False)
        trainer.run()
        assert trainer.step == 7
        return [json.loads(x)["loss/total"] for x in open(tmp_path / work / "log.jsonl")]

    short, long = losses_of("short", 3), losses_of("long", 2000)
    assert len(short) == len(long) == 7
    np.testing.assert_allclose(short, long, rtol=1e-5)


def test_the_beta1_switch_reaches_adams_update():
    """Eq. (9)'s beta1 0.9 -> 0.5 at t0 changes the moment Adam applies inside a compiled
    step, not only the schedule's value: m_t = beta1 m_{t-1} + (1 - beta1) g."""
    import tensorflow as tf

    from kreid.training.plan import OptimizerPlan

    schedule = schedules.ScheduleConfig(kind="exponential", base_lr=1e-3, t0=2, t1=4)
    optimizer = schedules.make_optimizer(OptimizerPlan("adam", 0.0, 0.9, False), schedule)
    w = tf.Variable([1.0, -2.0])
    optimizer.build([w])
    beta1 = schedules.beta1_variable(optimizer, schedule)

    @tf.function
    def step(g):
        optimizer.apply_gradients([(g, w)])

    g, m = np.array([0.5, -1.0], np.float32), np.zeros(2)
    for t in range(4):
        beta1.assign(schedules.adam_beta1(schedule, t))       # as the trainer does
        step(tf.constant(g))
        b = 0.5 if t >= 2 else 0.9
        m = b * m + (1 - b) * g
        moment = next(v for v in optimizer.variables if "momentum" in v.path)
        np.testing.assert_allclose(moment.numpy(), m, rtol=1e-6)
        g = g * 2.0
    assert float(beta1.numpy()) == 0.5


def test_init_from_starts_a_run_from_a_saved_model(synthetic_root, tmp_path):
    from kreid.errors import ConfigValueError

    source = Trainer(_config(synthetic_root, seed=1), str(tmp_path / "src"), progress=False)
    path = str(tmp_path / "src.keras")
    source.model.save(path)
    started = Trainer(_config(synthetic_root, seed=2, init_from=path), str(tmp_path / "dst"),
                      progress=False)
    fresh = Trainer(_config(synthetic_root, seed=2), str(tmp_path / "fresh"), progress=False)
    for a, b, c in zip(source.model.weights, started.model.weights, fresh.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(c))
               for a, c in zip(source.model.weights, fresh.model.weights))
    wider = _config(synthetic_root, init_from=path)
    wider.model.embedding_dim = 48
    with pytest.raises(ConfigValueError, match=r"config.init_from=.*src.keras.*shape"):
        Trainer(wider, str(tmp_path / "w"), progress=False)
    with pytest.raises(ConfigValueError, match="init_from=.*no such file"):
        Trainer(_config(synthetic_root, init_from=str(tmp_path / "none.keras")),
                str(tmp_path / "n"), progress=False)
