"""The steps of a run as functions on typed descriptions, each with the command it is equivalent to.

    train(TrainStep)     -> TrainResult   the best validation from checkpoint_best.pt's own record
    predict(PredictStep) -> path          the predictions file
    score(ScoreStep)     -> dict          the scorer's metrics, returned by the scorer function
    probe(ProbeStep)     -> dict          the LAMA probe's scores, returned by ``probe.run_lama``

A step's ``command()`` is what a user would type for it; it is derived from the description, echoed,
recorded in ``metrics.json`` and, with ``execution: subprocess``, run as that CLI. The results come
back the same way either way: from the files the step wrote (the checkpoint, the predictions) and
from the scorer function, never from a command's printout or log.

``TrainStep.config`` is the fairseq config the step's overrides compose to, composed once when the
run is planned (``compose``); in-process training hands exactly that config to fairseq's trainer,
and the CLI composes the same from the echoed overrides.

A score that needs no downstream training is another step type beside ``ScoreStep``: ``ProbeStep``,
``kadapter-probe lama`` over one LAMA-layout directory with the variant's base and adapter files.
A probe task's run has no ``TrainStep`` and no ``PredictStep``, only its probe steps; ``evaluate``
runs either kind of score step. With ``execution: subprocess`` the probe's CLI runs and its
``results.json`` is read back; in-process ``run_lama`` returns the same dict (the test suite checks
that the two give the same numbers).
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .commands import Command, run_cli, run_in_process, run_tool, shown


# ---------------------------------------------------------------------------------------------- training


@dataclass
class TrainStep:
    """One ``kadapter-train`` call: the overrides a user types and the fairseq config they compose to."""

    config_dir: str  # as the command shows it
    config_name: str
    overrides: List[str]
    config: Dict  # the composed fairseq config (a plain container: it travels in plan.json)
    threads: Optional[int] = None

    @classmethod
    def compose(cls, config_dir: str, config_name: str, overrides: List[str], threads: Optional[int]) -> "TrainStep":
        from omegaconf import OmegaConf

        from ..fairseq_compat import compose_train_config

        # not checked against this machine here: a grid may be planned (--check) where it cannot train;
        # runtime_problem() is asked before anything trains
        cfg = compose_train_config(config_dir, config_name, list(overrides), check_runtime=False)
        return cls(shown(config_dir), config_name, list(overrides), OmegaConf.to_container(cfg), threads)

    def command(self) -> Command:
        return Command("kadapter-train", ["--config-dir", self.config_dir, "--config-name", self.config_name]
                       + list(self.overrides), self.threads)

    @property
    def on_cpu(self) -> bool:
        return bool(self.config["common"]["cpu"])

    def runtime_problem(self) -> Optional[str]:
        """Why this machine cannot train the config (fp16 or amp without CUDA), or None."""
        from omegaconf import OmegaConf

        from ..errors import ConfigError
        from ..runtime_checks import check_runtime

        try:
            check_runtime(OmegaConf.create(self.config))
        except ConfigError as e:
            return str(e)
        return None

    def checkpoint(self, which: str = "best") -> str:
        return os.path.join(self.config["checkpoint"]["save_dir"], f"checkpoint_{which}.pt")


@dataclass
class TrainResult:
    best_valid: Optional[Dict]  # {"metric", "value", "update"} of the validation checkpoint_best.pt was saved at
    checkpoint_best: Optional[str]


def best_validation(checkpoint: str, metric: str) -> Optional[Dict]:
    """The validation ``checkpoint_best.pt`` was saved at, from the trainer's own record in it:
    ``extra_state.val_loss`` (the value of ``checkpoint.best_checkpoint_metric``, whatever its name)
    and the update count of its last ``optimizer_history`` entry. Only the small entries are read
    (the file is memory-mapped, its tensors never loaded)."""
    import torch

    from ..checkpoint_utils import install_safe_globals

    if not os.path.isfile(checkpoint):
        return None
    install_safe_globals()
    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    value = (state.get("extra_state") or {}).get("val_loss")
    if value is None:
        return None
    history = state.get("optimizer_history") or [{}]
    return {"metric": metric, "value": float(value), "update": int(history[-1].get("num_updates", 0))}


def _train_here(step: TrainStep):
    """fairseq's trainer on the step's composed config, after forgetting an earlier run's module state."""
    import kadapter_fairseq  # noqa: F401  (registers tasks, models, criterions)
    from fairseq import distributed_utils
    from fairseq_cli.train import main as fairseq_main
    from omegaconf import OmegaConf

    from ..fairseq_compat import reset_training_state

    from ..runtime_checks import check_runtime

    cfg = OmegaConf.create(step.config)
    OmegaConf.set_struct(cfg, True)
    check_runtime(cfg)
    reset_training_state()
    distributed_utils.call_main(cfg, fairseq_main)


def train(step: TrainStep, log: str, inprocess: bool) -> TrainResult:
    if inprocess:
        run_in_process(step.command(), log, lambda: _train_here(step))
    else:
        run_cli(step.command(), log)
    best = step.checkpoint("best")
    metric = step.config["checkpoint"]["best_checkpoint_metric"]
    return TrainResult(best_valid=best_validation(best, metric), checkpoint_best=best if os.path.isfile(best) else None)


