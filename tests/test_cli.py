"""The CLI contract: bad input fails fast with a message naming the problem, before any work."""

import dataclasses
import re
import shutil

import pytest
from image_samples import encode, write_image_folder

from pipeline import cli
from pipeline.config import Config, load_config
from pipeline.demo_data import write_digits_dataset
from pipeline.local_runner import check_data_before_running


def test_bad_config_key_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  batch_size: -3\n")
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(tmp_path), "--output", str(output), "--config", str(config)]) == 2
    assert "config key 'training.batch_size'" in capsys.readouterr().err
    assert not output.exists()  # nothing was started


def test_missing_data_folder_exits_2_before_the_pipeline_starts(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["run", "--data", str(tmp_path / "nope"), "--output", str(output)]) == 2
    assert "data folder does not exist" in capsys.readouterr().err
    assert not output.exists()


def test_output_inside_the_data_folder_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    write_digits_dataset(str(data), labeled_per_class=2, test_per_class=1)
    assert cli.main(["run", "--data", str(data), "--output", str(data / "out")]) == 2
    assert "must not be inside the data folder" in capsys.readouterr().err


def test_demo_dataset_is_real_digits_in_the_folder_layout(tmp_path):
    counts = write_digits_dataset(str(tmp_path), labeled_per_class=10, test_per_class=30)
    assert counts == {"labeled": 100, "test": 300, "unlabeled": 1397}
    assert sorted(path.name for path in (tmp_path / "labeled").iterdir()) == [str(digit) for digit in range(10)]
    assert len(list((tmp_path / "unlabeled").glob("*.png"))) == 1397


def test_readme_documents_every_config_key():
    with open(cli.os.path.join(cli.os.path.dirname(cli.__file__), "..", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|", readme, flags=re.MULTILINE))
    config = Config()
    expected = {f"{section.name}.{field.name}" for section in dataclasses.fields(config)
                for field in dataclasses.fields(getattr(config, section.name))}
    assert documented == expected, {"undocumented": expected - documented, "stale": documented - expected}


@pytest.mark.parametrize("argv", [["demo", "--help"], ["run", "--help"]])
def test_help_lists_the_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert "--output" in capsys.readouterr().out


def small_config(tmp_path, text="training:\n  batch_size: 8\nevaluation:\n  min_eval_per_class: 3\n"):
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return str(path)


def test_too_few_eval_images_of_a_class_exit_2_before_the_pipeline_naming_the_class(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")  # test/cat and test/dog: 3 images each
    for index in range(3, 5):
        (data / "test" / "dog" / f"{index}.png").write_bytes(encode("RGB", seed=600 + index))
    output = tmp_path / "out"
    config = small_config(tmp_path, "training:\n  batch_size: 8\nevaluation:\n  min_eval_per_class: 4\n")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", config]) == 2
    error = capsys.readouterr().err
    assert "fewer than evaluation.min_eval_per_class=4 images of the classes {'cat': 3}" in error
    assert not output.exists()


def test_a_class_missing_from_the_eval_split_fails_before_the_pipeline(tmp_path):
    data = write_image_folder(tmp_path / "data")
    shutil.rmtree(data / "test" / "dog")
    config = load_config(small_config(tmp_path), {"data.path": str(data)})
    with pytest.raises(ValueError, match=r"has no images of the classes \['dog'\]"):
        check_data_before_running(config)


def test_fewer_pretraining_images_than_a_batch_exit_2_naming_training_batch_size(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")  # 8 unlabeled + 12 train images, the default batch is 256
    output = tmp_path / "out"
    config = small_config(tmp_path, "evaluation:\n  min_eval_per_class: 3\n")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", config]) == 2
    error = capsys.readouterr().err
    assert "has 20 images for pretraining (unlabeled + train), fewer than one batch of training.batch_size=256" in error
    assert "set training.batch_size to at most 20" in error
    assert not output.exists()


def test_an_output_that_is_an_existing_file_exits_2_with_a_clean_message(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data")
    output = tmp_path / "results.txt"
    output.write_text("not a folder")
    assert cli.main(["run", "--data", str(data), "--output", str(output), "--config", small_config(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"selfsup: error: --output {output} is an existing file, not a folder"
    assert output.read_text() == "not a folder"
