"""The selfsup configuration: one validated object, every default in one place.

A config file is YAML with the sections below; every key is optional. Unknown
keys, wrong types, impossible values and keys given twice raise `ConfigError`
naming the key before any pipeline work starts, all problems of a file in one
error, one per line. CLI flags and `--set KEY=VALUE` settings override the file
and are checked with it.

    data:        where the images come from and how they are read (components/image_example_gen/data_config.py)
    training:    both Trainers' hyperparameters (see trainer/hparams.py)
    evaluation:  the blessing rule (accuracy floor, margin over the baseline)
    pipeline:    name, caching, Beam arguments
    kubeflow:    pipeline root, image, Beam arguments and Trainer distribution on a cluster
"""

import dataclasses
import os
import typing
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import yaml

from components.image_example_gen.data_config import DataConfig
from trainer import log
from trainer.hparams import ConfigError, TrainingConfig, require

__all__ = [
    "Config", "ConfigError", "DataConfig", "EvaluationConfig", "KubeflowConfig", "PipelineConfig", "load_config",
]

LOG = log.get(__name__)

# Keys that moved to another section, named in the error a file with the old key gets.
MOVED_KEYS = {"data.labels_per_class": "training.labels_per_class"}


@dataclasses.dataclass
class EvaluationConfig:
    """The blessing rule: candidate accuracy >= min_accuracy and > baseline + margin.

    compare_to_pushed adds a second rule: the candidate must also be more accurate than the model
    already in production (the latest version in the Pusher's serving folder), when there is one.
    significance_level is the level of the paired comparison on the eval images (exact McNemar test;
    the bootstrap interval of the difference has confidence 1 - significance_level), always reported;
    require_significant adds the rule that the candidate is better with p < significance_level.
    """

    min_accuracy: float = 0.0
    margin: float = 0.0
    compare_to_pushed: bool = False
    significance_level: float = 0.05
    require_significant: bool = False
    min_eval_per_class: int = 20

    def __post_init__(self) -> None:
        require(
            0.0 <= self.min_accuracy <= 1.0, "evaluation.min_accuracy", f"must be in [0, 1], got {self.min_accuracy}"
        )
        require(-1.0 < self.margin < 1.0, "evaluation.margin", f"must be in (-1, 1), got {self.margin}")
        require(0.0 < self.significance_level < 1.0, "evaluation.significance_level",
                f"must be in (0, 1), got {self.significance_level}")
        require(self.min_eval_per_class >= 1, "evaluation.min_eval_per_class",
                f"must be at least 1, got {self.min_eval_per_class}")


@dataclasses.dataclass
class PipelineConfig:
    name: str = "selfsup"
    enable_cache: bool = True
    # Beam's default runner in 2.74 (Prism) downloads a binary; name the DirectRunner explicitly.
    beam_args: List[str] = dataclasses.field(
        default_factory=lambda: ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
    )

    def __post_init__(self) -> None:
        require(
            bool(self.name) and self.name.replace("-", "").replace("_", "").isalnum(),
            "pipeline.name",
            f"must be letters, digits, '-' or '_', got {self.name!r}",
        )


OBJECT_STORAGE_SCHEMES = ("gs://", "s3://")
TRAINER_STRATEGY = Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"]


def require_object_storage(value: Optional[str], key: str) -> None:
    """Requires None or an object storage URI such as gs://bucket/folder (pods share no local disk)."""
    if value is None:
        return
    scheme = next((scheme for scheme in OBJECT_STORAGE_SCHEMES if value.startswith(scheme)), None)
    require(
        scheme is not None and len(value) > len(scheme),
        key,
        f"must be an object storage URI starting with one of {list(OBJECT_STORAGE_SCHEMES)}, got {value!r}",
    )


