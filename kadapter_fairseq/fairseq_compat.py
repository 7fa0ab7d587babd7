"""Every place where kadapter-fairseq reaches into fairseq's or hydra's internals, and the checks that it still does.

Written for fairseq 0.12 (tested with fairseq-fixed 0.12.3.1) and hydra-core 1.3 (tested with 1.3.2).
Nothing else in the package replaces a fairseq name, deletes fairseq state or imports a private
fairseq/hydra name: it asks this module.

What is patched, and why (``install()``, run when the package is imported):

- ``fairseq.distributed.utils.call_main`` and ``all_gather_list``, and the name
  ``DistributedDataParallel`` inside ``fairseq.models.distributed_fairseq_model``: CPU
  data-parallel training (the replacements live in ``distributed.py``; on GPUs they hand over to
  fairseq's originals);
- ``fairseq.distributed.utils._broadcast_object_slow``: on resume, rank 0 broadcasts the checkpoint
  it has read; the other ranks unpickle it with torch's weights-only loader, which refuses the
  OmegaConf config and fairseq's tensor placeholders in it. The replacement runs fairseq's own
  function with exactly those types allow-listed (nothing else is widened);
- ``PathManager`` inside ``fairseq.checkpoint_utils``: its local copies (``checkpoint_last.pt``,
  ``checkpoint_best.pt``) go through ``atomic.copy``, so a kill during the copy cannot leave a
  truncated ``checkpoint_last.pt``;
- ``fairseq_cli.hydra_train._hydra_main`` (only under ``kadapter-train``, ``run_hydra_train``):
  the composed config is checked and its ``common.user_dir`` resolved before any worker starts.

``reset_training_state`` deletes the function attributes where fairseq keeps the best score of a
run, so that a second training in one process does not inherit the first one's.

Why the checks: a patch replaces a name in the module that defines it, and takes effect only
where a caller looks the name up there at call time. A caller that did ``from
fairseq.distributed.utils import call_main`` keeps the original, and the patch silently does
nothing (under torchrun on CPU: N independent runs writing one ``save_dir``). So every patch lists
the call sites it must reach, and ``self_test`` reads each one's bytecode (the function must still
load the name through the listed path, e.g. ``distributed_utils.call_main``) and resolves that
path in the caller's own globals (it must arrive at the replacement). It runs when the patches are
installed and again where they are first used (``distributed.call_main``, ``run_hydra_train``,
``compose_train_config``); call sites in fairseq's command-line modules (``fairseq_cli.*``) are
checked once those are loaded (they are never imported just for the check: importing them
configures logging). A failed check raises ``FairseqCompatError`` naming the fairseq version and
the patch.

An installed fairseq other than the tested one only gets a warning: the version alone does not
say whether a patch still takes, and the self-test does.
"""
import dis
import functools
import importlib
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .errors import KAdapterError

FAIRSEQ_SERIES = "0.12"
FAIRSEQ_TESTED = "0.12.3.1"  # fairseq-fixed, a maintained fairseq 0.12 fork
HYDRA_SERIES = "1.3"
HYDRA_TESTED = "1.3.2"


class FairseqCompatError(KAdapterError):
    """A patch of fairseq/hydra no longer reaches the code it was written for."""


class FairseqVersionWarning(UserWarning):
    """fairseq or hydra is not the version this package was tested with."""


def fairseq_version() -> str:
    import fairseq

    return getattr(fairseq, "__version__", "unknown")


def hydra_version() -> str:
    import hydra

    return getattr(hydra, "__version__", "unknown")


def check_versions() -> List[str]:
    """Warn (once per process) when fairseq or hydra is not the tested version; returns the warnings."""
    found = []
    for name, have, series, tested in (("fairseq", fairseq_version(), FAIRSEQ_SERIES, FAIRSEQ_TESTED),
                                       ("hydra-core", hydra_version(), HYDRA_SERIES, HYDRA_TESTED)):
        if have == tested:
            continue
        found.append(
            f"kadapter-fairseq was written for {name} {series} and tested with {tested}; {name} {have} is installed. "
            f"Its patches of fairseq are self-tested when used (kadapter_fairseq/fairseq_compat.py) and stop the run "
            f"if one no longer takes; everything else is untested with {name} {have}."
        )
    for message in found:
        warnings.warn(message, FairseqVersionWarning, stacklevel=2)
    return found


