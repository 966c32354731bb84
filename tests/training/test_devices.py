"""The TensorFlow build comes with an extra ([cpu] by default, [gpu] with CUDA); a GPU the
system shows but TensorFlow does not is named with the way out (#26). There is no GPU
on the machines this runs on: the metadata and the message are what is tested."""

import os
import tomllib

import pytest

from kreid.training import devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _extras():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    return project["dependencies"], project["optional-dependencies"]


def test_the_tensorflow_build_is_an_extra_and_make_chooses_it():
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    base, extras = _extras()
    assert not any(Requirement(r).name.startswith("tensorflow") for r in base)
    linux_x86 = {"platform_machine": "x86_64", "sys_platform": "linux"}
    linux_arm = {"platform_machine": "aarch64", "sys_platform": "linux"}

    def chosen(extra, env):
        reqs = [Requirement(r) for r in extras[extra]]
        return [(r.name, r.extras, str(r.specifier)) for r in reqs
                if r.marker is None or Marker(str(r.marker)).evaluate(env)]

    assert chosen("cpu", linux_x86) == [("tensorflow-cpu", set(), "==2.21.*")]
    assert chosen("cpu", linux_arm) == [("tensorflow", set(), "==2.21.*")]
    assert chosen("gpu", linux_x86) == [("tensorflow", {"and-cuda"}, "==2.21.*")]
    assert chosen("gpu", linux_arm) == []
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "TF     ?= cpu" in makefile and '-e ".[$(TF),test,export]"' in makefile


def test_a_gpu_tensorflow_cannot_see_is_named_with_the_way_out(tmp_path, monkeypatch):
    info = tmp_path / "0000:00:1e.0" / "information"
    info.parent.mkdir()
    info.write_text("Model: \t\t NVIDIA A10G\nIRQ: 36\n")
    system = devices.system_gpus(str(tmp_path))
    assert system == ["NVIDIA A10G"]
    message = devices.gpu_warning(system, [])
    assert "1 GPU(s) on this machine (NVIDIA A10G) but TensorFlow sees none" in message
    assert "the CPU build (tensorflow-cpu) is installed" in message      # this venv's
    assert "make install TF=gpu" in message and '".[gpu]"' in message
    assert devices.gpu_warning(system, ["NVIDIA A10G"]) is None          # seen: no warning
    assert devices.gpu_warning([], []) is None                           # no GPU at all
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    assert devices.system_gpus(str(tmp_path / "none")) == []


def test_training_says_where_it_runs(synthetic_root, tmp_path, capsys, monkeypatch):
    from kreid.training.config import base_config
    from kreid.training.trainer import train

    c = base_config()
    c.dataset.root = synthetic_root
    c.model.name, c.model.embedding_dim, c.image_size = "mobilenet_edge", 16, (64, 32)
    c.batch.p, c.batch.k = 4, 2
    c.total_steps, c.log_every, c.checkpoint_every = 1, 1, 0
    c.final_eval.enabled = False
    monkeypatch.setattr(devices, "system_gpus", lambda: ["NVIDIA T4"])
    train(c, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "training on: CPU, " in out and "cores)" in out
    assert "warning: 1 GPU(s) on this machine (NVIDIA T4) but TensorFlow sees none" in out


@pytest.mark.parametrize("text,labels", [
    ("model name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2 fma avx512f avx512_vnni amx_tile\n",
     ["AVX2", "FMA", "AVX-512", "AVX512-VNNI", "AMX"]),
    ("model name\t: AMD EPYC 7B12\nflags\t\t: fpu avx avx2 fma\n", ["AVX2", "FMA"]),
    ("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd08\n", ["NEON", "dotprod"]),
])
def test_the_cpu_line_names_the_instruction_sets(tmp_path, text, labels):
    from kreid_edge import cpu

    path = tmp_path / "cpuinfo"
    path.write_text(text)
    info = cpu.features(str(path))
    assert info["isa"] == labels
    line = cpu.describe(info)
    assert line.split(": ", 1)[1].startswith(", ".join(labels))
    assert ("no " in line) == bool(info["missing"])