@dataclasses.dataclass
class KubeflowConfig:
    """Where and how `selfsup compile-kubeflow` runs the pipeline (ignored by the local runner).

    pipeline_root and image are required to compile; see docs/kubeflow.md. trainer_workers > 1
    runs both Trainers as Vertex AI custom jobs (1 chief + trainer_workers - 1 workers; Vertex sets
    TF_CONFIG, so `training.strategy: auto` resolves to multi_worker).
    """

    pipeline_root: Optional[str] = None
    image: Optional[str] = None
    serving_dir: Optional[str] = None
    beam_args: List[str] = dataclasses.field(
        default_factory=lambda: ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                 "--direct_num_workers=0"]
    )
    trainer_strategy: Optional[TRAINER_STRATEGY] = None
    trainer_workers: int = 1
    trainer_machine_type: Optional[str] = None
    trainer_accelerator_type: Optional[str] = None
    trainer_accelerator_count: int = 0
    trainer_cpu_limit: Optional[float] = None
    trainer_memory_limit: Optional[float] = None
    vertex_project: Optional[str] = None
    vertex_region: Optional[str] = None

    def __post_init__(self) -> None:
        prefix = "kubeflow."
        require_object_storage(self.pipeline_root, prefix + "pipeline_root")
        require_object_storage(self.serving_dir, prefix + "serving_dir")
        if self.image is not None:
            require(
                bool(self.image) and not any(character.isspace() for character in self.image)
                and "://" not in self.image,
                prefix + "image",
                f"must be a container image reference such as REGISTRY/selfsup:0.1.0, got {self.image!r}",
            )
        for index, argument in enumerate(self.beam_args):
            require(argument.startswith("--"), f"{prefix}beam_args[{index}]", f"must start with '--', got {argument!r}")
        require(
            self.trainer_workers >= 1, prefix + "trainer_workers", f"must be at least 1, got {self.trainer_workers}"
        )
        require(
            self.trainer_accelerator_count >= 0,
            prefix + "trainer_accelerator_count",
            f"must be zero or more, got {self.trainer_accelerator_count}",
        )
        require(
            bool(self.trainer_accelerator_type) == (self.trainer_accelerator_count > 0),
            prefix + "trainer_accelerator_count",
            "trainer_accelerator_type and a positive trainer_accelerator_count go together",
        )
        for key in ("trainer_cpu_limit", "trainer_memory_limit"):
            value = getattr(self, key)
            require(value is None or value > 0, prefix + key, f"must be greater than 0, got {value}")
        if self.trainer_workers > 1:
            self._check_multi_worker()

    def _check_multi_worker(self) -> None:
        """trainer_workers > 1: the Trainers run as Vertex AI custom jobs, sized by machine type."""
        prefix = "kubeflow."
        for key in ("vertex_project", "vertex_region", "trainer_machine_type"):
            require(bool(getattr(self, key)), prefix + key,
                    "is required when kubeflow.trainer_workers > 1 (the Trainers run as Vertex AI custom jobs)")
        require(
            self.trainer_cpu_limit is None and self.trainer_memory_limit is None,
            prefix + "trainer_cpu_limit",
            "trainer_cpu_limit and trainer_memory_limit size the Trainer's own pod; with trainer_workers > 1 "
            "set the Vertex AI machine with trainer_machine_type instead",
        )


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)

    def __post_init__(self) -> None:
        if self.kubeflow.trainer_workers > 1:  # the Trainers' strategy on Kubeflow: its own setting or training's
            key = "kubeflow.trainer_strategy" if self.kubeflow.trainer_strategy else "training.strategy"
            strategy = self.kubeflow.trainer_strategy or self.training.strategy
            require(strategy in ("auto", "multi_worker"), key,
                    f"must be auto or multi_worker when kubeflow.trainer_workers > 1, got {strategy!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number_written_as_string_hint(value: Any) -> str:
    """Why a number was read as a string: YAML 1.1 (PyYAML) reads 1e-3 as a string, 1.0e-3 as a float."""
    if not isinstance(value, str) or "e" not in value.lower():
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (YAML reads a number without a decimal point before its exponent as a string: write 1.0e-3 or 0.001)"


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def _check_value(value: Any, expected: Any, key: str) -> Any:
    """Type-checks one YAML value against a dataclass field annotation."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(value, inner[0], key)
    if origin is Literal:
        require(value in args, key, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, List):
        require(isinstance(value, list), key, f"must be a list, got {type(value).__name__} {value!r}")
        return [_check_value(item, args[0], f"{key}[{index}]") for index, item in enumerate(value)]
    if origin in (dict, Dict):
        require(isinstance(value, dict), key, f"must be a mapping, got {type(value).__name__} {value!r}")
        return {_check_value(k, args[0], key): _check_value(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if expected is bool:
        require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if expected is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if expected is float:
        require(
            isinstance(value, (int, float)) and not isinstance(value, bool), key,
            f"must be a number, got {value!r}" + _number_written_as_string_hint(value),
        )
        return float(value)
    if expected is str:
        require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(expected)} for {key}")


def _build_section(cls: type, values: Any, section: str, errors: List[str]) -> Any:
    """The section's dataclass, or None when it has a problem; every problem is appended to `errors`.

    Every unknown key and every value of the wrong type is reported; the dataclass's own checks
    (ranges, keys that go together) run when all keys are known and well-typed, and report their
    first problem.
    """
    try:
        require(isinstance(values, dict), section, f"must be a mapping, got {type(values).__name__}")
    except ConfigError as error:
        errors.append(str(error))
        return None
    hints = typing.get_type_hints(cls)
    known = [field.name for field in dataclasses.fields(cls)]
    kwargs = {}
    problems_before = len(errors)
    for key, value in values.items():
        try:
            moved = MOVED_KEYS.get(f"{section}.{key}")
            require(key in known, f"{section}.{key}",
                    f"moved to '{moved}'" if moved else f"unknown key; known keys of '{section}' are {known}")
            kwargs[key] = _check_value(value, hints[key], f"{section}.{key}")
        except ConfigError as error:
            errors.append(str(error))
    if len(errors) > problems_before:
        return None
    try:
        return cls(**kwargs)
    except ConfigError as error:
        errors.append(str(error))
        return None


def _validate(values: Any, errors: List[str]) -> Optional[Config]:
    """The Config of a parsed file, or None; every problem of every section is appended to `errors`."""
    values = values or {}
    require(isinstance(values, dict), "<top level>", "the config file must be a YAML mapping of sections")
    hints = typing.get_type_hints(Config)
    sections = {}
    for key, section_values in values.items():
        try:
            require(key in hints, key, f"unknown section; known sections are {list(hints)}")
        except ConfigError as error:
            errors.append(str(error))
            continue
        sections[key] = _build_section(hints[key], section_values or {}, key, errors)
    return None if errors else Config(**sections)


def _raise_if_any(errors: List[str], source: Optional[str]) -> None:
    """One ConfigError for all problems: a single one as it is, several one per line under a count."""
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} problems in {source or 'the config'}:\n" + "\n".join(errors))


def config_from_dict(values: Optional[dict]) -> Config:
    """Builds and validates a Config from a nested dict (a parsed YAML file); raises every problem at once."""
    errors: List[str] = []
    config = _validate(values, errors)
    _raise_if_any(errors, None)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but a key given twice in one mapping (at any depth) is recorded, not overwritten.

    `duplicates` collects one message per repeated key, with its dotted path and the 1-based lines of
    the first and the repeated occurrence (from the nodes' start marks). YAML merge keys (`<<`) are
    not duplicates: merging is what they are for.
    """

    def __init__(self, stream, source: str):
        super().__init__(stream)
        self.source = source
        self.duplicates: List[str] = []
        self._mapping_paths: Dict[int, str] = {}

    def construct_document(self, node):
        self._record_mapping_paths(node, "", set())
        return super().construct_document(node)

    def _record_mapping_paths(self, node, path: str, visited: set) -> None:
        """Remembers the dotted path of every mapping node (aliases make the node graph a DAG, or a cycle)."""
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping_paths[id(node)] = path
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                self._record_mapping_paths(value_node, f"{path}.{name}" if path else name, visited)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._record_mapping_paths(item, f"{path}[{index}]", visited)

    def construct_mapping(self, node, deep=False):
        path = self._mapping_paths.get(id(node), "")
        first_lines: Dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                dotted = f"{path}.{key}" if path else str(key)
                message = (f"config key '{dotted}' is given twice (lines {first_lines[key]} and {line}) "
                           f"in {self.source}")
                if message not in self.duplicates:
                    self.duplicates.append(message)
            else:
                first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: str) -> Tuple[Any, List[str]]:
    """The parsed file and its duplicate-key problems; ConfigError when it is not YAML."""
    with open(path, encoding="utf-8") as handle:
        loader = _UniqueKeyLoader(handle, path)
        try:
            return loader.get_single_data(), loader.duplicates
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        finally:
            loader.dispose()


