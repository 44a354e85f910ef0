"""The config file: defaults, overrides, and errors that name the bad key before any work."""

import logging
import re

import pytest

from pipeline.config import Config, ConfigError, load_config
from trainer.hparams import TrainingConfig


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file():
    config = load_config()
    assert config == Config()
    assert config.training.method == "simclr"
    assert config.evaluation.margin == 0.0


def test_file_values_and_cli_overrides(tmp_path):
    path = write(tmp_path, "training:\n  method: simsiam\n  batch_size: 64\ndata:\n  path: /from/file\n")
    config = load_config(path, {"training.method": "byol", "data.path": "/from/cli"})
    assert config.training.method == "byol"  # the flag wins over the file
    assert config.training.batch_size == 64  # the file wins over the default
    assert config.data.path == "/from/cli"


def test_integer_accepted_where_a_float_is_expected(tmp_path):
    config = load_config(write(tmp_path, "training:\n  temperature: 1\n"))
    assert config.training.temperature == 1.0 and isinstance(config.training.temperature, float)


@pytest.mark.parametrize(
    "text, key",
    [
        ("training:\n  bacth_size: 10\n", "training.bacth_size"),
        ("trainign:\n  batch_size: 10\n", "trainign"),
        ("training:\n  batch_size: ten\n", "training.batch_size"),
        ("training:\n  batch_size: 12.5\n", "training.batch_size"),
        ("training:\n  batch_size: -8\n", "training.batch_size"),
        ("training:\n  batch_size: 0\n", "training.batch_size"),
        ("training:\n  method: mocov3\n", "training.method"),
        ("training:\n  projection_batch_norm: 'yes'\n", "training.projection_batch_norm"),
        ("training:\n  pretrain_augment:\n    hue_jitter: 0.1\n", "training.pretrain_augment.hue_jitter"),
        ("training:\n  pretrain_augment:\n    flip_probability: 1.5\n",
         "training.pretrain_augment.flip_probability"),
        ("training:\n  strategy: tpu\n", "training.tpu_address"),
        ("training:\n  image_size: 16\n", "training.image_size"),
        ("training:\n  distill_epochs: -1\n", "training.distill_epochs"),
        ("training:\n  distill_epochs: 1.5\n", "training.distill_epochs"),
        ("training:\n  distill_temperature: 0\n", "training.distill_temperature"),
        ("training:\n  distill_learning_rate: -0.001\n", "training.distill_learning_rate"),
        ("training:\n  distill_labeled_weight: -0.5\n", "training.distill_labeled_weight"),
        ("training:\n  distill_labeled_weight: lots\n", "training.distill_labeled_weight"),
        ("evaluation:\n  min_accuracy: 1.5\n", "evaluation.min_accuracy"),
        ("evaluation:\n  margin: 2\n", "evaluation.margin"),
        ("evaluation:\n  significance_level: 0\n", "evaluation.significance_level"),
        ("evaluation:\n  significance_level: 1.5\n", "evaluation.significance_level"),
        ("evaluation:\n  require_significant: maybe\n", "evaluation.require_significant"),
        ("data:\n  source: s3bucket\n", "data.source"),
        ("data:\n  max_bad_fraction: -0.1\n", "data.max_bad_fraction"),
        ("training:\n  labels_per_class: 0\n", "training.labels_per_class"),
        ("training:\n  decode_cache_mb: -1\n", "training.decode_cache_mb"),
        ("training:\n  decode_cache_dir: ' '\n", "training.decode_cache_dir"),
        ("data:\n  labels_per_class: 5\n", "data.labels_per_class': moved to 'training.labels_per_class"),
        ("data:\n  source: tfds\n", "data.tfds_name"),
        ("data:\n  source: tfds\n  tfds_name: mnist_unknown_splits\n", "data.tfds_splits"),
        ("data:\n  class_names: [cat]\n", "data.class_names"),
        ("data:\n  source: tfrecord\n  path: /records\n", "data.class_names"),
        ("data:\n  on_eval_duplicates: ignore\n", "data.on_eval_duplicates"),
        ("pipeline:\n  beam_args: --runner=DirectRunner\n", "pipeline.beam_args"),
        ("training: [1, 2]\n", "training"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(write(tmp_path, text))


def test_distillation_is_off_by_default_and_configurable(tmp_path):
    assert load_config().training.distill_epochs == 0
    config = load_config(write(tmp_path, "training:\n  distill_epochs: 5\n  distill_temperature: 2\n"
                                         "  distill_learning_rate: 0.0005\n  distill_labeled_weight: 0\n"))
    assert (config.training.distill_epochs, config.training.distill_temperature,
            config.training.distill_learning_rate, config.training.distill_labeled_weight) == (5, 2.0, 0.0005, 0.0)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "training: [unclosed\n"))


def test_training_config_round_trips_through_custom_config():
    config = TrainingConfig(method="simsiam", pretrain_augment={"hue": 0.2})
    assert TrainingConfig(**config.to_dict()) == config


def test_a_key_given_twice_is_an_error_naming_it_and_both_lines(tmp_path):
    path = write(tmp_path, "training:\n  batch_size: 64\n  method: simsiam\n  batch_size: 32\n")
    with pytest.raises(ConfigError, match=r"^config key 'training.batch_size' is given twice \(lines 2 and 4\) in "
                                          + re.escape(path) + "$"):
        load_config(path)


def test_duplicates_at_every_depth_and_a_repeated_section_are_all_named(tmp_path):
    text = ("training:\n"                   # 1
            "  pretrain_augment:\n"         # 2
            "    hue: 0.1\n"                # 3
            "    hue: 0.2\n"                # 4
            "evaluation:\n"                 # 5
            "  margin: 0.1\n"               # 6
            "training:\n"                   # 7: the whole earlier section would silently vanish
            "  batch_size: 32\n")           # 8
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    lines = str(error.value).splitlines()
    assert lines[0] == f"2 problems in {tmp_path / 'config.yaml'}:"
    assert lines[1].startswith("config key 'training' is given twice (lines 1 and 7)")
    assert lines[2].startswith("config key 'training.pretrain_augment.hue' is given twice (lines 3 and 4)")


def test_a_key_overriding_a_yaml_merge_is_not_a_duplicate(tmp_path):
    config = load_config(write(tmp_path, "training:\n  <<: {batch_size: 64, method: byol}\n  batch_size: 32\n"))
    assert (config.training.batch_size, config.training.method) == (32, "byol")


def test_every_problem_of_a_file_is_reported_together(tmp_path):
    text = ("training:\n  bacth_size: 10\n  method: mocov3\n  temperature: warm\n"
            "evaluation:\n  margin: 2\n"
            "data:\n  source: s3bucket\n"
            "trainign:\n  batch_size: 10\n")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    header, *problems = str(error.value).splitlines()
    assert header == f"6 problems in {tmp_path / 'config.yaml'}:"
    named = [re.match(r"config key '([^']+)': ", line).group(1) for line in problems]
    assert named == ["training.bacth_size", "training.method", "training.temperature", "evaluation.margin",
                     "data.source", "trainign"]


def test_cli_overrides_are_checked_with_the_file(tmp_path):
    path = write(tmp_path, "evaluation:\n  margin: 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, {"training.method": "mocov3"})
    assert "'evaluation.margin'" in str(error.value) and "'training.method'" in str(error.value)


@pytest.mark.parametrize("text", ["", "# nothing set yet\n\n# still nothing\n"])
def test_an_empty_file_warns_and_gives_the_defaults(tmp_path, caplog, text):
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING):
        assert load_config(path) == Config()
    assert any(path in record.getMessage() and "empty" in record.getMessage() for record in caplog.records)


def test_custom_config_with_an_unknown_key_is_an_error_naming_it():
    from trainer.run import training_config_from_custom_config

    custom_config = dict(TrainingConfig(method="byol").to_dict(), role="candidate", trainer_code_fingerprint="abc")
    assert training_config_from_custom_config(custom_config) == TrainingConfig(method="byol")
    with pytest.raises(ConfigError) as error:
        training_config_from_custom_config(dict(custom_config, bacth_size=8, pretrain_epoch=3))
    lines = str(error.value).splitlines()
    assert [line.split("'")[1] for line in lines] == ["custom_config.bacth_size", "custom_config.pretrain_epoch"]


def test_precision_is_auto_by_default_and_takes_the_four_settings(tmp_path):
    assert load_config().training.precision == "auto"
    for setting in ("auto", "float32", "mixed_bfloat16", "mixed_float16"):
        assert load_config(write(tmp_path, f"training:\n  precision: {setting}\n")).training.precision == setting


@pytest.mark.parametrize("text", ["training:\n  precision: bfloat16\n", "training:\n  precision: 16\n",
                                  "training:\n  precision: mixed_bf16\n"])
def test_an_unknown_precision_names_the_key(tmp_path, text):
    with pytest.raises(ConfigError, match="'training.precision'"):
        load_config(write(tmp_path, text))