# ---------------------------------------------------------------------------------------------
# the patches and their call sites


@dataclass(frozen=True)
class CallSite:
    """``function`` (a qualified name in ``module``) evaluates ``via`` and must arrive at the patched
    object; ``reaches`` says how many leading parts of ``via`` name it (0: all of them)."""

    module: str
    function: str
    via: str
    reaches: int = 0

    @property
    def cli(self) -> bool:
        # fairseq's command-line modules configure logging when imported: checked only once loaded
        return self.module.startswith("fairseq_cli.")

    def __str__(self):
        return f"{self.module}.{self.function}"


@dataclass(frozen=True)
class Patch:
    module: str
    attr: str
    why: str
    sites: Tuple[CallSite, ...]
    uses: Tuple[str, ...] = ()  # what the replacement relies on fairseq's original still looking up

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attr}"


_DU = "fairseq.distributed.utils"

CALL_MAIN = Patch(_DU, "call_main", "CPU data-parallel launch (spawned workers, torchrun or SLURM over gloo)", (
    CallSite("fairseq_cli.train", "cli_main", "distributed_utils.call_main"),
    CallSite("fairseq_cli.hydra_train", "_hydra_main", "distributed_utils.call_main"),
))
ALL_GATHER_LIST = Patch(_DU, "all_gather_list", "gathering logging outputs over gloo instead of a CUDA byte tensor", (
    CallSite("fairseq.trainer", "Trainer._all_gather_list_sync", "distributed_utils.all_gather_list"),
))
DDP = Patch("fairseq.models.distributed_fairseq_model", "DistributedDataParallel",
            "DDP without CUDA device ids for a model on CPU", (
                CallSite("fairseq.models.distributed_fairseq_model", "DistributedFairseqModel", "DistributedDataParallel"),
            ))
BROADCAST = Patch(_DU, "_broadcast_object_slow", "multi-process resume (the checkpoint rank 0 broadcasts holds its OmegaConf config)", (
    CallSite(_DU, "broadcast_object", "_broadcast_object_slow"),
    CallSite(_DU, "broadcast_tensors", "_broadcast_object_slow"),
), uses=("torch.load",))
PATH_MANAGER = Patch("fairseq.checkpoint_utils", "PathManager", "atomic copies to checkpoint_last.pt / checkpoint_best.pt", (
    CallSite("fairseq.checkpoint_utils", "save_checkpoint", "PathManager.copy", reaches=1),
))
HYDRA_MAIN = Patch("fairseq_cli.hydra_train", "_hydra_main", "kadapter-train's checks and user_dir resolution inside hydra's job", (
    CallSite("fairseq_cli.hydra_train", "hydra_main", "_hydra_main"),
))

PATCHES = (CALL_MAIN, ALL_GATHER_LIST, DDP, BROADCAST, PATH_MANAGER)  # installed at import; HYDRA_MAIN by kadapter-train

# fairseq keeps a run's best score as attributes of these functions (module, function, attributes)
TRAINING_STATE = (
    ("fairseq.checkpoint_utils", "save_checkpoint", ("best",)),
    ("fairseq_cli.train", "should_stop_early", ("best", "num_runs")),
)

_ORIGINALS: Dict[str, object] = {}
_REPLACEMENTS: Dict[str, object] = {}
_INSTALLED: Dict[str, Patch] = {}


def fairseq_original(attr: str):
    """fairseq's own object that patch ``attr`` replaced (for a replacement that hands over to it)."""
    return _ORIGINALS[attr]


