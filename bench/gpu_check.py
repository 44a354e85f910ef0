"""Is selfsup ready for NVIDIA GPUs, and how fast is it on them: one command, one JSON, under 8 minutes on one GPU.

    python -m bench.gpu_check [--output DIR_OR_FILE.json] [--budget-seconds 450] [--quick]

What it does, in this order, within `--budget-seconds` of wall-clock time (450 by default):

1. **devices**: the GPUs TensorFlow sees (name, compute capability), what `nvidia-smi` lists, the CUDA and
   cuDNN versions TensorFlow was built for, and what `training.precision: auto` and `training.strategy:
   auto` would choose here. When nvidia-smi lists GPUs that TensorFlow does not see, it says so and why.
2. **the step**: the pretraining step of simclr, simsiam and byol at float32 and mixed_float16, without
   and with XLA, under the default strategy and under MirroredStrategy over all GPUs (24 variants), each
   in its own `bench.throughput` worker (build, compile, warm up, then `--steps` steps fed from decoded
   images in memory), in 4 batches of one precision and XLA setting (6 workers each: 3 methods x 2
   strategies), `--building-at-once` workers compiling at a time, then measured one at a time while the
   others wait; in the order float32, mixed_float16, mixed_float16 + XLA, float32 + XLA. With the first,
   the throughput probe (matmul and convolutions in float32 and float16) gives the peak for each step's
   FLOP utilisation (FLOPs per image counted by `bench.flops`).
3. **the input pipeline**: `trainer.data.image_dataset` reading the TFRecords alone (images/s) against the
   fastest step measured, and the simclr step fed from the TFRecords against the same step fed from memory.
4. **a short `selfsup run`** on a subset of cifar10-ssl (4,000 unlabeled images spread over the classes,
   25 labels and 25 test images per class; 3 pretraining, 2 linear and 2 fine-tuning epochs) with
   `training.precision: auto` and `training.strategy: auto`, through the CLI, given what is left of the
   budget; the step measurements leave it `--run-seconds` (180 by default).

Budget: a batch of workers is started only when the slowest batch so far would end before the run's share
of the budget; whatever did not fit is listed as skipped with the reason, and a worker still building or
measuring when the steps' share runs out, or a run still going at the deadline, is stopped and listed as
stopped at the budget (with the time it had). None of these times has been measured on a GPU: the first
GPU run's `batch_seconds` and skipped parts say how to split the budget (or `--skip-run --budget-seconds
900` measures every variant). On a machine without a GPU it measures the float32 steps
without XLA on the CPU, MirroredStrategy on the CPU (one replica: the code path only) and the probe in
float32, and lists every other part as skipped, saying why. `--quick` is the smoke mode of the tests (tiny
model and batch, 2 steps): its figures are not measurements.

The JSON has the keys of `bench.throughput`'s (machine, settings, variants, measurements, summary,
utilisation, ratios), plus devices, plan, skipped, input_pipeline, selfsup_run and status. Exit code
(and status): 0 (ok) when everything planned ran and succeeded, 1 (failures) when a variant or the run
failed, 2 (gpus_not_usable) when nvidia-smi lists GPUs that TensorFlow cannot use, 3 (incomplete) when a
worker or the run was stopped at the budget. Variants skipped because the budget left no time for their
batch do not change the status: they are listed in `skipped`.
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

from bench import data_prep, harness
from bench.bf16_ops import probe_feeds
from bench.harness import REPO_ROOT
from bench.throughput import (
    MEMORY,
    TFRECORD,
    TFRECORD_ONLY,
    Variant,
    format_report,
    measurement_sections,
    start_workers,
    variant_records,
)
from trainer import log
from trainer.hparams import METHODS

LOG = log.get(__name__)

FEED_CHECK_METHOD = "simclr"  # its float32 default-strategy variant also reads the TFRecords
# (precision, XLA) of each batch, per strategy, in the order they run.
BATCH_ORDER = (("float32", False), ("mixed_float16", False), ("mixed_float16", True), ("float32", True))
STRATEGIES = ("default", "mirrored")
SHORT_NAMES = {"mixed_float16": "fp16"}
RUN_DATA = {"unlabeled": 4000, "labeled_per_class": 25, "test_per_class": 25}
RUN_SETTINGS = (
    "data.follow_external_links=true",  # the subset is symbolic links into the extracted cifar10-ssl
    "training.pretrain_epochs=3", "training.linear_epochs=2", "training.finetune_epochs=2",
    "training.fixmatch_epochs=2",
    "training.monitor_every_epochs=3", "training.precision=auto", "training.strategy=auto",
)
# The lines of the run's log that say what its Trainers chose (trainer/run.py, trainer/distribute.py), after
# whatever the log's format puts before the message.
RUN_LOG_CHOICE = re.compile(r"(?:\[selfsup\] )?(?:precision|distribution strategy): .*")
INSTALL_HINT = ("TensorFlow 2.16.2 finds the GPUs only with its CUDA 12.3 / cuDNN 8.9 libraries: "
                "`.venv/bin/pip install 'tensorflow[and-cuda]==2.16.2'` (the pip wheels of NVIDIA's libraries), "
                "then run this check again")


# ----------------------------------------------------------------------------------------------
# Devices (listed in a child process: the parent never initialises TensorFlow or a GPU).
# ----------------------------------------------------------------------------------------------

def list_devices() -> dict:
    """What TensorFlow sees: GPUs with their details, CPUs, its CUDA build, and the `auto` choices."""
    import tensorflow as tf

    from trainer.distribute import choose_strategy_name, worker_count
    from trainer.precision import precision_for_this_machine

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        gpus.append({"name": device.name, "device_name": details.get("device_name"),
                     "compute_capability": ".".join(map(str, capability)) if capability else None})
    build = tf.sysconfig.get_build_info()
    policy, reason = precision_for_this_machine("auto")
    return {
        "tensorflow": tf.__version__,
        "gpus": gpus,
        "cpus": [device.name for device in tf.config.list_physical_devices("CPU")],
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "auto_precision": {"policy": policy, "reason": reason},
        "auto_strategy": choose_strategy_name("auto", None, len(gpus), worker_count()),
    }


def nvidia_smi() -> dict:
    """The GPUs nvidia-smi lists (index, name, memory, driver), or why there is no list."""
    executable = shutil.which("nvidia-smi")
    if not executable:
        return {"available": False, "gpus": [], "note": "nvidia-smi is not installed (no NVIDIA driver)"}
    command = [executable, "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"available": False, "gpus": [], "note": f"nvidia-smi failed: {error}"}
    if completed.returncode != 0:
        return {"available": False, "gpus": [], "note": f"nvidia-smi failed: {completed.stderr.strip()[:500]}"}
    gpus = [dict(zip(("index", "name", "memory", "driver"), (field.strip() for field in line.split(","))))
            for line in completed.stdout.splitlines() if line.strip()]
    return {"available": True, "gpus": gpus, "note": None}


def devices_report(timeout: float) -> dict:
    """`list_devices` (from a child process), nvidia-smi's list, and a sentence saying whether GPUs are usable."""
    command = [sys.executable, "-m", "bench.gpu_check", "--list-devices"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"listing the devices failed ({' '.join(command)}):\n{completed.stderr[-3000:]}")
    devices = json.loads(completed.stdout.strip().splitlines()[-1])
    devices["nvidia_smi"] = nvidia_smi()
    devices["diagnosis"], devices["gpus_not_usable"] = diagnose(devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return devices


def diagnose(devices: dict, cuda_visible_devices: Optional[str]) -> Tuple[str, bool]:
    """A sentence on whether this machine's GPUs can be used, and whether GPUs are there but unusable.

    Args:
      devices: `list_devices()` with "nvidia_smi" (`nvidia_smi()`) added.
      cuda_visible_devices: the CUDA_VISIBLE_DEVICES environment variable, or None.
    """
    tf_gpus, smi_gpus = devices["gpus"], devices["nvidia_smi"]["gpus"]
    if tf_gpus:
        names = ", ".join(f"{gpu['device_name']} (compute capability {gpu['compute_capability']})" for gpu in tf_gpus)
        return f"{len(tf_gpus)} GPU(s) usable by TensorFlow: {names}", False
    if cuda_visible_devices is not None and cuda_visible_devices.strip() in ("", "-1"):
        return f"no GPU: CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} hides every GPU from TensorFlow", False
    if smi_gpus:
        build = (f"this TensorFlow is built for CUDA {devices['cuda_version']}, cuDNN {devices['cudnn_version']}"
                 if devices["built_with_cuda"] else "this TensorFlow is built without CUDA")
        return (f"nvidia-smi lists {len(smi_gpus)} GPU(s) but TensorFlow sees none; {build}. {INSTALL_HINT}", True)
    return f"no GPU: TensorFlow sees none and {devices['nvidia_smi']['note'] or 'nvidia-smi lists none'}", False


# ----------------------------------------------------------------------------------------------
# The plan: which variants run, in which batches, and what is skipped.
# ----------------------------------------------------------------------------------------------

def variant_name(method: str, precision: str, xla: bool, strategy: str) -> str:
    """"simclr", "simclr+fp16", "simclr+fp16+xla+mirrored", ... (bench.throughput's "+" naming)."""
    parts = [method, SHORT_NAMES.get(precision, precision) if precision != "float32" else None,
             "xla" if xla else None, strategy if strategy != "default" else None]
    return "+".join(part for part in parts if part)


def step_variant(method: str, precision: str, xla: bool, strategy: str) -> Variant:
    first = (method, precision, xla, strategy) == (FEED_CHECK_METHOD, "float32", False, "default")
    feeds = (MEMORY, TFRECORD, TFRECORD_ONLY) if first else (MEMORY,)
    return Variant(variant_name(method, precision, xla, strategy), method, precision, xla, feeds, strategy)


def plan(gpu: bool, methods: Sequence[str], no_gpu_reason: str) -> Tuple[List[List[Variant]], List[dict]]:
    """The batches of variants to run, in order, and the parts skipped (each with its variants and reason).

    With GPUs: every method x precision x XLA x strategy, one batch per (precision, XLA) in BATCH_ORDER
    (the default strategy's variants first), the probe (float32 and float16) in the first batch. Without:
    one batch of the float32 steps without XLA, simclr under MirroredStrategy on the CPU (the code path) and
    the float32 probe.
    """
    if gpu:
        batches = [[step_variant(method, precision, xla, strategy) for strategy in STRATEGIES for method in methods]
                   for precision, xla in BATCH_ORDER]
        batches[0].append(Variant("probe", "probe", feeds=probe_feeds(("float32", "float16"))))
        return batches, []
    batch = [step_variant(method, "float32", False, "default") for method in methods]
    batch.append(step_variant(methods[0], "float32", False, "mirrored"))
    batch.append(Variant("probe", "probe", feeds=probe_feeds(("float32",))))

    def names(precisions, xla_values, strategies):
        return [variant_name(method, precision, xla, strategy) for strategy in strategies
                for precision in precisions for xla in xla_values for method in methods]

    skipped = [
        {"part": "mixed_float16 steps", "variants": names(["mixed_float16"], [False, True], STRATEGIES),
         "reason": f"skipped: {no_gpu_reason}. mixed_float16 computes in float16, for an NVIDIA GPU's tensor cores"},
        {"part": "XLA steps", "variants": names(["float32"], [True], STRATEGIES),
         "reason": f"skipped: {no_gpu_reason}. These are GPU measurements; on a CPU, bench.throughput measures XLA "
                   "(docs/benchmarks.md, section 3)"},
        {"part": "MirroredStrategy over all GPUs", "variants": [name for name in names(["float32"], [False],
                                                                ["mirrored"]) if name != batch[-2].name],
         "reason": f"skipped: {no_gpu_reason}. {batch[-2].name} ran MirroredStrategy on the CPU (one replica) to "
                   "check the code path only, not as a GPU figure"},
        {"part": "probe in float16", "variants": list(probe_feeds(("float16",))),
         "reason": f"skipped: {no_gpu_reason}. The float16 peak is that of a GPU"},
    ]
    return [batch], skipped


# ----------------------------------------------------------------------------------------------
# Input pipeline and the short selfsup run.
# ----------------------------------------------------------------------------------------------

def input_pipeline_check(summary: dict) -> dict:
    """The TFRecord feed alone against the fastest step measured (can it feed that rate?), and the simclr
    step fed from the TFRecords against the same step fed from memory (medians, images/s)."""
    feed = summary.get(f"{FEED_CHECK_METHOD}[{TFRECORD_ONLY}]")
    steps = sorted(((stats["rate"]["median"], key) for key, stats in summary.items() if stats["feed"] == MEMORY),
                   reverse=True)
    memory = summary.get(f"{FEED_CHECK_METHOD}[{MEMORY}]")
    from_tfrecords = summary.get(f"{FEED_CHECK_METHOD}[{TFRECORD}]")
    check = {"feed_images_per_second": feed["rate"]["median"] if feed else None,
             "fastest_step": {"variant": steps[0][1], "images_per_second": steps[0][0]} if steps else None,
             "feed_over_fastest_step": None, "can_feed_fastest_step": None,
             "tfrecord_step_over_memory_step": (from_tfrecords["rate"]["median"] / memory["rate"]["median"]
                                                if memory and from_tfrecords else None)}
    if feed and steps:
        check["feed_over_fastest_step"] = feed["rate"]["median"] / steps[0][0]
        check["can_feed_fastest_step"] = check["feed_over_fastest_step"] >= 1.0
    return check


def run_data_folder(source: pathlib.Path, destination: pathlib.Path, counts: dict) -> pathlib.Path:
    """A subset of the cifar10-ssl folder `source` for the short run: hard links, every class."""
    classes = len([path for path in (source / "labeled").iterdir() if path.is_dir()])
    return data_prep.sampled_folder(source, destination, counts["unlabeled"], counts["labeled_per_class"],
                                    counts["test_per_class"], max_classes=classes, spread=True)


def run_command(data: pathlib.Path, output: pathlib.Path, settings: Sequence[str] = RUN_SETTINGS) -> List[str]:
    """The `selfsup run` command line of the short run (prints summary.json on stdout)."""
    command = [sys.executable, "-m", "pipeline.cli", "run", "--data", str(data), "--output", str(output), "--json"]
    for setting in settings:
        command += ["--set", setting]
    return command


def run_choices(log_text: str) -> List[str]:
    """What the run's Trainers chose (precision, distribution strategy), each different line once, in order."""
    return list(dict.fromkeys(match.group(0).strip() for match in map(RUN_LOG_CHOICE.search, log_text.splitlines())
                              if match))


def selfsup_run(data: pathlib.Path, output: pathlib.Path, log_path: pathlib.Path, timeout: float) -> dict:
    """Runs the short `selfsup run` (its process group is stopped at `timeout`); its result, timings, and the
    precision and strategy its Trainers chose (from its log)."""
    if output.exists():
        shutil.rmtree(output)
    command = run_command(data, output)
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                   start_new_session=True)
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the run's own process group (TFX, Beam workers)
            process.communicate()
            stdout = None
    seconds = time.time() - started
    log_text = log_path.read_text(errors="replace")
    chosen = run_choices(log_text)
    result = {"command": " ".join(command), "log": str(log_path), "seconds": round(seconds, 1),
              "exit_code": process.returncode, "chosen": chosen}
    if stdout is None:
        return {**result, "status": "stopped at the budget", "reason": f"stopped after {timeout:.0f} s"}
    try:
        summary = json.loads(stdout)
    except json.JSONDecodeError:
        return {**result, "status": "failed", "reason": f"no summary on stdout; log tail:\n{log_text[-2000:]}"}
    return {**result, "status": summary["status"], "reason": summary.get("error"), "blessed": summary["blessed"],
            "candidate_accuracy": summary["candidate"]["accuracy"],
            "baseline_accuracy": summary["baseline"]["accuracy"], "timings": summary.get("timings"),
            "component_seconds": summary.get("component_seconds"), "decision": summary.get("decision")}


