"""``Experiment`` -> ``Plan``: the preparation stages and one typed ``RunSpec`` per run of the grid.

Each run's (and each knowledge training's) fairseq config is composed here, once: the
``TrainStep`` carries it to the trainer, through ``plan.json`` and the launcher's job. The commands
echoed and recorded are derived from the same steps.

A stage (the experiment's own preparation, the base, a converter call, a knowledge training and
its export, an untrained adapter for a probe) produces one directory and is skipped when its marker
records the same request: its commands, the signatures of its input files and the commands of the
stages it reads from. A run is redone when its own commands or those of the stages it reads from
changed (``RunSpec.upstream``).

A run of a trained task is a ``TrainStep`` and one ``Part`` per gold file (its ``PredictStep`` and
``ScoreStep``); a run of a probe task has no training: one ``Part`` per probed directory, each a
``ProbeStep`` over the variant's base and adapter files, once per knowledge seed (the probe is
deterministic, so downstream seeds do not apply). The placeholders ``{prepared}`` and ``{base}``
are resolved here, once, for every path of the experiment.
"""
import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, KAdapterError
from .commands import shown
from .config import (BASE, DATA, PREPARED, RANDOM, WORK, DataSpec, Experiment, HypothesisSpec, KnowledgeSpec,
                     PositiveControlSpec, Step, StudySpec, TaskSpec, Unit, VariantSpec)
from .layout import MARKER, Layout, predictions_name, probe_dir
from .sizes import TrainSize
from .steps import STEP_TYPES, PredictStep, ProbeStep, ScoreStep, ToolStep, TrainStep


# ---------------------------------------------------------------------------------------------- serialisation