def _patch(patch: Patch, replacement):
    module = importlib.import_module(patch.module)
    if not hasattr(module, patch.attr):
        raise FairseqCompatError(_header(patch) + f"{patch.module} no longer defines {patch.attr}. {_FIX}")
    current = getattr(module, patch.attr)
    if _REPLACEMENTS.get(patch.attr) is current and current is replacement:
        return
    _ORIGINALS.setdefault(patch.attr, current)  # a second install (or kadapter-train run) keeps fairseq's own
    _REPLACEMENTS[patch.attr] = replacement
    _INSTALLED[patch.attr] = patch
    setattr(module, patch.attr, replacement)


def install():
    """Apply the patches listed in the module docstring (idempotent), then self-test them."""
    from . import distributed

    if CALL_MAIN.attr not in _INSTALLED:
        check_versions()
        _patch(CALL_MAIN, distributed.call_main)
        _patch(ALL_GATHER_LIST, distributed.all_gather_list)
        _patch(DDP, distributed.cpu_aware_ddp)
        _patch(BROADCAST, _broadcast_object_slow_with_configs)
        _patch(PATH_MANAGER, _atomic_copy_path_manager())
    self_test()


# ---------------------------------------------------------------------------------------------
# the self-test


_FIX = ("Install fairseq-fixed==0.12.3.1 (pip install 'fairseq-fixed==0.12.3.1'), or adapt "
        "kadapter_fairseq/fairseq_compat.py to this fairseq.")
_ATTRIBUTE_OPS = ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR")


def _header(patch_name) -> str:
    name = patch_name.name if isinstance(patch_name, Patch) else patch_name
    why = f" ({patch_name.why})" if isinstance(patch_name, Patch) else ""
    return (f"kadapter-fairseq cannot patch fairseq {fairseq_version()} (written for fairseq {FAIRSEQ_SERIES}, "
            f"tested with {FAIRSEQ_TESTED}): patch {name}{why}: ")


def _code_objects(code):
    yield code
    for const in code.co_consts:
        if inspect.iscode(const):
            yield from _code_objects(const)


def loads(function, via: str) -> bool:
    """Whether ``function``'s bytecode looks up the global ``via``'s head and then its attributes, in order."""
    head, *attrs = via.split(".")
    for code in _code_objects(function.__code__):
        ins = [i for i in dis.get_instructions(code) if i.opname not in ("EXTENDED_ARG", "CACHE", "NOP")]
        for k, i in enumerate(ins):
            if i.opname != "LOAD_GLOBAL" or i.argval != head:
                continue
            following = ins[k + 1:k + 1 + len(attrs)]
            if len(following) == len(attrs) and all(f.opname in _ATTRIBUTE_OPS and f.argval == a for f, a in zip(following, attrs)):
                return True
    return False


def _loaded_module(name):
    """The module if this process has loaded it (also when it runs as ``python -m name``)."""
    module = sys.modules.get(name)
    if module is None:
        main = sys.modules.get("__main__")
        if getattr(getattr(main, "__spec__", None), "name", None) == name:
            return main
    return module


def _find_function(module, qualname: str):
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return inspect.unwrap(obj) if callable(obj) else None


def _check_site(site: CallSite, target, what: str) -> Optional[str]:
    """None if ``site`` reaches ``target``, else why not."""
    module = _loaded_module(site.module) if site.cli else importlib.import_module(site.module)
    if module is None:
        return None  # not loaded in this process: nothing here can call it
    function = _find_function(module, site.function)
    if function is None or not hasattr(function, "__code__"):
        return f"its call site {site} no longer exists"
    if not loads(function, site.via):
        return (f"its call site {site} no longer looks up `{site.via}` (a `from ... import` would bind fairseq's "
                f"original and bypass the patch)")
    obj, parts = function.__globals__, site.via.split(".")
    for depth, part in enumerate(parts[:site.reaches or len(parts)]):
        obj = obj.get(part) if depth == 0 else getattr(obj, part, None)
    if obj is not target:
        return (f"its call site {site} looks up `{site.via}`, but that resolves to {_describe(obj)} in {site.module}, "
                f"not to {what}")
    return None


def _describe(obj) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{getattr(obj, '__module__', '?')}.{name}"


