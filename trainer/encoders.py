"""Image encoders: float32 images (batch, image_size, image_size, 3) in [0, 1] to features.

Encoders (names from `trainer.hparams.ENCODERS`) and their outputs:

* `small_cnn`: the keras-io `semisupervised_simclr` encoder, four 3x3 stride-2
  ReLU convolutions of `width` filters ("valid" padding, as keras-io: 32x32
  images shrink to 1x1, so image_size >= 32), Flatten, Dense(width, relu).
  Features (batch, width).
* `resnet18_cifar`: CIFAR-style ResNet-18 (3x3 stride-1 stem, no max-pool, four
  stages of two basic blocks with [width/2, width, 2 width, 4 width] filters,
  batch norm, global average pooling). width=128 gives the standard 64..512.
  Features (batch, 4 * width).
* `resnet10_cifar`: a BatchNorm conv net sized for a few CPU cores, in the
  layout of the DAWNBench ResNet-9 and airbench: a 3x3 stem of width/4 filters
  with batch norm and ReLU, then three stages of width/2, width and 2 width
  filters (width=128 gives 32 -> 64-128-256), each a 3x3 conv, 2x2 max-pool,
  batch norm and ReLU followed by one residual block of two 3x3 conv + batch
  norm + ReLU (added to its input), then global max pooling. Ten convolutions;
  "same" padding, so image_size >= 8 (a 32x32 image ends at 4x4).
  Features (batch, 2 * width).
* `resnet50`, `efficientnet_b0`: `keras.applications` backbones with average
  pooling, `width` is ignored. Features (batch, 2048) and (batch, 1280). The
  images are rescaled to what the application expects. image_size >= 32.
* `sequence_cnn`: for wide images such as text lines. Two conv blocks of stride
  (2, 2), then blocks of stride (2, 1) until the height is 1; the width axis is
  the time axis. Sequence features (batch, T, width) with
  T = ceil(image_size / 4).

`weights` is None (random initialisation) or the path of a local weights file:
for the applications, a Keras applications weights file without the top
(`..._notop.h5`); for the other encoders, a file written by `save_weights` of
an encoder built with the same arguments. Nothing is ever downloaded.

`forward_flops(encoder)` counts an encoder's multiply-adds per image (for the
benchmarks' MFLOP/image).
"""

import math
import os
from typing import Optional

import keras
from keras import layers

from trainer.hparams import ENCODERS, min_image_size

SEQUENCE_ENCODERS = ("sequence_cnn",)
APPLICATION_ENCODERS = ("resnet50", "efficientnet_b0")

MIN_WIDTH = 2


def build_encoder(name: str, image_size: int, width: int = 128, weights: Optional[str] = None) -> keras.Model:
    """Builds the encoder called `name`.

    Args:
        name: one of `trainer.hparams.ENCODERS`.
        image_size: height and width of the input images: at least 32 for
            small_cnn, resnet50 and efficientnet_b0, at least 8 for the others.
        width: number of filters that sets the size of small_cnn, resnet18_cifar,
            resnet10_cifar and sequence_cnn (ignored by the applications), at least 2.
        weights: None, or the path of a local weights file.

    Returns:
        A Keras model from (batch, image_size, image_size, 3) float32 images in
        [0, 1] to (batch, features) features, or to (batch, T, width) sequence
        features for sequence_cnn (see the module docstring).

    Raises:
        ValueError: unknown name, image_size or width too small, "imagenet"
            weights, or a weights file that does not exist.
    """
    _check_name(name)
    _check_weights(weights)
    minimum_size = min_image_size(name)
    if image_size < minimum_size:
        raise ValueError(f"encoder {name!r} needs image_size of at least {minimum_size}, got {image_size}")
    if width < MIN_WIDTH:
        raise ValueError(f"encoder width must be at least {MIN_WIDTH}, got {width}")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
    if name in APPLICATION_ENCODERS:
        return keras.Model(inputs, _application_features(name, inputs, weights), name=name)
    builders = {"small_cnn": _small_cnn, "resnet18_cifar": _resnet18_cifar, "resnet10_cifar": _resnet10_cifar,
                "sequence_cnn": _sequence_cnn}
    encoder = keras.Model(inputs, builders[name](inputs, width), name=name)
    if weights is not None:
        encoder.load_weights(weights)
    return encoder


def encoder_outputs_sequence(name: str) -> bool:
    """Whether the encoder `name` gives sequence features (batch, T, D) rather than (batch, D).

    Raises:
        ValueError: unknown name.
    """
    _check_name(name)
    return name in SEQUENCE_ENCODERS


def forward_flops(encoder: keras.Model) -> int:
    """Floating-point operations of one image's forward pass, counted from the built model's layers.

    Each Conv2D, DepthwiseConv2D and Dense layer (also inside nested models such as the
    keras.applications backbones) counts 2 x its multiply-accumulates, from the shapes of the
    layer's first call: Conv2D out_height * out_width * filters * kernel_height * kernel_width
    * in_channels / groups, DepthwiseConv2D out_height * out_width * out_channels *
    kernel_height * kernel_width, Dense (product of the non-batch input dimensions but the last)
    * units * in_features. Biases, batch norm, activations, pooling, additions and resizing are
    not counted (they are a few percent of a conv net's operations).

    Args:
        encoder: a built Keras model, e.g. from `build_encoder`.

    Returns:
        The number of operations per image (divide by 1e6 for MFLOP/image).
    """
    total = 0
    for layer in encoder.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            output_shape = layer.output.shape
            kernel_shape = layer.kernel.shape
            if isinstance(layer, layers.Dense):
                positions = math.prod(layer.input.shape[1:-1])
                multiply_adds = positions * kernel_shape[0] * kernel_shape[1]
            elif isinstance(layer, layers.DepthwiseConv2D):
                # kernel (kh, kw, in_channels, depth_multiplier): one kh x kw filter per output channel.
                multiply_adds = math.prod(output_shape[1:]) * kernel_shape[0] * kernel_shape[1]
            else:
                # kernel (kh, kw, in_channels / groups, filters).
                multiply_adds = math.prod(output_shape[1:]) * math.prod(kernel_shape[:3])
            total += 2 * multiply_adds
    return int(total)


