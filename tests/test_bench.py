"""Smoke test of the throughput benchmark's entry point (`python -m bench.throughput --quick`).

It checks that one run produces well-formed results (every variant measured in every round, positive
rates, the ratios it promises, the machine and load recorded). It never asserts a timing: the figures
of a smoke run on a shared CI machine mean nothing.
"""

import json
import math
import subprocess
import sys

import tensorflow as tf
from conftest import REPO_ROOT, extract_cifar_sample

from components.image_example_gen.ingest import make_example


def write_unlabeled_split(images_dir, examples_dir):
    """The unlabeled split as ImageExampleGen writes it (gzipped tf.Examples), without starting Beam."""
    split = examples_dir / "Split-unlabeled"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for path in sorted(images_dir.rglob("*.jpg")):
            writer.write(make_example(path.read_bytes(), -1, str(path.name)))
    return str(split / "*")


def test_quick_throughput_run_writes_well_formed_results(tmp_path):
    sample = extract_cifar_sample(tmp_path / "data", unlabeled=64, labeled_per_class=0, test_per_class=0)
    pattern = write_unlabeled_split(sample / "unlabeled", tmp_path / "examples")
    output = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--quick", "--rounds", "2", "--steps", "2",
         "--tfrecords", pattern, "--cache-dir", str(tmp_path / "cache"), "--output", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "ratio (same round)" in completed.stdout

    result = json.loads(output.read_text())
    assert result["settings"]["quick"] is True
    assert result["machine"]["nproc"] >= 1 and result["machine"]["cpu_model"]
    assert {variant["name"]: variant["status"] for variant in result["variants"]} == {
        "reference": "ok", "simclr": "ok"}
    measured = {(m["round"], m["variant"], m["feed"]) for m in result["measurements"]}
    assert measured == {(r, v, f) for r in (0, 1) for v, f in
                        (("reference", "memory"), ("simclr", "memory"), ("simclr", "tfrecord"))}
    for measurement in result["measurements"]:
        assert measurement["rate"] > 0 and measurement["seconds"] > 0 and math.isfinite(measurement["loss"])
        assert len(measurement["load_before"]) == 3
    ratios = result["ratios"]
    for key in ("simclr[memory] / reference[memory]", "simclr[tfrecord] / simclr[memory]"):
        assert ratios[key]["n"] == 2
        assert 0 < ratios[key]["min"] <= ratios[key]["median"] <= ratios[key]["max"]
    assert all(variant["retraces_while_measured"] == 0 for variant in result["variants"])
