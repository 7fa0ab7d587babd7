"""The experiment config: hydra-composed YAML -> ``schema.ExperimentConf`` -> a validated ``Experiment``.

An experiment names a base, the knowledge adapters (and the multitask base) to train, the
downstream tasks, the variants compared, the controls they are compared with, and the seeds and
training-set sizes of the grid; see ``docs/experiments.md`` for every key. ``load_experiment(path,
overrides)`` composes the YAML with hydra's compose API (so ``key=value`` overrides work),
``schema.parse`` checks keys and types, and ``validate`` checks the rest section by section
(base, knowledge, tasks, variants, comparisons, study, positive control, hypotheses) before
anything trains. Any problem is a ``ConfigError('<file>: <key>: <problem>')``.

Paths in the YAML are relative to the repository root (``project_root()``) unless absolute;
``{work}`` in a task's or knowledge entry's data section stands for the directory the runner
prepares that data in, ``{prepared}`` anywhere for the directory of the experiment's own
``prepare:`` steps (run first, once), and ``{base}`` for the base directory. Such paths are made by
an earlier step, so they are not checked here.

A task is trained and scored on gold files (``score: {task, metric, gold}``; ``gold`` may name
several files, one score each), or scored by the LAMA probe with nothing trained (``score:
{metric: p@1, probe: {dirs: ...}}``): a *probe task* reads each variant's base and knowledge
adapters directly, once per knowledge seed.
"""
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError
from . import schema
from .sizes import YAML_KEYS, TrainSize, from_fraction

STANDARD_VARIANTS = ("roberta", "multitask", "fac+lin", "fac", "lin", "no-knowledge")
DEFAULT_CONTROLS = ("no-knowledge", "roberta")
TRAIN_PHASES = ("efficient", "finetune")
RANDOM = "random"  # an adapter slot left randomly initialised (never knowledge-trained)
WORK = "{work}"  # in a data section: the directory its prepare steps write
DATA = "{data}"  # in score.gold: the run's binarized data directory (converters that write the gold file there)
PREPARED = "{prepared}"  # anywhere: the directory of the experiment's own prepare steps
BASE = "{base}"  # anywhere: the base directory (given, built, or under {prepared})
PLACEHOLDERS = (WORK, DATA, PREPARED, BASE)
PROBE_METRICS = ("p@1", "p@10", "mrr")  # macro over relations, as kadapter-probe lama reports them
PROBE_FUSIONS = ("delta", "concat")
PART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a score's name: a file-name component


def project_root() -> str:
    """The repository root (configs/ and examples/ live there); ``KADAPTER_ROOT`` overrides it."""
    env = os.environ.get("KADAPTER_ROOT")
    if env:
        return os.path.abspath(env)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return here if os.path.isdir(os.path.join(here, "configs")) else os.getcwd()


# ---------------------------------------------------------------------------------------------- the validated types


@dataclass
class Step:
    """One converter call: ``python -m MODULE ARGS`` (``{work}`` in ARGS is the data directory)."""

    module: str
    args: List[str] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)  # resolved; an argument spelled as one is passed resolved


@dataclass
class DataSpec:
    """Where a run's binarized data comes from: an existing directory (``bin``) or a converter call."""

    bin: Optional[str] = None
    converter: Optional[str] = None
    subcommand: Optional[str] = None
    inputs: List[str] = field(default_factory=list)
    splits: Dict[str, List[str]] = field(default_factory=dict)
    args: List[str] = field(default_factory=list)
    prepare: List[Step] = field(default_factory=list)
    tokenizer: bool = True
    source: Optional[str] = None  # `from:` another knowledge entry's prepared data


@dataclass
class KnowledgeSpec:
    """A knowledge adapter (``kind: adapter``) or a multitask base (``kind: base``), trained per knowledge seed."""

    name: str
    kind: str = "adapter"
    slot: Optional[str] = None
    path: Optional[str] = None  # an existing adapter file (or base directory): nothing is trained
    config: Optional[str] = None
    data: Optional[DataSpec] = None
    more_data: Dict[str, DataSpec] = field(default_factory=dict)
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    seed: int = 1  # its training seed when the experiment has one knowledge seed
    threads: Optional[int] = None
    overrides: List[str] = field(default_factory=list)


@dataclass
class ProbeSpec:
    """``kadapter-probe lama`` options of a probe task (its directories are the score's ``parts``)."""

    corpus: str = "TREx"
    fusion: str = "delta"
    uhn: bool = False
    common_vocab: Optional[str] = None
    batch_size: int = 64


@dataclass
class ScoreSpec:
    task: Optional[str]  # kadapter-predict / kadapter-score task name (None for a probe task)
    metric: str  # the scorer's key that ranks (e.g. f1; p@1 for a probe)
    split: str = "test"
    gold: Optional[str] = None  # the gold file whose score ranks (None for a probe task)
    checkpoint: str = "best"  # best | last
    parts: Dict[str, str] = field(default_factory=dict)  # several scores: name -> gold file or probe directory
    rank: Optional[str] = None  # the part whose score ranks (with parts)
    probe: Optional[ProbeSpec] = None


@dataclass
class TaskSpec:
    name: str
    config: Optional[str]  # None for a probe task
    data: Optional[DataSpec]  # a probe task: None, or only prepare steps
    score: ScoreSpec
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    validations: Optional[int] = None
    overrides: List[str] = field(default_factory=list)
    sizes: Optional[List[TrainSize]] = None  # the task's own training sizes (default: the experiment's)
    variants: Optional[List[str]] = None  # the variants it runs (default: every variant)

    @property
    def is_probe(self) -> bool:
        return self.score.probe is not None


