"""``kadapter-experiment run``: prepare data, train the knowledge adapters once, run the grid, report.

Layout of the output directory (AllenNLP's serialization directory, one per run):

    DIR/experiment.json                      what was asked (names, order, metrics, the composed config)
    DIR/data/<task>/raw/                     the task's prepare steps ({work})
    DIR/data/<task>/full/                    binarized data; subsamples in <size>/seed<k>/
    DIR/knowledge/<name>/{data,train}/       knowledge data; training log, checkpoints, adapter.pt or base/
    DIR/runs/<task>/<variant>[/<size>]/seed<k>/{config.yaml,metrics.json,<split>_predictions.jsonl,train.log}
    DIR/results.{json,md,png}                written by report.py
    DIR/hydra/                               the launcher's own files

Preparation steps (data, knowledge) run here, one after the other, and each is skipped when its
marker records the same commands and inputs. The grid's runs go through a hydra launcher plugin
(basic by default; ``hydra/launcher=joblib``, ``hydra/launcher=submitit_slurm``/``submitit_local``),
one job per run; a run whose ``metrics.json`` exists with the same commands is skipped, and a
run cut short is redone from scratch, so a killed experiment finishes with the same files.
"""
import json
import os
import resource
import shutil
import sys
import time
from typing import Dict, List, Optional

from ..errors import KAdapterError
from .commands import Command, compose_train_config, execute, split_train_args
from .config import DATA, RANDOM, WORK, DataSpec, Experiment, KnowledgeSpec, TaskSpec, TrainSize, VariantSpec

MARKER = ".done.json"
JOB_CONFIG = "kadapter_experiment_job"


# ---------------------------------------------------------------------------------------------- small helpers


def shown(path: str) -> str:
    """A path as commands show it: relative to the current directory when inside it."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


def say(message: str):
    print(message, flush=True)


def write_json_atomic(path: str, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_signature(path: str) -> list:
    """Size and modification time: enough to notice a changed input without hashing large files."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


class Clock:
    """Wall and CPU seconds since creation (CPU: this process and the children it waited for)."""

    def __init__(self):
        self.wall, self.cpu = time.time(), self._cpu()

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __str__(self):
        return f"{time.time() - self.wall:.1f} s, {self._cpu() - self.cpu:.1f} s CPU"


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


def common_overrides(save_dir: str, run_dir: str, seed: int) -> List[str]:
    return [f"common.seed={seed}", f"checkpoint.save_dir={shown(save_dir)}", "checkpoint.no_save_optimizer_state=true",
            f"common.user_dir={user_dir()}", "common.log_format=json",
            f"hydra.run.dir={shown(run_dir)}", "hydra.job.chdir=false"]


# ---------------------------------------------------------------------------------------------- stages