def to_json(obj):
    """Dataclasses (steps, specs, sizes) as plain JSON values, step objects tagged with their type."""
    if dataclasses.is_dataclass(obj):
        out = {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if type(obj).__name__ in STEP_TYPES:
            out = {"type": type(obj).__name__, **out}
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def from_json(tp, value):
    """The inverse of ``to_json`` for the type ``tp`` (dataclasses, Optional, List, Dict, primitives)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_json(args[0], value) if len(args) == 1 else value
    if origin in (list, List):
        (inner,) = typing.get_args(tp) or (Any,)
        return [from_json(inner, v) for v in value]
    if origin in (dict, Dict):
        inner = (typing.get_args(tp) or (str, Any))[1]
        return {k: from_json(inner, v) for k, v in value.items()}
    if isinstance(value, dict) and "type" in value and value["type"] in STEP_TYPES:
        tp = STEP_TYPES[value["type"]]
        value = {k: v for k, v in value.items() if k != "type"}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{k: from_json(hints[k], v) for k, v in value.items() if k in hints})
    return value


def digest(lines: List[str]) -> str:
    return hashlib.sha256(json.dumps(lines).encode("utf-8")).hexdigest()[:16]


def file_signature(path: str) -> list:
    """Size and modification time: enough to notice a changed input without hashing large files."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


# ---------------------------------------------------------------------------------------------- stages


@dataclass(eq=False)
class Stage:
    """Steps that produce one directory (``out_dir``), after the stages in ``after``."""

    title: str
    out_dir: str
    steps: List[Any]  # TrainStep / ToolStep
    inputs: List[str]
    log: str
    clean: bool = True  # False: the tool keeps its own cache in out_dir (kadapter-build-base)
    after: List["Stage"] = field(default_factory=list)

    def commands(self) -> List[str]:
        return [s.command().shown() for s in self.steps]

    def lineage(self) -> List[str]:
        """Its commands and, first, those of every stage it reads from (each once)."""
        out: List[str] = []
        for stage in self.after:
            out += [c for c in stage.lineage() if c not in out]
        return out + self.commands()

    def key(self) -> dict:
        key = {"commands": self.commands(),
               "inputs": {shown(p): file_signature(p) for p in sorted(set(self.inputs)) if os.path.isfile(p)}}
        if self.after:
            key["upstream"] = digest([c for s in self.after for c in s.lineage()])
        return key

    def done(self) -> bool:
        marker = os.path.join(self.out_dir, MARKER)
        if not os.path.isfile(marker):
            return False
        try:
            with open(marker, encoding="utf-8") as f:
                return json.load(f) == self.key()
        except (OSError, json.JSONDecodeError):
            return False


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class Part:
    """One score of a run: a prediction and its scoring, or a probe. ``name`` None: the task's only score."""

    name: Optional[str]
    score: Any  # ScoreStep | ProbeStep
    predict: Optional[PredictStep] = None

    @property
    def predictions(self) -> str:
        """The file the score reads (a probe: the predictions.jsonl it writes)."""
        if isinstance(self.score, ProbeStep):
            return os.path.join(self.score.out, "predictions.jsonl")
        return self.score.predictions


@dataclass
class RunSpec:
    """One run of the grid: what it is (task, variant, size, seeds), where it lives, and its steps."""

    task: str
    variant: str
    size: TrainSize
    seed: Optional[int]  # None: a probe (deterministic; downstream seeds do not apply)
    knowledge_seed: Optional[int]  # its unit's knowledge seed (None: the experiment has one)
    phase: Optional[str]  # None: a probe (nothing is trained downstream)
    metric: str
    split: Optional[str]
    name: str  # task/variant[/size][/kseed<j>][/seed<k>]: the directory under DIR/runs
    dir: str
    train: Optional[TrainStep]
    parts: List[Part]
    rank: Optional[str] = None  # the part whose score is the run's value (None: its only part)
    execution: str = "inprocess"
    keep_checkpoints: bool = True
    dtype: str = "fp32"
    threads: Optional[int] = None
    upstream: str = ""  # digest of the commands of the stages it reads from
    cwd: str = ""  # the commands' paths are relative to it

    def steps(self) -> list:
        out = [self.train] if self.train is not None else []
        for part in self.parts:
            out += ([part.predict] if part.predict is not None else []) + [part.score]
        return out

    def commands(self) -> List[str]:
        return [s.command().shown() for s in self.steps()]


@dataclass
class TaskRecord:
    metric: str
    split: str
    score_task: Optional[str]  # None: a probe task
    sizes: List[TrainSize]
    gold: Optional[str]  # absolute (the ranking part's); None when it depends on the run's data directory, or a probe
    parts: List[str] = field(default_factory=list)  # the names of its scores, when it has several
    rank: Optional[str] = None  # the part whose score ranks
    probe: Optional[Dict[str, Any]] = None  # a probe task: {"corpus", "fusion", "dirs": {part: directory}}
    golds: Dict[str, str] = field(default_factory=dict)  # every part's gold file, absolute (a task with several)


@dataclass
class VariantRecord:
    name: str
    adapters: Dict[str, str]
    base: Optional[str]
    phase: str


@dataclass
class ExperimentRecord:
    """``experiment.json``: what was asked, as the report and the study read it."""

    name: str
    source: str
    tasks: Dict[str, TaskRecord]
    variants: List[VariantRecord]
    seeds: List[int]
    units: List[Unit]
    controls: Dict[str, List[str]]
    train_phase: str
    dtype: str
    precision: str
    threads: Optional[int]
    knowledge: Dict[str, List[str]]  # entry -> its adapter file / base directory per unit
    study: Optional[StudySpec]
    config: Dict[str, Any]
    positive_control: Optional[PositiveControlSpec] = None
    hypotheses: List[HypothesisSpec] = field(default_factory=list)

    @property
    def several_knowledge_seeds(self) -> bool:
        return any(u.knowledge_seed is not None for u in self.units)

    def variant(self, name: str) -> Optional[VariantRecord]:
        return next((v for v in self.variants if v.name == name), None)


def _load(path: str, read):
    try:
        with open(path, encoding="utf-8") as f:
            return read(json.load(f))
    except (TypeError, KeyError, AttributeError):
        raise KAdapterError(f"{path} was written by an older kadapter-experiment: run the experiment again to "
                            "rewrite it (finished runs are kept)") from None
    except json.JSONDecodeError as e:
        raise KAdapterError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None


def load_record(path: str) -> ExperimentRecord:
    return _load(path, lambda d: from_json(ExperimentRecord, d))


def load_runs(path: str) -> List[RunSpec]:
    return _load(path, lambda d: [from_json(RunSpec, r) for r in d["runs"]])


@dataclass
class Plan:
    record: ExperimentRecord
    base: List[Stage]
    knowledge: List[Stage]
    data: List[Stage]
    runs: List[RunSpec]
    prepare: List[Stage] = field(default_factory=list)

    def runtime_problems(self) -> Dict[str, List[str]]:
        """``{problem: [what it stops]}`` for every planned training this machine cannot run."""
        out: Dict[str, List[str]] = {}
        steps = [(st.title, s) for st in self.prepare + self.base + self.knowledge + self.data for s in st.steps]
        steps += [(r.name, r.train) for r in self.runs]
        for what, step in steps:
            if isinstance(step, TrainStep):
                problem = step.runtime_problem()
                if problem:
                    out.setdefault(problem, []).append(what)
        return out


# ---------------------------------------------------------------------------------------------- the planner


def user_dir() -> str:
    return shown(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schedule_overrides(updates: Optional[int], warmup: Optional[int], lr: Optional[float], batch_size: Optional[int],
                       validations: Optional[int] = None) -> List[str]:
    out = []
    if updates:
        out += [f"optimization.max_update={updates}", "optimization.max_epoch=0", f"lr_scheduler.total_num_update={updates}",
                f"lr_scheduler.warmup_updates={warmup if warmup is not None else max(1, updates // 10)}",
                f"common.log_interval={max(1, min(10, updates // 20))}"]
    elif warmup is not None:
        out.append(f"lr_scheduler.warmup_updates={warmup}")
    if lr:
        out.append(f"optimization.lr=[{lr:g}]")
    if batch_size:
        out.append(f"dataset.batch_size={batch_size}")
    if validations and updates:
        every = max(1, updates // validations)
        # fairseq keeps checkpoint_best only at save points: save where it validates
        out += [f"dataset.validate_interval_updates={every}", f"checkpoint.save_interval_updates={every}",
                "checkpoint.keep_interval_updates=1"]
    return out


def common_overrides(save_dir: str, run_dir: str, seed: int, dtype: str) -> List[str]:
    out = [f"common.seed={seed}", f"checkpoint.save_dir={shown(save_dir)}", "checkpoint.no_save_optimizer_state=true",
           f"common.user_dir={user_dir()}", "common.log_format=json",
           f"hydra.run.dir={shown(run_dir)}", "hydra.job.chdir=false"]
    return out + (["common.bf16=true"] if dtype == "bf16" else [])


def substitute(obj, mapping: Dict[str, str]):
    """``obj`` (dataclasses, lists, dicts, strings) with each placeholder of ``mapping`` replaced in every string."""
    if isinstance(obj, str):
        for key, value in mapping.items():
            obj = obj.replace(key, value)
        return obj
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **{f.name: substitute(getattr(obj, f.name), mapping)
                                           for f in dataclasses.fields(obj) if f.init and f.name != "raw"})
    if isinstance(obj, list):
        return [substitute(v, mapping) for v in obj]
    if isinstance(obj, dict):
        return {k: substitute(v, mapping) for k, v in obj.items()}
    return obj


def adapter_settings(model: Dict) -> tuple:
    """``(arch, ["adapter_KEY=VALUE", ...])``: the ``kadapter-export --random`` options that build the adapter a
    composed model config describes (only the settings that differ from the arch's own)."""
    from dataclasses import fields as dc_fields

    from ..models.roberta_kadapter import ARCH_DEFAULTS, RobertaKAdapterConfig, apply_arch_defaults

    model = dict(model)
    apply_arch_defaults(model)  # what the model builder does with a field left at its default
    arch = model.get("_name")
    if arch not in ARCH_DEFAULTS:
        raise ConfigError(f"model._name {arch!r} is not a K-Adapter architecture ({', '.join(ARCH_DEFAULTS)})")
    defaults = {f.name: f.default for f in dc_fields(RobertaKAdapterConfig)}
    defaults.update(ARCH_DEFAULTS[arch])
    settings = []
    for key in sorted(defaults):
        if not key.startswith("adapter_") or key in ("adapter_names", "adapter_paths", "adapter_fusion"):
            continue
        value = model.get(key, defaults[key])
        if value != defaults[key]:
            settings.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return arch, settings


class Planner:
    """Turns an ``Experiment`` into preparation stages and the grid's run descriptions."""

    def __init__(self, exp: Experiment, out: str):
        self.layout = Layout(out)
        # {prepared} first: the base itself may lie there; then {base}, which may be anywhere
        exp = substitute(exp, {PREPARED: self.layout.prepared})
        self.base = exp.roberta_path or self.layout.base
        self.exp = substitute(exp, {BASE: self.base})
        self.prepared: Dict[str, Stage] = {}  # prepare steps' work directory -> their stage
        self.made_by: Dict[str, List[Stage]] = {}  # binarized data directory -> the stages that make it
        self.knowledge_out: Dict[tuple, str] = {}  # (entry, knowledge seed) -> adapter file or base directory
        self.knowledge_stage: Dict[tuple, Stage] = {}
        self.base_stage: List[Stage] = []  # the experiment's own preparation and the base: every stage's upstream
        self.probe_stages: Dict[str, Stage] = {}  # out dir -> an untrained adapter or a fusion export, for probes

    def plan(self) -> Plan:
        prepare = self.prepare_stages()
        base = self.base_stages()
        knowledge = self.knowledge_stages()
        data = self.task_stages()
        runs = [self.run_spec(task, variant, size, unit, seed) if not task.is_probe else self.probe_run_spec(task, variant, unit)
                for task in self.exp.tasks.values() for variant in self.exp.task_variants(task)
                for size in self.exp.task_sizes(task) for unit in self.exp.units
                for seed in (unit.seeds if not task.is_probe else [None])]
        return Plan(self.record(), base, knowledge + list(self.probe_stages.values()), data, runs, prepare)

    # -- the experiment's own preparation and the base

    def prepare_stages(self) -> List[Stage]:
        """The top-level ``prepare:`` steps, run first, once, into DIR/prepared (``{prepared}``)."""
        if not self.exp.prepare:
            return []
        stage = self.steps_stage("preparation", self.exp.prepare, self.layout.prepared, [])
        self.base_stage = [stage]
        return [stage]

    def base_stages(self) -> List[Stage]:
        """``kadapter-build-base`` when the experiment builds its own base (the tool also keeps its own cache)."""
        if self.exp.base_build is None:
            return []
        b = self.exp.base_build
        args = ["--text"] + [shown(t) for t in b["text"]] + ["--out", shown(self.base)]
        for key, value in b["options"].items():
            args += ["--" + key.replace("_", "-"), str(value)]
        stage = Stage("base", self.base, [ToolStep("kadapter-build-base", args, self.exp.threads)],
                      list(b["text"]), self.layout.base_log, clean=False, after=list(self.base_stage))
        self.base_stage = self.base_stage + [stage]
        return [stage]

    # -- data

    @staticmethod
    def fill(value: str, work: str) -> str:
        """An argument as the command shows it: ``{work}`` resolved, absolute paths relative to the cwd."""
        value = value.replace(WORK, work)
        return shown(value) if os.path.isabs(value) else value

    def steps_stage(self, title: str, steps: List[Step], work: str, after: List[Stage]) -> Stage:
        """Converter calls that write into ``work`` (once per directory, however many read it)."""
        if work not in self.prepared:
            tools = [ToolStep(step.module, [self.fill(a, work) for a in step.args]) for step in steps]
            self.prepared[work] = Stage(title, work, tools, [p for step in steps for p in step.inputs],
                                        os.path.join(work, "prepare.log"), after=list(after))
        return self.prepared[work]

    def data_stages(self, title: str, spec: DataSpec, work: str, out: str, size: TrainSize, seed: Optional[int],
                    log_dir: str) -> List[Stage]:
        """The stages that turn ``spec`` into binarized data in ``out`` (prepare steps shared through ``work``)."""
        stages = []
        after = list(self.base_stage)
        if spec.prepare:
            fresh = work not in self.prepared
            stage = self.steps_stage(f"{title} (prepare)", spec.prepare, work, self.base_stage)
            if fresh:
                stages.append(stage)
            after.append(stage)
        args = ([spec.subcommand] if spec.subcommand else []) + [self.fill(p, work) for p in spec.inputs]
        for split, paths in spec.splits.items():
            args += [f"--{split}"] + [self.fill(p, work) for p in paths]
        args += ["--out", shown(out)] + [self.fill(a, work) for a in spec.args]
        args += ["--roberta-dir", shown(self.base)] if spec.tokenizer else []
        if not size.is_full:
            args += size.converter_args + ["--seed", str(seed)]
        given = list(spec.inputs) + [p for paths in spec.splits.values() for p in paths]
        inputs = [p for p in given if WORK not in p] + [os.path.join(self.base, "model.pt"), os.path.join(self.base, "dict.txt")]
        stages.append(Stage(title, out, [ToolStep(spec.converter, args)], inputs, os.path.join(log_dir, "prep.log"), after=after))
        self.made_by[out] = stages
        return stages

    # -- knowledge

    def needed_knowledge(self) -> set:
        needed = set()
        for v in self.exp.variants:
            needed.update(k for k in v.adapters.values() if k != RANDOM)
            if v.base:
                needed.add(v.base)
        return needed

    @staticmethod
    def _sources(k: KnowledgeSpec) -> List[str]:
        return [d.source for d in [k.data] + list(k.more_data.values()) if d is not None and d.source]

    def knowledge_stages(self) -> List[Stage]:
        stages = []
        needed = self.needed_knowledge()
        sources = {s for name in needed for s in self._sources(self.exp.knowledge[name])}
        for name, k in self.exp.knowledge.items():
            if (name in needed or name in sources) and k.path is None and k.data is not None and k.data.source is None \
                    and k.data.bin is None:
                stages += self.data_stages(f"knowledge {name}: data", k.data, self.layout.knowledge_raw(name),
                                           self.layout.knowledge_data(name), TrainSize(), None,
                                           self.layout.knowledge_data(name))
        for unit in self.exp.units:
            for name, k in self.exp.knowledge.items():
                if name not in needed:
                    continue
                if k.path is not None:
                    self.knowledge_out[(name, unit.knowledge_seed)] = k.path
                    continue
                stages.append(self._knowledge_train(k, unit.knowledge_seed))
        return stages

    def _data_dir(self, spec: DataSpec, name: str) -> str:
        """A knowledge entry's binarized data: given (``bin``), or prepared by it or by the entry named in ``from:``."""
        own = self.exp.knowledge[spec.source].data if spec.source else spec
        return own.bin if own.bin is not None else self.layout.knowledge_data(spec.source or name)

    def _knowledge_train(self, k: KnowledgeSpec, knowledge_seed: Optional[int]) -> Stage:
        out = self.layout.knowledge_train(k.name, knowledge_seed)
        save = os.path.join(out, "checkpoints")
        seed = k.seed if knowledge_seed is None else knowledge_seed
        overrides = [f"task.data={shown(self._data_dir(k.data, k.name))}"]
        overrides += [f"{key}={shown(self._data_dir(spec, k.name))}" for key, spec in k.more_data.items()]
        overrides += [f"model.roberta_path={shown(self.base)}"] + common_overrides(save, out, seed, self.exp.dtype)
        overrides += schedule_overrides(k.updates, k.warmup, k.lr, k.batch_size)
        if k.kind == "adapter":
            overrides += [f"model.adapter_names='{k.slot}'", "model.train_phase=knowledge"] + list(self.exp.arch_overrides)
        else:
            overrides += ["model.adapter_names=''", "model.train_phase=full"]
        overrides += list(k.overrides)
        train = TrainStep.compose(self.exp.config_dir, k.config, overrides, k.threads or self.exp.threads)
        best = shown(train.checkpoint("best"))
        result = self.layout.knowledge_output(k.name, k.kind, knowledge_seed)
        if k.kind == "adapter":
            export = ToolStep("kadapter-export", [best, shown(result), "--adapters", k.slot])
        else:
            export = ToolStep("kadapter-export", ["--base", best, shown(result)])
        self.knowledge_out[(k.name, knowledge_seed)] = result
        data_dirs = [self._data_dir(k.data, k.name)] + [self._data_dir(s, k.name) for s in k.more_data.values()]
        after = list(self.base_stage) + [s for d in data_dirs for s in self.made_by.get(d, [])]
        inputs = [os.path.join(self.base, "model.pt"), os.path.join(self.exp.config_dir, k.config + ".yaml")]
        what = "adapter" if k.kind == "adapter" else "multitask base"
        stage = Stage(f"knowledge {k.name}{self._unit(knowledge_seed)}: {what}", out, [train, export], inputs,
                      os.path.join(out, "train.log"), after=after)
        self.knowledge_stage[(k.name, knowledge_seed)] = stage
        return stage

    @staticmethod
    def _unit(knowledge_seed: Optional[int]) -> str:
        return "" if knowledge_seed is None else f" (knowledge seed {knowledge_seed})"

    # -- what a probe reads

    def _fail(self, key: str, message: str):
        raise ConfigError(f"{self.exp.source}: {key}: {message}")

    def _trained_config(self, name: str, knowledge_seed: Optional[int]) -> Optional[Dict]:
        """The composed fairseq config a knowledge entry trains with (None: an existing file, nothing trained)."""
        stage = self.knowledge_stage.get((name, knowledge_seed))
        return stage.steps[0].config if stage is not None else None

    def probe_reads(self, task: TaskSpec, name: str, knowledge_seed: Optional[int]):
        """A probe reads the base's own LM head: refuse an entry that trains it (its head is not exported)."""
        cfg = self._trained_config(name, knowledge_seed)
        if cfg is not None and cfg["model"].get("train_lm_head"):
            self._fail(f"tasks.{task.name}", f"knowledge.{name} trains the base's masked-LM head (model.train_lm_head="
                                              "true), which its adapter file does not hold; the probe reads the base's own head")

    def adapter_with_fusion(self, task: TaskSpec, name: str, knowledge_seed: Optional[int]) -> Tuple[str, Optional[Stage]]:
        """The adapter file of knowledge entry ``name`` with its fusion weights (for the concat readout): exported
        again from its checkpoint (the plain export stays what downstream runs load)."""
        k = self.exp.knowledge[name]
        if k.path is not None:  # an existing file: the probe says whether it holds the fusion weights
            return k.path, None
        mode = self._trained_config(name, knowledge_seed)["model"].get("adapter_fusion")
        if mode != "concat":
            self._fail(f"tasks.{task.name}.score.probe.fusion", f"concat reads the fusion weights knowledge.{name} "
                                                               f"trained, but it trains with the {mode!r} fusion: probe it "
                                                               "with delta")
        out_dir = self.layout.knowledge_with_fusion(name, knowledge_seed)
        out = os.path.join(out_dir, "adapter.pt")
        if out_dir not in self.probe_stages:
            trained = self.knowledge_stage[(name, knowledge_seed)]
            export = ToolStep("kadapter-export", [shown(trained.steps[0].checkpoint("best")), shown(out), "--adapters",
                                                  k.slot, "--include-fusion"])
            self.probe_stages[out_dir] = Stage(
                f"knowledge {name}{self._unit(knowledge_seed)}: adapter with its fusion (concat probe)", out_dir, [export],
                [], os.path.join(out_dir, "export.log"), after=list(self.base_stage) + [trained])
        return out, self.probe_stages[out_dir]

    def architecture_source(self, slot: str, variant: VariantSpec, knowledge_seed: Optional[int]) -> KnowledgeSpec:
        """The knowledge adapter whose architecture an untrained adapter in ``slot`` copies: the one filling that
        slot in the first variant that has it trained, else one trained for that slot, else the first trained."""
        trained = [k for k in self.exp.knowledge.values() if k.kind == "adapter" and (k.name, knowledge_seed) in self.knowledge_stage]
        fills = [v.adapters[slot] for v in self.exp.variants if v.adapters.get(slot, RANDOM) != RANDOM]
        for k in [self.exp.knowledge[n] for n in fills] + [k for k in trained if k.slot == slot] + trained:
            if (k.name, knowledge_seed) in self.knowledge_stage:
                return k
        self._fail(f"variants: {variant.name}", f"a probe of the untrained adapter in slot {slot!r} needs its "
                                                "architecture, and no knowledge adapter is trained in this experiment to "
                                                "copy it from")

    def random_adapter(self, slot: str, variant: VariantSpec, knowledge_seed: Optional[int]) -> Tuple[str, Stage]:
        """An untrained adapter for ``slot`` on the variant's base: ``kadapter-export --random`` with the architecture
        of ``architecture_source`` and, as seed, the knowledge seed (or, with one, that entry's own seed)."""
        source = self.architecture_source(slot, variant, knowledge_seed)
        out_dir = self.layout.random_adapter(slot, variant.base or "base", knowledge_seed)
        out = os.path.join(out_dir, "adapter.pt")
        if out_dir not in self.probe_stages:
            arch, settings = adapter_settings(self._trained_config(source.name, knowledge_seed)["model"])
            base = self.knowledge_out[(variant.base, knowledge_seed)] if variant.base else self.base
            seed = source.seed if knowledge_seed is None else knowledge_seed
            args = ["--random", slot, "--roberta-path", shown(base), "--seed", str(seed), "--arch", arch]
            args += [a for setting in settings for a in ("--set", setting)] + [shown(out)]
            after = list(self.base_stage) + [self.knowledge_stage[(n, knowledge_seed)] for n in (variant.base,)
                                             if (n, knowledge_seed) in self.knowledge_stage]
            self.probe_stages[out_dir] = Stage(
                f"untrained adapter {slot} on {variant.base or 'the base'}{self._unit(knowledge_seed)} (probe)", out_dir,
                [ToolStep("kadapter-export", args)], [os.path.join(base, "model.pt")], os.path.join(out_dir, "export.log"),
                after=after)
        return out, self.probe_stages[out_dir]

    # -- tasks

    def task_stages(self) -> List[Stage]:
        stages, seen = [], set()
        for tname, task in self.exp.tasks.items():
            if task.is_probe:  # only its prepare steps, writing the probed directories into {work}
                if task.data is not None and task.data.prepare:
                    stages.append(self.steps_stage(f"probe {tname} (prepare)", task.data.prepare,
                                                   self.layout.task_raw(tname), self.base_stage))
                continue
            if task.data.bin is not None:
                continue
            for size in self.exp.task_sizes(task):
                for seed in (self.exp.seeds if not size.is_full else [None]):
                    out = self.layout.task_data(tname, size, seed)
                    if out in seen:
                        continue
                    seen.add(out)
                    label = f"data {tname}" + (f" {size.label} seed {seed}" if size.label else "")
                    stages += self.data_stages(label, task.data, self.layout.task_raw(tname), out, size, seed, out)
        return stages

    # -- runs

    def _parts(self, task: TaskSpec) -> List[Tuple[Optional[str], str]]:
        """``(name, gold file or probe directory)`` per score, ``{work}`` resolved (name None: the only one)."""
        parts = list(task.score.parts.items()) or [(None, task.score.gold)]
        return [(name, path.replace(WORK, self.layout.task_raw(task.name))) for name, path in parts]

    def run_spec(self, task: TaskSpec, variant: VariantSpec, size: TrainSize, unit: Unit, seed: int) -> RunSpec:
        exp, layout, kseed = self.exp, self.layout, unit.knowledge_seed
        run_dir = layout.run_dir(task.name, variant.name, size, seed, kseed)
        data = task.data.bin if task.data.bin is not None else layout.task_data(task.name, size, seed)
        base = self.knowledge_out[(variant.base, kseed)] if variant.base else self.base
        save = os.path.join(run_dir, "checkpoints")
        slots = list(variant.adapters)
        paths = [f"{slot}={shown(self.knowledge_out[(k, kseed)])}" for slot, k in variant.adapters.items() if k != RANDOM]
        phase = exp.phase(variant)
        overrides = [f"task.data={shown(data)}", f"model.roberta_path={shown(base)}", f"model.adapter_names='{','.join(slots)}'",
                     # `++`: set even where the config leaves adapter_paths out (e.g. a config without adapters)
                     f"++model.adapter_paths='{','.join(paths)}'", f"model.train_phase={phase}"]
        overrides += common_overrides(save, run_dir, seed, exp.dtype)
        overrides += schedule_overrides(task.updates, task.warmup, task.lr, task.batch_size, task.validations)
        overrides += list(exp.arch_overrides) + list(task.overrides) + list(variant.overrides)
        train = TrainStep.compose(exp.config_dir, task.config, overrides, exp.threads)
        parts = []
        for name, gold in self._parts(task):
            gold = gold.replace(DATA, data)
            predictions = os.path.join(run_dir, predictions_name(task.score.split, name))
            predict = PredictStep(task.score.task, shown(train.checkpoint(task.score.checkpoint)), shown(data), shown(gold),
                                  shown(predictions), cpu=train.on_cpu, bf16=exp.dtype == "bf16", threads=exp.threads)
            parts.append(Part(name, ScoreStep(task.score.task, shown(gold), shown(predictions)), predict))
        upstream = list(self.base_stage) + self.made_by.get(data, [])  # (their lineage holds the prepare steps)
        upstream += [self.knowledge_stage[(k, kseed)] for k in list(variant.adapters.values()) + [variant.base]
                     if (k, kseed) in self.knowledge_stage]
        return RunSpec(
            task=task.name, variant=variant.name, size=size, seed=seed, knowledge_seed=kseed, phase=phase,
            metric=task.score.metric, split=task.score.split, name=layout.run_rel(task.name, variant.name, size, seed, kseed),
            dir=run_dir, train=train, parts=parts, rank=task.score.rank, execution=exp.execution,
            keep_checkpoints=exp.keep_checkpoints, dtype=exp.dtype, threads=exp.threads,
            upstream=digest([c for s in upstream for c in s.lineage()]), cwd=os.getcwd(),
        )

    def probe_run_spec(self, task: TaskSpec, variant: VariantSpec, unit: Unit) -> RunSpec:
        """The LAMA probe of the variant's own model (its base and knowledge adapters; a ``random`` slot: an untrained
        adapter), once per knowledge seed, over each of the task's directories."""
        exp, layout, kseed, probe = self.exp, self.layout, unit.knowledge_seed, task.score.probe
        run_dir = layout.run_dir(task.name, variant.name, TrainSize(), None, kseed)
        base = self.knowledge_out[(variant.base, kseed)] if variant.base else self.base
        upstream = list(self.base_stage)
        if variant.base:
            self.probe_reads(task, variant.base, kseed)
            upstream += [self.knowledge_stage[(variant.base, kseed)]] if (variant.base, kseed) in self.knowledge_stage else []
        adapters = {}
        for slot, name in variant.adapters.items():
            if name == RANDOM:
                path, stage = self.random_adapter(slot, variant, kseed)
            else:
                self.probe_reads(task, name, kseed)
                if probe.fusion == "concat":
                    path, stage = self.adapter_with_fusion(task, name, kseed)
                else:
                    path, stage = self.knowledge_out[(name, kseed)], self.knowledge_stage.get((name, kseed))
            adapters[slot] = shown(path)
            upstream += [stage] if stage is not None else []
        if task.data is not None and task.data.prepare:
            upstream.append(self.prepared[layout.task_raw(task.name)])
        vocab = shown(probe.common_vocab) if probe.common_vocab else None
        parts = [Part(name, ProbeStep(shown(base), shown(directory), probe.corpus, shown(probe_dir(run_dir, name)),
                                      adapters, probe.fusion, exp.dtype, probe.uhn, vocab, probe.batch_size, exp.threads))
                 for name, directory in self._parts(task)]
        return RunSpec(
            task=task.name, variant=variant.name, size=TrainSize(), seed=None, knowledge_seed=kseed, phase=None,
            metric=task.score.metric, split=None, name=layout.run_rel(task.name, variant.name, TrainSize(), None, kseed),
            dir=run_dir, train=None, parts=parts, rank=task.score.rank, execution=exp.execution,
            keep_checkpoints=exp.keep_checkpoints, dtype=exp.dtype, threads=exp.threads,
            upstream=digest([c for s in upstream for c in s.lineage()]), cwd=os.getcwd(),
        )

    # -- the record

    def record(self) -> ExperimentRecord:
        exp = self.exp
        tasks = {}
        for name, t in exp.tasks.items():
            parts = dict(self._parts(t))
            probe, golds = None, {}
            if t.is_probe:
                gold = None
                probe = {"corpus": t.score.probe.corpus, "fusion": t.score.probe.fusion,
                         "dirs": {str(part): shown(path) for part, path in parts.items()}}
            else:
                ranked = parts[t.score.rank] if t.score.parts else t.score.gold
                gold = None if DATA in ranked else os.path.abspath(ranked)
                golds = {str(part): os.path.abspath(path) for part, path in parts.items()
                         if part is not None and DATA not in path}
            tasks[name] = TaskRecord(t.score.metric, t.score.split, t.score.task, exp.task_sizes(t), gold,
                                     list(t.score.parts), t.score.rank, probe, golds)
        knowledge = {}
        for (name, _), path in self.knowledge_out.items():
            knowledge.setdefault(name, []).append(shown(path))
        return ExperimentRecord(
            name=exp.name, source=shown(exp.source),
            tasks=tasks, variants=[VariantRecord(v.name, dict(v.adapters), v.base, exp.phase(v)) for v in exp.variants],
            seeds=exp.seeds, units=exp.units, controls=exp.controls, train_phase=exp.train_phase, dtype=exp.dtype,
            precision=exp.precision, threads=exp.threads, knowledge=knowledge, study=exp.study, config=exp.raw,
            positive_control=exp.positive_control, hypotheses=exp.hypotheses,
        )


def plan_experiment(exp: Experiment, out: str) -> Plan:
    return Planner(exp, out).plan()
