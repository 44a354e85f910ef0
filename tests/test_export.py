"""The exported SavedModel: both signatures decode inside the model and agree."""

import numpy as np
import pytest
import tensorflow as tf
from image_samples import GOOD_IMAGES

from components.image_example_gen.ingest import make_example
from trainer.encoders import build_encoder
from trainer.export import SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGES_SIGNATURE, export_classifier
from trainer.finetune import build_classifier

CLASS_NAMES = ["airplane", "automobile", "frog"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    encoder = build_encoder("small_cnn", 32, width=8)
    classifier = build_classifier(encoder, len(CLASS_NAMES), 32, is_sequence=False)
    export_dir = str(tmp_path_factory.mktemp("model") / "Format-Serving")
    export_classifier(classifier, CLASS_NAMES, 32, export_dir)
    return classifier, tf.saved_model.load(export_dir)


def real_jpegs(cifar_sample, count=4):
    return [path.read_bytes() for path in sorted(cifar_sample.glob("test/*/*.jpg"))[:count]]


def test_both_signatures_exist_with_string_inputs(exported):
    _, loaded = exported
    assert set(loaded.signatures) == {SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGES_SIGNATURE}
    for name, input_name in ((SERVING_EXAMPLES_SIGNATURE, "examples"), (SERVING_IMAGES_SIGNATURE, "images")):
        spec = loaded.signatures[name].structured_input_signature[1][input_name]
        assert spec.dtype == tf.string and spec.shape.as_list() == [None]


def test_raw_bytes_and_tf_examples_give_the_same_answer(exported, cifar_sample):
    classifier, loaded = exported
    jpegs = real_jpegs(cifar_sample)
    from_images = loaded.signatures[SERVING_IMAGES_SIGNATURE](images=tf.constant(jpegs))
    examples = [make_example(jpeg, 0, "x.jpg") for jpeg in jpegs]
    from_examples = loaded.signatures[SERVING_EXAMPLES_SIGNATURE](examples=tf.constant(examples))
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
    (SERVING_EXAMPLES_SIGNATURE, "examples", "serialized tf.Example", lambda jpeg: make_example(jpeg, 0, "x.jpg")),
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
