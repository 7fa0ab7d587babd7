"""Every shipped config composes the way fairseq-hydra-train composes it, names only keys the
task/model/criterion dataclasses know, and is set up to run from any directory; each CPU config is
its GPU config plus exactly the settings of configs/cpu/<name>.yaml; the three ways in
(kadapter-train, fairseq-hydra-train, in-process composition) give the same config; and the shipped
experiments plan (``kadapter-experiment run ... --check`` composes every run's training config)."""
import glob
import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

import kadapter_fairseq  # noqa: F401
from kadapter_fairseq.fairseq_compat import compose_train_config, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs")
BIN = os.path.dirname(sys.executable)
CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
CPU_CONFIGS = [n for n in CONFIGS if n.endswith("_cpu")]


def composed(name, overrides=(), defaults=True):
    """The config as fairseq-hydra-train composes it (hydra node included), unresolved; with
    ``defaults`` also what its ``_hydra_main`` does next: fairseq's dataclass defaults merged in."""
    from fairseq.dataclass.initialize import add_defaults

    cfg = load_config(CONFIG_DIR, name, list(overrides))
    if defaults:
        add_defaults(cfg)  # unknown or mistyped task/model/criterion keys raise here
    return cfg


def leaves(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def plain(cfg):
    """Resolved, without the hydra node: what training receives."""
    cfg = OmegaConf.to_container(cfg)
    cfg.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)


def test_there_are_configs_for_every_task():
    tasks = {composed(n, defaults=False).task._name for n in CONFIGS}
    assert {"relation_pretrain", "dependency_head_prediction", "entity_typing", "tacred", "cosmosqa", "span_qa"} <= tasks
    for name in CONFIGS:
        if not name.endswith("_cpu"):
            assert name + "_cpu" in CONFIGS or name == "entity_typing_figer", f"{name} has no CPU-sized variant"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_composes_and_validates(name):
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    raw = composed(name, defaults=False)
    assert raw.common.user_dir == "kadapter_fairseq", "fairseq-hydra-train needs common.user_dir"
    assert raw.hydra.run.dir == "." or raw.hydra.job.chdir is False, (
        "without hydra.run.dir / hydra.job.chdir=false the run chdirs into outputs/ and relative paths break"
    )
    missing = sorted(f"{g}.{k}" for g, k in (("task", "data"), ("model", "roberta_path")) if OmegaConf.is_missing(raw[g], k))
    assert missing == ["model.roberta_path", "task.data"], "the user must name the data and the base"

    cfg = composed(name)
    assert cfg.task._name in TASK_DATACLASS_REGISTRY
    assert cfg.criterion._name in CRITERION_DATACLASS_REGISTRY
    assert ARCH_MODEL_NAME_REGISTRY[cfg.model._name] == "roberta_kadapter"
    if name.endswith("_cpu"):
        assert cfg.common.cpu and not cfg.common.fp16 and cfg.distributed_training.distributed_world_size == 1
    else:
        assert cfg.model._name in ("roberta_kadapter", "roberta_kadapter_large"), "paper configs use the paper's sizes"


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_config_is_its_gpu_config_plus_what_differs(name):
    gpu = name[: -len("_cpu")]
    with open(os.path.join(CONFIG_DIR, name + ".yaml"), encoding="utf-8") as f:
        own = yaml.safe_load(f)
    assert own == {"defaults": ["_self_", gpu, f"cpu/{gpu}"]}, (
        f"{name}.yaml should only list its defaults, _self_ first (docs/reference/fairseq.md §4); "
        f"its settings belong in configs/cpu/{gpu}.yaml"
    )
    overrides_path = os.path.join(CONFIG_DIR, "cpu", gpu + ".yaml")
    with open(overrides_path, encoding="utf-8") as f:
        assert f.readline().strip() == "# @package _global_"
    changes = leaves(OmegaConf.to_container(OmegaConf.load(overrides_path)))

    # compared before fairseq's defaults fill in "???" keys; distributed_world_size defaults to the
    # number of GPUs of the machine composing it, so the CPU configs pin it even where it is 1 already
    raw_gpu = leaves(OmegaConf.to_container(composed(gpu, defaults=False)))
    same = sorted(k for k, v in changes.items() if raw_gpu.get(k) == v and k != "distributed_training.distributed_world_size")
    assert not same, f"configs/cpu/{gpu}.yaml repeats settings {gpu}.yaml already has: {same}"

    before = leaves(OmegaConf.to_container(composed(gpu)))
    after = leaves(OmegaConf.to_container(composed(name)))
    expected = {**before, **changes}
    for facts in (expected, after):  # what hydra records about this composition, not settings
        for key in [k for k in facts if k.startswith("hydra.runtime.") or k == "hydra.job.config_name"]:
            del facts[key]
    diff = sorted(k for k in set(expected) | set(after) if expected.get(k, "<absent>") != after.get(k, "<absent>"))
    assert not diff, f"{name} is not {gpu} plus configs/cpu/{gpu}.yaml at: {diff}"


