"""The experiment config: hydra-composed YAML -> validated dataclasses, before anything trains.

An experiment names a base, the knowledge adapters (and the multitask base) to train once, the
downstream tasks, the variants compared and the seeds and training-set sizes of the grid; see
``docs/experiments.md`` for every key. ``load_experiment(path, overrides)`` composes the YAML with
hydra's compose API (so ``key=value`` overrides work) and ``validate`` turns it into an
``Experiment``; any problem is a ``ConfigError`` naming the file and the key.

Paths in the YAML are relative to the repository root (``project_root()``) unless absolute;
``{work}`` in a task's or knowledge entry's data section stands for the directory the runner
prepares that data in.
"""
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError

STANDARD_VARIANTS = ("roberta", "multitask", "fac+lin", "fac", "lin", "no-knowledge")
TRAIN_PHASES = ("efficient", "finetune")
RANDOM = "random"  # an adapter slot left randomly initialised (never knowledge-trained)
WORK = "{work}"  # in a data section: the directory its prepare steps write
DATA = "{data}"  # in score.gold: the run's binarized data directory (converters that write the gold file there)


def project_root() -> str:
    """The repository root (configs/ and examples/ live there); ``KADAPTER_ROOT`` overrides it."""
    env = os.environ.get("KADAPTER_ROOT")
    if env:
        return os.path.abspath(env)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return here if os.path.isdir(os.path.join(here, "configs")) else os.getcwd()


# ---------------------------------------------------------------------------------------------- dataclasses


@dataclass
class Step:
    """One converter call: ``python -m MODULE ARGS`` (``{work}`` in ARGS is the data directory)."""

    module: str
    args: List[str] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)  # files the step reads: checked before anything runs,
    # and an argument spelled as one of them is passed resolved (paths are relative to the repository)


@dataclass
class DataSpec:
    """Where a run's binarized data comes from: an existing directory (``bin``) or a converter call."""

    bin: Optional[str] = None
    converter: Optional[str] = None  # e.g. data_prep.tacred
    subcommand: Optional[str] = None  # e.g. `convert` (python -m data_prep.openentity convert ...)
    inputs: List[str] = field(default_factory=list)  # positional input files
    splits: Dict[str, List[str]] = field(default_factory=dict)  # --train/--valid/--test file(s)
    args: List[str] = field(default_factory=list)
    prepare: List[Step] = field(default_factory=list)  # steps run before the converter (e.g. data_prep.semeval)
    tokenizer: bool = True  # pass --roberta-dir <base> to the converter
    source: Optional[str] = None  # `from:` another knowledge entry's prepared data


@dataclass
class KnowledgeSpec:
    """A knowledge adapter (``kind: adapter``) or a multitask base (``kind: base``), trained once."""

    name: str
    kind: str = "adapter"
    slot: Optional[str] = None  # the adapter's name in the model (default: the entry's name)
    path: Optional[str] = None  # an existing adapter file (or base directory): nothing is trained
    config: Optional[str] = None
    data: Optional[DataSpec] = None
    more_data: Dict[str, DataSpec] = field(default_factory=dict)  # other data keys, e.g. task.dependency_data
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    seed: int = 1
    threads: Optional[int] = None  # torch threads of its training (default: the experiment's `threads`)
    overrides: List[str] = field(default_factory=list)


@dataclass
class ScoreSpec:
    task: str  # kadapter-predict / kadapter-score task name
    metric: str  # the scorer's key that ranks (e.g. f1)
    split: str = "test"
    gold: Optional[str] = None  # default: the data's raw file of that split
    checkpoint: str = "best"  # best | last


@dataclass
class TaskSpec:
    name: str
    config: str
    data: DataSpec
    score: ScoreSpec
    updates: Optional[int] = None
    warmup: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    validations: Optional[int] = None  # validations during a run (default: the config's schedule)
    overrides: List[str] = field(default_factory=list)
    sizes: Optional[List["TrainSize"]] = None  # the task's own training sizes (default: the experiment's)