@dataclass
class VariantSpec:
    name: str
    adapters: Dict[str, str] = field(default_factory=dict)  # slot -> knowledge entry name, or "random"
    base: Optional[str] = None  # a knowledge entry of kind base; default: the experiment's base
    train_phase: Optional[str] = None
    overrides: List[str] = field(default_factory=list)

    @property
    def knowledge_trained(self) -> bool:
        return any(k != RANDOM for k in self.adapters.values())


@dataclass
class Unit:
    """The statistical unit of a grid: one knowledge seed and the downstream seeds paired with it.

    With one knowledge seed (``knowledge_seed`` None) every downstream seed is its own unit, as
    always; with several, unit j trains every knowledge entry with seed j and runs each variant with
    the same block of downstream seeds, variants without knowledge included (a paired design)."""

    knowledge_seed: Optional[int]
    seeds: List[int]


@dataclass
class StudySpec:
    task: str
    reference: str
    negative_label: str
    n_boot: int
    seed: int
    arms: Dict[str, Dict[str, str]]  # arm -> {train phase: variant}
    hypotheses: List[Dict[str, Any]]  # {id, arm, versus, claim}


@dataclass
class PositiveControlSpec:
    """The positive control: ``variant``'s scores must meet each criterion before the arms' figures count.

    A criterion is ``{"task", "part", "min_over_chance", "max_over_chance"}`` (one per part; ``part`` None: the
    task's only score); its margin is the row's mean minus the row's chance level (``control.py``)."""

    variant: str
    claim: str
    criteria: List[Dict[str, Any]]


@dataclass
class HypothesisSpec:
    """``score`` against ``versus`` (both ``{"variant", "task", "part"}``; ``versus`` None: the score's chance)."""

    id: str
    claim: str
    score: Dict[str, Any]
    versus: Optional[Dict[str, Any]]
    expect: str = "higher"


@dataclass
class Experiment:
    name: str
    source: str  # the YAML file
    roberta_path: Optional[str]  # None: the runner builds the base (base_build) in DIR/base
    tasks: Dict[str, TaskSpec]
    variants: List[VariantSpec]
    seeds: List[int]
    sizes: List[TrainSize]
    knowledge: Dict[str, KnowledgeSpec] = field(default_factory=dict)
    units: List[Unit] = field(default_factory=list)
    arch_overrides: List[str] = field(default_factory=list)
    train_phase: str = "efficient"
    config_dir: str = ""
    execution: str = "inprocess"  # inprocess | subprocess
    precision: str = "fp32"  # as asked (fp32 | bf16 | auto)
    dtype: str = "fp32"  # as resolved for this machine
    dtype_reason: str = "asked for"
    threads: Optional[int] = 1
    keep_checkpoints: bool = True
    controls: Dict[str, List[str]] = field(default_factory=dict)  # compared variant -> its controls, in order
    study: Optional[StudySpec] = None
    raw: Dict[str, Any] = field(default_factory=dict)  # the composed YAML, resolved
    base_build: Optional[Dict[str, Any]] = None  # {"text": [files], "options": {build_base option: value}}
    prepare: List[Step] = field(default_factory=list)  # the experiment's own preparation ({prepared})
    positive_control: Optional[PositiveControlSpec] = None
    hypotheses: List[HypothesisSpec] = field(default_factory=list)

    def task_sizes(self, task: TaskSpec) -> List[TrainSize]:
        if task.is_probe:  # nothing is trained: one probe per variant and knowledge seed
            return [TrainSize()]
        return task.sizes if task.sizes is not None else self.sizes

    def task_variants(self, task: TaskSpec) -> List[VariantSpec]:
        return [v for v in self.variants if task.variants is None or v.name in task.variants]

    def phase(self, variant: VariantSpec) -> str:
        return variant.train_phase or self.train_phase

    @property
    def several_knowledge_seeds(self) -> bool:
        return any(u.knowledge_seed is not None for u in self.units)


# ---------------------------------------------------------------------------------------------- checks


