"""The throughput benchmark: FLOP counting (`bench.flops`) on models whose FLOPs are known analytically, the
utilisation arithmetic, and a smoke test of its entry point (`python -m bench.throughput --quick`).

The smoke test checks that one run produces well-formed results (every variant measured in every round,
positive rates, the ratios and utilisation it promises, the machine and load recorded). It never asserts a
timing: the figures of a smoke run on a shared CI machine mean nothing.
"""

import json
import math
import subprocess
import sys

import keras
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, real_image_sample

from bench import bf16_ops, flops, harness
from bench.machine import machine_info
from bench.throughput import utilisation
from components.image_example_gen.ingest import make_example
from trainer.encoders import build_encoder, forward_flops


def write_unlabeled_split(images_dir, examples_dir):
    """The unlabeled split as ImageExampleGen writes it (gzipped tf.Examples), without starting Beam."""
    split = examples_dir / "Split-unlabeled"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for path in sorted(images_dir.rglob("*.jpg")):
            writer.write(make_example(path.read_bytes(), -1, str(path.name)))
    return str(split / "*")


def test_dense_layer_flops_are_two_in_out_per_example_forward_and_twice_that_in_a_train_step():
    batch, inputs, units = 4, 7, 5
    dense = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(units, use_bias=False)])
    forward = flops.function_flops(lambda x: dense(x), tf.TensorSpec([batch, inputs]))
    assert forward["by_op_type"] == {"MatMul": 2 * batch * inputs * units}

    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(dense.trainable_variables)

    def train_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dense(x))
        gradients = tape.gradient(loss, dense.trainable_variables)
        optimizer.apply_gradients(zip(gradients, dense.trainable_variables))
        return loss

    step = flops.function_flops(train_step, tf.TensorSpec([batch, inputs]))
    # Forward and the kernel's gradient; the input's gradient, built by the tape but unused, is not run.
    assert step["by_op_type"]["MatMul"] == 2 * (2 * batch * inputs * units)
    assert step["not_counted"] == {"incomplete_shapes": {}, "nested_functions": {}}


def test_convolution_gradients_are_counted_as_the_forward_convolution_where_tensorflow_overcounts():
    images = tf.Variable(tf.zeros([2, 9, 9, 2]))
    kernel = tf.Variable(tf.zeros([3, 3, 2, 4]))

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(images, kernel, 2, "VALID"))  # (2, 4, 4, 4)
        image_gradient, kernel_gradient = tape.gradient(loss, [images, kernel])
        return loss + tf.reduce_sum(image_gradient) + tf.reduce_sum(kernel_gradient)

    forward = 2 * (2 * 4 * 4 * 4) * (3 * 3 * 2)
    counted = flops.function_flops(step)["by_op_type"]
    assert counted["Conv2D"] == counted["Conv2DBackpropInput"] == counted["Conv2DBackpropFilter"] == forward
    # Why bench.flops counts these two itself: TensorFlow's registered statistic divides the input size by
    # the strides, which overcounts a "valid" stride-2 convolution (9x9 input, 4x4 output).
    graph = tf.function(step).get_concrete_function().graph
    backprop_input = next(op for op in graph.get_operations() if op.type == "Conv2DBackpropInput")
    assert flops.registered_flops(backprop_input) == 2 * (2 * 9 * 9 * 2) * (3 * 3 * 4) // 4 > forward


def test_graph_count_of_an_encoder_forward_pass_equals_forward_flops():
    encoder = build_encoder("small_cnn", 32, 8)
    counted = flops.function_flops(lambda images: encoder(images), tf.TensorSpec([3, 32, 32, 3]))["by_op_type"]
    assert counted["Conv2D"] + counted["MatMul"] == 3 * forward_flops(encoder)