def _set_dotted(values: dict, dotted_key: str, value: Any, errors: List[str]) -> None:
    """Sets `value` at `dotted_key` (SECTION.KEY or deeper, e.g. training.pretrain_augment.hue) in the parsed
    file `values`, creating the mappings on the way; a non-mapping on the way is a problem in `errors`
    (a section that is not a mapping is left for _validate to report)."""
    *parents, leaf = dotted_key.split(".")
    mapping = values
    for depth, name in enumerate(parents):
        if mapping.get(name) is None:
            mapping[name] = {}
        if not isinstance(mapping[name], dict):
            if depth:
                errors.append(f"config key '{'.'.join(parents[:depth + 1])}': is {mapping[name]!r}, not a mapping, "
                              f"so '{dotted_key}' cannot be set")
            return
        mapping = mapping[name]
    mapping[leaf] = value


def parse_setting(setting: str) -> Tuple[str, Any]:
    """The dotted key and the value of one `KEY=VALUE` setting (the CLI's --set), VALUE read as YAML like the
    config file (`true`, `3`, `[a, b]`, `{flip_probability: 0}`; nothing after `=` is null).

    Raises:
      ConfigError: no `=`, a KEY that is not SECTION.KEY[.SUBKEY...], or a VALUE that is not YAML.
    """
    key, equals, text = setting.partition("=")
    key = key.strip()
    if not equals:
        raise ConfigError(f"--set {setting!r}: expected KEY=VALUE, e.g. training.pretrain_epochs=5")
    require(len(key.split(".")) >= 2 and all(key.split(".")), key or "<empty>",
            f"--set needs a dotted SECTION.KEY before '=' (e.g. training.pretrain_epochs=5), got {setting!r}")
    loader = _UniqueKeyLoader(text, f"--set {key}")
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as error:
        reason = getattr(error, "problem", None) or error
        raise ConfigError(f"config key '{key}': --set value {text!r} is not valid YAML: {reason}") from error
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError("; ".join(loader.duplicates))
    return key, value