class _Checker:
    """Cross-field checks, raising ``ConfigError('<file>: <key>: <problem>')``."""

    def __init__(self, source: str, root: str, check_paths: bool = True):
        self.source = source
        self.root = root
        self.check_paths = check_paths

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.source}: {key or '(top level)'}: {message}")

    def positive(self, value, key, minimum=1):
        if value is not None and value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def rate(self, value, key) -> Optional[float]:
        if value is not None and value <= 0:
            self.fail(key, f"expected a positive number, got {value!r}")
        return value

    def one_of(self, value, key, choices):
        if value not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def path(self, value, key, kind="file", required=True) -> Optional[str]:
        """An absolute path; must exist unless it lies under ``{work}`` (made by an earlier step)."""
        if value is None:
            if required:
                self.fail(key, "missing")
            return None
        value = str(value)
        if any(p in value for p in PLACEHOLDERS):
            return value
        path = os.path.normpath(value if os.path.isabs(value) else os.path.join(self.root, value))
        if not self.check_paths:
            return path
        ok = os.path.isfile(path) if kind == "file" else os.path.isdir(path) if kind == "dir" else os.path.exists(path)
        if not ok:
            self.fail(key, f"{kind} not found: {value}" + ("" if os.path.isabs(value) else f" (resolved to {path})"))
        return path

    def module(self, value, key) -> str:
        if not value:
            self.fail(key, "missing (a converter module such as data_prep.tacred)")
        try:
            found = importlib.util.find_spec(value)
        except (ImportError, ValueError):
            found = None
        if found is None:
            self.fail(key, f"no module {value!r}")
        return value

    def train_config(self, value, key, config_dir) -> str:
        if not value:
            self.fail(key, f"missing (a config name in {config_dir})")
        name = value[:-5] if value.endswith(".yaml") else value
        if not os.path.isfile(os.path.join(config_dir, name + ".yaml")):  # configs/ ships with the code: always checked
            self.fail(key, f"no config {name}.yaml in {config_dir}")
        return name

    def seed_list(self, value, key, default=None) -> Optional[List[int]]:
        """A count (n -> [1..n]) or a list of distinct integers."""
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                self.fail(key, f"need at least one seed, got {value}")
            return list(range(1, value + 1))
        if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            self.fail(key, f"expected a list of integers (or a count), got {value!r}")
        if len(set(value)) != len(value):
            self.fail(key, f"a seed is listed twice: {value}")
        return list(value)

    def sizes(self, conf, prefix: str) -> Optional[List[TrainSize]]:
        """The training sizes of ``fractions`` / ``max_examples`` / ``max_examples_per_label`` (None: not given)."""
        given = {k: getattr(conf, k) for k in YAML_KEYS if getattr(conf, k) is not None}
        if not given:
            return None
        sizes = []
        for k, values in given.items():
            for i, v in enumerate(values):
                where = f"{prefix}{k}[{i}]"
                if k == "fractions":
                    if not 0.0 < v <= 1.0:
                        self.fail(where, f"a training fraction must be in (0, 1], got {v!r}")
                    sizes.append(from_fraction(v))
                else:
                    self.positive(v, where)
                    sizes.append(TrainSize(YAML_KEYS[k], v))
        if len(set(sizes)) != len(sizes):
            self.fail(f"{prefix}{next(iter(given))}", "a training size is listed twice")
        return sorted(sizes, key=TrainSize.sort_key)

    def steps(self, confs: List[schema.StepConf], key: str) -> List[Step]:
        """Converter calls (``prepare:``); an input named in ``args`` is passed resolved, whatever the cwd."""
        out = []
        for i, step in enumerate(confs):
            k = f"{key}[{i}]"
            inputs = [self.path(p, f"{k}.inputs[{j}]") for j, p in enumerate(step.inputs)]
            resolved = dict(zip(step.inputs, inputs))
            out.append(Step(module=self.module(step.module, f"{k}.module"), args=[resolved.get(a, a) for a in step.args],
                            inputs=inputs))
        return out

    def data(self, conf: Optional[schema.DataConf], key, knowledge_names=()) -> DataSpec:
        if conf is None:
            self.fail(key, "missing (give bin: DIR, or converter: + its inputs)")
        if conf.from_ is not None:
            if conf != schema.DataConf(from_=conf.from_):
                self.fail(key, "`from:` takes no other keys")
            if conf.from_ not in knowledge_names:
                self.fail(f"{key}.from", f"no knowledge entry {conf.from_!r}")
            return DataSpec(source=conf.from_)
        if conf.bin is not None:
            if conf.converter:
                self.fail(key, "give either bin or converter, not both")
            return DataSpec(bin=self.path(conf.bin, f"{key}.bin", kind="dir"))
        spec = DataSpec(converter=self.module(conf.converter, f"{key}.converter"), subcommand=conf.subcommand,
                        args=list(conf.args), tokenizer=conf.tokenizer)
        spec.inputs = [self.path(p, f"{key}.inputs[{i}]") for i, p in enumerate(conf.inputs)]
        for split, paths in conf.splits.items():
            self.one_of(split, f"{key}.splits.{split}", ("train", "valid", "test"))
            spec.splits[split] = [self.path(p, f"{key}.splits.{split}", kind="path") for p in paths]
        spec.prepare = self.steps(conf.prepare, f"{key}.prepare")
        if not spec.inputs and not spec.splits:
            self.fail(key, "the converter has no input: give inputs: [...] or splits: {train: ...}")
        return spec


# ---------------------------------------------------------------------------------------------- the sections