def _check_name(name: str) -> None:
    """Raises ValueError naming `name` unless it is a known encoder."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {list(ENCODERS)}")


def _check_weights(weights: Optional[str]) -> None:
    """Raises ValueError unless `weights` is None or an existing local file."""
    if weights is None:
        return
    if weights == "imagenet":
        raise ValueError(
            "encoder weights 'imagenet' would need a download, which is impossible here: "
            "give the path of a local weights file (for example resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)"
        )
    if not os.path.isfile(weights):
        raise ValueError(f"encoder weights file {weights!r} does not exist")


def _application_features(name: str, images, weights: Optional[str]):
    """Average-pooled features of a keras.applications backbone on [0, 1] images."""
    pixels = layers.Rescaling(255.0, name="to_0_255")(images)
    input_shape = tuple(images.shape[1:])
    if name == "resnet50":
        backbone = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape, pooling="avg"
        )
        return backbone(keras.applications.resnet50.preprocess_input(pixels))
    # EfficientNet rescales and normalises [0, 255] pixels itself.
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=weights, input_shape=input_shape, pooling="avg"
    )
    return backbone(pixels)


def _small_cnn(images, width: int):
    """keras-io SimCLR encoder: 4 x Conv2D(width, 3, stride 2, relu), Flatten, Dense(width, relu)."""
    features = images
    for index in range(4):
        features = layers.Conv2D(
            width, kernel_size=3, strides=2, padding="valid", activation="relu", name=f"conv{index + 1}"
        )(features)
    features = layers.Flatten(name="flatten")(features)
    return layers.Dense(width, activation="relu", name="dense")(features)


def _resnet18_cifar(images, width: int):
    """CIFAR ResNet-18: 3x3 stem, 4 stages of 2 basic blocks, global average pooling; (batch, 4 * width)."""
    features = _conv_norm_relu(images, width // 2, kernel_size=3, strides=1, name="stem")
    stage_filters = (width // 2, width, 2 * width, 4 * width)
    for stage, filters in enumerate(stage_filters, start=1):
        for block in (1, 2):
            strides = 2 if stage > 1 and block == 1 else 1
            features = _basic_block(features, filters, strides, name=f"stage{stage}_block{block}")
    return layers.GlobalAveragePooling2D(name="average_pool")(features)


def _basic_block(inputs, filters: int, strides: int, name: str):
    """ResNet basic block: two 3x3 conv + batch norm, with a 1x1 projection shortcut when the shape changes."""
    residual = _conv_norm_relu(inputs, filters, kernel_size=3, strides=strides, name=f"{name}_conv1")
    residual = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(residual)
    residual = layers.BatchNormalization(name=f"{name}_conv2_norm")(residual)
    shortcut = inputs
    if strides != 1 or inputs.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_shortcut")(inputs)
        shortcut = layers.BatchNormalization(name=f"{name}_shortcut_norm")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, residual]))


def _resnet10_cifar(images, width: int):
    """Conv-pool-BN-ReLU stages of [width/2, width, 2 width] with a residual block each; (batch, 2 * width)."""
    features = _conv_norm_relu(images, max(1, width // 4), kernel_size=3, strides=1, name="stem")
    for stage, filters in enumerate((max(1, width // 2), width, 2 * width), start=1):
        name = f"stage{stage}"
        features = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(features)
        features = layers.MaxPooling2D(2, name=f"{name}_pool")(features)
        features = layers.BatchNormalization(name=f"{name}_norm")(features)
        features = layers.ReLU(name=f"{name}_relu")(features)
        residual = _conv_norm_relu(features, filters, kernel_size=3, strides=1, name=f"{name}_residual1")
        residual = _conv_norm_relu(residual, filters, kernel_size=3, strides=1, name=f"{name}_residual2")
        features = layers.Add(name=f"{name}_add")([features, residual])
    return layers.GlobalMaxPooling2D(name="max_pool")(features)


def _sequence_cnn(images, width: int):
    """Conv blocks that halve the height down to 1 and the width twice; (batch, ceil(size / 4), width)."""
    features = _conv_norm_relu(images, width // 2, kernel_size=3, strides=(2, 2), name="block1")
    features = _conv_norm_relu(features, width, kernel_size=3, strides=(2, 2), name="block2")
    height_halvings = math.ceil(math.log2(features.shape[1]))
    for index in range(height_halvings):
        features = _conv_norm_relu(features, width, kernel_size=3, strides=(2, 1), name=f"block{index + 3}")
    return layers.Reshape((features.shape[2], width), name="to_sequence")(features)


def _conv_norm_relu(inputs, filters: int, kernel_size: int, strides, name: str):
    """Conv2D ("same" padding, no bias), batch norm and ReLU."""
    features = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name)(inputs)
    features = layers.BatchNormalization(name=f"{name}_norm")(features)
    return layers.ReLU(name=f"{name}_relu")(features)
