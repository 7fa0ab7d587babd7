"""``kadapter-experiment run``: prepare data, train the knowledge, run the grid, report.

    Experiment --plan.plan_experiment--> Plan (stages + RunSpecs) --plan.json--> launcher job
        --> execute_run(RunSpec) --steps.train/predict/score (or steps.probe)--> TrainResult, predictions, scores
        --> metrics.json --report.write_reports--> results.*

Preparation stages (the experiment's own prepare steps, the base, data, knowledge) run here, one after the other, each skipped when
its marker records the same request. The grid's runs go through a hydra launcher plugin (basic by
default; ``hydra/launcher=joblib``, ``hydra/launcher=submitit_slurm``/``submitit_local``), one job
per run, each reading its ``RunSpec`` from ``plan.json``. A run whose ``metrics.json`` records the
same commands (and the same upstream commands) is skipped; a run cut short has no
``metrics.json`` (it is written last, atomically) and is redone from nothing, so a killed
experiment finishes with the same files. ``layout.Layout`` owns the directory.
"""
import json
import os
import resource
import shutil
import sys
import time
from typing import List, Optional

from .. import atomic
from ..errors import ConfigError, KAdapterError
from . import layout as L
from . import steps
from .commands import shown
from .config import Experiment
from .plan import Plan, RunSpec, Stage, from_json, plan_experiment, to_json

JOB_CONFIG = "kadapter_experiment_job"


def say(message: str):
    print(message, flush=True)


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


# ---------------------------------------------------------------------------------------------- stages


def run_stage(stage: Stage, inprocess: bool):
    if stage.done():
        say(f"  [skip] {stage.title}: done by an earlier run ({shown(stage.out_dir)})")
        return
    if os.path.isdir(stage.out_dir) and stage.clean:
        shutil.rmtree(stage.out_dir)
    os.makedirs(stage.out_dir, exist_ok=True)
    if os.path.exists(stage.log):
        os.remove(stage.log)
    clock = Clock()
    for step in stage.steps:
        say(f"  $ {step.command().shown()}")
        steps.run_step(step, stage.log, inprocess)
    atomic.write_json(os.path.join(stage.out_dir, L.MARKER), stage.key())
    say(f"    {stage.title}: done ({clock})")


# ---------------------------------------------------------------------------------------------- one run


