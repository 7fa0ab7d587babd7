"""Every shipped hydra config composes the way fairseq-hydra-train composes it, names only keys
the task/model/criterion dataclasses know, and is set up to run from any directory."""
import glob
import os

import pytest
from omegaconf import OmegaConf

import kadapter_fairseq  # noqa: F401

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))


def test_there_are_configs_for_every_task():
    tasks = {OmegaConf.load(os.path.join(CONFIG_DIR, n + ".yaml")).task._name for n in CONFIGS}
    assert {"relation_pretrain", "dependency_head_prediction", "entity_typing", "tacred", "cosmosqa", "span_qa"} <= tasks
    for name in CONFIGS:
        if not name.endswith("_cpu"):
            assert name + "_cpu" in CONFIGS or name == "entity_typing_figer", f"{name} has no CPU-sized variant"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_composes_and_validates(name):
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    raw = OmegaConf.load(os.path.join(CONFIG_DIR, name + ".yaml"))
    assert raw.common.user_dir == "kadapter_fairseq", "fairseq-hydra-train needs common.user_dir"
    assert OmegaConf.select(raw, "hydra.run.dir") == "." or OmegaConf.select(raw, "hydra.job.chdir") is False, (
        "without hydra.run.dir the run chdirs into outputs/ and relative paths break"
    )
    GlobalHydra.instance().clear()
    hydra_init(name)
    # version_base 1.1, as fairseq itself composes: a newer one would stay set for the whole process and
    # break fairseq's later use of hydra.experimental
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.1"):
        cfg = compose(config_name=name)
    add_defaults(cfg)  # what fairseq-hydra-train does next: merges the registered dataclasses
    assert cfg.task._name in TASK_DATACLASS_REGISTRY
    assert cfg.criterion._name in CRITERION_DATACLASS_REGISTRY
    model_name = ARCH_MODEL_NAME_REGISTRY[cfg.model._name]
    assert model_name == "roberta_kadapter"
    # unknown or mistyped keys raise here
    merge_with_parent(TASK_DATACLASS_REGISTRY[cfg.task._name](), OmegaConf.create(OmegaConf.to_container(raw.task)))
    merge_with_parent(CRITERION_DATACLASS_REGISTRY[cfg.criterion._name](), OmegaConf.create(OmegaConf.to_container(raw.criterion)))
    merge_with_parent(MODEL_DATACLASS_REGISTRY[model_name](), OmegaConf.create(OmegaConf.to_container(raw.model)))
    missing = sorted(f"{g}.{k}" for g, k in (("task", "data"), ("model", "roberta_path")) if OmegaConf.is_missing(raw[g], k))
    assert missing == ["model.roberta_path", "task.data"], "the user must name the data and the base"
    if not name.endswith("_cpu"):
        assert cfg.model._name in ("roberta_kadapter", "roberta_kadapter_large"), "paper configs use the paper's sizes"