# ---------------------------------------------------------------------------------------------- prediction


@dataclass
class PredictStep:
    """One ``kadapter-predict`` call: a checkpoint's predictions for a raw dataset file."""

    task: str
    checkpoint: str
    data_dir: str
    input: str
    output: str
    cpu: bool = False  # predict where it trained (a GPU would give slightly other numbers)
    bf16: bool = False
    threads: Optional[int] = None

    def command(self) -> Command:
        args = ["--task", self.task, "--checkpoint", self.checkpoint, "--data-dir", self.data_dir,
                "--input", self.input, "--output", self.output]
        return Command("kadapter-predict", args + (["--cpu"] if self.cpu else []) + (["--bf16"] if self.bf16 else []),
                       self.threads)


def predict(step: PredictStep, log: str, inprocess: bool) -> str:
    """Writes ``step.output`` (kadapter-predict's own main, here or as its CLI); returns its path."""
    run_tool(step.command(), log, inprocess)
    return step.output


# ---------------------------------------------------------------------------------------------- scoring


@dataclass
class ScoreStep:
    """One ``kadapter-score`` call: a predictions file against the gold file, by a registered scorer."""

    task: str
    gold: str
    predictions: str

    def command(self) -> Command:
        return Command("kadapter-score", ["--task", self.task, "--gold", self.gold, "--pred", self.predictions])


def score(step: ScoreStep, log: str, inprocess: bool) -> Dict:
    """The scorer's metrics as it returns them. With ``execution: subprocess`` the echoed CLI runs too
    (its printout goes to the log only); the dict always comes from the scorer function itself."""
    import json

    from ..scoring.cli import load_scorers

    result = {}

    def here():
        result.update(load_scorers()[step.task](step.gold, step.predictions))
        print(json.dumps(result))  # what the CLI prints, for the log

    if inprocess:
        run_in_process(step.command(), log, here)
    else:
        run_cli(step.command(), log)
        result.update(load_scorers()[step.task](step.gold, step.predictions))
    return result


# ---------------------------------------------------------------------------------------------- probing


@dataclass
class ProbeStep:
    """One ``kadapter-probe lama`` call: a base and adapter files probed on one LAMA-layout directory."""

    roberta_dir: str
    data: str
    corpus: str
    out: str
    adapters: Dict[str, str] = field(default_factory=dict)  # slot -> adapter file
    fusion: str = "delta"
    precision: str = "fp32"
    uhn: bool = False
    common_vocab: Optional[str] = None
    batch_size: int = 64
    threads: Optional[int] = None

    def options(self) -> Dict:
        """``run_lama``'s (and ``lama_args``'s) keyword arguments."""
        return dict(roberta_dir=self.roberta_dir, data=self.data, corpus=self.corpus, out=self.out,
                    adapters=dict(self.adapters), fusion=self.fusion, precision=self.precision, uhn=self.uhn,
                    common_vocab=self.common_vocab, batch_size=self.batch_size)

    def command(self) -> Command:
        from ..probe.run import lama_args

        return Command("kadapter-probe", lama_args(**self.options()), self.threads)


def probe_scores(results: Dict) -> Dict:
    """What a run records of the probe's results: the macro scores and the majority baseline (chance) beside
    them, the counts, and per relation P@1 and its majority baseline."""
    return {
        "p@1": results["macro_p@1"], "p@10": results["macro_p@10"], "mrr": results["macro_mrr"],
        "majority": results["macro_majority"], "n": results["n_facts"], "n_relations": results["n_relations"],
        "skipped": sum(results["skipped"].values()),
        "relations": {name: {"p@1": m["p@1"], "majority": m["majority"], "n": m["n"]}
                      for name, m in results["relations"].items()},
    }


def probe(step: ProbeStep, log: str, inprocess: bool) -> Dict:
    """The probe's scores (``probe_scores``): from ``run_lama`` here, or from the ``results.json`` its CLI wrote."""
    import json

    results = {}
    if inprocess:
        from ..probe.cli import summary
        from ..probe.run import run_lama

        def here():
            results.update(run_lama(**step.options()))
            print(summary(results, step.out))  # what the CLI prints, for the log

        run_in_process(step.command(), log, here)
    else:
        run_cli(step.command(), log)
        with open(os.path.join(step.out, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
    return probe_scores(results)


def evaluate(step, log: str, inprocess: bool) -> Dict:
    """A score step of either kind: a scorer over predictions, or a probe."""
    if isinstance(step, ProbeStep):
        return probe(step, log, inprocess)
    return score(step, log, inprocess)


# ---------------------------------------------------------------------------------------------- other tools


@dataclass
class ToolStep:
    """A tool whose result is the files it writes (a converter, kadapter-export, kadapter-build-base)."""

    tool: str
    args: List[str] = field(default_factory=list)
    threads: Optional[int] = None

    def command(self) -> Command:
        return Command(self.tool, list(self.args), self.threads)


def run_step(step, log: str, inprocess: bool):
    """Any step of a preparation stage: training returns its ``TrainResult``, a tool nothing."""
    if isinstance(step, TrainStep):
        return train(step, log, inprocess)
    return run_tool(step.command(), log, inprocess)


STEP_TYPES = {cls.__name__: cls for cls in (TrainStep, PredictStep, ScoreStep, ProbeStep, ToolStep)}