def _overlapping(key: str, other: str) -> bool:
    """Whether setting one key also sets (part of) the other: the same key, or one inside the other."""
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None,
                settings: Sequence[str] = ()) -> Config:
    """Reads a YAML config file (or the defaults), applies dotted-key overrides and settings, validates.

    Args:
      path: a YAML file, or None for the defaults. An empty file (or only comments) logs a warning
        and gives the defaults.
      overrides: e.g. {"data.path": "/images", "training.method": "simsiam"} from CLI flags.
      settings: `KEY=VALUE` strings (the CLI's repeatable --set, see parse_setting), applied after
        `overrides`; KEY may reach into a mapping (training.pretrain_augment.hue=0.2), a mapping VALUE
        replaces the file's mapping. A key set twice on the command line (by two settings, or by a setting
        and an override, or one inside the other) is a problem.

    Returns:
      A validated Config.

    Raises:
      ConfigError: naming the bad key, one line per problem when there are several (keys given
        twice, unknown keys, wrong types, impossible values, malformed settings), the file's and the
        settings' together; FileNotFoundError if `path` does not exist.
    """
    values: Any = {}
    errors: List[str] = []
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        values, errors = _read_yaml(path)
        if values is None:
            LOG.warning("config file %s is empty (or holds only comments): every setting has its default", path)
            values = {}
        require(isinstance(values, dict), path, "the config file must be a YAML mapping of sections")
    for dotted_key, value in (overrides or {}).items():
        _set_dotted(values, dotted_key, value, errors)
    given = {key: "by an option such as --data or --method" for key in overrides or {}}
    for setting in settings:
        try:
            key, value = parse_setting(setting)
            earlier = next((other for other in given if _overlapping(key, other)), None)
            require(earlier is None, key,
                    f"is given twice on the command line: {given.get(earlier)}, then --set {setting}")
        except ConfigError as error:
            errors.append(str(error))
            continue
        given[key] = f"--set {setting}"
        _set_dotted(values, key, value, errors)
    config = _validate(values, errors)
    source = path if not settings else f"{path} and --set" if path else "--set"
    _raise_if_any(errors, source)
    return config