def validate(raw: dict, source: str = "<experiment>", root: Optional[str] = None, check_paths: bool = True) -> Experiment:
    """The ``Experiment`` a composed config describes, or a ``ConfigError`` naming the key.

    ``check_paths=False`` checks everything but the existence of files (a grid meant for another machine)."""
    root = root or project_root()
    conf = schema.parse(raw, source)
    c = _Checker(source, root, check_paths)

    config_dir = c.path(conf.config_dir, "config_dir", kind="dir")
    prepare = c.steps(conf.prepare, "prepare")
    roberta_path, base_build = _base(c, conf.base)
    for i, step in enumerate(prepare):
        if any(BASE in a for a in step.args) and (roberta_path is None or PREPARED in roberta_path):
            c.fail(f"prepare[{i}]", "{base} is not there yet when the experiment's own preparation runs "
                                    "(it runs before the base is built; use {base} in a task's data.prepare)")
    seeds, units = _seeds(c, conf)
    knowledge = _knowledge(c, conf, config_dir, units)
    sizes = c.sizes(conf, "") or [TrainSize()]
    tasks = _tasks(c, conf, config_dir, sizes)
    train_phase = c.one_of(conf.train_phase, "train_phase", TRAIN_PHASES)
    variants = _variants(c, conf, knowledge)
    _task_variants(c, conf, tasks, variants, knowledge)
    controls = _comparisons(c, conf, variants, train_phase)
    study = _study(c, conf, tasks, variants)
    positive_control = _positive_control(c, conf, tasks, variants)
    hypotheses = _hypotheses(c, conf, tasks, variants)
    c.one_of(conf.execution, "execution", ("inprocess", "subprocess"))
    dtype, reason = _precision(c, conf.precision)
    return Experiment(
        name=str(conf.name or os.path.splitext(os.path.basename(source))[0]), source=source,
        roberta_path=roberta_path, tasks=tasks, variants=variants, seeds=seeds, sizes=sizes, knowledge=knowledge,
        units=units, arch_overrides=list(conf.arch_overrides), train_phase=train_phase, config_dir=config_dir,
        execution=conf.execution, precision=conf.precision, dtype=dtype, dtype_reason=reason,
        threads=c.positive(conf.threads, "threads"), keep_checkpoints=conf.keep_checkpoints, controls=controls,
        study=study, raw=raw, base_build=base_build, prepare=prepare, positive_control=positive_control,
        hypotheses=hypotheses,
    )


def _base(c: _Checker, base: schema.BaseConf) -> Tuple[Optional[str], Optional[dict]]:
    """``(roberta_path, None)`` or ``(None, {"text", "options"})`` for ``kadapter-build-base``."""
    if base.build is None:
        path = c.path(base.roberta_path, "base.roberta_path", kind="dir")
        if c.check_paths and PREPARED not in path and not os.path.isfile(os.path.join(path, "model.pt")):
            c.fail("base.roberta_path", f"{path} holds no model.pt")
        return path, None
    if base.roberta_path is not None:
        c.fail("base", "give either roberta_path or build, not both")
    from ..tools.build_base import build_parser

    if not base.build.text:
        c.fail("base.build.text", "missing: the text files to pre-train the base on")
    known = {a.dest for a in build_parser()._actions} - {"help", "text", "out", "force"}
    for key in base.build.options:
        if key not in known:
            c.fail(f"base.build.options.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    return None, {"text": [c.path(t, f"base.build.text[{i}]") for i, t in enumerate(base.build.text)],
                  "options": dict(base.build.options)}


def _seeds(c: _Checker, conf: schema.ExperimentConf) -> Tuple[List[int], List[Unit]]:
    """The downstream seeds and the units: one knowledge seed (each seed a unit), or blocks per knowledge seed."""
    seeds = c.seed_list(conf.seeds, "seeds")
    kseeds = c.seed_list(conf.knowledge_seeds, "knowledge_seeds")
    if kseeds is None or len(kseeds) == 1:
        return seeds, [Unit(None, seeds)]
    if len(seeds) % len(kseeds):
        c.fail("seeds", f"{len(seeds)} downstream seeds cannot be shared out over {len(kseeds)} knowledge seeds "
                        "(each knowledge seed gets an equal block: give a multiple of their number)")
    per = len(seeds) // len(kseeds)
    return seeds, [Unit(k, seeds[i * per:(i + 1) * per]) for i, k in enumerate(kseeds)]


def _knowledge(c: _Checker, conf: schema.ExperimentConf, config_dir: str, units: List[Unit]) -> Dict[str, KnowledgeSpec]:
    kseeds = c.seed_list(conf.knowledge_seeds, "knowledge_seeds")
    knowledge = {}
    names = tuple(conf.knowledge)
    for name, entry in conf.knowledge.items():
        key = f"knowledge.{name}"
        kind = c.one_of(entry.kind or ("base" if name == "multitask" else "adapter"), f"{key}.kind", ("adapter", "base"))
        if entry.seed is not None and kseeds is not None:
            c.fail(f"{key}.seed", "give either knowledge_seeds (every entry) or an entry's seed, not both")
        seed = entry.seed if entry.seed is not None else (kseeds[0] if kseeds else 1)
        k = KnowledgeSpec(name=name, kind=kind, slot=entry.slot or (name if kind == "adapter" else None),
                          seed=c.positive(seed, f"{key}.seed", minimum=0),
                          threads=c.positive(entry.threads, f"{key}.threads"), overrides=list(entry.overrides))
        others = [n for n in names if n != name]
        if entry.path is not None:
            k.path = c.path(entry.path, f"{key}.path", kind="file" if kind == "adapter" else "dir")
        else:
            k.config = c.train_config(entry.config, f"{key}.config", config_dir)
            k.data = c.data(entry.data, f"{key}.data", others)
            k.more_data = {dkey: c.data(d, f"{key}.more_data.{dkey}", others) for dkey, d in entry.more_data.items()}
            for dkey, d in k.more_data.items():
                if d.source is None:
                    c.fail(f"{key}.more_data.{dkey}", "give `from: <knowledge entry>` (its prepared data)")
            k.updates = c.positive(entry.updates, f"{key}.updates")
            k.warmup = c.positive(entry.warmup, f"{key}.warmup", minimum=0)
            k.lr = c.rate(entry.lr, f"{key}.lr")
            k.batch_size = c.positive(entry.batch_size, f"{key}.batch_size")
        knowledge[name] = k
    for k in knowledge.values():  # `from:` must name an entry that prepares data itself
        for dkey, d in [("data", k.data)] + [(f"more_data.{n}", v) for n, v in k.more_data.items()]:
            if d is not None and d.source is not None and (knowledge[d.source].data is None or knowledge[d.source].data.source):
                c.fail(f"knowledge.{k.name}.{dkey}.from", f"{d.source!r} prepares no data of its own")
    return knowledge


