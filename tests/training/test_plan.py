"""The run plan: a config resolved once into typed objects, every default from base_config,
every wrong key, type or combination refused before a file is written (#25)."""

import os

import ml_collections
import pytest

from kreid.errors import ConfigError, ConfigTypeError, ConfigValueError
from kreid.training import plan as plan_
from kreid.training.config import base_config


def _resolve(**over):
    c = base_config()
    for key, value in over.items():
        node = c
        *path, last = key.split("__")
        for k in path:
            node = node[k]
        node[last] = value
    return plan_.resolve(c)


def test_defaults_come_from_base_config_alone():
    """The call sites used to say log_every 50, checkpoint_every 500, rptm.workers = CPUs,
    where base_config says 100, 1000, 2: the plan carries base_config's."""
    p = plan_.resolve(base_config())
    assert (p.log_every, p.checkpoint_every, p.rptm.workers) == (100, 1000, 2)
    # a bare dict with one key is read over base_config: every other value is its default
    bare = plan_.resolve({"seed": 3})
    assert bare.seed == 3 and bare.validation.split_seed == 3     # -1 means config.seed
    assert bare.log_every == 100 and bare.batch == plan_.BatchPlan(32, 4, "replicate", False)
    assert bare.stages[0].steps == 25000 and bare.stages[0].schedule.t0 == 15000
    assert [t.name for t in bare.stages[0].terms] == ["batch_hard"] and bare.sampler == "pk"
    # a config that replaces a whole group keeps the defaults of the keys it leaves out
    assert plan_.resolve({"optimizer": {"name": "adadelta"}}).optimizer.name == "adadelta"
    partial = plan_.resolve({"optimizer": {"name": "sgd"}, "schedule": {"kind": "constant"}})
    assert partial.optimizer == plan_.OptimizerPlan("sgd", 0.0, 0.9, False)
    assert partial.stages[0].schedule.base_lr == 1e-3 and partial.stages[0].schedule.gamma == 0.1


def test_the_plan_is_frozen():
    p = plan_.resolve(base_config())
    with pytest.raises(AttributeError):
        p.log_every = 3
    with pytest.raises(AttributeError):
        p.batch.p = 3


@pytest.mark.parametrize("config,error,says", [
    ({"log_evry": 3}, ConfigError, r"config.log_evry: unknown key; valid keys: .*log_every"),
    ({"batch": {"q": 3}}, ConfigError, r"config.batch.q: unknown key; valid keys of "
                                       r"config.batch: camera_balanced, k, p, short"),
    ({"schedule": {"t2": 3}}, ConfigError, r"config.schedule.t2: unknown key"),
    ({"stages": [{"steps": 2, "lossses": {}}]}, ConfigError,
     r"config.stages\[0\].lossses: unknown key"),
    ({"batch": {"p": "8"}}, ConfigTypeError, r"config.batch.p='8': expected an integer"),
    ({"augment": {"flip": 1}}, ConfigTypeError, r"config.augment.flip=1: expected true or"),
    ({"image_size": 64}, ConfigTypeError, r"config.image_size=64: expected \(height, width\)"),
    ({"batch": 4}, ConfigTypeError, r"config.batch=4: expected a dict of camera_balanced"),
    ({"precision": "float16"}, ConfigValueError, r"config.precision='float16': choose one of "
                                                 r"float32, mixed_bfloat16, auto"),
    ({"final_eval": {"tta": "ten"}}, ConfigValueError, r"config.final_eval.tta='ten'"),
    ({"rptm": {"mode": "median"}}, ConfigValueError, r"config.rptm.mode='median'"),
    ({"batch": {"k": 0}}, ConfigValueError, r"config.batch.k=0: must be at least 1"),
    ({"dataset": {"name": "market"}}, ConfigValueError, r"config.dataset.name='market': "
                                                        r"choose one of .*market1501"),
    ({"model": {"name": "lunett"}}, ConfigValueError, r"config.model.name: unknown model "
                                                      r"'lunett'; registered: .*lunet"),
    ({"augment": {"erasing_prob": 1.5}}, ConfigValueError, r"erasing_prob=1.5: a probability"),
    ({"total_steps": 0}, ConfigValueError, r"config.total_steps: set it \(or config.epochs\)"),
    ({"schedule": {"base_lr": float("nan")}}, ConfigTypeError, r"base_lr=nan: expected a finite"),
    ({"batch": {"p": float("inf")}}, ConfigTypeError, r"config.batch.p=inf: expected an integer"),
    ({"losses": ["batch_hard"]}, ConfigTypeError, r"config.losses=\['batch_hard'\]: expected a "
                                                  r"dict of terms"),
    ({"stages": [{"steps": 2, "losses": {"mpn": {"x": 1}}}]}, ConfigError,
     r"config.stages\[0\].losses.mpn.x: unknown option"),
    ({"losses": {"batch_hard": {"weight": 0.0}}}, ConfigValueError,
     r"config.losses: every term has weight 0"),
])
def test_wrong_keys_types_and_values_are_named(config, error, says):
    with pytest.raises(error, match=says):
        plan_.resolve(config)