def read_metrics(run: RunSpec) -> Optional[dict]:
    path = L.run_file(run.dir, L.METRICS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def run_state(run: RunSpec) -> str:
    """``done`` (metrics.json for this request), ``changed`` (metrics.json for another one) or ``missing``."""
    metrics = read_metrics(run)
    if metrics is None:
        return "missing"
    same = metrics.get("commands") == run.commands() and metrics.get("upstream", run.upstream) == run.upstream
    return "done" if same else "changed"


def write_config(run: RunSpec):
    from omegaconf import OmegaConf

    what = {"task": run.task, "variant": run.variant, "size": run.size.as_dict(), "seed": run.seed,
            "train_phase": run.phase, "metric": run.metric, "split": run.split}
    if run.knowledge_seed is not None:
        what["knowledge_seed"] = run.knowledge_seed
    with atomic.atomic_open(L.run_file(run.dir, L.CONFIG)) as f:
        f.write(f"# {run.name}: the commands of this run and the training config they resolve to\n")
        body = {"commands": run.commands(), "run": what}
        if run.train is not None:
            body["fairseq"] = run.train.config
        f.write(OmegaConf.to_yaml(OmegaConf.create(body)))


def _score_parts(run: RunSpec, log: str, inprocess: bool) -> dict:
    """Each part's prediction (if any) and score: ``{part name: {"value", "scores", "predictions"}}``."""
    out = {}
    for part in run.parts:
        if part.predict is not None:
            say(f"    $ {part.predict.command().shown()}")
            steps.predict(part.predict, log, inprocess)
        say(f"    $ {part.score.command().shown()}")
        scores = steps.evaluate(part.score, log, inprocess)
        what = f"{run.name}" + (f" ({part.name})" if part.name is not None else "")
        if scores.get(run.metric) is None:
            if isinstance(part.score, steps.ProbeStep):
                raise KAdapterError(f"{what}: the probe scored no fact in {part.score.data} ({scores.get('skipped', 0)} "
                                    f"skipped; see {part.score.out}/results.json)")
            raise KAdapterError(f"{what}: the {part.score.task} scorer gave no {run.metric!r} (it gave {sorted(scores)})")
        out[part.name] = {"value": scores[run.metric], "scores": scores,
                          "predictions": os.path.relpath(os.path.abspath(part.predictions), os.path.abspath(run.dir))}
    return out


def execute_run(run: RunSpec, progress: Optional["Progress"] = None) -> dict:
    """Train, predict and score one run of the grid (or probe it); returns its metrics (also written to metrics.json).

    The run's ``value`` and ``scores`` are those of its ranking part; a run with several parts (gold files,
    probed directories) records every part under ``parts``."""
    from ..provenance import collect

    if run.cwd and os.path.abspath(run.cwd) != os.getcwd():
        os.chdir(run.cwd)  # a launcher may start its jobs elsewhere; the steps' paths are relative to it
    if run_state(run) == "done":
        say(f"  [skip] {run.name}: metrics.json exists")
        return read_metrics(run)
    if os.path.isdir(run.dir):
        shutil.rmtree(run.dir)  # a run cut short: start it again from nothing
    os.makedirs(run.dir)
    write_config(run)
    log = L.run_file(run.dir, L.LOG)
    inprocess = run.execution == "inprocess"
    say(f"  [run] {run.name}" + (f" ({progress.position()})" if progress else ""))
    clock = Clock()
    trained = None
    if run.train is not None:
        say(f"    $ {run.train.command().shown()}")
        trained = steps.train(run.train, log, inprocess)
    parts = _score_parts(run, log, inprocess)
    main = parts[run.rank]
    metrics = {
        "task": run.task, "variant": run.variant, "size": run.size.as_dict(), "fraction": run.size.fraction,
        "seed": run.seed, "knowledge_seed": run.knowledge_seed, "train_phase": run.phase, "metric": run.metric,
        "value": main["value"], "split": run.split, "scores": main["scores"],
        "best_valid": trained.best_valid if trained else None,
        "predictions": main["predictions"], "commands": run.commands(), "upstream": run.upstream,
        "provenance": collect(run.dtype, run.threads),
    }
    if run.rank is not None:
        metrics["rank"] = run.rank
        metrics["parts"] = parts
    if not run.keep_checkpoints:
        shutil.rmtree(L.run_file(run.dir, L.CHECKPOINTS), ignore_errors=True)
    atomic.write_json(L.run_file(run.dir, L.METRICS), metrics)  # last: its presence means "done"

    def shown_score(part: dict) -> str:
        chance = part["scores"].get("majority")
        return f"{part['value']:.4f}" + (f" (chance {chance:.4f})" if chance is not None else "")

    if run.rank is None:
        line = f"    {run.name}: {run.metric} {shown_score(main)}"
    else:
        line = f"    {run.name}: {run.metric} " + ", ".join(f"{name} {shown_score(p)}" for name, p in parts.items())
    say(line + f" ({clock})" + (f"; {progress.report()}" if progress else ""))
    return metrics


# ---------------------------------------------------------------------------------------------- progress


class Progress:
    """``k/N`` finished runs of the plan and an estimate of the time left, from every job's point of view.

    Jobs may run in other processes (joblib, submitit), so the count is read from the run
    directories and the rate from the runs finished since the grid started (``started``,
    ``done_before``)."""

    def __init__(self, runs: List[RunSpec], started: float, done_before: int):
        self.runs, self.started, self.done_before = runs, started, done_before

    def finished(self) -> int:
        return sum(os.path.isfile(L.run_file(r.dir, L.METRICS)) for r in self.runs)

    def position(self) -> str:
        return f"{min(self.finished() + 1, len(self.runs))}/{len(self.runs)}"

    def report(self) -> str:
        done, total = self.finished(), len(self.runs)
        new = done - self.done_before
        left = ""
        if 0 < new and done < total:
            seconds = (time.time() - self.started) / new * (total - done)
            left = f", about {seconds / 60:.1f} min left" if seconds >= 60 else f", about {seconds:.0f} s left"
        text = f"{done}/{total} runs done{left}"
        if sys.stdout.isatty():  # a bar on a terminal; plain words in a log
            width = 20
            filled = int(width * done / max(total, 1))
            text = "[" + "#" * filled + "." * (width - filled) + "] " + text
        return text


# ---------------------------------------------------------------------------------------------- the launcher


def job(cfg) -> float:
    """The hydra task function: one run of the plan."""
    with open(cfg.plan, encoding="utf-8") as f:
        runs = [from_json(RunSpec, r) for r in json.load(f)["runs"]]
    progress = Progress(runs, float(cfg.started), int(cfg.done_before))
    return float(execute_run(runs[int(cfg.run)], progress)["value"])


def _register_job_config():
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=JOB_CONFIG, node={"plan": "???", "run": 0, "started": 0.0, "done_before": 0})


