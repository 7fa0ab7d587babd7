"""Every place where kadapter-fairseq reaches into fairseq's or hydra's internals.

Written for fairseq-fixed 0.12.3.1 (a fairseq 0.12 fork) and hydra-core 1.3.2.
(Being completed: the patches of distributed.py, checkpoint_utils.py, tools/train.py and
runtime_checks.py move here, each with a check that its call site still reaches it.)
"""
import os
import warnings
from typing import List


def compose_train_config(config_dir: str, config_name: str, overrides: List[str]):
    """The config ``kadapter-train --config-dir D --config-name N OVERRIDES`` would train with.

    The same composition as fairseq-hydra-train (its structured schema registered under the
    config's name, then the YAML and the overrides), without touching hydra's global state, so
    it also works inside a hydra job."""
    import kadapter_fairseq  # noqa: F401  (registers tasks, models, criterions first)
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from .runtime_checks import check_runtime

    hydra_init(config_name)
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(os.path.abspath(config_dir)))
    with warnings.catch_warnings():
        # fairseq-hydra-train's way (a schema stored under the config's name) is what hydra calls deprecated
        warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema")
        cfg = loader.load_configuration(config_name=config_name, overrides=list(overrides), run_mode=RunMode.RUN)
    with open_dict(cfg):
        del cfg["hydra"]
    check_runtime(cfg)
    add_defaults(cfg)
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def reset_training_state():
    """Forget what an earlier training run in this process left in fairseq's module state."""
    import fairseq_cli.train as fairseq_train
    from fairseq import checkpoint_utils, metrics

    for fn, names in ((checkpoint_utils.save_checkpoint, ("best",)), (fairseq_train.should_stop_early, ("best", "num_runs"))):
        for name in names:
            if hasattr(fn, name):
                delattr(fn, name)
    metrics.reset()