def _tasks(c: _Checker, conf: schema.ExperimentConf, config_dir: str, sizes: List[TrainSize]) -> Dict[str, TaskSpec]:
    if not conf.tasks:
        c.fail("tasks", "missing: name at least one downstream task")
    tasks = {}
    for name, entry in conf.tasks.items():
        key = f"tasks.{name}"
        score = entry.score
        if score is None:
            c.fail(f"{key}.score", "missing: a task needs score: {task, metric, split} (or score: {probe: ...})")
        if score.probe is not None:
            tasks[name] = _probe_task(c, name, entry)
            continue
        if not score.metric:
            c.fail(f"{key}.score.metric", "missing: the metric that ranks the runs (e.g. f1, accuracy)")
        if not score.task:
            c.fail(f"{key}.score.task", "missing: the kadapter-predict / kadapter-score task name")
        data = c.data(entry.data, f"{key}.data")
        split = c.one_of(score.split, f"{key}.score.split", ("train", "valid", "test"))
        parts: Dict[str, str] = {}
        if isinstance(score.gold, dict):
            parts = {part: c.path(path, f"{key}.score.gold.{part}") for part, path in _parts(c, score.gold, f"{key}.score.gold")}
            rank = _rank(c, score.rank, parts, f"{key}.score.rank")
            gold = parts[rank]
        elif score.gold is not None:
            if not isinstance(score.gold, str):
                c.fail(f"{key}.score.gold", f"expected a file or a mapping name -> file, got {score.gold!r}")
            gold, rank = c.path(score.gold, f"{key}.score.gold"), None
        elif len(data.splits.get(split, [])) == 1:
            gold, rank = data.splits[split][0], None
        else:
            c.fail(f"{key}.score.gold", f"missing: the raw {split} file to predict and score (data.splits.{split} is not given)")
        if rank is None and score.rank is not None:
            c.fail(f"{key}.score.rank", "only a score over several gold files (score.gold: {name: file}) has a rank")
        task_sizes = c.sizes(entry, f"{key}.")
        if data.bin is not None and any(not s.is_full for s in (task_sizes if task_sizes is not None else sizes)):
            what = "training-size subsamples" if task_sizes is not None else "the experiment's training-size subsamples"
            c.fail(f"{key}.data", f"{what} need a converter (data.bin cannot be subsampled)")
        tasks[name] = TaskSpec(
            name=name, config=c.train_config(entry.config, f"{key}.config", config_dir), data=data,
            score=ScoreSpec(task=score.task, metric=score.metric, split=split, gold=gold,
                            checkpoint=c.one_of(score.checkpoint, f"{key}.score.checkpoint", ("best", "last")),
                            parts=parts, rank=rank),
            updates=c.positive(entry.updates, f"{key}.updates"), warmup=c.positive(entry.warmup, f"{key}.warmup", minimum=0),
            lr=c.rate(entry.lr, f"{key}.lr"), batch_size=c.positive(entry.batch_size, f"{key}.batch_size"),
            validations=c.positive(entry.validations, f"{key}.validations"), overrides=list(entry.overrides),
            sizes=task_sizes, variants=entry.variants,
        )
    return tasks


def _parts(c: _Checker, mapping: dict, key: str) -> List[Tuple[str, Any]]:
    """``(name, value)`` of a mapping of named scores; each name becomes part of a file name."""
    if not mapping:
        c.fail(key, "expected at least one name: path")
    for part, value in mapping.items():
        if not PART_NAME.match(str(part)):
            c.fail(f"{key}.{part}", "a score's name must be letters, digits, '_', '.' or '-' (it names files)")
        if not isinstance(value, str):
            c.fail(f"{key}.{part}", f"expected a path, got {value!r}")
    return list(mapping.items())


def _rank(c: _Checker, rank: Optional[str], parts: Dict[str, str], key: str) -> str:
    if rank is None:
        return next(iter(parts))
    if rank not in parts:
        c.fail(key, f"expected one of {', '.join(parts)}, got {rank!r}")
    return rank