@dataclass
class VariantSpec:
    name: str
    adapters: Dict[str, str] = field(default_factory=dict)  # slot -> knowledge entry name, or "random"
    base: Optional[str] = None  # a knowledge entry of kind base (the multitask row); default: the experiment's
    train_phase: Optional[str] = None
    overrides: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainSize:
    """A training-set size: the full set, a fraction, N examples or N examples per label."""

    kind: str  # full | fraction | max_examples | max_examples_per_label
    value: Optional[float] = None

    @property
    def label(self) -> Optional[str]:
        """The run directory component (None for the full set)."""
        if self.kind == "full":
            return None
        if self.kind == "fraction":
            return f"{self.value:g}"
        if self.kind == "max_examples":
            return f"{int(self.value)}-examples"
        return f"{int(self.value)}-per-label"

    @property
    def converter_args(self) -> List[str]:
        if self.kind == "full":
            return []
        flag = {"fraction": "--fraction", "max_examples": "--max-examples",
                "max_examples_per_label": "--max-examples-per-label"}[self.kind]
        return [flag, f"{self.value:g}" if self.kind == "fraction" else str(int(self.value))]

    @property
    def fraction(self) -> Optional[float]:
        return 1.0 if self.kind == "full" else (float(self.value) if self.kind == "fraction" else None)

    def as_dict(self) -> Optional[dict]:
        if self.kind == "full":
            return None
        return {self.kind: float(self.value) if self.kind == "fraction" else int(self.value)}

    def sort_key(self):
        order = {"max_examples_per_label": 0, "max_examples": 1, "fraction": 2, "full": 3}
        return (order[self.kind], self.value if self.value is not None else 0.0)


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
    arch_overrides: List[str] = field(default_factory=list)
    train_phase: str = "efficient"
    config_dir: str = ""
    execution: str = "inprocess"  # inprocess | subprocess
    threads: Optional[int] = 1
    keep_checkpoints: bool = True
    study: Optional[dict] = None
    raw: Dict[str, Any] = field(default_factory=dict)  # the composed YAML, resolved
    base_build: Optional[Dict[str, Any]] = None  # {"text": [files], "options": {build_base option: value}}

    def task_sizes(self, task: TaskSpec) -> List[TrainSize]:
        return task.sizes if task.sizes is not None else self.sizes


# ---------------------------------------------------------------------------------------------- validation


