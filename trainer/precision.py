"""`training.precision`: which Keras dtype policy the Trainers train under.

`choose_precision` is the whole rule, as a pure function of what the machine has (tested with faked
devices and CPU flags); `precision_for_this_machine` reads the real devices and calls it.

`auto` chooses:
- `mixed_bfloat16` on TPUs (bfloat16 is their native matrix type);
- `mixed_float16` when every visible GPU is an NVIDIA GPU of compute capability 7.0 or more (Volta and
  later: float16 tensor cores), `float32` when a GPU is older or its compute capability is unknown
  (the computation runs on the GPUs, so the CPU's flags do not matter then);
- without GPU or TPU, `mixed_bfloat16` when the CPU's /proc/cpuinfo flags include `avx512_bf16` or
  `amx_bf16`, `float32` otherwise (on an AVX2-only CPU mixed_bfloat16 was measured 7x slower).
Any other setting is used as it is, whatever the hardware.

Under a mixed policy Keras computes in bfloat16/float16 and keeps every variable in float32 (BatchNorm
and LayerNorm compute their statistics in float32 too); the losses, probabilities, monitors and the
exported signatures cast to float32 (trainer/losses.py, methods.py, distill.py, export.py,
encoder_artifact.py).
"""

from typing import Iterable, Optional, Sequence, Set, Tuple

from trainer.hparams import PRECISIONS, require

# CPU flags (as /proc/cpuinfo spells them) of a fast bfloat16 matrix unit: AVX-512 BF16 and AMX.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# float16 tensor cores: Volta (7.0) and later.
MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)

GpuInfo = Tuple[str, Optional[Tuple[int, int]]]


def choose_precision(setting: str, gpus: Sequence[GpuInfo], tpu: bool, cpu_flags: Set[str]) -> Tuple[str, str]:
    """The dtype policy for `setting` on a machine with these devices, and why.

    Args:
      setting: `training.precision`: "auto", "float32", "mixed_bfloat16" or "mixed_float16".
      gpus: each visible GPU as (name, compute capability (major, minor), or None when unknown).
      tpu: whether the Trainer runs on TPUs.
      cpu_flags: the CPU's flags as in /proc/cpuinfo.

    Returns:
      (policy name for keras.mixed_precision.set_global_policy, a sentence saying why).

    Raises:
      ConfigError: an unknown setting.
    """
    require(setting in PRECISIONS, "training.precision", f"must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting, f"training.precision is {setting}"
    if tpu:
        return "mixed_bfloat16", "auto: on TPUs, whose native matrix type is bfloat16"
    if gpus:
        minimum = ".".join(map(str, MIN_FLOAT16_COMPUTE_CAPABILITY))
        for name, capability in gpus:
            if capability is None:
                return "float32", f"auto: the compute capability of GPU {name!r} is unknown (not an NVIDIA GPU?)"
            if tuple(capability) < MIN_FLOAT16_COMPUTE_CAPABILITY:
                return "float32", (f"auto: GPU {name!r} has compute capability {'.'.join(map(str, capability))}, "
                                   f"below {minimum} (no float16 tensor cores)")
        names = ", ".join(sorted({f"{name} ({'.'.join(map(str, capability))})" for name, capability in gpus}))
        return "mixed_float16", f"auto: {len(gpus)} NVIDIA GPU(s) of compute capability {minimum} or more: {names}"
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags]
    if found:
        return "mixed_bfloat16", f"auto: no GPU or TPU, and the CPU has {' and '.join(found)}"
    return "float32", f"auto: no GPU or TPU, and the CPU has neither {' nor '.join(BF16_CPU_FLAGS)}"


def parse_cpu_flags(lines: Iterable[str]) -> Set[str]:
    """The flags every processor of /proc/cpuinfo lists (its `flags : ...` lines); empty without any."""
    flag_sets = [set(line.split(":", 1)[1].split()) for line in lines
                 if line.split(":", 1)[0].strip() == "flags" and ":" in line]
    return set.intersection(*flag_sets) if flag_sets else set()


def read_cpu_flags(path: str = "/proc/cpuinfo") -> Set[str]:
    """This machine's CPU flags; empty where there is no /proc/cpuinfo (then `auto` gives float32)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return parse_cpu_flags(handle)
    except OSError:
        return set()


def precision_for_this_machine(setting: str, strategy=None) -> Tuple[str, str]:
    """`choose_precision` with this process's devices: its GPUs (with their compute capability), whether
    `strategy` is a TPUStrategy or TPUs are visible, and /proc/cpuinfo's flags. Call it after the strategy
    is built (a TPU's devices appear once the strategy has connected to it)."""
    if setting != "auto":
        return choose_precision(setting, [], False, set())
    import tensorflow as tf  # here, so that the rule above stays importable without TensorFlow

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        gpus.append((details.get("device_name", device.name), tuple(capability) if capability else None))
    tpu = isinstance(strategy, tf.distribute.TPUStrategy) or bool(tf.config.list_logical_devices("TPU"))
    return choose_precision(setting, gpus, tpu, read_cpu_flags())