def _probe_task(c: _Checker, name: str, entry: schema.TaskConf) -> TaskSpec:
    """A task scored by ``kadapter-probe lama`` over named directories; nothing trains, so no training keys."""
    from ..probe.lama import CORPORA

    key = f"tasks.{name}"
    score, probe = entry.score, entry.score.probe
    training = {"config": entry.config, "updates": entry.updates, "warmup": entry.warmup, "lr": entry.lr,
                "batch_size": entry.batch_size, "validations": entry.validations, "overrides": entry.overrides or None,
                "fractions": entry.fractions, "max_examples": entry.max_examples,
                "max_examples_per_label": entry.max_examples_per_label,
                "score.task": score.task, "score.gold": score.gold}
    for k, v in training.items():
        if v is not None:
            c.fail(f"{key}.{k}", "a probe task trains and predicts nothing (score.probe reads each variant's base and "
                                 "adapters): leave it out")
    if score.split != "test" or score.checkpoint != "best":
        c.fail(f"{key}.score", "a probe task has no split or checkpoint: leave them out")
    data = None
    if entry.data is not None:
        if entry.data != schema.DataConf(prepare=entry.data.prepare, tokenizer=entry.data.tokenizer):
            c.fail(f"{key}.data", "a probe task's data holds only prepare: [...] (steps that write its directories "
                                  "into {work})")
        data = DataSpec(prepare=c.steps(entry.data.prepare, f"{key}.data.prepare"))
    if (probe.dir is None) == (not probe.dirs):
        c.fail(f"{key}.score.probe", "give dirs: {name: directory, ...} (one score each) or dir: DIRECTORY")
    if probe.dir is not None:
        parts, rank = {}, None
        only = c.path(probe.dir, f"{key}.score.probe.dir", kind="dir")
        if score.rank is not None:
            c.fail(f"{key}.score.rank", "only a probe over several directories (score.probe.dirs) has a rank")
    else:
        parts = {part: c.path(path, f"{key}.score.probe.dirs.{part}", kind="dir")
                 for part, path in _parts(c, probe.dirs, f"{key}.score.probe.dirs")}
        rank = _rank(c, score.rank, parts, f"{key}.score.rank")
        only = None
    spec = ProbeSpec(corpus=c.one_of(probe.corpus, f"{key}.score.probe.corpus", CORPORA),
                     fusion=c.one_of(probe.fusion, f"{key}.score.probe.fusion", PROBE_FUSIONS), uhn=probe.uhn,
                     common_vocab=c.path(probe.common_vocab, f"{key}.score.probe.common_vocab", required=False),
                     batch_size=c.positive(probe.batch_size, f"{key}.score.probe.batch_size"))
    metric = c.one_of(score.metric or "p@1", f"{key}.score.metric", PROBE_METRICS)
    return TaskSpec(name=name, config=None, data=data,
                    score=ScoreSpec(task=None, metric=metric, gold=only, parts=parts, rank=rank, probe=spec),
                    variants=entry.variants)


def _task_variants(c: _Checker, conf: schema.ExperimentConf, tasks: Dict[str, TaskSpec], variants: List[VariantSpec],
                   knowledge: Dict[str, KnowledgeSpec]):
    """Each task's ``variants:`` are the experiment's; a concat probe reads variants it can load."""
    names = [v.name for v in variants]
    for tname, task in tasks.items():
        for i, v in enumerate(task.variants or []):
            if v not in names:
                c.fail(f"tasks.{tname}.variants[{i}]", f"{v!r} is not one of the experiment's variants")
        if task.variants is not None and not task.variants:
            c.fail(f"tasks.{tname}.variants", "expected at least one variant")
        if not task.is_probe or task.score.probe.fusion != "concat":
            continue
        for v in [v for v in variants if task.variants is None or v.name in task.variants]:
            key = f"tasks.{tname}.score.probe.fusion"
            if len(v.adapters) > 1:
                c.fail(key, f"the concat readout reads one adapter through its saved fusion; variant {v.name!r} has "
                            f"{len(v.adapters)} (adapters trained apart share no combining layer): probe it with delta, "
                            "or list the variants to probe under tasks." + tname + ".variants")
            for slot, kname in v.adapters.items():
                k = knowledge.get(kname)
                if k is not None and k.path is None and k.slot != slot:
                    c.fail(key, f"variant {v.name!r} reads knowledge.{kname} in slot {slot!r}, but it trains (and saves "
                                f"its fusion for) slot {k.slot!r}: set knowledge.{kname}.slot: {slot}")


def _standard_variant(name: str) -> VariantSpec:
    adapters = {"roberta": {}, "multitask": {}, "fac+lin": {"fac": "fac", "lin": "lin"}, "fac": {"fac": "fac"},
                "lin": {"lin": "lin"}, "no-knowledge": {"fac": RANDOM, "lin": RANDOM}}[name]
    return VariantSpec(name=name, adapters=dict(adapters), base="multitask" if name == "multitask" else None)


def _variants(c: _Checker, conf: schema.ExperimentConf, knowledge: Dict[str, KnowledgeSpec]) -> List[VariantSpec]:
    names = conf.variants if conf.variants is not None else list(STANDARD_VARIANTS)
    if not names:
        c.fail("variants", f"expected a non-empty list of variant names, got {names!r}")
    if len(set(names)) != len(names):
        c.fail("variants", f"a variant is listed twice: {names}")
    variants = []
    for i, name in enumerate(names):
        key = f"variants[{i}]"
        if name in conf.custom_variants:
            d = conf.custom_variants[name]
            if d.train_phase is not None:
                c.one_of(d.train_phase, f"custom_variants.{name}.train_phase", TRAIN_PHASES)
            v = VariantSpec(name=name, adapters=dict(d.adapters), base=None if d.base in (None, "default") else d.base,
                            train_phase=d.train_phase, overrides=list(d.overrides))
        elif name in STANDARD_VARIANTS:
            v = _standard_variant(name)
        else:
            c.fail(key, f"unknown variant {name!r} (standard: {', '.join(STANDARD_VARIANTS)}; "
                        "or define it under custom_variants)")
        for kname in v.adapters.values():
            if kname == RANDOM:
                continue
            if kname not in knowledge:
                c.fail(key, f"variant {name!r} needs the knowledge adapter {kname!r}: add knowledge.{kname}")
            if knowledge[kname].kind != "adapter":
                c.fail(key, f"variant {name!r}: knowledge.{kname} is a base, not an adapter")
        if v.base is not None:
            if v.base not in knowledge:
                c.fail(key, f"variant {name!r} needs the base {v.base!r}: add knowledge.{v.base} (train_phase=full)")
            if knowledge[v.base].kind != "base":
                c.fail(key, f"variant {name!r}: knowledge.{v.base} is an adapter, not a base")
        variants.append(v)
    for name in conf.custom_variants:
        if name not in names:
            c.fail(f"custom_variants.{name}", "defined but not listed under variants")
    return variants