class _Checker:
    """Reads a composed dict, raising ``ConfigError('<file>: <key>: <problem>')``."""

    def __init__(self, source: str, root: str, check_paths: bool = True):
        self.source = source
        self.root = root
        self.check_paths = check_paths

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.source}: {key}: {message}")

    def mapping(self, value, key) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        return value

    def only(self, value: dict, key: str, allowed):
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key else str(k)
                self.fail(where, f"unknown key (known: {', '.join(sorted(allowed))})")

    def str_list(self, value, key) -> List[str]:
        if value is None:
            return []
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {value!r}")
        return [str(v) for v in value]

    def opt_int(self, value, key, minimum=1) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def opt_float(self, value, key) -> Optional[float]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.fail(key, f"expected a positive number, got {value!r}")
        return float(value)

    def path(self, value, key, kind="file", required=True) -> Optional[str]:
        """An absolute path; must exist unless it lies under ``{work}`` (made by an earlier step)."""
        if value is None:
            if required:
                self.fail(key, "missing")
            return None
        value = str(value)
        if WORK in value or DATA in value:
            return value
        path = value if os.path.isabs(value) else os.path.join(self.root, value)
        path = os.path.normpath(path)
        if not self.check_paths:
            return path
        ok = os.path.isfile(path) if kind == "file" else os.path.isdir(path) if kind == "dir" else os.path.exists(path)
        if not ok:
            self.fail(key, f"{kind} not found: {value}" + ("" if os.path.isabs(value) else f" (resolved to {path})"))
        return path

    def module(self, value, key) -> str:
        if not value or not isinstance(value, str):
            self.fail(key, "missing (a converter module such as data_prep.tacred)")
        try:
            found = importlib.util.find_spec(value)
        except (ImportError, ValueError):
            found = None
        if found is None:
            self.fail(key, f"no module {value!r}")
        return value

    def train_config(self, value, key, config_dir) -> str:
        if not value or not isinstance(value, str):
            self.fail(key, f"missing (a config name in {config_dir})")
        name = value[:-5] if value.endswith(".yaml") else value
        if not os.path.isfile(os.path.join(config_dir, name + ".yaml")):  # configs/ ships with the code: always checked
            self.fail(key, f"no config {name}.yaml in {config_dir}")
        return name

    # -- sections

    def data(self, value, key, knowledge_names=()) -> DataSpec:
        d = self.mapping(value, key)
        if not d:
            self.fail(key, "missing (give bin: DIR, or converter: + its inputs)")
        self.only(d, key, ("bin", "converter", "subcommand", "inputs", "splits", "args", "prepare", "tokenizer", "from"))
        if "from" in d:
            if len(d) != 1:
                self.fail(key, "`from:` takes no other keys")
            if d["from"] not in knowledge_names:
                self.fail(f"{key}.from", f"no knowledge entry {d['from']!r}")
            return DataSpec(source=d["from"])
        if d.get("bin") is not None:
            if d.get("converter"):
                self.fail(key, "give either bin or converter, not both")
            return DataSpec(bin=self.path(d["bin"], f"{key}.bin", kind="dir"))
        spec = DataSpec(converter=self.module(d.get("converter"), f"{key}.converter"), subcommand=d.get("subcommand"),
                        args=self.str_list(d.get("args"), f"{key}.args"), tokenizer=bool(d.get("tokenizer", True)))
        spec.inputs = [self.path(p, f"{key}.inputs[{i}]") for i, p in enumerate(self.str_list(d.get("inputs"), f"{key}.inputs"))]
        splits = self.mapping(d.get("splits"), f"{key}.splits")
        self.only(splits, f"{key}.splits", ("train", "valid", "test"))
        spec.splits = {s: [self.path(p, f"{key}.splits.{s}", kind="path") for p in self.str_list(v, f"{key}.splits.{s}")]
                       for s, v in splits.items()}
        prepare = d.get("prepare") or []
        if not isinstance(prepare, list):
            self.fail(f"{key}.prepare", "expected a list of {module, args, inputs}")
        for i, step in enumerate(prepare):
            k = f"{key}.prepare[{i}]"
            step = self.mapping(step, k)
            self.only(step, k, ("module", "args", "inputs"))
            raw_inputs = self.str_list(step.get("inputs"), f"{k}.inputs")
            inputs = [self.path(p, f"{k}.inputs[{j}]") for j, p in enumerate(raw_inputs)]
            resolved = dict(zip(raw_inputs, inputs))  # an input named in args is passed resolved, whatever the cwd
            spec.prepare.append(Step(
                module=self.module(step.get("module"), f"{k}.module"),
                args=[resolved.get(a, a) for a in self.str_list(step.get("args"), f"{k}.args")],
                inputs=inputs,
            ))
        if not spec.inputs and not spec.splits:
            self.fail(key, "the converter has no input: give inputs: [...] or splits: {train: ...}")
        return spec

    def sizes(self, d: dict, key: str) -> Optional[List[TrainSize]]:
        given = {k: d.get(k) for k in ("fractions", "max_examples", "max_examples_per_label") if d.get(k) is not None}
        if not given:
            return None
        sizes = []
        for k, values in given.items():
            if not isinstance(values, list):
                values = [values]
            for i, v in enumerate(values):
                where = f"{key}{k}[{i}]"
                if k == "fractions":
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
                        self.fail(where, f"a training fraction must be in (0, 1], got {v!r}")
                    sizes.append(TrainSize("full") if float(v) == 1.0 else TrainSize("fraction", float(v)))
                else:
                    self.opt_int(v, where)
                    sizes.append(TrainSize(k, int(v)))
        if len(set(sizes)) != len(sizes):
            self.fail(f"{key}{next(iter(given))}", "a training size is listed twice")
        return sorted(sizes, key=TrainSize.sort_key)


TOP_KEYS = ("name", "seeds", "fractions", "max_examples", "max_examples_per_label", "base", "arch_overrides",
            "knowledge", "tasks", "variants", "custom_variants", "train_phase", "config_dir", "execution", "threads",
            "keep_checkpoints", "study")