_register_job_config()  # at import: launcher workers unpickle ``job`` and compose this config themselves


def launch(plan_path: str, indices: List[int], launcher_overrides: List[str], sweep_dir: str, done_before: int):
    """Run ``indices`` of the plan through hydra's launcher (basic unless an override picks another)."""
    from ..fairseq_compat import hydra_multirun

    overrides = [f"plan='{plan_path}'", "run=" + ",".join(map(str, indices)), f"started={time.time()!r}",
                 f"done_before={done_before}", f"hydra.sweep.dir='{sweep_dir}'",
                 "hydra.sweep.subdir=${hydra.job.num}", "hydra/job_logging=none", "hydra/hydra_logging=none",
                 "hydra.job.chdir=false"] + list(launcher_overrides)
    hydra_multirun("kadapter-experiment", JOB_CONFIG, job, overrides)


# ---------------------------------------------------------------------------------------------- the experiment


def describe(exp: Experiment) -> str:
    units = "" if not exp.several_knowledge_seeds else \
        f" ({len(exp.units)} knowledge seeds x {len(exp.units[0].seeds)} downstream seeds)"
    return (f"{len(exp.tasks)} task(s) x {len(exp.variants)} variant(s) x {len(exp.seeds)} seed(s){units}; "
            f"precision {exp.dtype} ({exp.dtype_reason})")


def write_plan(plan: Plan, layout: L.Layout):
    atomic.write_json(layout.plan, {"experiment": plan.record.name, "runs": [to_json(r) for r in plan.runs]})
    atomic.write_json(layout.experiment, to_json(plan.record))


def run_experiment(exp: Experiment, out: str, launcher_overrides: List[str] = ()) -> dict:
    """Everything ``kadapter-experiment run`` does; returns the results (results.json's content)."""
    from .report import write_reports

    layout = L.Layout(out)
    os.makedirs(layout.out, exist_ok=True)
    clock = Clock()
    say(f"experiment {exp.name}: {describe(exp)} -> {shown(layout.out)}")
    plan = plan_experiment(exp, layout.out)
    inprocess = exp.execution == "inprocess"
    problems = plan.runtime_problems()
    if problems:  # before anything trains, not hours into the grid
        raise ConfigError("this machine cannot run the experiment: " + "; ".join(
            f"{p} ({len(w)} training(s), e.g. {w[0]})" for p, w in problems.items()))

    for stage in plan.prepare:
        say("\n[0/3] the experiment's own preparation")
        run_stage(stage, inprocess)
    for stage in plan.base:
        say("\n[0/3] the base")
        run_stage(stage, inprocess)
    if plan.knowledge:
        say("\n[1/3] knowledge adapters and bases (trained once per knowledge seed, then used by every run; "
            "and the adapter files probes read)")
        for stage in plan.knowledge:
            run_stage(stage, inprocess)
    say("\n[2/3] downstream data")
    for stage in plan.data:
        run_stage(stage, inprocess)
    if not plan.data:
        say("  (binarized data given)")

    write_plan(plan, layout)
    todo = []
    say(f"\n[3/3] the grid: {len(plan.runs)} runs")
    for i, run in enumerate(plan.runs):
        state = run_state(run)
        if state == "done":
            say(f"  [skip] {run.name}: metrics.json exists")
        else:
            if state == "changed":
                say(f"  [redo] {run.name}: its metrics.json came from another request")
            todo.append(i)
    if todo:
        launch(layout.plan, todo, list(launcher_overrides), layout.hydra, len(plan.runs) - len(todo))
    missing = [r.name for r in plan.runs if run_state(r) != "done"]
    if missing:
        raise KAdapterError(f"{len(missing)} run(s) did not finish: {', '.join(missing[:5])}")
    results = write_reports(layout.out)
    say(f"experiment {exp.name}: {len(plan.runs)} runs finished ({len(todo)} this time) in {clock}\n")
    return results


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use kadapter-experiment")
