"""The experiment YAML's schema: OmegaConf structured configs (dataclasses).

OmegaConf checks what a schema can say: every key is known, every value has its type (a
count is an integer, ``lr`` a number, ``args`` a list of strings). ``parse`` returns the typed
``ExperimentConf``; the rules that need more than one field (paths that must exist, names that
must refer to each other, sizes in range) are ``config.validate``'s, section by section.

Two conveniences of the YAML are applied before OmegaConf sees it, by ``_normalise`` walking the
schema: a single value where a list is expected is that one-element list (``inputs: FILE``), and
a data section's ``from:`` key (a Python keyword, so no dataclass field can carry it) is the
field ``from_``. Error messages say ``from`` again. Elements of lists of mappings (``prepare``,
``hypotheses``, ``positive_control.criteria``) are checked one by one, because OmegaConf's message would lose
their path.
"""
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import ConfigError


@dataclass
class StepConf:
    """One converter call run before the main converter (``python -m MODULE ARGS``)."""

    module: Optional[str] = None
    args: List[str] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)  # files the step reads (checked, passed resolved)


@dataclass
class DataConf:
    bin: Optional[str] = None  # an existing binarized directory
    converter: Optional[str] = None  # e.g. data_prep.tacred
    subcommand: Optional[str] = None  # e.g. convert (python -m data_prep.openentity convert ...)
    inputs: List[str] = field(default_factory=list)
    splits: Dict[str, List[str]] = field(default_factory=dict)  # train/valid/test -> file(s)
    args: List[str] = field(default_factory=list)
    prepare: List[StepConf] = field(default_factory=list)
    tokenizer: bool = True  # pass --roberta-dir <base> to the converter
    from_: Optional[str] = None  # YAML `from:` another knowledge entry's prepared data


@dataclass
class KnowledgeConf:
    kind: Optional[str] = None  # adapter | base (default: base for `multitask`, else adapter)
    slot: Optional[str] = None
    path: Optional[str] = None
    config: Optional[str] = None
    data: Optional[DataConf] = None
    more_data: Dict[str, DataConf] = field(default_factory=dict)
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    seed: Optional[int] = None  # one knowledge seed of this entry (default 1; see knowledge_seeds)
    threads: Optional[int] = None
    overrides: List[str] = field(default_factory=list)


@dataclass
class ProbeConf:
    """A score by ``kadapter-probe lama`` over LAMA-layout directories (a probe task: nothing trains)."""

    dirs: Dict[str, str] = field(default_factory=dict)  # name -> directory: one score each
    dir: Optional[str] = None  # or the task's only directory
    corpus: str = "TREx"
    fusion: str = "delta"  # delta | concat
    uhn: bool = False
    common_vocab: Optional[str] = None
    batch_size: int = 64


@dataclass
class ScoreConf:
    task: Optional[str] = None  # the kadapter-predict / kadapter-score task name
    metric: Optional[str] = None
    split: str = "test"
    gold: Any = None  # a file, or {name: file}: one prediction and score per file (checked by hand)
    rank: Optional[str] = None  # with several golds or probe directories: the one whose score ranks (default: the first)
    checkpoint: str = "best"
    probe: Optional[ProbeConf] = None


@dataclass
class TaskConf:
    config: Optional[str] = None
    data: Optional[DataConf] = None
    score: Optional[ScoreConf] = None
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    validations: Optional[int] = None
    overrides: List[str] = field(default_factory=list)
    fractions: Optional[List[float]] = None
    max_examples: Optional[List[int]] = None
    max_examples_per_label: Optional[List[int]] = None
    variants: Optional[List[str]] = None  # the experiment's variants this task runs (default: all)


@dataclass
class VariantConf:
    adapters: Dict[str, str] = field(default_factory=dict)  # slot -> knowledge entry, or `random`
    base: Optional[str] = None  # a knowledge entry of kind base (`default`: the experiment's base)
    train_phase: Optional[str] = None
    overrides: List[str] = field(default_factory=list)


@dataclass
class BuildConf:
    text: List[str] = field(default_factory=list)
    options: Dict[str, Any] = field(default_factory=dict)  # kadapter-build-base options (checked by hand)


@dataclass
class BaseConf:
    roberta_path: Optional[str] = None
    build: Optional[BuildConf] = None


@dataclass
class HypothesisConf:
    id: Optional[str] = None
    arm: Optional[str] = None
    versus: Optional[str] = None
    claim: str = ""


@dataclass
class StudyConf:
    task: Optional[str] = None  # default: the experiment's only task
    reference: str = "no-knowledge"
    negative_label: str = "no_relation"
    n_boot: int = 1000
    seed: int = 0
    arms: Dict[str, Dict[str, str]] = field(default_factory=dict)  # arm -> {train phase: variant}
    hypotheses: List[HypothesisConf] = field(default_factory=list)


@dataclass
class CriterionConf:
    """One pre-registered criterion of the positive control: the control variant's score on ``task`` (each of
    ``parts``) minus that score's chance level, at least ``min_over_chance`` and/or at most ``max_over_chance``."""

    task: Optional[str] = None
    parts: List[str] = field(default_factory=list)  # the task's scores (gold files, probed directories); none: its only one
    min_over_chance: Optional[float] = None
    max_over_chance: Optional[float] = None


@dataclass
class PositiveControlConf:
    """What the instrument must show before any arm's figure is read (``control.py``)."""

    variant: Optional[str] = None
    claim: str = ""
    criteria: List[CriterionConf] = field(default_factory=list)


