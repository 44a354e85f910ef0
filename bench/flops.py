"""Floating-point operations of a traced TensorFlow function, counted from the ops of its graph.

    python -m bench.flops small_cnn:128 resnet10_cifar:32 [--batch-size 256]   # a table per encoder and method

`function_flops(function, *input_specs)` traces `function` (e.g. a model's `train_step`) for inputs of
fixed shapes and sums the FLOPs of the ops that running the graph executes: the ancestors of its outputs
and of its stateful ops (variable updates), as TensorFlow prunes the rest at run time. (A gradient tape
builds, for instance, the input gradient of the first convolution, which nothing uses.)

Each op counts TensorFlow's own registered "flops" statistic (the registry of `tf.compat.v1.profiler`:
MatMul, BatchMatMul, Conv2D, BiasAdd, pooling, element-wise arithmetic, reductions ...), except
Conv2DBackpropInput and Conv2DBackpropFilter: their registered formula takes the convolution's input
size divided by its strides, which is exact for "same" padding only (it counts 14% too many for the 3x3
stride-2 "valid" convolutions of small_cnn on 32x32 images). Both are counted here exactly, as the
forward convolution they differentiate: 2 x out_backprop elements x kernel height x kernel width x
input channels. Ops without a registered statistic (ReLU, batch normalisation, casts, random numbers,
gathers ...) count 0, as do ops inside nested functions (tf.cond / tf.while branches); what was left out
is reported (`not_counted`).
"""

import argparse
import collections
import sys
from typing import Callable, Dict, Iterable, List

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  (registers the statistics)

EXACT_CONV_GRADIENTS = ("Conv2DBackpropInput", "Conv2DBackpropFilter")
NESTED_FUNCTION_OPS = ("If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall",
                       "Case", "StatelessCase")


