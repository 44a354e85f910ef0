"""bench.gpu_check: its plan, its diagnosis of the devices, the input-pipeline verdict, the short run's folder
and settings (checked by selfsup itself, without running the pipeline), and its CPU code path end to end
(`--quick`: what a machine without a GPU measures and what it says it skipped). No timing is asserted."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, SAMPLE_CLASSES, real_image_sample
from test_bench import write_unlabeled_split

from bench import gpu_check
from bench.bf16_ops import probe_feeds
from components.image_example_gen.folder_scan import FolderScanner
from pipeline.config import load_config
from pipeline.local_runner import check_before_running

ALL_STEP_VARIANTS = {gpu_check.variant_name(method, precision, xla, strategy)
                     for method in gpu_check.METHODS for precision in ("float32", "mixed_float16")
                     for xla in (False, True) for strategy in ("default", "mirrored")}


def test_the_choices_of_the_runs_trainers_are_read_from_its_log_whatever_precedes_the_message():
    log = "\n".join(["02:01:03 precision: mixed_bfloat16 (the CPU has avx512_bf16)", "INFO 02:01:04 something else",
           "[selfsup] distribution strategy: default (_DefaultDistributionStrategy), 1 replica(s)",
           "02:01:09 precision: mixed_bfloat16 (the CPU has avx512_bf16)"])
    assert gpu_check.run_choices(log) == ["precision: mixed_bfloat16 (the CPU has avx512_bf16)",
                      "[selfsup] distribution strategy: default (_DefaultDistributionStrategy), 1 replica(s)"]


def test_with_gpus_every_method_precision_xla_and_strategy_runs_float32_first_with_the_feed_check_and_probe():
    batches, skipped = gpu_check.plan(True, gpu_check.METHODS, "1 GPU(s) usable")
    assert skipped == [] and len(batches) == 4
    steps = [variant for batch in batches for variant in batch if variant.model != "probe"]
    assert {variant.name for variant in steps} == ALL_STEP_VARIANTS and len(steps) == 24
    assert [variant.name for variant in batches[0]] == ["simclr", "simsiam", "byol", "simclr+mirrored",
                                                        "simsiam+mirrored", "byol+mirrored", "probe"]
    assert batches[0][0].feeds == ("memory", "tfrecord", "tfrecord_only")
    assert set(batches[0][-1].feeds) == set(probe_feeds(("float32", "float16")))
    assert [{(variant.precision, variant.xla) for variant in batch if variant.model != "probe"} for batch in batches] \
        == [{("float32", False)}, {("mixed_float16", False)}, {("mixed_float16", True)}, {("float32", True)}]


def test_without_gpu_the_cpu_steps_run_and_every_other_variant_is_skipped_with_the_reason():
    batches, skipped = gpu_check.plan(False, gpu_check.METHODS, "no GPU: TensorFlow sees none")
    assert [variant.name for variant in batches[0]] == ["simclr", "simsiam", "byol", "simclr+mirrored", "probe"]
    assert batches[0][-1].feeds == probe_feeds(("float32",))
    skipped_steps = {name for part in skipped for name in part["variants"] if not name.endswith("float16")}
    ran = {variant.name for variant in batches[0] if variant.model != "probe"}
    assert ran | skipped_steps == ALL_STEP_VARIANTS and not ran & skipped_steps
    assert all(part["reason"].startswith("skipped: no GPU: TensorFlow sees none") for part in skipped)


def _devices(tf_gpus, smi_gpus):
    return {"gpus": tf_gpus, "built_with_cuda": True, "cuda_version": "12.3", "cudnn_version": "8",
            "nvidia_smi": {"available": bool(smi_gpus), "gpus": smi_gpus,
                           "note": None if smi_gpus else "not installed"}}


def test_diagnosis_names_gpus_says_why_none_and_flags_gpus_tensorflow_cannot_use():
    v100 = {"name": "/physical_device:GPU:0", "device_name": "Tesla V100", "compute_capability": "7.0"}
    sentence, unusable = gpu_check.diagnose(_devices([v100], [{"name": "Tesla V100"}]), None)
    assert "1 GPU(s) usable" in sentence and "Tesla V100 (compute capability 7.0)" in sentence and not unusable

    sentence, unusable = gpu_check.diagnose(_devices([], [{"name": "Tesla V100"}]), None)
    assert unusable and "nvidia-smi lists 1 GPU(s) but TensorFlow sees none" in sentence
    assert "tensorflow[and-cuda]==2.16.2" in sentence

    sentence, unusable = gpu_check.diagnose(_devices([], [{"name": "Tesla V100"}]), "-1")
    assert not unusable and "CUDA_VISIBLE_DEVICES='-1'" in sentence

    sentence, unusable = gpu_check.diagnose(_devices([], []), None)
    assert not unusable and sentence == "no GPU: TensorFlow sees none and not installed"


def test_input_pipeline_verdict_compares_the_feed_alone_with_the_fastest_step():
    def row(variant, feed, median):
        return {"variant": variant, "feed": feed, "unit": "images/s", "rate": {"median": median}}

    summary = {"simclr[memory]": row("simclr", "memory", 1000.0), "simclr[tfrecord]": row("simclr", "tfrecord", 900.0),
               "simclr[tfrecord_only]": row("simclr", "tfrecord_only", 3000.0),
               "byol+fp16[memory]": row("byol+fp16", "memory", 4000.0)}
    verdict = gpu_check.input_pipeline_check(summary)
    assert verdict["fastest_step"] == {"variant": "byol+fp16[memory]", "images_per_second": 4000.0}
    assert verdict["feed_over_fastest_step"] == 0.75 and verdict["can_feed_fastest_step"] is False
    assert verdict["tfrecord_step_over_memory_step"] == 0.9


def test_the_short_runs_folder_and_settings_pass_selfsups_own_checks(tmp_path):
    source = real_image_sample(tmp_path / "source", unlabeled=300, labeled_per_class=40, test_per_class=30)
    counts = {"unlabeled": 300, "labeled_per_class": 40, "test_per_class": 30}
    folder = gpu_check.run_data_folder(source, tmp_path / "run_data", counts)
    assert sorted(path.name for path in (folder / "labeled").iterdir()) == sorted(
        path.name for path in (source / "labeled").iterdir())
    assert len(list((folder / "unlabeled").iterdir())) == 300
    # What the run's ImageExampleGen lists (it refuses symbolic links that lead out of the data folder).
    scanner = FolderScanner(root=str(folder))
    assert len(scanner.list_files("unlabeled")) == 300
    assert len(scanner.list_files("labeled")) == len(SAMPLE_CLASSES) * 40
    command = gpu_check.run_command(folder, tmp_path / "out")
    settings = [command[index + 1] for index, part in enumerate(command) if part == "--set"]
    assert settings == list(gpu_check.RUN_SETTINGS)
    config = load_config(None, {"data.path": str(folder)}, settings)
    assert (config.training.pretrain_epochs, config.training.precision, config.training.strategy) == (3, "auto",
                                                                                                      "auto")
    check_before_running(config, str(tmp_path / "out"))  # raises ValueError naming any problem


def _quick_cpu_check(tmp_path, *arguments):
    """Runs `python -m bench.gpu_check --quick --methods simclr ...` with every GPU hidden (so that this is the
    CPU path on any machine) on 64 real images; returns (the process, its JSON)."""
    sample = real_image_sample(tmp_path / "data", unlabeled=64, labeled_per_class=0, test_per_class=0)
    pattern = write_unlabeled_split(sample / "unlabeled", tmp_path / "examples")
    output = tmp_path / "gpu_check.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--quick", "--methods", "simclr", "--tfrecords", pattern,
         "--cache-dir", str(tmp_path / "cache"), "--output", str(output), *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"),
    )
    return completed, json.loads(output.read_text()) if output.exists() else None


def test_workers_still_building_when_the_budget_runs_out_are_stopped_and_listed(tmp_path):
    completed, result = _quick_cpu_check(tmp_path, "--budget-seconds", "1")
    assert completed.returncode == 3, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert result["status"] == "incomplete" and result["failed"] == [] and result["measurements"] == []
    stopped = next(part for part in result["skipped"] if part["part"] == "stopped at the budget")
    assert stopped["variants"] == ["simclr", "simclr+mirrored", "probe"]
    assert stopped["reason"].startswith("stopped: still building or measuring")


def test_cpu_path_measures_the_cpu_steps_and_names_every_skipped_part(tmp_path):
    completed, result = _quick_cpu_check(tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert result["status"] == "ok" and result["gpu"] is False and result["failed"] == []
    devices = result["devices"]
    assert devices["gpus"] == [] and devices["cpus"] and devices["diagnosis"].startswith("no GPU")
    assert devices["auto_precision"]["policy"] in ("float32", "mixed_bfloat16")

    parts = {part["part"]: part for part in result["skipped"]}
    assert set(parts) == {"mixed_float16 steps", "XLA steps", "MirroredStrategy over all GPUs", "probe in float16",
                          "selfsup run"}
    assert all(part["reason"].startswith("skipped: no GPU") for part in parts.values())
    assert "simclr+fp16+xla+mirrored" in parts["mixed_float16 steps"]["variants"]
    assert result["selfsup_run"] is None

    summary = result["summary"]
    for key in ("simclr[memory]", "simclr[tfrecord]", "simclr[tfrecord_only]", "simclr+mirrored[memory]",
                "probe[matmul_float32]"):
        assert summary[key]["rate"]["median"] > 0, key
    mirrored = next(variant for variant in result["variants"] if variant["name"] == "simclr+mirrored")
    assert mirrored["strategy"] == "mirrored" and mirrored["replicas"] == 1
    assert result["utilisation"]["simclr+mirrored[memory]"]["flops_counted_in"] == "simclr"
    assert 0 < result["utilisation"]["simclr[memory]"]["share_of_peak"]
    assert result["input_pipeline"]["can_feed_fastest_step"] in (True, False)
    for line in ("SKIPPED selfsup run: skipped: no GPU", "input pipeline: the TFRecord feed alone", "status: ok"):
        assert line in completed.stdout, line