def test_impossible_combinations_are_refused():
    # an N-tuplet needs N identities per batch (the term's own check)
    with pytest.raises(ConfigValueError, match=r"config.losses.ntuplet.n=16: an N-tuplet needs "
                                               r"N identities in the batch, config.batch.p is 8"):
        plan_.resolve({"batch": {"p": 8}, "losses": {"ntuplet": {"n": 16}}})
    # one run has one sampler: OHM in one stage, RPTM in another
    with pytest.raises(ConfigValueError, match=r"need different batch samplers \(ohm, rptm\)"):
        plan_.resolve({"stages": [
            {"steps": 2, "losses": {"triplet": {"mining": "ohm"}}},
            {"steps": 2, "losses": {"rptm": {}}}]})
    with pytest.raises(ConfigValueError, match=r"config.stages\[1\].schedule: .*t1 > t0"):
        plan_.resolve({"stages": [{"steps": 2}, {"steps": 2, "schedule": {"t0": 5, "t1": 5}}]})
    with pytest.raises(ConfigValueError, match="every stage has 0 steps"):
        plan_.resolve({"stages": [{"steps": 0}]})
    with pytest.raises(ConfigValueError, match=r"config.stages\[0\].steps: missing"):
        plan_.resolve({"stages": [{"losses": {"batch_hard": {}}}]})
    with pytest.raises(ConfigValueError, match=r"P x K = 2 gives none"):
        plan_.resolve({"batch": {"p": 1, "k": 2}, "losses": {"triplet": {"mining": "random"}}})
    with pytest.raises(ConfigValueError, match="attributes and test_reserving both reserve"):
        from kreid.training import terms

        @terms.register
        class Reserving(terms.Term):
            name = "test_reserving"

            def reserved_dims(self, num_attributes):
                return 2
        try:
            plan_.resolve({"losses": {"attributes": {}, "test_reserving": {}}})
        finally:
            del terms.TERMS["test_reserving"]


def test_values_the_old_config_reading_took():
    """0 checkpoints kept means all of them; "" is the default strategy; epochs may be
    fractional (floored once in steps, as before)."""
    assert plan_.resolve({"keep_checkpoints": 0}).keep_checkpoints == 0
    assert plan_.resolve({"distribution": {"strategy": ""}}).distribution.strategy == "default"
    p = plan_.resolve({"stage_unit": "epoch", "stages": [{"steps": 1.5}],
                       "schedule": {"kind": "step", "every": 0.5, "unit": "epoch"}})
    assert p.stages[0].num_steps(7) == 10 and p.stages[0].schedule_in_steps(7).every == 3


def test_resolving_does_not_start_tensorflow(tmp_path):
    """bin/train.py resolves its config before it sets up devices (--logical_cpus) and
    strategies (multi_worker), which must come before TensorFlow's runtime starts."""
    import subprocess
    import sys

    code = ("import tensorflow as tf\n"
            "from kreid.training import plan\n"
            "from kreid.training.config import load_config_file\n"
            "import glob\n"
            "for f in sorted(glob.glob('configs/*.py')): plan.resolve(load_config_file(f))\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, "
            "[tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "print(len(tf.config.list_logical_devices('CPU')))\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("2"), out.stderr[-2000:]


def test_stages_terms_and_epoch_units():
    p = plan_.resolve({"total_steps": 0, "epochs": 3,
                       "schedule": {"kind": "step", "every": 2, "unit": "epoch"}})
    (stage,) = p.stages
    assert stage.unit == "epoch" and stage.num_steps(10) == 30
    assert stage.schedule_in_steps(10).every == 20 and stage.schedule.every == 2
    p = plan_.resolve({"stage_unit": "epoch", "stages": [
        {"steps": 2, "losses": {"bnneck_ce": {}, "prototypical": {}}},
        {"steps": 1, "freeze_model": True, "losses": {"mpn": {}},
         "schedule": {"kind": "constant", "base_lr": 1e-4}}]})
    assert [s.num_steps(7) for s in p.stages] == [14, 7]
    assert [t.name for t in p.stages[0].terms] == ["bnneck_ce", "prototypical"]
    assert p.stages[1].freeze_model and not p.stages[0].freeze_model
    assert p.stages[1].schedule.kind == "constant" and p.stages[1].schedule.base_lr == 1e-4
    assert p.stages[0].schedule.kind == "exponential"         # the config's own
    assert [t.name for t in p.terms] == ["bnneck_ce", "prototypical", "mpn"]
    # a term's sampler becomes the run's
    assert plan_.resolve({"losses": {"triplet": {"mining": "random"}}}).sampler == \
        "random_triplets"


def test_every_shipped_config_resolves():
    import glob

    from kreid.training.config import load_config_file

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = sorted(glob.glob(os.path.join(repo, "configs", "*.py")))
    assert len(files) >= 10
    for path in files:
        p = plan_.resolve(load_config_file(path))
        assert p.stages and all(s.terms for s in p.stages), path


def test_a_bad_config_writes_nothing(synthetic_root, tmp_path):
    """The trainer resolves its config before creating its workdir."""
    from kreid.training.trainer import Trainer

    c = base_config()
    c.dataset.root = synthetic_root
    c.losses = ml_collections.ConfigDict({"batch_hard": {"margin": "hard"}})
    with pytest.raises(ConfigTypeError, match="batch_hard.margin='hard'"):
        Trainer(c, str(tmp_path / "run"), progress=False)
    assert not os.path.exists(tmp_path / "run")