def _comparisons(c: _Checker, conf: schema.ExperimentConf, variants: List[VariantSpec], train_phase: str) -> Dict[str, List[str]]:
    """Each compared variant's controls, in order: the controls trained downstream in the same phase.

    The first is the one the plain-sentence statements name. Defaults: the controls are
    ``no-knowledge`` and ``roberta`` where listed; the compared variants those with a knowledge-trained adapter."""
    by_name = {v.name: v for v in variants}
    for key in ("controls", "compared"):
        for i, name in enumerate(getattr(conf, key) or []):
            if name not in by_name:
                c.fail(f"{key}[{i}]", f"{name!r} is not one of the experiment's variants")
    controls = conf.controls if conf.controls is not None else [n for n in DEFAULT_CONTROLS if n in by_name]
    compared = conf.compared if conf.compared is not None else \
        [v.name for v in variants if v.knowledge_trained and v.name not in controls]
    phase = {v.name: v.train_phase or train_phase for v in variants}
    return {v: [ctl for ctl in controls if ctl != v and phase[ctl] == phase[v]] for v in compared}


def _study(c: _Checker, conf: schema.ExperimentConf, tasks: Dict[str, TaskSpec],
           variants: List[VariantSpec]) -> Optional[StudySpec]:
    s = conf.study
    if s is None:
        return None
    if not s.arms:
        c.fail("study.arms", "expected a mapping arm -> {phase: variant}")
    names = {v.name for v in variants}
    for arm, phases in s.arms.items():
        if not phases:
            c.fail(f"study.arms.{arm}", "expected a mapping phase -> variant")
        for phase, variant in phases.items():
            if variant not in names:
                c.fail(f"study.arms.{arm}.{phase}", f"{variant!r} is not one of the experiment's variants")
    if s.reference not in s.arms:
        c.fail("study.reference", f"{s.reference!r} is not one of study.arms")
    for i, h in enumerate(s.hypotheses):
        for key in ("arm", "versus"):
            if getattr(h, key) not in s.arms:
                c.fail(f"study.hypotheses[{i}].{key}", "expected one of study.arms")
    task = s.task or (next(iter(tasks)) if len(tasks) == 1 else None)
    if task not in tasks:
        c.fail("study.task", f"expected one of the experiment's tasks ({', '.join(tasks)})")
    if tasks[task].is_probe or tasks[task].score.task != "tacred":
        c.fail("study.task", f"the study scores relation labels (TACRED's counting); tasks.{task} is scored as "
                             f"{tasks[task].score.task or 'a LAMA probe'!r}")
    if DATA in (tasks[task].score.gold or ""):
        c.fail(f"tasks.{task}.score.gold", "the study needs one gold file for every run, not one per data directory")
    return StudySpec(task=task, reference=s.reference, negative_label=s.negative_label,
                     n_boot=c.positive(s.n_boot, "study.n_boot"), seed=s.seed, arms={a: dict(p) for a, p in s.arms.items()},
                     hypotheses=[{"id": h.id, "arm": h.arm, "versus": h.versus, "claim": h.claim} for h in s.hypotheses])


def has_chance(task: TaskSpec) -> bool:
    """Whether the report puts a chance level beside the task's scores: the majority baseline of a probe, the type
    baseline of a relation task scored by TACRED's scorer (``baselines.py``)."""
    return task.is_probe or (task.score.task == "tacred" and DATA not in (task.score.gold or ""))


def _score_ref(c: _Checker, ref: Dict[str, Any], key: str, tasks: Dict[str, TaskSpec],
               variants: List[VariantSpec]) -> Dict[str, Any]:
    """``{"variant", "task", "part"}`` naming one row of the report: a variant that runs the task, one of its parts."""
    unknown = set(ref) - {"variant", "task", "part"}
    if unknown:
        c.fail(f"{key}.{sorted(unknown)[0]}", "unknown key (known: part, task, variant)")
    names = [v.name for v in variants]
    if ref.get("variant") not in names:
        c.fail(f"{key}.variant", f"expected one of the experiment's variants ({', '.join(names)}), got {ref.get('variant')!r}")
    task = tasks.get(ref.get("task"))
    if task is None:
        c.fail(f"{key}.task", f"expected one of the experiment's tasks ({', '.join(tasks)}), got {ref.get('task')!r}")
    if task.variants is not None and ref["variant"] not in task.variants:
        c.fail(f"{key}.variant", f"tasks.{task.name} does not run variant {ref['variant']!r} (its variants: "
                                 f"{', '.join(task.variants)})")
    parts = list(task.score.parts)
    part = ref.get("part")
    if parts and part not in parts:
        c.fail(f"{key}.part", f"expected one of tasks.{task.name}'s scores ({', '.join(parts)}), got {part!r}")
    if not parts and part is not None:
        c.fail(f"{key}.part", f"tasks.{task.name} has one score: leave part out")
    return {"variant": ref["variant"], "task": task.name, "part": part}