@dataclass
class ScoreRefConf:
    """One row of the report: a variant's score on a task (and one of its parts)."""

    variant: Optional[str] = None
    task: Optional[str] = None
    part: Optional[str] = None


@dataclass
class RowHypothesisConf:
    """A comparison of two report rows over their units (Welch), or of one row with its chance level."""

    id: Optional[str] = None
    claim: str = ""
    score: Optional[ScoreRefConf] = None
    versus: Any = None  # {variant, task, part} (a key left out: the score's), or the word `chance` (checked by hand)
    expect: str = "higher"  # higher | lower | any


@dataclass
class ExperimentConf:
    name: Optional[str] = None
    prepare: List[StepConf] = field(default_factory=list)  # run first, once, in DIR/prepared ({prepared})
    seeds: Any = 3  # a count (3 -> [1, 2, 3]) or a list (checked by hand: a count is not a one-seed list)
    knowledge_seeds: Any = None  # None: one knowledge seed per entry (its `seed`); a count or a list
    fractions: Optional[List[float]] = None
    max_examples: Optional[List[int]] = None
    max_examples_per_label: Optional[List[int]] = None
    base: BaseConf = field(default_factory=BaseConf)
    arch_overrides: List[str] = field(default_factory=list)
    knowledge: Dict[str, KnowledgeConf] = field(default_factory=dict)
    tasks: Dict[str, TaskConf] = field(default_factory=dict)
    variants: Optional[List[str]] = None
    custom_variants: Dict[str, VariantConf] = field(default_factory=dict)
    controls: Optional[List[str]] = None  # default: no-knowledge and roberta, where listed
    compared: Optional[List[str]] = None  # default: every variant with a knowledge-trained adapter
    train_phase: str = "efficient"
    config_dir: str = "configs"
    execution: str = "inprocess"
    precision: str = "fp32"
    threads: Optional[int] = 1
    keep_checkpoints: bool = True
    study: Optional[StudyConf] = None
    positive_control: Optional[PositiveControlConf] = None  # shown before any arm's figure
    hypotheses: List[RowHypothesisConf] = field(default_factory=list)  # Welch over units, per comparison of rows


# ---------------------------------------------------------------------------------------------- parsing


def _fail(source: str, key: str, message: str):
    raise ConfigError(f"{source}: {key or '(top level)'}: {message}")


def _is_list(tp) -> bool:
    return typing.get_origin(tp) in (list, List)


def _is_dict(tp) -> bool:
    return typing.get_origin(tp) in (dict, Dict)


def _strip_optional(tp):
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _normalise(value, tp, key: str, source: str):
    """``value`` shaped for OmegaConf: scalars where lists are expected wrapped, ``from`` renamed,
    and a mapping where a list is expected (or the reverse) refused, naming the key."""
    tp = _strip_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {type(value).__name__} {value!r}")
        hints = typing.get_type_hints(tp)
        out = {}
        for k, v in value.items():
            name = "from_" if (k == "from" and tp is DataConf) else k
            # an unknown key passes unchanged: OmegaConf names it
            out[name] = _normalise(v, hints[name], f"{key}.{k}" if key else str(k), source) if name in hints else v
        return out
    if _is_list(tp):
        if isinstance(value, dict):
            _fail(source, key, f"expected a list, got a mapping {value!r}")
        items = value if isinstance(value, list) else [value]
        (inner,) = typing.get_args(tp)
        out = [_normalise(v, inner, f"{key}[{i}]", source) for i, v in enumerate(items)]
        if dataclasses.is_dataclass(inner):  # checked element by element: OmegaConf loses the path inside lists
            for i, v in enumerate(out):
                _typed(inner, v, f"{key}[{i}]", source)
        return out
    if _is_dict(tp):
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {type(value).__name__} {value!r}")
        inner = typing.get_args(tp)[1]
        return {k: _normalise(v, inner, f"{key}.{k}", source) for k, v in value.items()}
    return value


def _yaml_name(field_name: str) -> str:
    return "from" if field_name == "from_" else field_name


def _shown_key(full_key: str) -> str:
    return full_key.replace(".from_", ".from")


def _typed(tp, value, key: str, source: str):
    """OmegaConf's checks of ``value`` against the dataclass ``tp``; errors name ``key`` as the prefix."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(tp), value))
    except OmegaConfBaseException as e:
        raise _config_error(e, source, key) from None


def _config_error(e, source: str, prefix: str = "") -> ConfigError:
    from omegaconf.errors import ConfigKeyError

    inner = _shown_key(str(getattr(e, "full_key", "") or ""))
    key = ".".join(k for k in (prefix, inner) if k)
    message = str(getattr(e, "msg", "") or e).strip().splitlines()[0]
    if isinstance(e, ConfigKeyError):
        owner = getattr(e, "object_type", None)
        known = [_yaml_name(f.name) for f in dataclasses.fields(owner)] \
            if owner is not None and dataclasses.is_dataclass(owner) else []
        message = "unknown key" + (f" (known: {', '.join(sorted(known))})" if known else "")
    elif "is not Optional" in message:
        message = "expected a value, got null"
    return ConfigError(f"{source}: {key or '(top level)'}: {message}")


def parse(raw: dict, source: str) -> ExperimentConf:
    """The composed YAML as an ``ExperimentConf``, or a ``ConfigError('<file>: <key>: <problem>')``."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(raw, dict):
        _fail(source, "", f"expected a mapping, got {type(raw).__name__}")
    shaped = _normalise(raw, ExperimentConf, "", source)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConf), shaped))
    except OmegaConfBaseException as e:
        raise _config_error(e, source) from None
