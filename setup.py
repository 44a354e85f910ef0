"""selfsup: a TFX pipeline that pretrains an image encoder with self-supervision and ships the
fine-tuned classifier only when it beats a supervised baseline."""

from setuptools import find_packages, setup

setup(
    name="selfsup",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10,<3.11",
    # kubeflow/ is installed as `selfsup_kubeflow`, so that selfsup puts no top-level `kubeflow` package beside
    # the Kubeflow SDK's (`kubeflow.trainer`, `kubeflow.training`, ...); it has no __init__.py, so that the
    # folder does not shadow that SDK either when the repository root is on sys.path.
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*", "trainer", "trainer.*"])
    + ["selfsup_kubeflow"],
    package_dir={"selfsup_kubeflow": "kubeflow"},
    package_data={"pipeline": ["configs/*.yaml"], "components.evaluation_report": ["templates/*.j2"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow-datasets>=4.9,<5",
        "dill",  # tfx-bsl 1.16 imports dill; apache-beam 2.74 no longer pulls it in
        "pyyaml",
        "pillow",
        "jinja2>=3.1,<4",  # the report's templates (components/evaluation_report/templates/)
        "scikit-learn",  # ships the handwritten-digits images of the built-in demo dataset
        "tqdm",  # the progress bars on a terminal (trainer/progress.py)
    ],
    extras_require={"dev": ["pytest", "pytest-xdist", "ruff"]},
    entry_points={"console_scripts": ["selfsup=pipeline.cli:main"]},
)