def test_a_pretraining_step_counts_both_views_forward_and_backward_and_byols_target_forward():
    simclr = flops.method_step_flops("small_cnn", 8, "simclr", batch_size=4)
    byol = flops.method_step_flops("small_cnn", 8, "byol", batch_size=4)
    forward_per_image = simclr["encoder_forward_per_image"]
    convolutions = forward_per_image - 2 * 8 * 8  # small_cnn's Dense(8) on 8 features is the rest
    for counted in (simclr, byol):
        by_type = counted["by_op_type"]
        assert by_type["Conv2DBackpropFilter"] == 4 * 2 * convolutions  # both views, batch 4
        assert by_type["Conv2DBackpropInput"] < by_type["Conv2DBackpropFilter"]  # none for the first convolution
    assert simclr["by_op_type"]["Conv2D"] == 4 * 2 * convolutions
    assert byol["by_op_type"]["Conv2D"] == 2 * simclr["by_op_type"]["Conv2D"]  # the target network's forward passes
    assert 5 * forward_per_image < simclr["per_image"] < byol["per_image"]


def _summary_row(variant, feed, median, unit):
    return {"variant": variant, "feed": feed, "unit": unit, "rate": {"median": median}}


def test_utilisation_is_achieved_gflops_over_the_probe_peak_in_the_step_dtype_times_replicas():
    variants = [
        {"name": "simclr", "model": "simclr", "precision": "float32", "replicas": 1, "flops": {"per_image": 1e8}},
        {"name": "simclr+mirrored", "model": "simclr", "precision": "float32", "replicas": 2, "flops": None},
        {"name": "simclr+fp16", "model": "simclr", "precision": "mixed_float16", "replicas": 1, "flops": {
            "per_image": 1e8}},
        {"name": "probe", "model": "probe", "precision": "float32", "flops": None},
    ]
    summary = {
        "simclr[memory]": _summary_row("simclr", "memory", 500.0, "images/s"),
        "simclr[augment_only]": _summary_row("simclr", "augment_only", 9000.0, "images/s"),
        "simclr+mirrored[memory]": _summary_row("simclr+mirrored", "memory", 800.0, "images/s"),
        "simclr+fp16[memory]": _summary_row("simclr+fp16", "memory", 900.0, "images/s"),
        "probe[matmul_float32]": _summary_row("probe", "matmul_float32", 100.0, "GFLOP/s"),
        "probe[conv_float32]": _summary_row("probe", "conv_float32", 125.0, "GFLOP/s"),
    }
    usage = utilisation(variants, summary)
    assert set(usage) == {"simclr[memory]", "simclr+mirrored[memory]", "simclr+fp16[memory]"}
    assert usage["simclr[memory]"]["achieved_gflops"] == pytest.approx(50.0)
    assert usage["simclr[memory]"]["peak_from"] == "probe[conv_float32]"
    assert usage["simclr[memory]"]["share_of_peak"] == pytest.approx(0.4)
    mirrored = usage["simclr+mirrored[memory]"]
    assert mirrored["flops_counted_in"] == "simclr" and mirrored["peak_gflops"] == pytest.approx(250.0)
    assert mirrored["share_of_peak"] == pytest.approx(80.0 / 250.0)
    fp16 = usage["simclr+fp16[memory]"]
    assert fp16["compute_dtype"] == "float16" and fp16["peak_gflops"] is None and fp16["share_of_peak"] is None


def test_the_one_probe_times_the_convolution_and_its_gradients_as_the_ops_a_training_step_runs():
    operations = bf16_ops.probe_operations("float32", 16, 2)
    assert tuple(operations) == bf16_ops.probe_feeds(("float32",)) == ("matmul_float32", "conv_float32",
                                                                        "conv_grad_float32")
    assert operations["conv_grad_float32"][1] == 3 * operations["conv_float32"][1] == 3 * bf16_ops.conv_flops(2)
    x, k, dy = bf16_ops.conv_inputs(2, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, k])
        forward = tf.nn.conv2d(x, k, bf16_ops.STRIDE, "SAME")
        weighted = tf.reduce_sum(forward * dy)
    grad_x, grad_k = tape.gradient(weighted, [x, k])
    ops = bf16_ops.conv_ops()
    assert float(ops["Conv2D"](x, k, dy)) == pytest.approx(float(tf.reduce_sum(forward)), rel=1e-4)
    assert float(ops["Conv2DBackpropInput"](x, k, dy)) == pytest.approx(float(tf.reduce_sum(grad_x)), rel=1e-4)
    assert float(ops["Conv2DBackpropFilter"](x, k, dy)) == pytest.approx(float(tf.reduce_sum(grad_k)), rel=1e-4)


