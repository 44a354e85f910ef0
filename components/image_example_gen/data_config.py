"""The `data:` config section: where the images come from and how they are read, validated in one place.

pipeline/config.py composes it into the selfsup Config (as it composes trainer/hparams.py's TrainingConfig);
pipeline/pipeline.py passes it to ImageExampleGen as the JSON execution parameter `data_config`, and the
component's driver and executor rebuild it with `DataConfig.from_dict`, as the Trainer rebuilds its
TrainingConfig from custom_config (trainer/run.py). Every rule about a `data:` value is stated here.
"""

import dataclasses
import typing
from typing import Any, Dict, List, Literal, Mapping, Optional, Union

from trainer.contract import SPLITS
from trainer.hparams import ConfigError, require

Source = Literal["folder", "tfrecord", "tfds"]
EvalDuplicatesPolicy = Literal["drop", "fail", "keep"]
SOURCES = typing.get_args(Source)
EVAL_DUPLICATES_POLICIES = typing.get_args(EvalDuplicatesPolicy)

TFDS_DEFAULT_SPLITS = {
    "stl10": {"unlabeled": "unlabelled", "train": "train", "eval": "test"},
    "cifar10": {"unlabeled": "train[:80%]", "train": "train[80%:]", "eval": "test"},
}


def _choices(values) -> str:
    quoted = [repr(value) for value in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


@dataclasses.dataclass
class DataConfig:
    """Where the images come from.

    source: `folder` (DIR/unlabeled/**, DIR/labeled/<class>/**, optional DIR/test/<class>/**),
      `tfrecord` (DIR/{unlabeled,train,eval}/*: gzipped or plain TFRecords of tf.Examples with
      an encoded `image` bytes feature and an int64 `label`), or `tfds` (a TFDS dataset by name,
      read from `tfds_data_dir`; nothing is downloaded).
    """

    source: Source = "folder"
    path: Optional[str] = None
    class_names: Optional[List[str]] = None
    tfds_name: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    tfds_splits: Optional[Dict[str, str]] = None
    eval_fraction: float = 0.2
    max_bad_fraction: float = 0.05
    max_image_pixels: int = 40_000_000
    follow_external_links: bool = False
    on_eval_duplicates: EvalDuplicatesPolicy = "drop"

    def __post_init__(self) -> None:
        require(self.source in SOURCES, "data.source", f"must be {_choices(SOURCES)}, got {self.source!r}")
        require(0.0 < self.eval_fraction < 1.0, "data.eval_fraction", f"must be in (0, 1), got {self.eval_fraction}")
        require(
            0.0 <= self.max_bad_fraction <= 1.0,
            "data.max_bad_fraction",
            f"must be in [0, 1], got {self.max_bad_fraction}",
        )
        require(self.max_image_pixels > 0, "data.max_image_pixels", f"must be positive, got {self.max_image_pixels}")
        require(self.on_eval_duplicates in EVAL_DUPLICATES_POLICIES, "data.on_eval_duplicates",
                f"must be {_choices(EVAL_DUPLICATES_POLICIES)}, got {self.on_eval_duplicates!r}")
        if self.source == "tfds":
            require(bool(self.tfds_name), "data.tfds_name", "is required when data.source is 'tfds'")
            splits = self.resolved_tfds_splits()
            require(
                splits is not None and set(splits) == set(SPLITS),
                "data.tfds_splits",
                f"must map exactly unlabeled, train and eval to TFDS splits for {self.tfds_name!r}, got {splits}",
            )
        if self.reads_path and self.path is not None:
            require(bool(self.path.strip()), "data.path", "must not be empty")
        if self.source == "tfrecord":
            require(bool(self.class_names), "data.class_names",
                    "is required when data.source is 'tfrecord' (labels index into it)")
        if self.class_names is not None:
            require(len(self.class_names) >= 2, "data.class_names", "needs at least two classes")
            require(
                len(set(self.class_names)) == len(self.class_names), "data.class_names", "has duplicate names"
            )

    def resolved_tfds_splits(self) -> Optional[Dict[str, str]]:
        """The TFDS split for each of our splits (config value, else the known default)."""
        return self.tfds_splits or TFDS_DEFAULT_SPLITS.get(self.tfds_name or "")

    @property
    def reads_path(self) -> bool:
        """Whether the source reads data.path: folder and tfrecord do; a TFDS dataset is read from tfds_data_dir."""
        return self.source != "tfds"

    def required_path(self) -> str:
        """data.path, for a source that reads it (reads_path).

        Raises:
          ConfigError: it is not set (it may be given per run: --data, or the Kubeflow runtime parameter).
        """
        require(bool(self.path), "data.path", f"is required when data.source is {self.source!r} (or pass --data)")
        return self.path

    @property
    def location(self) -> Optional[str]:
        """Where the images are read from, as the report and the messages name it: the path or the TFDS name."""
        return self.path or self.tfds_name

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DataConfig":
        """Rebuilds the validated DataConfig from its JSON form (ImageExampleGen's `data_config` parameter).

        Raises:
          ConfigError: a key that is not a data: setting (e.g. a typo in a hand-edited Kubeflow parameter),
            every such key named, one per line; or a value the checks above refuse.
        """
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in names]
        if unknown:
            raise ConfigError("\n".join(
                f"config key 'data.{key}': unknown key in ImageExampleGen's data_config; known keys are {names}"
                for key in unknown))
        return cls(**values)


def as_data_config(data: Union[DataConfig, Mapping[str, Any]]) -> DataConfig:
    """`data` itself, or the DataConfig of its JSON form (a dict as pipeline/pipeline.py serialises it)."""
    return data if isinstance(data, DataConfig) else DataConfig.from_dict(data)