# ----------------------------------------------------------------------------------------------
# The check.
# ----------------------------------------------------------------------------------------------

def settings_for(gpu: bool, quick: bool, args) -> dict:
    """The workers' settings: bench.throughput's, a longer warm-up and a larger matmul on a GPU, tiny with --quick."""
    return {
        "batch_size": args.batch_size or (32 if quick else 256),
        "image_size": 32,
        "width": 16 if quick else 128,
        "seed": 42,
        "warmup_steps": 0 if quick else (5 if gpu else 2),
        "memory_images": 64 if quick else 2048,
        "probe_seconds": 0.2 if quick else 1.0,
        "probe_matmul_size": 256 if quick else (4096 if gpu else 1024),
        "quick": quick,
    }


def check(args) -> Tuple[dict, int]:
    started = time.time()
    deadline = started + args.budget_seconds
    cache_dir = pathlib.Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    LOG.info("listing devices")
    devices = devices_report(timeout=max(30.0, args.budget_seconds / 4))
    gpu = bool(devices["gpus"])
    LOG.info("%s", devices["diagnosis"])
    methods = tuple(args.methods.split(","))
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {list(METHODS)}")
    batches, skipped = plan(gpu, methods, devices["diagnosis"])
    run_wanted = gpu and not args.skip_run
    if not gpu:
        skipped.append({"part": "selfsup run", "variants": [],
                        "reason": f"skipped: {devices['diagnosis']}. The short run is a GPU check (on 2 CPU cores "
                                  "even `make demo`'s digits take minutes)"})
    elif args.skip_run:
        skipped.append({"part": "selfsup run", "variants": [], "reason": "skipped: --skip-run"})

    settings = settings_for(gpu, args.quick, args)
    steps = 2 if args.quick else args.steps or (50 if gpu else 10)
    # The feed alone reads many more batches than a step measurement, so that its prefetch buffer, full
    # when the measurement starts, does not count.
    feed_batches = steps if args.quick else max(100, steps)
    if args.tfrecords:
        settings["tfrecords"] = args.tfrecords
    else:
        images = 64 if args.quick else 2048
        LOG.info("TFRecords: %d unlabeled images of cifar10-ssl (cached in %s)", images, cache_dir)
        settings["tfrecords"] = data_prep.cached_unlabeled_tfrecords(data_prep.cifar_folder(cache_dir), cache_dir,
                                                                     images)
    # Several workers share one GPU: each takes the memory it needs, not all of it.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

    run_reserve = args.run_seconds if run_wanted else 0.0
    measurements, variant_rows, batch_seconds = [], [], []
    for index, batch in enumerate(batches):
        left = deadline - run_reserve - time.time()
        needed = max(batch_seconds) if batch_seconds else 0.0
        if index and left < needed:
            reason = (f"skipped: time budget ({left:.0f} s left before the {run_reserve:.0f} s kept for the selfsup "
                      f"run; the slowest batch so far took {needed:.0f} s)")
            skipped.extend({"part": "step batch", "variants": [variant.name for variant in later], "reason": reason}
                           for later in batches[index:])
            LOG.info("%s: %d variants", reason, sum(len(later) for later in batches[index:]))
            break
        batch_started = time.time()
        workers = start_workers(batch, settings, cache_dir / "worker_logs", args.building_at_once,
                                deadline - run_reserve)
        batch_measurements = harness.measure_rounds(workers, args.rounds, steps, 0.0 if args.quick else 0.5,
                                                    args.max_seconds, deadline - run_reserve,
                                            steps_by_feed={TFRECORD_ONLY: feed_batches})
        harness.stop_workers(workers)
        measurements.extend(batch_measurements)
        rows = variant_records(workers, batch_measurements)
        stopped = [row["name"] for row in rows if (row["failure"] or {}).get("error_type") == "WorkerTimeout"]
        if stopped:
            skipped.append({"part": "stopped at the budget", "variants": stopped, "reason": (
                f"stopped: still building or measuring when the step measurements' share of the budget ran out "
                f"({args.budget_seconds - run_reserve:.0f} s; a hung worker looks the same: see its log in "
                f"{cache_dir / 'worker_logs'})")})
        variant_rows.extend(rows)
        batch_seconds.append(time.time() - batch_started)

    sections = measurement_sections(variant_rows, measurements)
    run = None
    if run_wanted:
        timeout = max(60.0, deadline - time.time())
        LOG.info("selfsup run on a subset of cifar10-ssl (at most %.0f s)", timeout)
        folder = run_data_folder(data_prep.cifar_folder(cache_dir), cache_dir / "run_data", RUN_DATA)
        run = selfsup_run(folder, cache_dir / "run_output", cache_dir / "selfsup_run.log", timeout)
        LOG.info("selfsup run: %s in %.0f s", run["status"], run["seconds"])

    failed = [row["name"] for row in variant_rows if row["status"] != "ok"
              and (row["failure"] or {}).get("error_type") != "WorkerTimeout"]
    run_failed = run is not None and run["status"] not in ("succeeded", "stopped at the budget")
    incomplete = any(part["part"] == "stopped at the budget" for part in skipped) or (
        run is not None and run["status"] == "stopped at the budget")
    status = ("gpus_not_usable" if devices["gpus_not_usable"] else "failures" if failed or run_failed
              else "incomplete" if incomplete else "ok")
    any_ready = next((row for row in variant_rows if row.get("keras")), {})
    result = {
        **harness.result_header("bench.gpu_check"),
        "status": status,
        "devices": devices,
        "gpu": gpu,
        "tensorflow": any_ready.get("tensorflow"),
        "keras": any_ready.get("keras"),
        "settings": {**settings, "steps": steps, "feed_batches": feed_batches, "rounds": args.rounds,
                     "budget_seconds": args.budget_seconds,
                     "run_seconds": run_reserve, "building_at_once": args.building_at_once},
        "plan": [[variant.name for variant in batch] for batch in batches],
        "skipped": skipped,
        "failed": failed,
        "variants": variant_rows,
        "measurements": measurements,
        **sections,
        "input_pipeline": input_pipeline_check(sections["summary"]),
        "selfsup_run": run,
        **harness.load_sections(measurements),
        "batch_seconds": batch_seconds,
        "wall_seconds": time.time() - started,
    }
    return result, {"ok": 0, "failures": 1, "gpus_not_usable": 2, "incomplete": 3}[status]


