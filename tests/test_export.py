"""The exported SavedModel: both signatures decode inside the model and agree; the `.keras` and TFLite
copies in its assets.extra/ predict what it predicts on real eval images, under float32 and mixed_bfloat16."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from image_samples import GOOD_IMAGES

from components.image_example_gen.ingest import make_example
from trainer import contract, data, export, run
from trainer.contract import SERVING_IMAGES_SIGNATURE, SERVING_SIGNATURE
from trainer.encoders import build_encoder
from trainer.export import export_classifier
from trainer.finetune import build_classifier
from trainer.hparams import TrainingConfig

CLASS_NAMES = ["airplane", "automobile", "frog"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    encoder = build_encoder("small_cnn", 32, width=8)
    classifier = build_classifier(encoder, len(CLASS_NAMES), 32, is_sequence=False)
    export_dir = str(tmp_path_factory.mktemp("model") / "Format-Serving")
    export_classifier(classifier, CLASS_NAMES, 32, export_dir)
    return classifier, tf.saved_model.load(export_dir)


def real_jpegs(real_images, count=4):
    return [path.read_bytes() for path in sorted(real_images.glob("test/*/*.jpg"))[:count]]


def test_both_signatures_exist_with_string_inputs(exported):
    _, loaded = exported
    assert set(loaded.signatures) == {SERVING_SIGNATURE, SERVING_IMAGES_SIGNATURE}
    for name, input_name in ((SERVING_SIGNATURE, "examples"), (SERVING_IMAGES_SIGNATURE, "images")):
        spec = loaded.signatures[name].structured_input_signature[1][input_name]
        assert spec.dtype == tf.string and spec.shape.as_list() == [None]


def test_raw_bytes_and_tf_examples_give_the_same_answer(exported, real_images):
    classifier, loaded = exported
    jpegs = real_jpegs(real_images)
    from_images = loaded.signatures[SERVING_IMAGES_SIGNATURE](images=tf.constant(jpegs))
    examples = [make_example(jpeg, 0, "x.jpg") for jpeg in jpegs]
    from_examples = loaded.signatures[SERVING_SIGNATURE](examples=tf.constant(examples))
    np.testing.assert_allclose(from_images["probabilities"], from_examples["probabilities"], atol=1e-6)
    np.testing.assert_allclose(tf.reduce_sum(from_images["probabilities"], axis=1), 1.0, atol=1e-5)
    classes = [CLASS_NAMES[index] for index in from_images["class_ids"].numpy()]
    assert [name.decode() for name in from_images["classes"].numpy()] == classes
    # The served model computes what the Keras classifier computes on the decoded image.
    decoded = tf.stack([tf.image.resize(tf.io.decode_jpeg(jpeg, channels=3) / 255, [32, 32], antialias=True)
                        for jpeg in jpegs])
    np.testing.assert_allclose(classifier(decoded).numpy(), from_images["probabilities"], atol=1e-5)


@pytest.mark.parametrize("name", sorted(GOOD_IMAGES))
def test_serving_accepts_every_supported_image_kind(exported, name):
    _, loaded = exported
    result = loaded.signatures[SERVING_IMAGES_SIGNATURE](images=tf.constant([GOOD_IMAGES[name]()]))
    assert result["probabilities"].shape == (1, len(CLASS_NAMES))



@pytest.mark.parametrize("signature, input_name, what, one_input", [
    (SERVING_IMAGES_SIGNATURE, "images", "encoded image", lambda jpeg: jpeg),
    (SERVING_SIGNATURE, "examples", "serialized tf.Example", lambda jpeg: make_example(jpeg, 0, "x.jpg")),
])
def test_an_empty_batch_is_refused_with_a_clear_error(exported, signature, input_name, what, one_input):
    _, loaded = exported
    serve = loaded.signatures[signature]
    message = f"{signature}: the batch is empty; send at least one {what}"

    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(**{input_name: tf.constant([], tf.string)})

    # A batch of one still works.
    one = serve(**{input_name: tf.constant([one_input(GOOD_IMAGES["rgb jpeg"]())])})
    assert one["probabilities"].shape == (1, len(CLASS_NAMES))


# --- classifier.keras and model.tflite, from a Trainer on real digit scans ------------------------------------

IMAGE_SIZE = 32
EVAL_IMAGES = 64
TINY = dict(fixmatch_epochs=0,  # FixMatch: tests/test_fixmatch.py
            encoder="small_cnn", encoder_width=16, image_size=IMAGE_SIZE, finetune_batch_size=32, linear_epochs=10,
            finetune_epochs=10, baseline_learning_rate=3e-3, finetune_augment={"flip_probability": 0.0},
            seed=0, strategy="default")
# TFLite computes in float32 whatever the training precision; a bfloat16 SavedModel's probabilities differ from
# it by bfloat16's rounding (8 bits of mantissa; 0.0035 measured here).
TFLITE_VS_SAVED_MODEL = {"float32": 1e-4, "mixed_bfloat16": 0.02}


@pytest.fixture(scope="module", params=sorted(TFLITE_VS_SAVED_MODEL))
def trained_export(request, digits_examples_uri, tmp_path_factory):
    """A baseline trained for 20 epochs on the digits under `training.precision` = the param and exported by
    the Trainer (run.train_and_export); returns (precision, serving folder, 64 serialized eval examples, the
    SavedModel's serving_default probabilities on them (64, 10))."""
    precision = request.param
    config = TrainingConfig(precision=precision, **TINY)
    folder = tmp_path_factory.mktemp(f"baseline-{precision}")
    serving_dir = str(folder / "model" / "1" / "Format-Serving")
    run.train_and_export(dict(config.baseline_dict(), role="baseline"),
                         data.split_files(digits_examples_uri, "train"), serving_dir, str(folder / "logs"),
                         str(folder / "backup"))
    files = tf.io.gfile.glob(os.path.join(digits_examples_uri, "Split-eval", "*"))
    examples = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(EVAL_IMAGES)))
    saved_model = tf.saved_model.load(serving_dir).signatures[SERVING_SIGNATURE]
    return precision, serving_dir, examples, saved_model(examples=examples)["probabilities"].numpy()