def _problems(patch: Patch) -> List[str]:
    replacement = _REPLACEMENTS[patch.attr]
    found = [p for p in (_check_site(s, replacement, "the patch") for s in patch.sites) if p]
    original = _ORIGINALS[patch.attr]
    for name in patch.uses:
        if not loads(inspect.unwrap(original), name):
            found.append(f"fairseq's original no longer looks up `{name}`, which the patch relies on")
    return found


def self_test():
    """Check that every installed patch still reaches its call sites (cheap: a few functions' bytecode).
    Raises ``FairseqCompatError`` naming the fairseq version, the patch and the call site."""
    messages = []
    for patch in _INSTALLED.values():
        found = _problems(patch)
        if found:
            messages.append(_header(patch) + "; ".join(found))
    if messages:
        raise FairseqCompatError("\n".join(messages) + f"\n{_FIX}")


# ---------------------------------------------------------------------------------------------
# the replacements that are about fairseq itself (the CPU data-parallel ones live in distributed.py)


def _broadcast_types():
    """What rank 0's broadcast of a loaded checkpoint holds besides weights-only types: the config
    fairseq turned back into OmegaConf (``load_checkpoint_to_cpu``) and fairseq's tensor placeholders."""
    import collections
    import typing

    import omegaconf
    from omegaconf import base, nodes

    module = importlib.import_module(_DU)
    value_nodes = [c for c in vars(nodes).values() if isinstance(c, type) and issubclass(c, nodes.ValueNode)]
    return [omegaconf.DictConfig, omegaconf.ListConfig, base.ContainerMetadata, base.Metadata, *value_nodes,
            typing.Any, int, float, str, bool, bytes, list, dict, tuple, collections.defaultdict,
            module._TensorPlaceholder]


def _broadcast_object_slow_with_configs(obj, src_rank, group, dist_device):
    """fairseq's ``_broadcast_object_slow``, its receiving side's ``torch.load`` allowed the types of
    ``_broadcast_types`` (torch >= 2.6 loads weights-only by default and refused them, so no
    multi-process run could resume)."""
    import torch

    with torch.serialization.safe_globals(_broadcast_types()):
        return _ORIGINALS["_broadcast_object_slow"](obj, src_rank, group, dist_device)


def _atomic_copy_path_manager():
    """fairseq writes a checkpoint through ``.tmp`` and a rename, then *copies* it to
    ``checkpoint_last.pt`` / ``checkpoint_best.pt`` with a plain copy: a kill during the copy
    would leave a truncated ``checkpoint_last.pt`` and the run could not resume."""
    from fairseq.file_io import PathManager

    from . import atomic

    class AtomicCopyPathManager(PathManager):
        atomic_local_copies = True

        @staticmethod
        def copy(src_path, dst_path, overwrite=False):
            if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
                return PathManager.copy(src_path, dst_path, overwrite=overwrite)
            if not overwrite and os.path.exists(dst_path):
                return False
            return atomic.copy(src_path, dst_path)

    return AtomicCopyPathManager


# ---------------------------------------------------------------------------------------------
# hydra: fairseq-hydra-train's command line, composing, launching


def run_hydra_train(around: Callable):
    """fairseq-hydra-train's command line, with ``around(cfg, train, **kwargs)`` called inside hydra's
    job in place of fairseq's task body ``train`` (``_hydra_main``): ``around`` sees the composed
    config before fairseq launches any worker, and calls ``train`` to go on."""
    from fairseq_cli import hydra_train

    original = _ORIGINALS.get("_hydra_main", hydra_train._hydra_main)

    @functools.wraps(original)
    def _hydra_main(cfg, **kwargs):
        return around(cfg, original, **kwargs)

    _patch(HYDRA_MAIN, _hydra_main)
    self_test()
    hydra_train.cli_main()


