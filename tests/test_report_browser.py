"""The report in a real browser: headless Chromium opens report.html from disk, as a user would.

Chromium is Debian's `chromium` (installed here with apt-get when missing and possible; CI installs
it). The test takes a screenshot, and reads the DOM after load: the decision and both accuracies
must be those of summary.json, every image must have loaded (naturalWidth > 0), charts and the
misclassified images' thumbnails alike, and the sections added for issues 12 and 16 (phases, data
checks, class counts, versions and settings) must be on the page as the browser parsed it.
"""

import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Dict, List

import pytest
from PIL import Image
from test_report import (  # noqa: F401 (tiny_run is a fixture)
    AUGMENTED_VIEWS_PNG,
    CHART_TITLES,
    CLASS_NAMES,
    EXAMPLES_PER_CLASS,
    TRAIN_PER_CLASS,
    tiny_run,
    write_run_summary,
)

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WINDOW_SIZE = (1280, 2000)
BLESSED_GREEN = (0x1A, 0x98, 0x50)  # the blessed section's border colour in templates/report.html.j2
THUMBNAIL_PIXELS = 96
# Appended to a copy of the report: records after load whether each image decoded.
IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  for (const image of document.images) {
    image.dataset.naturalWidth = image.complete ? image.naturalWidth : 0;
  }
  document.body.dataset.imagesChecked = document.images.length;
});
</script>"""


def _installed_chromium():
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed once with apt-get when missing, else the test skips saying why."""
    binary = _installed_chromium()
    if binary:
        return binary
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get); "
                    "install Debian's chromium to run the browser test")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1200)
        if completed.returncode != 0:
            pytest.skip(f"chromium is not installed and `{' '.join(command)}` failed: {completed.stderr[-500:]}")
    binary = _installed_chromium()
    if not binary:
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return binary