def decoded_images(examples):
    """(N, S, S, 3) float32 in [0, 1]: the images as the serving signatures decode and resize them."""
    return data.decode_image_batch(data.parse_examples(examples)[data.IMAGE_FEATURE], IMAGE_SIZE).numpy()


def tflite_probabilities(serving_dir, images):
    interpreter = tf.lite.Interpreter(
        model_path=os.path.join(serving_dir, export.EXTRA_FILES_FOLDER, export.TFLITE_FILE))
    assert interpreter.get_signature_list() == {
        export.TFLITE_SIGNATURE: {"inputs": [export.TFLITE_INPUT], "outputs": [export.TFLITE_OUTPUT]}}
    (inputs,) = interpreter.get_input_details()
    assert inputs["shape"].tolist() == [1, IMAGE_SIZE, IMAGE_SIZE, 3] and inputs["dtype"] == np.float32
    # Float32 throughout (int32 only for shapes), also when trained under mixed_bfloat16.
    assert {detail["dtype"] for detail in interpreter.get_tensor_details()} <= {np.float32, np.int32}
    serve = interpreter.get_signature_runner(export.TFLITE_SIGNATURE)
    return np.concatenate([serve(**{export.TFLITE_INPUT: image[None]})[export.TFLITE_OUTPUT] for image in images])


def test_the_extra_files_are_inside_the_saved_model_folder_and_it_still_loads(trained_export, digits_examples_uri):
    _, serving_dir, _, expected = trained_export
    extra = os.path.join(serving_dir, export.EXTRA_FILES_FOLDER)
    assert sorted(os.listdir(extra)) == sorted([export.KERAS_FILE, export.TFLITE_FILE, contract.CLASS_NAMES_FILE])
    with open(os.path.join(extra, contract.CLASS_NAMES_FILE)) as exported, \
            open(os.path.join(digits_examples_uri, contract.CLASS_NAMES_FILE)) as ingested:
        assert json.load(exported) == json.load(ingested)
    assert expected.shape == (EVAL_IMAGES, 10)  # the SavedModel loaded and served with assets.extra/ inside


def test_tflite_predicts_what_the_saved_model_predicts_on_eval_images(trained_export):
    precision, serving_dir, examples, expected = trained_export
    probabilities = tflite_probabilities(serving_dir, decoded_images(examples))
    assert np.abs(probabilities - expected).max() < TFLITE_VS_SAVED_MODEL[precision]
    if precision == "float32":
        np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    else:  # bfloat16 rounding may swap two nearly equal classes, rarely
        assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= 0.95
    # A trained model, not near-uniform probabilities that would agree whatever the weights.
    assert expected.max(axis=1).mean() > 2 / expected.shape[1]


def test_the_keras_file_loads_and_predicts_what_the_saved_model_predicts(trained_export):
    precision, serving_dir, examples, expected = trained_export
    loaded = keras.models.load_model(os.path.join(serving_dir, export.EXTRA_FILES_FOLDER, export.KERAS_FILE))
    images = decoded_images(examples)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-5)
    if precision != "float32":  # TFLite is that model computed in float32: rebuilt under float32, same weights
        float32_classifier = build_classifier(build_encoder("small_cnn", IMAGE_SIZE, width=16), expected.shape[1],
                                              IMAGE_SIZE, is_sequence=False)
        float32_classifier.set_weights(loaded.get_weights())
        np.testing.assert_allclose(tflite_probabilities(serving_dir, images),
                                   float32_classifier.predict(images, verbose=0), atol=1e-4)