def _hydra_internals():
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.hydra import Hydra
        from hydra._internal.utils import create_config_search_path
    except ImportError as e:
        raise FairseqCompatError(
            f"kadapter-fairseq uses hydra-core {HYDRA_SERIES}'s config loader (tested with {HYDRA_TESTED}); "
            f"hydra-core {hydra_version()} does not have it ({e}). Install hydra-core=={HYDRA_TESTED}."
        ) from e
    return ConfigLoaderImpl, Hydra, create_config_search_path


_SCHEMAS = set()  # config names whose fairseq schema this process has stored in hydra's ConfigStore


def load_config(config_dir: str, config_name: str, overrides: List[str]):
    """The config fairseq-hydra-train composes for ``--config-dir D --config-name N OVERRIDES``,
    ``hydra`` node included, before fairseq fills in its defaults: its structured schema registered
    under the config's name, then the YAML and the overrides. hydra's global state is not touched,
    so this also works inside a hydra job, and several configs can be composed in one process."""
    import kadapter_fairseq  # noqa: F401  (registers tasks, models, criterions first)
    from fairseq.dataclass.initialize import hydra_init
    from hydra.core.config_store import ConfigStore
    from hydra.types import RunMode

    ConfigLoaderImpl, _, create_config_search_path = _hydra_internals()
    # a schema stored for an earlier config would also be applied to it where a later config names it
    # in its defaults list (configs/*_cpu.yaml name their GPU config), and refuse its hydra node there
    repo = ConfigStore.instance().repo
    for name in _SCHEMAS - {config_name}:
        repo.pop(f"{name}.yaml", None)
    _SCHEMAS.add(config_name)
    hydra_init(config_name)
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(os.path.abspath(config_dir)))
    with warnings.catch_warnings():
        # fairseq-hydra-train's way (a schema stored under the config's name) is what hydra calls deprecated
        warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema")
        return loader.load_configuration(config_name=config_name, overrides=list(overrides), run_mode=RunMode.RUN)


def compose_train_config(config_dir: str, config_name: str, overrides: List[str], check_runtime: bool = True):
    """The config ``kadapter-train --config-dir D --config-name N OVERRIDES`` would train with
    (``load_config``, checked, with fairseq's defaults filled in and resolved).

    ``check_runtime=False`` skips the check that this machine can run it (fp16 without CUDA, ...):
    for planning a grid that is meant for another machine; training checks again."""
    from fairseq.dataclass.initialize import add_defaults
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from omegaconf import OmegaConf, open_dict

    from . import runtime_checks

    self_test()
    cfg = load_config(config_dir, config_name, overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    if check_runtime:
        runtime_checks.check_runtime(cfg)
    add_defaults(cfg)
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def hydra_multirun(task_name: str, config_name: str, task_function: Callable, overrides: List[str]):
    """Run ``task_function`` over hydra's sweep of ``overrides`` with the launcher they pick (basic
    unless ``hydra/launcher=...``), as ``@hydra.main`` with ``--multirun`` would, from library code:
    hydra's global state is cleared before and after."""
    from hydra.core.global_hydra import GlobalHydra

    _, Hydra, create_config_search_path = _hydra_internals()
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name=task_name, config_search_path=create_config_search_path(None))
    try:
        return hydra.multirun(config_name=config_name, task_function=task_function, overrides=list(overrides),
                              with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()


# ---------------------------------------------------------------------------------------------
# fairseq's per-process training state


def reset_training_state():
    """Forget what an earlier training run in this process left in fairseq's module state."""
    import fairseq_cli.train  # noqa: F401  (the module holding should_stop_early)
    from fairseq import metrics

    problems = []
    for module_name, function_name, names in TRAINING_STATE:
        function = getattr(importlib.import_module(module_name), function_name, None)
        for name in names:
            site = CallSite(module_name, function_name, f"{function_name}.{name}", reaches=1)
            problem = _check_site(site, function, f"{module_name}.{function_name} (whose attribute is reset)")
            if problem:
                problems.append(_header(f"reset of {site.via}") + problem)
            elif hasattr(function, name):
                delattr(function, name)
    if problems:
        raise FairseqCompatError("\n".join(problems) + f"\n{_FIX}")
    metrics.reset()