def validate(raw: dict, source: str = "<experiment>", root: Optional[str] = None, check_paths: bool = True) -> Experiment:
    """The ``Experiment`` a composed config describes, or a ``ConfigError`` naming the key.

    ``check_paths=False`` checks everything but the existence of files (a grid meant for another machine)."""
    root = root or project_root()
    c = _Checker(source, root, check_paths)
    raw = c.mapping(raw, "(top level)")
    c.only(raw, "", TOP_KEYS)

    name = raw.get("name") or os.path.splitext(os.path.basename(source))[0]
    config_dir = c.path(raw.get("config_dir") or "configs", "config_dir", kind="dir")

    seeds = raw.get("seeds", 3)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            c.fail("seeds", f"need at least one seed, got {seeds}")
        seeds = list(range(1, seeds + 1))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        c.fail("seeds", f"expected a list of integers (or a count), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        c.fail("seeds", f"a seed is listed twice: {seeds}")
    sizes = c.sizes(raw, "") or [TrainSize("full")]

    base = c.mapping(raw.get("base"), "base")
    c.only(base, "base", ("roberta_path", "build"))
    roberta_path, base_build = None, None
    if base.get("build") is not None:
        if base.get("roberta_path") is not None:
            c.fail("base", "give either roberta_path or build, not both")
        base_build = _base_build(c, base["build"])
    else:
        roberta_path = c.path(base.get("roberta_path"), "base.roberta_path", kind="dir")
        if check_paths and not os.path.isfile(os.path.join(roberta_path, "model.pt")):
            c.fail("base.roberta_path", f"{roberta_path} holds no model.pt")

    train_phase = raw.get("train_phase", "efficient")
    if train_phase not in TRAIN_PHASES:
        c.fail("train_phase", f"expected one of {', '.join(TRAIN_PHASES)}, got {train_phase!r}")
    execution = raw.get("execution", "inprocess")
    if execution not in ("inprocess", "subprocess"):
        c.fail("execution", f"expected inprocess or subprocess, got {execution!r}")

    # knowledge entries
    knowledge = {}
    entries = c.mapping(raw.get("knowledge"), "knowledge")
    names = tuple(entries)
    for kname, entry in entries.items():
        key = f"knowledge.{kname}"
        entry = c.mapping(entry, key)
        c.only(entry, key, ("kind", "slot", "path", "config", "data", "more_data", "updates", "warmup", "lr",
                            "batch_size", "seed", "threads", "overrides"))
        kind = entry.get("kind", "base" if kname == "multitask" else "adapter")
        if kind not in ("adapter", "base"):
            c.fail(f"{key}.kind", f"expected adapter or base, got {kind!r}")
        k = KnowledgeSpec(name=kname, kind=kind, slot=entry.get("slot") or (kname if kind == "adapter" else None),
                          seed=c.opt_int(entry.get("seed", 1), f"{key}.seed", minimum=0),
                          threads=c.opt_int(entry.get("threads"), f"{key}.threads"),
                          overrides=c.str_list(entry.get("overrides"), f"{key}.overrides"))
        if entry.get("path") is not None:
            k.path = c.path(entry["path"], f"{key}.path", kind="file" if kind == "adapter" else "dir")
        else:
            k.config = c.train_config(entry.get("config"), f"{key}.config", config_dir)
            k.data = c.data(entry.get("data"), f"{key}.data", [n for n in names if n != kname])
            for dkey, dspec in c.mapping(entry.get("more_data"), f"{key}.more_data").items():
                k.more_data[dkey] = c.data(dspec, f"{key}.more_data.{dkey}", [n for n in names if n != kname])
            k.updates = c.opt_int(entry.get("updates"), f"{key}.updates")
            k.warmup = c.opt_int(entry.get("warmup"), f"{key}.warmup", minimum=0)
            k.lr = c.opt_float(entry.get("lr"), f"{key}.lr")
            k.batch_size = c.opt_int(entry.get("batch_size"), f"{key}.batch_size")
        knowledge[kname] = k
    for k in knowledge.values():  # `from:` must name an entry that prepares data itself
        for dkey, d in [("data", k.data)] + [(f"more_data.{n}", v) for n, v in k.more_data.items()]:
            if d is not None and d.source is not None and (knowledge[d.source].data is None or knowledge[d.source].data.source):
                c.fail(f"knowledge.{k.name}.{dkey}.from", f"{d.source!r} prepares no data of its own")

    # tasks
    tasks = {}
    task_entries = c.mapping(raw.get("tasks"), "tasks")
    if not task_entries:
        c.fail("tasks", "missing: name at least one downstream task")
    for tname, entry in task_entries.items():
        key = f"tasks.{tname}"
        entry = c.mapping(entry, key)
        c.only(entry, key, ("config", "data", "score", "updates", "warmup", "lr", "batch_size", "validations",
                            "overrides", "fractions", "max_examples", "max_examples_per_label"))
        score = c.mapping(entry.get("score"), f"{key}.score")
        if not score:
            c.fail(f"{key}.score", "missing: a task needs score: {task, metric, split}")
        c.only(score, f"{key}.score", ("task", "metric", "split", "gold", "checkpoint"))
        if not score.get("metric"):
            c.fail(f"{key}.score.metric", "missing: the metric that ranks the runs (e.g. f1, accuracy)")
        if not score.get("task"):
            c.fail(f"{key}.score.task", "missing: the kadapter-predict / kadapter-score task name")
        data = c.data(entry.get("data"), f"{key}.data")
        split = score.get("split", "test")
        if split not in ("train", "valid", "test"):
            c.fail(f"{key}.score.split", f"expected train, valid or test, got {split!r}")
        gold = score.get("gold")
        if gold is not None:
            gold = c.path(gold, f"{key}.score.gold")
        elif len(data.splits.get(split, [])) == 1:
            gold = data.splits[split][0]
        else:
            c.fail(f"{key}.score.gold", f"missing: the raw {split} file to predict and score (data.splits.{split} is not given)")
        checkpoint = score.get("checkpoint", "best")
        if checkpoint not in ("best", "last"):
            c.fail(f"{key}.score.checkpoint", f"expected best or last, got {checkpoint!r}")
        task_sizes = c.sizes(entry, f"{key}.")
        if task_sizes is not None and data.bin is not None and any(s.kind != "full" for s in task_sizes):
            c.fail(f"{key}.data", "training-size subsamples need a converter (data.bin cannot be subsampled)")
        tasks[tname] = TaskSpec(
            name=tname,
            config=c.train_config(entry.get("config"), f"{key}.config", config_dir),
            data=data,
            score=ScoreSpec(task=str(score["task"]), metric=str(score["metric"]), split=split, gold=gold,
                            checkpoint=checkpoint),
            updates=c.opt_int(entry.get("updates"), f"{key}.updates"),
            warmup=c.opt_int(entry.get("warmup"), f"{key}.warmup", minimum=0),
            lr=c.opt_float(entry.get("lr"), f"{key}.lr"),
            batch_size=c.opt_int(entry.get("batch_size"), f"{key}.batch_size"),
            validations=c.opt_int(entry.get("validations"), f"{key}.validations"),
            overrides=c.str_list(entry.get("overrides"), f"{key}.overrides"),
            sizes=task_sizes,
        )
        if data.bin is not None and task_sizes is None and any(s.kind != "full" for s in sizes):
            c.fail(f"{key}.data", "the experiment's training-size subsamples need a converter (data.bin cannot be subsampled)")

    # variants
    custom = c.mapping(raw.get("custom_variants"), "custom_variants")
    variant_names = raw.get("variants", list(STANDARD_VARIANTS))
    if not isinstance(variant_names, list) or not variant_names:
        c.fail("variants", f"expected a non-empty list of variant names, got {variant_names!r}")
    if len(set(variant_names)) != len(variant_names):
        c.fail("variants", f"a variant is listed twice: {variant_names}")
    variants = []
    for i, vname in enumerate(variant_names):
        key = f"variants[{i}]"
        if vname in custom:
            v = _custom_variant(c, vname, custom[vname], knowledge)
        elif vname in STANDARD_VARIANTS:
            v = _standard_variant(vname)
        else:
            c.fail(key, f"unknown variant {vname!r} (standard: {', '.join(STANDARD_VARIANTS)}; "
                        "or define it under custom_variants)")
        for slot, kname in v.adapters.items():
            if kname == RANDOM:
                continue
            if kname not in knowledge:
                c.fail(key, f"variant {vname!r} needs the knowledge adapter {kname!r}: add knowledge.{kname}")
            if knowledge[kname].kind != "adapter":
                c.fail(key, f"variant {vname!r}: knowledge.{kname} is a base, not an adapter")
        if v.base is not None:
            if v.base not in knowledge:
                c.fail(key, f"variant {vname!r} needs the base {v.base!r}: add knowledge.{v.base} (train_phase=full)")
            if knowledge[v.base].kind != "base":
                c.fail(key, f"variant {vname!r}: knowledge.{v.base} is an adapter, not a base")
        variants.append(v)
    for cname in custom:
        if cname not in variant_names:
            c.fail(f"custom_variants.{cname}", "defined but not listed under variants")

    study = raw.get("study")
    if study is not None and not isinstance(study, dict):
        c.fail("study", "expected a mapping")
    threads = raw.get("threads", 1)
    if threads is not None:
        threads = c.opt_int(threads, "threads")
    return Experiment(
        name=str(name), source=source, roberta_path=roberta_path, tasks=tasks, variants=variants, seeds=seeds,
        sizes=sizes, knowledge=knowledge, arch_overrides=c.str_list(raw.get("arch_overrides"), "arch_overrides"),
        train_phase=train_phase, config_dir=config_dir, execution=execution, threads=threads,
        keep_checkpoints=bool(raw.get("keep_checkpoints", True)), study=study, raw=raw, base_build=base_build,
    )


def _base_build(c: _Checker, value) -> dict:
    """``base.build``: ``{text: [files], options: {...}}`` for ``kadapter-build-base`` (options are its flags)."""
    from ..tools.build_base import build_parser

    d = c.mapping(value, "base.build")
    c.only(d, "base.build", ("text", "options"))
    texts = c.str_list(d.get("text"), "base.build.text")
    if not texts:
        c.fail("base.build.text", "missing: the text files to pre-train the base on")
    options = c.mapping(d.get("options"), "base.build.options")
    known = {a.dest for a in build_parser()._actions} - {"help", "text", "out", "force"}
    c.only(options, "base.build.options", known)
    return {"text": [c.path(t, f"base.build.text[{i}]") for i, t in enumerate(texts)], "options": dict(options)}


def _standard_variant(name: str) -> VariantSpec:
    adapters = {"roberta": {}, "multitask": {}, "fac+lin": {"fac": "fac", "lin": "lin"}, "fac": {"fac": "fac"},
                "lin": {"lin": "lin"}, "no-knowledge": {"fac": RANDOM, "lin": RANDOM}}[name]
    return VariantSpec(name=name, adapters=dict(adapters), base="multitask" if name == "multitask" else None)


def _custom_variant(c: _Checker, name: str, value, knowledge) -> VariantSpec:
    key = f"custom_variants.{name}"
    d = c.mapping(value, key)
    c.only(d, key, ("adapters", "base", "train_phase", "overrides"))
    adapters = c.mapping(d.get("adapters"), f"{key}.adapters")
    phase = d.get("train_phase")
    if phase is not None and phase not in TRAIN_PHASES:
        c.fail(f"{key}.train_phase", f"expected one of {', '.join(TRAIN_PHASES)}, got {phase!r}")
    base = d.get("base")
    if base in (None, "default"):
        base = None
    return VariantSpec(name=name, adapters={str(k): str(v) for k, v in adapters.items()}, base=base,
                       train_phase=phase, overrides=c.str_list(d.get("overrides"), f"{key}.overrides"))


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
            # `++key=value` sets a key whether or not the file has it: every key is checked by validate(),
            # which names an unknown (mistyped) one, so hydra's "+ to append" distinction is not needed here
            cfg = compose(config_name=name, overrides=[o if o.startswith(("+", "~")) else "++" + o for o in overrides])
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or type(e).__name__
        raise ConfigError(f"{path}: {text}") from None


def load_experiment(path: str, overrides: List[str] = ()) -> Experiment:
    return validate(compose_raw(path, list(overrides)), source=path)