def _positive_control(c: _Checker, conf: schema.ExperimentConf, tasks: Dict[str, TaskSpec],
                      variants: List[VariantSpec]) -> Optional[PositiveControlSpec]:
    pc = conf.positive_control
    if pc is None:
        return None
    if not pc.criteria:
        c.fail("positive_control.criteria", "expected at least one criterion {task, parts, min_over_chance | max_over_chance}")
    criteria = []
    for i, crit in enumerate(pc.criteria):
        key = f"positive_control.criteria[{i}]"
        if crit.min_over_chance is None and crit.max_over_chance is None:
            c.fail(key, "give min_over_chance (the score at least this far above chance) and/or max_over_chance")
        if crit.min_over_chance is not None and crit.max_over_chance is not None and crit.min_over_chance > crit.max_over_chance:
            c.fail(key, f"min_over_chance {crit.min_over_chance} is above max_over_chance {crit.max_over_chance}")
        for part in crit.parts or [None]:
            ref = _score_ref(c, {"variant": pc.variant, "task": crit.task, "part": part}, key, tasks, variants)
            if not has_chance(tasks[ref["task"]]):
                c.fail(f"{key}.task", f"tasks.{ref['task']} has no chance level to measure a margin from (a probe task "
                                      "has its majority baseline, a task scored by tacred its type baseline)")
            criteria.append({**{k: ref[k] for k in ("task", "part")}, "min_over_chance": crit.min_over_chance,
                             "max_over_chance": crit.max_over_chance})
    return PositiveControlSpec(variant=pc.variant, claim=pc.claim, criteria=criteria)


def _hypotheses(c: _Checker, conf: schema.ExperimentConf, tasks: Dict[str, TaskSpec],
                variants: List[VariantSpec]) -> List[HypothesisSpec]:
    out, seen = [], set()
    for i, h in enumerate(conf.hypotheses):
        key = f"hypotheses[{i}]"
        hid = h.id or f"H{i + 1}"
        if hid in seen:
            c.fail(f"{key}.id", f"{hid!r} is used twice")
        seen.add(hid)
        if h.score is None:
            c.fail(f"{key}.score", "missing: {variant, task, part} of the row the hypothesis is about")
        score = _score_ref(c, {k: v for k, v in vars(h.score).items() if v is not None}, f"{key}.score", tasks, variants)
        if h.versus == "chance":
            if not has_chance(tasks[score["task"]]):
                c.fail(f"{key}.versus", f"tasks.{score['task']} has no chance level")
            versus = None
        elif isinstance(h.versus, dict) and h.versus:
            # a key left out is the score's own: {variant: roberta} is the same task and part with roberta
            versus = _score_ref(c, {**score, **h.versus}, f"{key}.versus", tasks, variants)
            if versus == score:
                c.fail(f"{key}.versus", "compares a row with itself")
        else:
            c.fail(f"{key}.versus", f"expected {{variant, task, part}} (what the score is compared with) or 'chance', "
                                    f"got {h.versus!r}")
        out.append(HypothesisSpec(id=hid, claim=h.claim, score=score, versus=versus,
                                  expect=c.one_of(h.expect, f"{key}.expect", ("higher", "lower", "any"))))
    return out


def _precision(c: _Checker, requested: str) -> Tuple[str, str]:
    """``(dtype, reason)`` for this machine (``precision: auto`` looks at the CPU's or GPU's bf16 units)."""
    from .. import precision

    try:
        import torch

        return precision.resolve(requested, on_gpu=torch.cuda.is_available())
    except ConfigError as e:
        c.fail("precision", str(e).split(": ", 1)[-1])


# ---------------------------------------------------------------------------------------------- composing


def split_overrides(overrides: List[str]) -> Tuple[List[str], List[str]]:
    """``(experiment overrides, hydra launcher overrides)``: ``hydra/...`` and ``hydra.…`` go to the launcher."""
    mine, launcher = [], []
    for o in overrides:
        (launcher if o.lstrip("+~").startswith(("hydra/", "hydra.")) else mine).append(o)
    return mine, launcher


def compose_raw(path: str, overrides: List[str]) -> dict:
    """The experiment YAML composed by hydra with ``overrides``, as a plain resolved dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not os.path.isfile(path):
        raise ConfigError(f"experiment config not found: {path}")
    config_dir = os.path.dirname(os.path.abspath(path))
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        # version_base 1.1: hydra keeps its version base process-wide, and fairseq's own Namespace->config
        # conversion (hydra.experimental.initialize) refuses to run once it is 1.2 or later
        with initialize_config_dir(config_dir=config_dir, version_base="1.1", job_name="kadapter-experiment"):
            # `++key=value` sets a key whether or not the file has it: the schema names an unknown
            # (mistyped) key, so hydra's "+ to append" distinction is not needed here
            cfg = compose(config_name=name, overrides=[o if o.startswith(("+", "~")) else "++" + o for o in overrides])
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or type(e).__name__
        raise ConfigError(f"{path}: {text}") from None


def load_experiment(path: str, overrides: List[str] = ()) -> Experiment:
    return validate(compose_raw(path, list(overrides)), source=path)
