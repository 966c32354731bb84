"""Loss and gradients under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy
(2 local worker processes on loopback) equal those of one device on the same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _run(mode, out, env=None):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "dist_worker.py"), mode, out],
                            env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout=420):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dist") / "single.npz")
    _wait(_run("single", path))
    with np.load(path) as d:
        return [d[k] for k in sorted(d.files, key=lambda k: int(k.split("_")[1]))]


def _compare(single, path):
    with np.load(path) as d:
        dist = [d[k] for k in sorted(d.files, key=lambda k: int(k.split("_")[1]))]
    assert len(dist) == len(single)
    np.testing.assert_allclose(dist[0], single[0], rtol=1e-4)           # the loss
    for a, b in zip(dist[1:], single[1:]):     # every gradient, up to float32 summation order
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=max(1e-3 * np.abs(b).max(), 1e-5))


def test_mirrored_two_logical_cpus(tmp_path, single):
    path = str(tmp_path / "mirrored.npz")
    out = _wait(_run("mirrored", path))
    assert "replicas=2" in out
    _compare(single, path)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_two_local_processes(tmp_path, single):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    path = str(tmp_path / "multi.npz")
    procs = [_run("multi_worker", path if i == 0 else str(tmp_path / f"w{i}.npz"),
                  {"TF_CONFIG": json.dumps({"cluster": cluster,
                                            "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    outs = [_wait(p) for p in procs]
    assert all("replicas=2" in o for o in outs)
    _compare(single, path)
