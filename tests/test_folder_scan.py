"""The folder scan: symbolic links cannot loop, leak one split or class into another, or leave the data
folder unasked; class folder names compared in Unicode NFC."""

import os
import unicodedata

import pytest
from image_samples import encode, write_image_folder

from components.image_example_gen.folder_layout import plan_folder


def link(path, target):
    """path -> target (a relative target, as a user would type it with ln -s)."""
    os.symlink(target, path)


def unlabeled_paths(plan):
    return sorted(path for path, split, _ in plan.records if split == "unlabeled")


@pytest.fixture
def data(tmp_path):
    return write_image_folder(tmp_path / "data")


def test_a_link_to_the_data_folder_itself_is_refused_naming_the_link(data):
    link(data / "unlabeled" / "loop", "..")  # the loop: 60 unlabeled images became 4,901
    with pytest.raises(ValueError, match=r"unlabeled/loop in .* is a symbolic link to .*outside its own folder"):
        plan_folder(str(data), eval_fraction=0.2)


def test_a_loop_inside_its_own_area_is_read_once_and_listed(data):
    (data / "unlabeled" / "a").mkdir()
    (data / "unlabeled" / "a" / "inner.png").write_bytes(encode("RGB", seed=500))
    link(data / "unlabeled" / "a" / "loop", "../")  # back to unlabeled/
    plan = plan_folder(str(data), eval_fraction=0.2)
    paths = unlabeled_paths(plan)
    assert len(paths) == 9 and len(set(paths)) == 9  # the 8 images and inner.png, each once
    assert "unlabeled/a/inner.png" in paths and not any("loop" in path for path in paths)
    (not_followed,) = plan.links_not_followed
    assert not_followed["path"] == "unlabeled/a/loop" and "already read" in not_followed["reason"]


def test_a_link_from_unlabeled_into_test_is_refused(data):
    link(data / "unlabeled" / "more", "../test/cat")
    with pytest.raises(ValueError, match=r"unlabeled/more in .* is a symbolic link to .*test/cat, outside its own"):
        plan_folder(str(data), eval_fraction=0.2)


def test_a_file_linked_from_one_class_to_another_is_refused(data):
    link(data / "labeled" / "cat" / "x.png", "../dog/0.png")
    with pytest.raises(ValueError, match=r"labeled/cat/x.png in .* is a symbolic link to .*labeled/dog/0.png"):
        plan_folder(str(data), eval_fraction=0.2)


def write_external(folder, count, seed):
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"e{index}.png").write_bytes(encode("RGB", seed=seed + index))
    return folder


def test_a_link_outside_the_data_folder_needs_follow_external_links(data, tmp_path):
    external = write_external(tmp_path / "elsewhere", 3, seed=700)
    link(data / "unlabeled" / "external", str(external))
    with pytest.raises(ValueError, match=r"unlabeled/external .* outside the data folder .*data.follow_external_links"):
        plan_folder(str(data), eval_fraction=0.2)
    plan = plan_folder(str(data), eval_fraction=0.2, follow_external_links=True)
    assert [path for path in unlabeled_paths(plan) if "external" in path] == [
        "unlabeled/external/e0.png", "unlabeled/external/e1.png", "unlabeled/external/e2.png"]


def test_a_class_folder_that_links_outside_works_with_follow_external_links(data, tmp_path):
    external = write_external(tmp_path / "birds", 4, seed=800)
    link(data / "labeled" / "bird", str(external))
    with pytest.raises(ValueError, match=r"labeled/bird .* outside the data folder"):
        plan_folder(str(data), eval_fraction=0.2)
    plan = plan_folder(str(data), eval_fraction=0.2, follow_external_links=True)
    assert plan.class_names == ["bird", "cat", "dog"]
    bird = plan.class_names.index("bird")
    assert sorted(path for path, split, label in plan.records if label == bird) == [
        f"labeled/bird/e{index}.png" for index in range(4)]


@pytest.mark.parametrize("link_path", ["labeled/cat/up", "unlabeled/up"])
def test_a_link_to_a_folder_holding_the_data_folder_is_refused(data, tmp_path, link_path):
    """Even with follow_external_links: through the parent folder labeled/cat would read labeled/dog's
    images as cats (which then failed with a puzzling 'labeled/dog has no image files')."""
    link(data / link_path, str(tmp_path))
    for follow in (False, True):
        with pytest.raises(ValueError, match=rf"{link_path} in .* is a symbolic link to .*, which holds the data"):
            plan_folder(str(data), eval_fraction=0.2, follow_external_links=follow)


def test_nfc_and_nfd_class_folder_names_are_one_class(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=("dog",))
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    for split, name, count in (("labeled", nfd, 4), ("test", nfc, 3)):  # copied from macOS: NFD in labeled/
        (root / split / name).mkdir()
        for index in range(count):
            (root / split / name / f"{index}.png").write_bytes(encode("RGB", seed=900 + 10 * len(split) + index))
    plan = plan_folder(str(root), eval_fraction=0.2)
    assert plan.class_names == [nfc, "dog"]
    cafe = plan.class_names.index(nfc)
    assert sorted(split for _, split, label in plan.records if label == cafe) == ["eval"] * 3 + ["train"] * 4


def test_two_class_folders_that_differ_only_by_normalisation_are_an_error_naming_both(tmp_path):
    root = write_image_folder(tmp_path / "data")
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    for name in (nfc, nfd):
        (root / "labeled" / name).mkdir()
        (root / "labeled" / name / "0.png").write_bytes(encode("RGB", seed=len(name)))
    with pytest.raises(ValueError, match="same name in different Unicode forms") as raised:
        plan_folder(str(root), eval_fraction=0.2)
    assert repr(nfc) in str(raised.value) and repr(nfd) in str(raised.value)
