"""The exported files on ARM: kreid_edge on aarch64 under emulation, against x86 (#26).

    .venv/bin/python benchmarks/arm_check.py --models=demo_out/export/lunet.int8.tflite,\\
        demo_out/export/lunet.float32.tflite --dataset=synthetic --root=demo_out/synthetic

Most edge devices are ARM (Raspberry Pi, Jetson, phones), where TFLite's XNNPACK
runs NEON kernels instead of x86's AVX ones. This embeds the dataset's query and
gallery images with each exported file twice, with the same ``kreid-edge embed``
command: natively (x86-64) and on aarch64 under Debian's ``qemu-aarch64-static``
(user-mode emulation of a Raspberry Pi 4's Cortex-A72: an aarch64 Python 3.11
from Debian bookworm's arm64 packages and the aarch64 wheels of numpy,
opencv-python-headless and ai-edge-litert from PyPI, the releases this
environment has, unpacked into ``$KREID_CACHE/aarch64``, default
``~/.cache/kreid/aarch64``; nothing is installed on the system). It prints, per
file, the cosine between the ARM and x86 embedding of each image (min, median)
and the mAP / rank-1 that the ARM embeddings give next to the x86 ones. No
latency: emulated time says nothing of a device's.

Needs ``qemu-aarch64-static`` (``apt-get install qemu-user-static``) and the
network once (about 60 MB of packages).
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

DEBIAN = "http://deb.debian.org/debian"
SUITE = "bookworm"
# an aarch64 CPython 3.11 and what it and the wheels load (Debian bookworm, arm64)
PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", "gcc-12-base", "python3.11-minimal",
            "libpython3.11-minimal", "libpython3.11-stdlib", "libexpat1", "zlib1g", "libssl3",
            "libffi8", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6",
            "libtinfo6", "libreadline8", "libcrypt1", "libdb5.3", "libnsl2",
            "libtirpc3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libcom-err2",
            "libkrb5support0", "libkeyutils1", "media-types", "libzstd1")
def _wheels() -> tuple[str, ...]:
    """The same releases as this environment's, where it has them."""
    import importlib.metadata as md

    out = []
    for name in ("numpy", "opencv-python-headless", "ai-edge-litert"):
        try:
            out.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            out.append(name)
    return tuple(out)
QEMU = "qemu-aarch64-static"


class ArmUnavailable(RuntimeError):
    """The emulated aarch64 environment cannot be made here; says why."""


def cache_root() -> str:
    base = os.path.expanduser(os.environ.get("KREID_CACHE") or "~/.cache/kreid")
    return os.path.join(base, "aarch64")


def _packages_index() -> dict[str, str]:
    """{package: its .deb path on the mirror} of bookworm main, arm64."""
    url = f"{DEBIAN}/dists/{SUITE}/main/binary-arm64/Packages.xz"
    with urllib.request.urlopen(url, timeout=120) as r:
        text = lzma.decompress(r.read()).decode("utf-8", "replace")
    index = {}
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(" "))
        if "Package" in fields and "Filename" in fields:
            index[fields["Package"]] = fields["Filename"]
    return index


def prepare(root: str | None = None) -> str:
    """The aarch64 root (``usr/bin/python3.11`` and ``site/`` with the wheels), made once;
    raises :class:`ArmUnavailable` when qemu or the network is missing."""
    root = root or cache_root()
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    if not shutil.which(QEMU):
        raise ArmUnavailable(f"{QEMU} not found (apt-get install qemu-user-static)")
    if not shutil.which("dpkg-deb"):
        raise ArmUnavailable("dpkg-deb not found (a Debian system is needed to unpack .debs)")
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".arm-", dir=root)
    try:
        try:
            index = _packages_index()
        except OSError as exc:
            raise ArmUnavailable(f"Debian's arm64 package index not reachable ({exc})") from exc
        for name in PACKAGES:
            if name not in index:
                raise ArmUnavailable(f"{name} not in Debian {SUITE} arm64")
            deb = os.path.join(work, os.path.basename(index[name]))
            urllib.request.urlretrieve(f"{DEBIAN}/{index[name]}", deb)
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        wheels = os.path.join(work, "wheels")
        # bookworm's glibc is 2.36: every manylinux wheel up to that runs
        tags = [f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)] + ["manylinux2014_aarch64"]
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
               *[a for t in tags for a in ("--platform", t)], "--python-version", "3.11",
               "--implementation", "cp", "-d", wheels, *_wheels()]
        got = subprocess.run(cmd, capture_output=True, text=True)
        if got.returncode:
            raise ArmUnavailable(f"pip download of the aarch64 wheels failed: "
                                 f"{got.stderr.strip()[-500:]}")
        _fake_cpuinfo(root)
        site = os.path.join(root, "site")
        import zipfile

        for name in sorted(os.listdir(wheels)):
            with zipfile.ZipFile(os.path.join(wheels, name)) as z:
                z.extractall(site)
        open(done, "w").close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