def format_check(result: dict) -> str:
    """The throughput table, then the devices, what was skipped, the input pipeline and the run."""
    lines = [format_report(result, title="selfsup GPU check" + (" (QUICK smoke mode)" if result["settings"]["quick"]
                                                                 else "")), ""]
    devices = result["devices"]
    lines.append(f"devices: {devices['diagnosis']}")
    lines.append(f"  TensorFlow {devices['tensorflow']} (CUDA build: {devices['built_with_cuda']}, CUDA "
                 f"{devices['cuda_version']}, cuDNN {devices['cudnn_version']}); CPUs {', '.join(devices['cpus'])}")
    for gpu in devices["nvidia_smi"]["gpus"]:
        lines.append(f"  nvidia-smi: GPU {gpu.get('index')}: {gpu.get('name')}, {gpu.get('memory')}, driver "
                     f"{gpu.get('driver')}")
    lines.append(f"  training.precision auto -> {devices['auto_precision']['policy']} "
                 f"({devices['auto_precision']['reason']}); training.strategy auto -> {devices['auto_strategy']}")
    for part in result["skipped"]:
        names = f" ({', '.join(part['variants'])})" if part["variants"] else ""
        lines.append(f"SKIPPED {part['part']}{names}: {part['reason']}")
    feed = result["input_pipeline"]
    if feed["feed_images_per_second"] and feed["fastest_step"]:
        verdict = "can" if feed["can_feed_fastest_step"] else "can NOT"
        lines.append(f"input pipeline: the TFRecord feed alone gives {feed['feed_images_per_second']:.0f} images/s; "
                     f"the fastest step ({feed['fastest_step']['variant']}) takes "
                     f"{feed['fastest_step']['images_per_second']:.0f}: it {verdict} feed it "
                     f"({feed['feed_over_fastest_step']:.2f}x)")
    if feed["tfrecord_step_over_memory_step"]:
        lines.append(f"input pipeline: {FEED_CHECK_METHOD} fed from the TFRecords / from memory: "
                     f"{feed['tfrecord_step_over_memory_step']:.2f}")
    run = result["selfsup_run"]
    if run:
        accuracy = (f", candidate {run['candidate_accuracy']}, baseline {run['baseline_accuracy']}, blessed "
                    f"{run['blessed']}" if run.get("candidate_accuracy") is not None else "")
        lines.append(f"selfsup run: {run['status']} in {run['seconds']:.0f} s{accuracy}"
                     f"{'; ' + run['reason'] if run.get('reason') else ''}")
        lines.extend(f"  {line}" for line in run["chosen"])
    if result["failed"]:
        lines.append(f"FAILED variants: {', '.join(result['failed'])} (see their failure in the JSON and the logs)")
    lines.append(f"status: {result['status']}, {result['wall_seconds']:.0f} s of a "
                 f"{result['settings']['budget_seconds']:.0f} s budget")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="/tmp", help="JSON file (*.json) or folder for it (default /tmp)")
    parser.add_argument("--budget-seconds", type=float, default=450.0,
                        help="wall-clock budget of the whole check (default 450: under 8 minutes with the shut-down)")
    parser.add_argument("--run-seconds", type=float, default=180.0,
                        help="seconds of the budget kept for the selfsup run (default 180)")
    parser.add_argument("--skip-run", action="store_true", help="leave out the selfsup run")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of simclr,simsiam,byol")
    parser.add_argument("--steps", type=int, default=0, help="steps per measurement (default 50 on a GPU, 10 on a CPU)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each variant (default 1)")
    parser.add_argument("--batch-size", type=int, default=0, help="global batch (default 256, 32 with --quick)")
    parser.add_argument("--building-at-once", type=int, default=max(2, min(7, (os.cpu_count() or 2) // 2)),
                        help="workers compiling at the same time (default: half the CPUs, 2 to 7)")
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="a slow variant runs fewer steps (at least 3) so that a measurement takes about this long")
    parser.add_argument("--tfrecords", help="gzipped tf.Example TFRecords to read instead of ingesting cifar10-ssl")
    parser.add_argument("--cache-dir", default="/tmp/selfsup_gpu_check",
                        help="extracted dataset, TFRecords, worker logs, the run's data and output")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: tiny model and batch, 2 steps (not a measurement)")
    parser.add_argument("--list-devices", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_devices:
        print(json.dumps(list_devices()))
        return 0
    result, exit_code = check(args)
    path = harness.write_result(result, args.output, "selfsup_gpu_check")
    print()
    print(format_check(result))
    print(f"\nresults: {path}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
