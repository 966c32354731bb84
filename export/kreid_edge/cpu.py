"""What the CPU under a latency figure can do: the instruction sets int8 and float
inference speed depend on (read from /proc/cpuinfo; no TensorFlow).

XNNPACK (the TFLite CPU delegate) and oneDNN pick their kernels by these: on
x86, AVX2 + FMA for float, VNNI (AVX512-VNNI or AVX-VNNI) for int8 dot
products, AVX512-BF16 and AMX for bfloat16/int8 matrix tiles; on ARM, NEON
(asimd), its int8 dot product (asimddp) and i8mm. A latency table names them,
so a reader knows which kind of machine a figure holds for.
"""

from __future__ import annotations

import os
import platform

# (label, /proc/cpuinfo flags any of which means the label)
X86 = (("AVX2", ("avx2",)), ("FMA", ("fma",)), ("AVX-512", ("avx512f",)),
       ("AVX512-VNNI", ("avx512_vnni",)), ("AVX-VNNI", ("avx_vnni",)),
       ("AVX512-BF16", ("avx512_bf16",)), ("AMX", ("amx_tile",)))
ARM = (("NEON", ("asimd", "neon")), ("dotprod", ("asimddp",)), ("i8mm", ("i8mm",)),
       ("BF16", ("bf16",)), ("SVE", ("sve",)))


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return model, flags


def features(path: str = "/proc/cpuinfo") -> dict:
    """{"model", "machine", "cores", "isa": [labels present], "missing": [labels absent]}."""
    model, flags = _cpuinfo(path)
    machine = platform.machine()
    table = ARM if machine.lower() in ("aarch64", "arm64") or "asimd" in flags else X86
    present = [label for label, names in table if flags & set(names)]
    return {"model": model or platform.processor() or machine, "machine": machine,
            "cores": os.cpu_count() or 0, "isa": present,
            "missing": [label for label, _ in table if label not in present]}


def describe(info: dict | None = None) -> str:
    """One line: ``AMD EPYC (x86_64, 2 cores): AVX2, FMA, AVX-512, AVX512-VNNI; no AMX``."""
    info = info or features()
    line = f"{info['model']} ({info['machine']}, {info['cores']} cores): " + (
        ", ".join(info["isa"]) or "none of " + ", ".join(info["missing"]))
    return line + (f"; no {', '.join(info['missing'])}" if info["isa"] and info["missing"]
                   else "")