def test_the_harness_summaries_and_the_machine_record():
    measurements = [{"round": r, "variant": v, "feed": "memory", "rate": rate, "rate_per_cpu_second": rate / 2,
                     "unit": "images/s", "loss": 1.0, "seconds": 2.0, "cpu_seconds": 3.0,
                     "load_before": [1.0, 0, 0], "load_after": [3.0, 0, 0]}
                    for r, v, rate in ((0, "a", 10.0), (0, "b", 20.0), (1, "b", 30.0), (1, "a", 10.0))]
    assert harness.round_orders([("a", "x"), ("b", "x"), ("c", "x")], 2) == [
        [("a", "x"), ("b", "x"), ("c", "x")], [("a", "x"), ("c", "x"), ("b", "x")]]
    ratios = harness.ratio_sections(measurements, [(("b", "memory"), ("a", "memory"))])
    assert ratios["ratios"]["b[memory] / a[memory]"]["per_round"] == [2.0, 3.0]
    assert ratios["ratios_per_cpu_second"]["b[memory] / a[memory]"]["median"] == 2.5
    loads = harness.load_sections(measurements)
    assert loads["load"] == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 8}
    assert loads["cpu_share"]["median"] == 1.5
    assert harness.load_sections([])["load"]["n"] == 0
    machine = machine_info()
    assert machine["versions"]["tensorflow"] == tf.__version__ and "avx512_bf16" in machine["cpu_flags"]


def test_quick_throughput_run_writes_well_formed_results(tmp_path):
    sample = real_image_sample(tmp_path / "data", unlabeled=64, labeled_per_class=0, test_per_class=0)
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
        "reference": "ok", "simclr": "ok", "probe": "ok"}
    measured = {(m["round"], m["variant"], m["feed"]) for m in result["measurements"]}
    assert measured == {(r, v, f) for r in (0, 1) for v, f in
                        (("reference", "memory"), ("simclr", "memory"), ("simclr", "tfrecord"),
                         ("probe", "matmul_float32"), ("probe", "conv_float32"), ("probe", "conv_grad_float32"))}
    for measurement in result["measurements"]:
        assert measurement["rate"] > 0 and measurement["seconds"] > 0
        assert measurement["variant"] == "probe" or math.isfinite(measurement["loss"])
        assert len(measurement["load_before"]) == 3
    simclr = next(variant for variant in result["variants"] if variant["name"] == "simclr")
    assert simclr["flops"]["per_image"] > 5 * simclr["flops"]["encoder_forward_per_image"] > 0
    usage = result["utilisation"]
    assert set(usage) == {"reference[memory]", "simclr[memory]", "simclr[tfrecord]"}
    for row in usage.values():
        assert row["compute_dtype"] == "float32" and row["peak_from"].startswith("probe[")
        assert 0 < row["share_of_peak"] == pytest.approx(row["achieved_gflops"] / row["peak_gflops"])
    assert "MFLOP/img" in completed.stdout and "% peak" in completed.stdout
    ratios = result["ratios"]
    for key in ("simclr[memory] / reference[memory]", "simclr[tfrecord] / simclr[memory]"):
        assert ratios[key]["n"] == 2
        assert 0 < ratios[key]["min"] <= ratios[key]["median"] <= ratios[key]["max"]
    assert all(variant["retraces_while_measured"] == 0 for variant in result["variants"] if variant["model"] != "probe")


def test_augment_speed_measures_both_variants_and_records_the_machine(tmp_path):
    from bench import augment_speed

    output = tmp_path / "augment.json"
    result = augment_speed.main(["--rounds", "1", "--calls", "2", "--batch", "8", "--output", str(output)])

    assert json.loads(output.read_text())["rounds"] == result["rounds"]
    assert set(result["rounds"][0]) == {"tf.function", "xla"}
    assert all(values["images_per_cpu_second"] > 0 for values in result["rounds"][0].values())
    assert "cpu_flags" in result["machine"] and len(result["xla_speedup_per_cpu_second"]) == 1