def _run_chromium(binary: str, profile: str, *arguments: str) -> str:
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if completed.returncode != 0:
        raise AssertionError(f"chromium failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return completed.stdout


class _DomReader(HTMLParser):
    """Collects the text and attributes of elements with an id, every <img>'s attributes (and the id of the
    element around it that has one)."""

    VOID_ELEMENTS = {"img", "meta", "br", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.by_id: Dict[str, dict] = {}
        self.images: List[dict] = []
        self.body: dict = {}
        self._open: List[tuple] = []  # (tag, id or None) of the elements around the parser's position

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            inside = [element_id for _, element_id in self._open if element_id]
            self.images.append(dict(attributes, inside=inside[-1] if inside else None))
        if tag == "body":
            self.body = attributes
        if tag in ("td", "th", "br"):  # a table cell's or line's text stays apart from the previous one's
            self.handle_data(" | " if tag != "br" else " ")
        if "id" in attributes:
            self.by_id[attributes["id"]] = {"attributes": attributes, "text": ""}
        if tag not in self.VOID_ELEMENTS:
            self._open.append((tag, attributes.get("id")))

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        for _, element_id in self._open:
            if element_id:
                self.by_id[element_id]["text"] += data


@pytest.fixture(scope="module")
def published_run(tiny_run, tmp_path_factory):  # noqa: F811 (the imported fixture)
    output_dir = tmp_path_factory.mktemp("run-output")
    return write_run_summary(tiny_run, str(output_dir))


@pytest.fixture(scope="module")
def loaded_dom(chromium, published_run, tmp_path_factory) -> _DomReader:
    """The DOM of report.html after Chromium loaded it, with each image's naturalWidth recorded."""
    folder = tmp_path_factory.mktemp("browser-dom")
    with open(published_run["report"], encoding="utf-8") as handle:
        page = handle.read()
    probe_path = folder / "report_with_image_probe.html"
    probe_path.write_text(page.replace("</body>", IMAGE_PROBE + "\n</body>"), encoding="utf-8")
    dom = _DomReader()
    dom.feed(_run_chromium(chromium, str(folder / "profile-dom"), "--virtual-time-budget=10000", "--dump-dom",
                           probe_path.as_uri()))
    return dom


def _words(text: str) -> str:
    return " ".join(text.split())


def test_report_shows_the_summarys_decision_and_accuracies_and_every_image_loads(loaded_dom, published_run):
    dom = loaded_dom
    assert dom.by_id["decision"]["text"] == published_run["decision"]
    assert dom.by_id["verdict"]["text"] == "BLESSED"
    for role in ("candidate", "baseline"):
        accuracy = published_run[role]["accuracy"]
        cell = dom.by_id[f"{role}-accuracy"]
        assert cell["text"] == f"{accuracy:.4f}"
        assert float(cell["attributes"]["data-value"]) == accuracy
    assert dom.body.get("data-images-checked") == str(len(dom.images))
    assert [image["alt"] for image in dom.images if image["src"].startswith("data:image/svg+xml")] == CHART_TITLES
    assert [image["alt"] for image in dom.images if int(image.get("data-natural-width", 0)) <= 0] == []


def test_misclassified_thumbnails_load_with_their_true_and_predicted_class(loaded_dom, tiny_run):  # noqa: F811
    dom = loaded_dom
    for role in ("candidate", "baseline"):
        thumbnails = [image for image in dom.images if image["inside"] == f"misclassified-{role}"]
        assert thumbnails, f"no thumbnail of the {role}'s misclassified images"
        assert {int(image["data-natural-width"]) for image in thumbnails} == {THUMBNAIL_PIXELS}
        assert all(image["alt"].startswith("test/") for image in thumbnails)
        grid = _words(dom.by_id[f"misclassified-{role}"]["text"])
        assert grid.count("true: ") == grid.count("predicted: ") == len(thumbnails)
        title = _words(dom.by_id[f"misclassified-{role}-title"]["text"])
        assert title.startswith(f"{role}: ") and title.endswith(f" of {len(tiny_run.labels)} wrong")
    assert "true: red predicted: gray" in _words(dom.by_id["misclassified-baseline"]["text"])


def test_the_augmented_views_load_in_the_pretraining_section(loaded_dom):
    views = [image for image in loaded_dom.images if image["inside"] == "augmented-views"]
    with Image.open(io.BytesIO(AUGMENTED_VIEWS_PNG)) as image:
        width = image.size[0]
    assert [int(image["data-natural-width"]) for image in views] == [width]
    assert _words(loaded_dom.by_id["augmented-views"]["text"]).startswith("Each row: a pretraining image as decoded")


def test_new_sections_are_on_the_page_the_browser_shows(loaded_dom):
    texts = {element_id: _words(element["text"]) for element_id, element in loaded_dom.by_id.items()}
    assert texts["phases"].startswith("Candidate: linear head (epochs 1-2), then whole network (epoch 3), then "
                                      "distillation (epochs 4-5)")
    assert "distillation" in texts  # the distillation charts' block
    assert texts["input-fingerprint"].startswith("Input read by ImageExampleGen: 70 files, 123.5 kB")
    assert "0123456789ab" in texts["input-fingerprint"]
    assert texts["eval-copies"].startswith("1 unlabeled or train image is a byte-for-byte copy of an eval image: "
                                           "dropped from training")
    assert texts["ignored-files"].startswith("24 files without an image extension") and "and 4 more" in texts[
        "ignored-files"]
    assert texts["links-not-followed"] == "2 symbolic links were not followed:"
    counts = texts["class-counts"]
    for name, train in zip(CLASS_NAMES, TRAIN_PER_CLASS):
        assert f"| {name} | {train} | {EXAMPLES_PER_CLASS}" in counts
    for package in ("selfsup", "tfx", "tensorflow", "keras"):
        assert package in texts["versions"].split()
    assert "| monitor_every_epochs | 4 |" in texts["trainer-settings"]
    assert "top-k-left-out" not in texts  # 4 classes: top-3 accuracy is shown


def test_report_screenshot_shows_the_page(chromium, published_run, tmp_path):
    screenshot = tmp_path / "report.png"
    _run_chromium(chromium, str(tmp_path / "profile-screenshot"), f"--screenshot={screenshot}",
                  f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}", "file://" + published_run["report"])
    with Image.open(screenshot) as image:
        assert image.size == WINDOW_SIZE
        top = image.convert("RGB").crop((0, 0, WINDOW_SIZE[0], 400))
        colours = top.getcolors(maxcolors=1_000_000)
    assert any(colour == BLESSED_GREEN for _, colour in colours), "the blessed verdict is not drawn at the top"
    assert len(colours) > 50, "the page looks blank"
