"""The experiment's output directory: the one place that knows where every file goes.

    DIR/experiment.json                      what was asked: tasks, variants, controls, seeds, precision, study
    DIR/plan.json                            the typed run descriptions (RunSpec) the launcher's jobs execute
    DIR/prepared/                            the experiment's own prepare steps ({prepared}; prepare.log)
    DIR/base/                                the base, when the experiment builds it (build_base.log beside it)
    DIR/data/<task>/raw/                     the task's prepare steps ({work})
    DIR/data/<task>/full/                    binarized data; subsamples in <size>/seed<k>/
    DIR/knowledge/<name>/{raw,data}/         knowledge data (shared by every knowledge seed)
    DIR/knowledge/<name>/train/              training log, checkpoints, adapter.pt or base/ (one knowledge seed)
    DIR/knowledge/<name>/kseed<j>/           the same, per knowledge seed j (``knowledge_seeds`` lists several)
    DIR/knowledge/<name>/with_fusion[/kseed<j>]/adapter.pt
                                             the adapter with its fusion weights, for a concat probe
    DIR/random/<slot>/<base>[/kseed<j>]/adapter.pt
                                             an untrained adapter (a ``random`` slot) for probe tasks
    DIR/runs/<task>/<variant>[/<size>][/kseed<j>]/seed<k>/
                                             config.yaml, metrics.json, <split>_predictions.jsonl, train.log
                                             (several gold files: <split>_<name>_predictions.jsonl)
    DIR/runs/<probe task>/<variant>[/kseed<j>]/
                                             config.yaml, metrics.json, train.log, probe[/<name>]/ (the probe's files)
    DIR/results.{json,md,png}, study.png     the report
    DIR/hydra/                               the launcher's own files

``<size>`` is ``TrainSize.label`` (``0.1``, ``50-examples``, ``10-per-label``; nothing for the full
set). ``kseed<j>`` appears only when the experiment trains its knowledge with several seeds, so an
experiment with one knowledge seed keeps the layout it always had.
"""
import os
from typing import List, Optional

from .sizes import TrainSize

EXPERIMENT, PLAN = "experiment.json", "plan.json"
RESULTS_JSON, RESULTS_MD, RESULTS_PNG, STUDY_PNG = "results.json", "results.md", "results.png", "study.png"
RESULT_FILES = (RESULTS_JSON, RESULTS_MD, RESULTS_PNG)
MARKER = ".done.json"  # a finished preparation step's record (plan.Stage)
METRICS, CONFIG, LOG, CHECKPOINTS = "metrics.json", "config.yaml", "train.log", "checkpoints"


def kseed_dir(knowledge_seed: Optional[int]) -> List[str]:
    return [] if knowledge_seed is None else [f"kseed{knowledge_seed}"]


class Layout:
    """Paths under one experiment directory (absolute)."""

    def __init__(self, out: str):
        self.out = os.path.abspath(out)

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    # -- the experiment's own files

    @property
    def experiment(self) -> str:
        return self.path(EXPERIMENT)

    @property
    def plan(self) -> str:
        return self.path(PLAN)

    @property
    def hydra(self) -> str:
        return self.path("hydra")

    def result(self, name: str) -> str:
        return self.path(name)

    @property
    def prepared(self) -> str:
        """The experiment's own prepare steps write here (``{prepared}``)."""
        return self.path("prepared")

    # -- preparation

    @property
    def base(self) -> str:
        return self.path("base")

    @property
    def base_log(self) -> str:
        return self.path("build_base.log")

    def task_raw(self, task: str) -> str:
        return self.path("data", task, "raw")

    def task_data(self, task: str, size: TrainSize, seed: Optional[int]) -> str:
        """Binarized data: one full set per task, one subsample per size and (downstream) seed."""
        if size.is_full:
            return self.path("data", task, "full")
        return self.path("data", task, size.label, f"seed{seed}")

    def knowledge_raw(self, name: str) -> str:
        return self.path("knowledge", name, "raw")

    def knowledge_data(self, name: str) -> str:
        return self.path("knowledge", name, "data")

    def knowledge_train(self, name: str, knowledge_seed: Optional[int] = None) -> str:
        """Where a knowledge entry trains (its log, checkpoints and exported adapter.pt or base/)."""
        if knowledge_seed is None:
            return self.path("knowledge", name, "train")
        return self.path("knowledge", name, f"kseed{knowledge_seed}")

    def knowledge_checkpoint(self, name: str, knowledge_seed: Optional[int] = None, which: str = "best") -> str:
        return os.path.join(self.knowledge_train(name, knowledge_seed), CHECKPOINTS, f"checkpoint_{which}.pt")

    def knowledge_output(self, name: str, kind: str, knowledge_seed: Optional[int] = None) -> str:
        """The exported adapter file (``kind: adapter``) or base directory (``kind: base``)."""
        return os.path.join(self.knowledge_train(name, knowledge_seed), "adapter.pt" if kind == "adapter" else "base")

    def knowledge_with_fusion(self, name: str, knowledge_seed: Optional[int] = None) -> str:
        """The directory of an adapter exported again with its fusion weights (for the probe's concat readout)."""
        return self.path("knowledge", name, "with_fusion", *kseed_dir(knowledge_seed))

    def random_adapter(self, slot: str, base: str, knowledge_seed: Optional[int] = None) -> str:
        """The directory of an untrained adapter for ``slot`` on ``base`` ("base" or a knowledge entry of kind base)."""
        return self.path("random", slot, base, *kseed_dir(knowledge_seed))

    # -- runs

    def run_rel(self, task: str, variant: str, size: TrainSize, seed: Optional[int],
                knowledge_seed: Optional[int] = None) -> str:
        """The run's name and its directory relative to DIR/runs (``semeval/fac/seed1``; a probe has no seed)."""
        parts = [task, variant] + ([size.label] if size.label else []) + kseed_dir(knowledge_seed)
        return "/".join(parts + ([f"seed{seed}"] if seed is not None else []))

    def run_dir(self, task: str, variant: str, size: TrainSize, seed: Optional[int],
                knowledge_seed: Optional[int] = None) -> str:
        return self.named_run_dir(self.run_rel(task, variant, size, seed, knowledge_seed))

    def named_run_dir(self, name: str) -> str:
        """The directory of the run called ``name`` (``run_rel``) under this experiment directory."""
        return self.path("runs", *name.split("/"))


def run_file(run_dir: str, name: str) -> str:
    """A file of one run directory (``METRICS``, ``CONFIG``, ``LOG``, ``CHECKPOINTS``)."""
    return os.path.join(run_dir, name)


def predictions_name(split: str, part: Optional[str] = None) -> str:
    return f"{split}_predictions.jsonl" if part is None else f"{split}_{part}_predictions.jsonl"


def probe_dir(run_dir: str, part: Optional[str] = None) -> str:
    """Where a probe run's ``kadapter-probe lama --out`` goes (one directory per probed directory)."""
    return os.path.join(run_dir, "probe", *([part] if part is not None else []))
