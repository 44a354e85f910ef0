"""What machine a benchmark ran on: CPU model and family, the CPU flags that decide the fast paths (AVX-512
bfloat16, AMX, ...), memory, Python and the installed versions (trainer/versions.py). Every benchmark's JSON
has it under "machine". Imports no TensorFlow.
"""

import os
import pathlib
import platform
import re
from typing import Dict

from trainer import versions
from trainer.precision import read_cpu_flags

# The CPU flags recorded: the vector and matrix units that bfloat16 / float16 and XLA's kernels can use
# (trainer/precision.py's BF16_CPU_FLAGS among them).
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "avx_vnni")


def _read(path: str) -> str:
    try:
        return pathlib.Path(path).read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> Dict[str, bool]:
    """{flag: present} for INTERESTING_FLAGS, read as `training.precision: auto` reads them (avx512_bf16 or
    amx_bf16 make it choose mixed_bfloat16)."""
    present = read_cpu_flags(cpuinfo_path)
    return {flag: flag in present for flag in INTERESTING_FLAGS}


def machine_info() -> dict:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"MemTotal:\s*(\d+)", _read("/proc/meminfo"))
    memory_kb = int(memory.group(1)) if memory else 0
    return {
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        # Both AMD Zen 3 and Zen 4 machines report "AMD EPYC": the family/model numbers tell them apart.
        "cpu_family_model": "/".join(match.group(1) for match in (
            re.search(rf"^{field}\s*:\s*(\d+)$", cpuinfo, re.MULTILINE) for field in ("cpu family", "model")) if match),
        "cpu_flags": cpu_flags(),
        "memory_gib": round(memory_kb / 1024 ** 2, 1),
        "python": versions.python_version(),
        "platform": platform.platform(),
        "versions": versions.package_versions(),
    }