# The CPU emulated: a Raspberry Pi 4's Cortex-A72 (NEON, no int8 dot product), the most
# common ARM board. qemu-user passes the host's x86 /proc/cpuinfo through, on which
# XNNPACK's CPU detection (the cpuinfo library) crashes on aarch64; qemu's -L prefix serves
# this one from the root instead, and QEMU_CPU gives the same features to getauxval.
CPU = "cortex-a72"
CPUINFO = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""


def _fake_cpuinfo(root: str) -> None:
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    with open(os.path.join(root, "proc", "cpuinfo"), "w") as f:
        f.write("\n".join(CPUINFO.format(i=i) for i in range(4))
                + "\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 (emulated by qemu)\n")


def edge_command(root: str, args: list[str]) -> list[str]:
    """``kreid-edge <args>`` on aarch64 under qemu."""
    return [QEMU, "-L", root, os.path.join(root, "usr", "bin", "python3.11"), "-m",
            "kreid_edge", *args]


def edge_env(root: str) -> dict:
    export = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "export")
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": f"{os.path.join(root, 'site')}:{export}", "PYTHONNOUSERSITE": "1",
            "QEMU_CPU": CPU}


def embed_both(model: str, images: list[str], out_dir: str, root: str,
               threads: int = 2) -> tuple:
    """The embeddings of ``images`` by ``model`` on x86 (this Python) and on aarch64;
    returns (x86, arm) arrays and the aarch64 machine string."""
    import numpy as np

    os.makedirs(out_dir, exist_ok=True)
    listing = os.path.join(out_dir, "images.txt")
    with open(listing, "w") as f:
        f.write("\n".join(images) + "\n")
    base = os.path.join(out_dir, os.path.basename(model))
    args = ["embed", "--model", model, "--images", listing, "--threads", str(threads)]
    native = subprocess.run([sys.executable, "-m", "kreid_edge", *args, "--out",
                             base + ".x86.npz"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": edge_env(root)["PYTHONPATH"]
                                 .split(":", 1)[1]})
    if native.returncode:
        raise RuntimeError(f"x86 embedding failed: {native.stderr[-2000:]}")
    arm = subprocess.run(edge_command(root, [*args, "--out", base + ".arm.npz"]),
                         capture_output=True, text=True, env=edge_env(root))
    if arm.returncode:
        raise RuntimeError(f"aarch64 embedding failed: {arm.stderr[-2000:]}")
    machine = subprocess.run([QEMU, "-L", root, os.path.join(root, "usr", "bin", "python3.11"),
                              "-c", "import platform; print(platform.machine())"],
                             capture_output=True, text=True, env=edge_env(root)).stdout.strip()
    return (np.load(base + ".x86.npz")["embeddings"], np.load(base + ".arm.npz")["embeddings"],
            machine)


def _embedding_set(records, embeddings):
    import numpy as np

    from kreid.evaluation.embed import EmbeddingSet

    return EmbeddingSet(np.asarray(embeddings, np.float32), np.array([r.pid for r in records]),
                        np.array([r.camid for r in records]),
                        np.array([r.trackid for r in records]),
                        np.array([r.path for r in records]))


def main(argv=None) -> int:
    import argparse

    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated .tflite files")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--protocol", default="market")
    parser.add_argument("--limit", type=int, default=0,
                        help="the first N queries, their identities' gallery images and N "
                             "others (a quick check; 0: every image)")
    args = parser.parse_args(argv)
    from kreid.data import datasets
    from kreid.evaluation.runner import score
    from kreid.export.compare import cosine_to_reference

    ds = datasets.load(args.dataset, args.root)
    query, gallery = ds.query, ds.gallery
    if args.limit:
        query = query[:args.limit]
        ids = {r.pid for r in query}
        gallery = [r for r in gallery if r.pid in ids] + \
            [r for r in gallery if r.pid not in ids][:args.limit]
    root = prepare()
    paths = [r.path for r in query + gallery]
    with tempfile.TemporaryDirectory(prefix="kreid_arm_") as work:
        for model in args.models.split(","):
            x86, arm, machine = embed_both(model, paths, work, root)
            cos = cosine_to_reference(arm, x86)
            results = {}
            for name, emb in (("x86_64", x86), (machine, arm)):
                q, g = (_embedding_set(part, e) for part, e in
                        ((query, emb[:len(query)]), (gallery, emb[len(query):])))
                res, _ = score(q, g, protocol=args.protocol)
                results[name] = res
            print(f"{os.path.basename(model)}: {len(paths)} images; cosine {machine} vs x86_64 "
                  f"min {cos.min():.6f} median {np.median(cos):.6f}; identical "
                  f"{np.mean(np.all(arm == x86, axis=1)):.1%}; "
                  + "; ".join(f"{k} mAP {100 * r['mAP']:.2f}% rank-1 {100 * r['cmc'][0]:.2f}%"
                              for k, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