def test_an_inherited_setting_reaches_the_cpu_config():
    cfg = composed("relation_pretrain_cpu")
    # from relation_pretrain.yaml, not repeated in the CPU files (a _self_ merged last would reset them)
    assert cfg.criterion.per_relation_metrics is True and cfg.optimization.clip_norm == 1.0
    assert cfg.common.log_format == "simple" and cfg.common.user_dir == "kadapter_fairseq"
    # from configs/cpu/relation_pretrain.yaml
    assert cfg.model._name == "roberta_kadapter_tiny" and cfg.dataset.batch_size == 32
    # and a command-line override still wins over both
    assert composed("relation_pretrain_cpu", ["dataset.batch_size=5"]).dataset.batch_size == 5


def test_composition_does_not_depend_on_earlier_ones():
    first = plain(composed("relation_pretrain_cpu"))
    # the GPU config's schema now sits in hydra's ConfigStore under its name; the CPU config names it
    gpu = plain(composed("relation_pretrain"))
    assert plain(composed("relation_pretrain_cpu")) == first
    assert plain(composed("relation_pretrain")) == gpu


CLI_OVERRIDES = [f"common.user_dir={os.path.join(REPO, 'kadapter_fairseq')}", "task.data=data-bin/x", "model.roberta_path=base"]


@pytest.mark.parametrize("tool", ["kadapter-train", "fairseq-hydra-train"])
@pytest.mark.parametrize("name", ["relation_pretrain_cpu", "tacred_cpu"])
def test_entry_points_compose_the_same_config(tool, name, tmp_path):
    from fairseq.dataclass.initialize import add_defaults

    proc = subprocess.run(
        [os.path.join(BIN, tool), "--config-dir", CONFIG_DIR, "--config-name", name, *CLI_OVERRIDES, "--cfg", "job"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = OmegaConf.create(proc.stdout)  # the job config hydra composed, before fairseq's defaults
    add_defaults(printed)
    assert plain(printed) == OmegaConf.to_container(compose_train_config(CONFIG_DIR, name, CLI_OVERRIDES))


EXPERIMENT_ENV = {"KADAPTER_DATA": "{data}", "ROBERTA_LARGE": "{base}", "FIGER_TOTAL_UPDATES": "100",
                  "SEARCHQA_TOTAL_UPDATES": "100", "QUASART_TOTAL_UPDATES": "100"}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Empty stand-ins for every data file and base the paper grids name, so that planning can run
    (it checks that inputs exist; nothing reads them)."""
    import re

    root = tmp_path_factory.mktemp("stand_ins")
    base = root / "base"
    base.mkdir()
    (base / "model.pt").touch()
    (base / "dict.txt").touch()
    for path in glob.glob(os.path.join(CONFIG_DIR, "experiments", "*.yaml")):
        with open(path, encoding="utf-8") as f:
            for rel in re.findall(r"\$\{oc\.env:KADAPTER_DATA,data\}/([^\"'\s,\]]+)", f.read()):
                target = root / "data" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if "." in os.path.basename(rel):
                    target.touch()
                else:
                    target.mkdir(exist_ok=True)  # SearchQA's split folders
    return {"data": str(root / "data"), "base": str(base)}


EXPERIMENTS = sorted(
    os.path.relpath(p, REPO)
    for p in glob.glob(os.path.join(REPO, "configs", "experiments", "*.yaml")) + glob.glob(os.path.join(REPO, "examples", "experiments", "*.yaml"))
    if not os.path.basename(p).startswith("_")
)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_shipped_experiment_plans(experiment, stand_ins, tmp_path, monkeypatch, capsys):
    from kadapter_fairseq.experiment.cli import main

    for key, value in EXPERIMENT_ENV.items():
        monkeypatch.setenv(key, value.format(**stand_ins))
    with open(os.path.join(REPO, experiment), encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    # seeds do not change a run's training config; fewer runs to plan (one knowledge seed, one downstream seed)
    overrides = ["seeds=[1]"] + (["knowledge_seeds=[1]"] if "knowledge_seeds" in raw else [])
    if experiment.startswith("examples/"):  # their base is built by the run itself
        base = raw.get("base", {})
        overrides += [f"base.roberta_path={stand_ins['base']}"] + (["~base.build"] if "build" in base else [])
    code = main(["run", os.path.join(REPO, experiment), "--out", str(tmp_path / "out"), "--check", *overrides])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert ": valid;" in out.out