def executed_operations(graph) -> List[tf.Operation]:
    """The ops of a FuncGraph that running it executes: ancestors of its outputs and control outputs."""
    roots = [tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
    seen, stack = set(), roots
    while stack:
        operation = stack.pop()
        if operation.name in seen:
            continue
        seen.add(operation.name)
        stack.extend(tensor.op for tensor in operation.inputs)
        stack.extend(operation.control_inputs)
    return [operation for operation in graph.get_operations() if operation.name in seen]


def registered_flops(operation: tf.Operation) -> int:
    """TensorFlow's registered "flops" statistic of one op (0 without one).

    Raises:
      ValueError: a shape the statistic needs is not fully defined.
    """
    stats = tf_ops.get_stats_for_node_def(operation.graph, operation.node_def, "flops")
    return int(stats.value or 0)


def operation_flops(operation: tf.Operation) -> int:
    """FLOPs of one op: the registered statistic, or the exact count for the two convolution gradients.

    Raises:
      ValueError: a shape the count needs is not fully defined.
    """
    if operation.type not in EXACT_CONV_GRADIENTS:
        return registered_flops(operation)
    # Conv2DBackpropInput(input_sizes, filter, out_backprop) -> input gradient;
    # Conv2DBackpropFilter(input, filter_sizes, out_backprop) -> filter gradient (the kernel's shape).
    kernel = operation.inputs[1].shape if operation.type == "Conv2DBackpropInput" else operation.outputs[0].shape
    out_backprop = operation.inputs[2].shape
    if not (kernel.is_fully_defined() and out_backprop.is_fully_defined()):
        raise ValueError(f"{operation.name}: shapes not fully defined ({kernel}, {out_backprop})")
    kernel_height, kernel_width, input_channels, _ = kernel.as_list()
    return 2 * out_backprop.num_elements() * kernel_height * kernel_width * input_channels


def graph_flops(operations: Iterable[tf.Operation]) -> dict:
    """Sum of `operation_flops` over `operations`, by op type, with what could not be counted.

    Returns:
      {"total": FLOPs, "by_op_type": {op type: FLOPs} (largest first, zero types left out),
       "not_counted": {"incomplete_shapes": {op type: ops}, "nested_functions": {op type: ops}}}.
    """
    by_type: Dict[str, int] = collections.Counter()
    incomplete: Dict[str, int] = collections.Counter()
    nested: Dict[str, int] = collections.Counter()
    for operation in operations:
        if operation.type in NESTED_FUNCTION_OPS:
            nested[operation.type] += 1
            continue
        try:
            flops = operation_flops(operation)
        except ValueError:
            incomplete[operation.type] += 1
            continue
        if flops:
            by_type[operation.type] += flops
    return {
        "total": int(sum(by_type.values())),
        "by_op_type": dict(sorted(by_type.items(), key=lambda item: -item[1])),
        "not_counted": {"incomplete_shapes": dict(incomplete), "nested_functions": dict(nested)},
    }


def function_flops(function: Callable, *input_specs: tf.TensorSpec) -> dict:
    """`graph_flops` of the ops that one call of `function` on inputs of `input_specs` executes.

    `function` is traced (never run) with `tf.function`; give specs with fully defined shapes.
    """
    concrete = tf.function(function).get_concrete_function(*input_specs)
    return graph_flops(executed_operations(concrete.graph))


def train_step_flops(train_step: Callable, batch_size: int, image_size: int) -> dict:
    """FLOPs of one SSL train step on a batch of (batch_size, image_size, image_size, 3) float32 images.

    `train_step` is the model's `train_step` (the two augmented views, both forward passes, the loss,
    the gradients and the optimizer's update), traced under the default strategy.

    Returns:
      `graph_flops`'s dict, with "per_image" (total / batch_size) and "batch_size" added.
    """
    counted = function_flops(train_step, tf.TensorSpec([batch_size, image_size, image_size, 3], tf.float32))
    return {**counted, "batch_size": batch_size, "per_image": counted["total"] / batch_size}


def method_step_flops(encoder_name: str, width: int, method: str, batch_size: int = 256,
                      image_size: int = 32) -> dict:
    """`train_step_flops` of `method`'s pretraining step with this encoder, built as the Pretrainer builds it
    (every other setting at its TrainingConfig default), with the encoder's `forward_flops` per image."""
    from trainer.augment import build_pretrain_augmenter
    from trainer.encoders import build_encoder, forward_flops
    from trainer.hparams import TrainingConfig
    from trainer.methods import build_method
    from trainer.optimizers import build_optimizer

    config = TrainingConfig(encoder=encoder_name, encoder_width=width, method=method, batch_size=batch_size,
                            image_size=image_size)

    def make_encoder():
        return build_encoder(config.encoder, config.image_size, config.encoder_width, config.encoder_weights)

    augmenter = build_pretrain_augmenter(config.pretrain_augment, config.image_size, config.seed)
    model = build_method(config, make_encoder(), augmenter, False, make_encoder, steps_per_epoch=100)
    model.compile(optimizer=build_optimizer(config.optimizer, config.pretrain_learning_rate, config.weight_decay,
                                            1000, 100))
    model.optimizer.build(model.optimized_variables)
    return {**train_step_flops(model.train_step, batch_size, image_size),
            "encoder_forward_per_image": forward_flops(model.encoder)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flops", description="Pretraining-step FLOPs per image, "
                                     "counted from the traced train_step, per ENCODER:WIDTH and method")
    parser.add_argument("encoders", nargs="+", metavar="ENCODER:WIDTH")
    parser.add_argument("--methods", default="simclr,simsiam,byol")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    print(f"{'encoder':<22}{'method':<9}{'forward MFLOP/img':>18}{'step MFLOP/img':>16}{'step / forward':>16}"
          f"  largest op types (MFLOP/img)")
    for spec in args.encoders:
        name, width = spec.split(":")
        for method in args.methods.split(","):
            counted = method_step_flops(name, int(width), method, args.batch_size)
            forward, step = counted["encoder_forward_per_image"], counted["per_image"]
            largest = ", ".join(f"{op} {value / args.batch_size / 1e6:.1f}"
                                for op, value in list(counted["by_op_type"].items())[:4])
            print(f"{spec:<22}{method:<9}{forward / 1e6:>18.1f}{step / 1e6:>16.1f}{step / forward:>16.2f}  {largest}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