class Stage:
    """Commands that produce one directory, skipped when its marker records the same request."""

    def __init__(self, title: str, out_dir: str, commands: List[Command], inputs: List[str], log: str, clean: bool = True):
        self.title, self.out_dir, self.commands, self.inputs, self.log = title, out_dir, commands, inputs, log
        self.clean = clean  # False: the command keeps its own cache in out_dir (kadapter-build-base)

    def key(self) -> dict:
        return {"commands": [c.shown() for c in self.commands],
                "inputs": {shown(p): file_signature(p) for p in sorted(set(self.inputs)) if os.path.isfile(p)}}

    def done(self) -> bool:
        marker = os.path.join(self.out_dir, MARKER)
        if not os.path.isfile(marker):
            return False
        try:
            with open(marker, encoding="utf-8") as f:
                return json.load(f) == self.key()
        except (OSError, json.JSONDecodeError):
            return False

    def run(self, inprocess: bool):
        if self.done():
            say(f"  [skip] {self.title}: done by an earlier run ({shown(self.out_dir)})")
            return
        if os.path.isdir(self.out_dir) and self.clean:
            shutil.rmtree(self.out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        if os.path.exists(self.log):
            os.remove(self.log)
        clock = Clock()
        for cmd in self.commands:
            say(f"  $ {cmd.shown()}")
            execute(cmd, self.log, inprocess)
        write_json_atomic(os.path.join(self.out_dir, MARKER), self.key())
        say(f"    {self.title}: done ({clock})")


def tokenizer_args(spec: DataSpec, base: str) -> List[str]:
    return ["--roberta-dir", shown(base)] if spec.tokenizer else []


def data_stages(title: str, spec: DataSpec, work: str, out: str, base: str, size: TrainSize, seed: Optional[int],
                log_dir: str, prepared: Dict[str, Stage]) -> List[Stage]:
    """The stages that turn ``spec`` into binarized data in ``out`` (prepare steps shared through ``prepared``)."""
    stages = []

    def fill(value: str) -> str:
        if os.path.isabs(value) and os.path.exists(value):
            return shown(value)
        return value.replace(WORK, shown(work))

    base_inputs = [os.path.join(base, "model.pt"), os.path.join(base, "dict.txt")]
    if spec.prepare and work not in prepared:
        cmds = [Command(step.module, [fill(a) for a in step.args]) for step in spec.prepare]
        stage = Stage(f"{title} (prepare)", work, cmds, [p for step in spec.prepare for p in step.inputs],
                      os.path.join(work, "prepare.log"))
        prepared[work] = stage
        stages.append(stage)
    args = ([spec.subcommand] if spec.subcommand else []) + [fill(p) for p in spec.inputs]
    for split, paths in spec.splits.items():
        args += [f"--{split}"] + [fill(p) for p in paths]
    args += ["--out", shown(out)] + [fill(a) for a in spec.args] + tokenizer_args(spec, base)
    if size.kind != "full":
        args += size.converter_args + ["--seed", str(seed)]
    given = list(spec.inputs) + [p for paths in spec.splits.values() for p in paths]
    inputs = [p for p in given if WORK not in p] + base_inputs
    stages.append(Stage(title, out, [Command(spec.converter, args)], inputs, os.path.join(log_dir, "prep.log")))
    return stages


# ---------------------------------------------------------------------------------------------- the plan


class Planner:
    """Turns an ``Experiment`` into preparation stages and the grid's run specifications."""

    def __init__(self, exp: Experiment, out: str):
        self.exp = exp
        self.out = os.path.abspath(out)
        self.prepared: Dict[str, Stage] = {}
        self.knowledge_data: Dict[str, str] = {}
        self.knowledge_out: Dict[str, str] = {}  # name -> adapter file or base directory
        self.base = exp.roberta_path or self.d("base")
        self._cpu: Dict[tuple, bool] = {}

    def d(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    # -- the base

    def base_stages(self) -> List[Stage]:
        """``kadapter-build-base`` when the experiment builds its own base (the tool also keeps its own cache)."""
        if self.exp.base_build is None:
            return []
        b = self.exp.base_build
        args = ["--text"] + [shown(t) for t in b["text"]] + ["--out", shown(self.base)]
        for key, value in b["options"].items():
            args += ["--" + key.replace("_", "-"), str(value)]
        return [Stage("base", self.base, [Command("kadapter-build-base", args, self.exp.threads)], list(b["text"]),
                      os.path.join(self.out, "build_base.log"), clean=False)]

    # -- knowledge

    def knowledge_stages(self) -> List[Stage]:
        stages = []
        needed = self.needed_knowledge()
        for name, k in self.exp.knowledge.items():
            if name not in needed and not any(self._data_source(o) == name for o in self.exp.knowledge.values()
                                              if o.name in needed):
                continue
            if k.path is not None:
                self.knowledge_out[name] = k.path
                continue
            if k.data is not None and k.data.source is None:
                data = self.d("knowledge", name, "data")
                stages += data_stages(f"knowledge {name}: data", k.data, self.d("knowledge", name, "raw"), data,
                                      self.base, TrainSize("full"), None, data, self.prepared)
                self.knowledge_data[name] = data
        for name, k in self.exp.knowledge.items():
            if name in needed and k.path is None:
                stages.append(self._knowledge_train(k))
        return stages

    @staticmethod
    def _data_source(k: KnowledgeSpec) -> Optional[str]:
        sources = [d.source for d in [k.data] + list(k.more_data.values()) if d is not None and d.source]
        return sources[0] if sources else None

    def needed_knowledge(self) -> set:
        needed = set()
        for v in self.exp.variants:
            needed.update(k for k in v.adapters.values() if k != RANDOM)
            if v.base:
                needed.add(v.base)
        return needed

    def _data_dir(self, spec: DataSpec, name: str) -> str:
        return self.knowledge_data[spec.source] if spec.source else self.knowledge_data[name]

    def _knowledge_train(self, k: KnowledgeSpec) -> Stage:
        out = self.d("knowledge", k.name, "train")
        save = os.path.join(out, "checkpoints")
        args = ["--config-dir", shown(self.exp.config_dir), "--config-name", k.config,
                f"task.data={shown(self._data_dir(k.data, k.name))}"]
        for key, spec in k.more_data.items():
            if spec.source is None:
                raise KAdapterError(f"knowledge.{k.name}.more_data.{key}: give `from: <knowledge entry>`")
            args.append(f"{key}={shown(self._data_dir(spec, k.name))}")
        args += [f"model.roberta_path={shown(self.base)}"] + common_overrides(save, out, k.seed)
        args += schedule_overrides(k.updates, k.warmup, k.lr, k.batch_size)
        if k.kind == "adapter":
            args += [f"model.adapter_names='{k.slot}'", "model.train_phase=knowledge"] + list(self.exp.arch_overrides)
        else:
            args += ["model.adapter_names=''", "model.train_phase=full"]
        args += list(k.overrides)
        best = os.path.join(save, "checkpoint_best.pt")
        if k.kind == "adapter":
            result = os.path.join(out, "adapter.pt")
            export = Command("kadapter-export", [shown(best), shown(result), "--adapters", k.slot])
        else:
            result = os.path.join(out, "base")
            export = Command("kadapter-export", ["--base", shown(best), shown(result)])
        self.knowledge_out[k.name] = result
        inputs = [os.path.join(self.base, "model.pt"), os.path.join(self.exp.config_dir, k.config + ".yaml")]
        return Stage(f"knowledge {k.name}: {'adapter' if k.kind == 'adapter' else 'multitask base'}", out,
                     [Command("kadapter-train", args, k.threads or self.exp.threads), export], inputs,
                     os.path.join(out, "train.log"))

    # -- tasks

    def task_data_dir(self, task: str, size: TrainSize, seed: int) -> str:
        if size.kind == "full":
            return self.d("data", task, "full")
        return self.d("data", task, size.label, f"seed{seed}")

    def task_stages(self) -> List[Stage]:
        stages, seen = [], set()
        for tname, task in self.exp.tasks.items():
            if task.data.bin is not None:
                continue
            for size in self.exp.task_sizes(task):
                for seed in (self.exp.seeds if size.kind != "full" else [None]):
                    out = self.task_data_dir(tname, size, seed)
                    if out in seen:
                        continue
                    seen.add(out)
                    label = f"data {tname}" + (f" {size.label} seed {seed}" if size.label else "")
                    stages += data_stages(label, task.data, self.d("data", tname, "raw"), out, self.base,
                                          size, seed, out, self.prepared)
        return stages

    # -- runs

    def trains_on_cpu(self, train_args: List[str]) -> bool:
        key = tuple(train_args)
        if key not in self._cpu:
            self._cpu[key] = bool(compose_train_config(*split_train_args(train_args)).common.cpu)
        return self._cpu[key]

    def run_dir(self, task: str, variant: str, size: TrainSize, seed: int) -> str:
        parts = [self.out, "runs", task, variant] + ([size.label] if size.label else []) + [f"seed{seed}"]
        return os.path.join(*parts)

    def runs(self) -> List[dict]:
        out = []
        for tname, task in self.exp.tasks.items():
            for variant in self.exp.variants:
                for size in self.exp.task_sizes(task):
                    for seed in self.exp.seeds:
                        out.append(self.run_spec(task, variant, size, seed))
        return out

    def run_spec(self, task: TaskSpec, variant: VariantSpec, size: TrainSize, seed: int) -> dict:
        run_dir = self.run_dir(task.name, variant.name, size, seed)
        data = task.data.bin if task.data.bin is not None else self.task_data_dir(task.name, size, seed)
        base = self.knowledge_out[variant.base] if variant.base else self.base
        save = os.path.join(run_dir, "checkpoints")
        slots = list(variant.adapters)
        paths = [f"{slot}={shown(self.knowledge_out[k])}" for slot, k in variant.adapters.items() if k != RANDOM]
        phase = variant.train_phase or self.exp.train_phase
        train = ["--config-dir", shown(self.exp.config_dir), "--config-name", task.config, f"task.data={shown(data)}",
                 f"model.roberta_path={shown(base)}", f"model.adapter_names='{','.join(slots)}'",
                 # `++`: set even where the config leaves adapter_paths out (e.g. a config without adapters)
                 f"++model.adapter_paths='{','.join(paths)}'", f"model.train_phase={phase}"]
        train += common_overrides(save, run_dir, seed)
        train += schedule_overrides(task.updates, task.warmup, task.lr, task.batch_size, task.validations)
        train += list(self.exp.arch_overrides) + list(task.overrides) + list(variant.overrides)
        checkpoint = os.path.join(save, f"checkpoint_{task.score.checkpoint}.pt")
        gold = task.score.gold.replace(WORK, self.d("data", task.name, "raw")).replace(DATA, data)
        predictions = os.path.join(run_dir, f"{task.score.split}_predictions.jsonl")
        predict = ["--task", task.score.task, "--checkpoint", shown(checkpoint), "--data-dir", shown(data),
                   "--input", shown(gold), "--output", shown(predictions)]
        if self.trains_on_cpu(train):
            predict.append("--cpu")  # predict where it trained (a GPU would give slightly other numbers)
        score = ["--task", task.score.task, "--gold", shown(gold), "--pred", shown(predictions)]
        return {
            "task": task.name, "variant": variant.name, "size": size.as_dict(), "size_label": size.label,
            "fraction": size.fraction, "seed": seed, "train_phase": phase, "metric": task.score.metric,
            "split": task.score.split, "dir": run_dir, "rel": os.path.relpath(run_dir, self.out),
            "predictions": os.path.basename(predictions),
            "commands": [{"tool": "kadapter-train", "args": train, "threads": self.exp.threads},
                         {"tool": "kadapter-predict", "args": predict, "threads": self.exp.threads},
                         {"tool": "kadapter-score", "args": score}],
            "execution": self.exp.execution, "threads": self.exp.threads, "keep_checkpoints": self.exp.keep_checkpoints,
            "cwd": os.getcwd(),
        }


# ---------------------------------------------------------------------------------------------- one run


def parse_valid(log_path: str) -> List[dict]:
    """The validation records of a ``common.log_format=json`` training log."""
    out = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "| valid | {" not in line:
                continue
            try:
                out.append(json.loads(line[line.index("| valid | {") + len("| valid | "):]))
            except json.JSONDecodeError:
                pass
    return out


def best_valid(records: List[dict], metric: str, maximize: bool) -> Optional[dict]:
    """The validation fairseq's checkpoint_best.pt holds: the last one at least as good as all before."""
    best = None
    for rec in records:
        try:
            value = float(rec[f"valid_{metric}"])
        except (KeyError, TypeError, ValueError):
            continue
        if best is None or (value >= best["value"] if maximize else value <= best["value"]):
            best = {"metric": metric, "value": value, "update": int(float(rec.get("valid_num_updates", 0)))}
    return best


def run_state(run: dict) -> str:
    """``done`` (metrics.json for these commands), ``changed`` (metrics.json for other commands) or ``missing``."""
    path = os.path.join(run["dir"], "metrics.json")
    if not os.path.isfile(path):
        return "missing"
    try:
        with open(path, encoding="utf-8") as f:
            done = json.load(f).get("commands")
    except (OSError, json.JSONDecodeError):
        return "missing"
    return "done" if done == [Command(**c).shown() for c in run["commands"]] else "changed"


def run_name(run: dict) -> str:
    return "/".join([run["task"], run["variant"]] + ([run["size_label"]] if run["size_label"] else []) + [f"seed{run['seed']}"])


def execute_run(run: dict) -> dict:
    """Train, predict and score one run of the grid; returns its metrics (also written to metrics.json)."""
    from omegaconf import OmegaConf

    if os.path.abspath(run["cwd"]) != os.getcwd():
        os.chdir(run["cwd"])  # a launcher may start its jobs elsewhere; the commands' paths are relative to it
    name = run_name(run)
    if run_state(run) == "done":
        say(f"  [skip] {name}: metrics.json exists")
        with open(os.path.join(run["dir"], "metrics.json"), encoding="utf-8") as f:
            return json.load(f)
    run_dir = run["dir"]
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # a run cut short: start it again from nothing
    os.makedirs(run_dir)
    commands = [Command(**c) for c in run["commands"]]
    train, predict, score = commands
    inprocess = run["execution"] == "inprocess"
    cfg = compose_train_config(*split_train_args(train.args))
    with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as f:
        f.write("# " + run_name(run) + ": the commands of this run and the training config they resolve to\n")
        f.write(OmegaConf.to_yaml(OmegaConf.create({"commands": [c.shown() for c in commands], "run": {
            k: run[k] for k in ("task", "variant", "size", "seed", "train_phase", "metric", "split")}, "fairseq": cfg})))
    log = os.path.join(run_dir, "train.log")
    say(f"  [run] {name}")
    clock = Clock()
    for cmd in commands:
        say(f"    $ {cmd.shown()}")
        out = execute(cmd, log, inprocess)
    scores = json.loads(out.strip().splitlines()[-1])
    if run["metric"] not in scores:
        raise KAdapterError(f"{name}: kadapter-score printed no {run['metric']!r} (it printed {sorted(scores)})")
    valid = best_valid(parse_valid(log), cfg.checkpoint.best_checkpoint_metric, cfg.checkpoint.maximize_best_checkpoint_metric)
    metrics = {
        "task": run["task"], "variant": run["variant"], "size": run["size"], "fraction": run["fraction"],
        "seed": run["seed"], "train_phase": run["train_phase"], "metric": run["metric"],
        "value": scores[run["metric"]], "split": run["split"], "scores": scores, "best_valid": valid,
        "predictions": run["predictions"], "commands": [c.shown() for c in commands],
    }
    if not run["keep_checkpoints"]:
        shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    write_json_atomic(os.path.join(run_dir, "metrics.json"), metrics)  # last: its presence means "done"
    say(f"    {name}: {run['metric']} {metrics['value']:.4f} ({clock})")
    return metrics


# ---------------------------------------------------------------------------------------------- the launcher


def job(cfg) -> float:
    """The hydra task function: one run of the plan."""
    with open(cfg.plan, encoding="utf-8") as f:
        run = json.load(f)["runs"][int(cfg.run)]
    return float(execute_run(run)["value"])


def _register_job_config():
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=JOB_CONFIG, node={"plan": "???", "run": 0})


_register_job_config()  # at import: launcher workers unpickle ``job`` and compose this config themselves


def launch(plan_path: str, indices: List[int], launcher_overrides: List[str], sweep_dir: str):
    """Run ``indices`` of the plan through hydra's launcher (basic unless an override picks another)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"plan='{plan_path}'", "run=" + ",".join(map(str, indices)), f"hydra.sweep.dir='{sweep_dir}'",
                 "hydra.sweep.subdir=${hydra.job.num}", "hydra/job_logging=none", "hydra/hydra_logging=none",
                 "hydra.job.chdir=false"] + list(launcher_overrides)
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="kadapter-experiment", config_search_path=create_config_search_path(None))
    try:
        hydra.multirun(config_name=JOB_CONFIG, task_function=job, overrides=overrides, with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()


# ---------------------------------------------------------------------------------------------- the experiment


def experiment_record(exp: Experiment, planner: Planner) -> dict:
    return {
        "name": exp.name,
        "source": shown(exp.source),
        "tasks": {n: {"metric": t.score.metric, "split": t.score.split, "score_task": t.score.task,
                      "sizes": [s.as_dict() for s in exp.task_sizes(t)]} for n, t in exp.tasks.items()},
        "variants": [v.name for v in exp.variants],
        "adapters": {v.name: {slot: k for slot, k in v.adapters.items()} for v in exp.variants},
        "seeds": exp.seeds,
        "train_phase": exp.train_phase,
        "knowledge": {n: shown(p) for n, p in planner.knowledge_out.items()},
        "config": exp.raw,
    }


def run_experiment(exp: Experiment, out: str, launcher_overrides: List[str] = ()) -> dict:
    """Everything ``kadapter-experiment run`` does; returns the results (results.json's content)."""
    from .report import write_reports

    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    clock = Clock()
    planner = Planner(exp, out)
    inprocess = exp.execution == "inprocess"
    say(f"experiment {exp.name}: {len(exp.tasks)} task(s) x {len(exp.variants)} variant(s) x "
        f"{len(exp.seeds)} seed(s) -> {shown(out)}")

    for stage in planner.base_stages():
        say("\n[0/3] the base")
        stage.run(inprocess)
    knowledge = planner.knowledge_stages()
    if knowledge:
        say("\n[1/3] knowledge adapters and bases (trained once, then used by every run)")
        for stage in knowledge:
            stage.run(inprocess)
    tasks = planner.task_stages()
    say("\n[2/3] downstream data")
    for stage in tasks:
        stage.run(inprocess)
    if not tasks:
        say("  (binarized data given)")

    runs = planner.runs()
    plan_path = os.path.join(out, "plan.json")
    write_json_atomic(plan_path, {"experiment": exp.name, "runs": runs})
    write_json_atomic(os.path.join(out, "experiment.json"), experiment_record(exp, planner))
    todo = []
    say(f"\n[3/3] the grid: {len(runs)} runs")
    for i, run in enumerate(runs):
        state = run_state(run)
        if state == "done":
            say(f"  [skip] {run_name(run)}: metrics.json exists")
        else:
            if state == "changed":
                say(f"  [redo] {run_name(run)}: its metrics.json came from other commands")
            todo.append(i)
    if todo:
        launch(plan_path, todo, list(launcher_overrides), os.path.join(out, "hydra"))
    missing = [run_name(r) for r in runs if run_state(r) != "done"]
    if missing:
        raise KAdapterError(f"{len(missing)} run(s) did not finish: {', '.join(missing[:5])}")
    results = write_reports(out)
    say(f"experiment {exp.name}: {len(runs)} runs finished ({len(todo)} this time) in {clock}\n")
    return results


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use kadapter-experiment")
