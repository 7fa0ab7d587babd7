"""The one compatibility layer (kadapter_fairseq/fairseq_compat.py): every patch of fairseq is in
place, reaches the call sites it was written for, and a call site that stopped going through it
(a ``from ... import`` that binds fairseq's original) fails the self-test loudly, naming the fairseq
version and the patch. Importing the package never ends the process; nothing else in the package
touches fairseq's or hydra's private names."""
import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
import types
import warnings

import pytest

import kadapter_fairseq  # noqa: F401  (installs the patches)
from kadapter_fairseq import distributed, fairseq_compat
from kadapter_fairseq.fairseq_compat import FairseqCompatError, FairseqVersionWarning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "kadapter_fairseq")


@pytest.fixture
def cli_modules():
    """fairseq's command-line modules, loaded (their call sites are checked only once they are)."""
    import fairseq_cli.hydra_train as hydra_train
    import fairseq_cli.train as train

    return train, hydra_train


def test_every_patch_is_in_place_and_reaches_its_call_sites(cli_modules):
    import fairseq.checkpoint_utils as fcu
    import fairseq.distributed.utils as du
    import fairseq.models.distributed_fairseq_model as dfm

    assert du.call_main is distributed.call_main and du.all_gather_list is distributed.all_gather_list
    assert dfm.DistributedDataParallel is distributed.cpu_aware_ddp
    assert du._broadcast_object_slow is fairseq_compat._broadcast_object_slow_with_configs
    assert fcu.PathManager.atomic_local_copies
    fairseq_compat.self_test()  # with fairseq_cli.train and hydra_train loaded: all call sites checked
    train, hydra_train = cli_modules
    assert fairseq_compat.loads(train.cli_main, "distributed_utils.call_main")
    assert fairseq_compat.loads(hydra_train._hydra_main, "distributed_utils.call_main")
    assert not fairseq_compat.loads(train.cli_main, "distributed_utils.all_gather_list")
    assert fairseq_compat.loads(fcu.save_checkpoint, "PathManager.copy")
    assert fairseq_compat.loads(fcu.save_checkpoint, "save_checkpoint.best")  # a store: save_checkpoint.best = ...


def bypassing(function, dotted, name):
    """``function`` recompiled as if its module had done ``from <module> import name``: the body
    calls ``name`` directly, bound to fairseq's original."""
    source = textwrap.dedent(inspect.getsource(function))
    assert dotted in source
    namespace = dict(function.__globals__, **{name: fairseq_compat.fairseq_original(name)})
    exec(compile(source.replace(dotted, name), inspect.getsourcefile(function), "exec"), namespace)
    return namespace[function.__name__]


def test_a_call_site_that_binds_the_original_fails_the_self_test_loudly(cli_modules, monkeypatch):
    import fairseq

    _, hydra_train = cli_modules
    monkeypatch.setattr(hydra_train, "_hydra_main", bypassing(hydra_train._hydra_main, "distributed_utils.call_main", "call_main"))
    with pytest.raises(FairseqCompatError) as e:
        fairseq_compat.self_test()
    message = str(e.value)
    assert f"fairseq {fairseq.__version__}" in message and "written for fairseq 0.12" in message
    assert "patch fairseq.distributed.utils.call_main (CPU data-parallel launch" in message
    assert "call site fairseq_cli.hydra_train._hydra_main no longer looks up `distributed_utils.call_main`" in message
    assert "fairseq-fixed==0.12.3.1" in message
    # the patch's first use refuses before launching anything
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"common": {"fp16": False, "memory_efficient_fp16": False, "amp": False}})
    launched = []
    with pytest.raises(FairseqCompatError, match="_hydra_main no longer looks up"):
        distributed.call_main(cfg, lambda cfg, **kw: launched.append(cfg))
    assert launched == []
    monkeypatch.undo()
    fairseq_compat.self_test()


def test_a_library_call_site_and_a_rebound_module_name_fail_too(cli_modules, monkeypatch):
    import fairseq.distributed.utils as du
    import fairseq.trainer

    # broadcast_object moved to a module that imported fairseq's function by name
    monkeypatch.setattr(du, "broadcast_object", bypassing(du.broadcast_object, "_broadcast_object_slow", "_broadcast_object_slow"))
    with pytest.raises(FairseqCompatError, match=r"patch fairseq\.distributed\.utils\._broadcast_object_slow \(multi-process "
                                                 r"resume.*call site fairseq\.distributed\.utils\.broadcast_object looks up "
                                                 r"`_broadcast_object_slow`, but that resolves to fairseq\.distributed\.utils\."
                                                 r"_broadcast_object_slow in fairseq\.distributed\.utils, not to the patch"):
        fairseq_compat.self_test()
    monkeypatch.setattr(du, "broadcast_object", _calls_nothing)  # or stopped calling it at all
    with pytest.raises(FairseqCompatError, match=r"broadcast_object no longer looks up `_broadcast_object_slow`"):
        fairseq_compat.self_test()
    monkeypatch.undo()

    # the caller still writes distributed_utils.all_gather_list, but its distributed_utils is not fairseq's module
    original = fairseq_compat.fairseq_original("all_gather_list")
    monkeypatch.setattr(fairseq.trainer, "distributed_utils", types.SimpleNamespace(all_gather_list=original))
    with pytest.raises(FairseqCompatError) as e:
        fairseq_compat.self_test()
    assert "call site fairseq.trainer.Trainer._all_gather_list_sync looks up `distributed_utils.all_gather_list`, but that " \
           "resolves to fairseq.distributed.utils.all_gather_list in fairseq.trainer, not to the patch" in str(e.value)


def _calls_nothing(obj, src_rank, group, dist_device=None):
    return obj


def test_the_broadcast_fix_relies_on_torch_load_in_fairseqs_receiver(monkeypatch):
    monkeypatch.setitem(fairseq_compat._ORIGINALS, "_broadcast_object_slow", _calls_nothing)
    with pytest.raises(FairseqCompatError, match="fairseq's original no longer looks up `torch.load`"):
        fairseq_compat.self_test()


def test_training_state_reset_checks_where_fairseq_keeps_it(monkeypatch):
    import fairseq.checkpoint_utils as fcu
    import fairseq_cli.train as train

    fcu.save_checkpoint.best = 0.5
    train.should_stop_early.best, train.should_stop_early.num_runs = 0.5, 3
    fairseq_compat.reset_training_state()
    assert not hasattr(fcu.save_checkpoint, "best") and not hasattr(train.should_stop_early, "num_runs")

    # were fairseq to keep the best score elsewhere, deleting the attribute would silently reset nothing
    def save_checkpoint(cfg, trainer, epoch_itr, val_loss):
        return None

    monkeypatch.setattr(fcu, "save_checkpoint", save_checkpoint)
    with pytest.raises(FairseqCompatError, match=r"reset of save_checkpoint\.best.*no longer looks up `save_checkpoint\.best`"):
        fairseq_compat.reset_training_state()


def test_another_fairseq_version_is_named(monkeypatch, cli_modules):
    import fairseq

    monkeypatch.setattr(fairseq, "__version__", "0.13.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fairseq_compat.check_versions()
    message = [str(w.message) for w in caught if issubclass(w.category, FairseqVersionWarning)]
    assert message and "fairseq 0.13.0 is installed" in message[0] and "tested with 0.12.3.1" in message[0]
    _, hydra_train = cli_modules
    monkeypatch.setattr(hydra_train, "_hydra_main", bypassing(hydra_train._hydra_main, "distributed_utils.call_main", "call_main"))
    with pytest.raises(FairseqCompatError, match=r"cannot patch fairseq 0\.13\.0 \(written for fairseq 0\.12, tested with 0\.12\.3\.1\)"):
        fairseq_compat.self_test()


def test_importing_the_package_never_ends_the_process():
    # under fairseq-train's name and with a flag the CLI refuses on CPU: a plain import still returns
    code = "import sys; sys.argv = ['fairseq-train', 'data', '--fp16']; import kadapter_fairseq; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]


def test_kadapter_train_resolves_user_dir_from_where_it_runs(tmp_path):
    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.tools.train import absolute_user_dir

    assert absolute_user_dir("kadapter_fairseq", REPO) == PACKAGE  # the repository's folder
    assert absolute_user_dir("kadapter_fairseq", str(tmp_path)) == PACKAGE  # no such folder here: the installed package
    assert absolute_user_dir(PACKAGE, str(tmp_path)) == PACKAGE
    (tmp_path / "link").symlink_to(PACKAGE)  # the package under another name: its own path, which fairseq accepts
    assert absolute_user_dir("link", str(tmp_path)) == PACKAGE
    (tmp_path / "mine").mkdir()
    assert absolute_user_dir("mine", str(tmp_path)) == str(tmp_path / "mine")
    assert absolute_user_dir(None, str(tmp_path)) is None
    with pytest.raises(ConfigError, match=r"common\.user_dir=nowhere: no such directory"):
        absolute_user_dir("nowhere", str(tmp_path))


def test_shipped_configs_stay_where_the_command_runs():
    """hydra.job.chdir: false in every fairseq config (the _cpu ones inherit it): fairseq-hydra-train
    imports common.user_dir only after hydra has set up the run, so no later fix could help it."""
    configs = sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".yaml"))
    assert "relation_pretrain_cpu" in configs and "relation_pretrain" in configs
    for name in configs:  # a GPU config before its _cpu config: composing both in one process works
        cfg = fairseq_compat.load_config(os.path.join(REPO, "configs"), name, ["task.data=d", "model.roberta_path=b"])
        assert cfg.hydra.job.chdir is False, name
        assert cfg.common.user_dir == "kadapter_fairseq", name


# ---------------------------------------------------------------------------------------------
# the package's own code


def package_files():
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(root, f)


PRIVATE = re.compile(r"_broadcast_object_slow|_hydra_main|hydra\._internal|\bPathManager\b|delattr\(|_TensorPlaceholder"
                     r"|fairseq_distributed\._|distributed_utils\._")


def test_no_fairseq_or_hydra_private_name_outside_the_compat_module():
    found = []
    for path in package_files():
        if os.path.samefile(path, fairseq_compat.__file__):
            continue
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            if PRIVATE.search(line):
                found.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def package_imports(module_path):
    """The package modules ``module_path`` imports at module level (``from . import x``, ``from .x import y``)."""
    tree = ast.parse(open(module_path, encoding="utf-8").read())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module] if node.module else [a.name for a in node.names])
    return out


def test_the_launch_modules_import_each_other_in_one_direction():
    compat = package_imports(os.path.join(PACKAGE, "fairseq_compat.py"))
    checks = package_imports(os.path.join(PACKAGE, "runtime_checks.py"))
    dist = package_imports(os.path.join(PACKAGE, "distributed.py"))
    assert compat <= {"errors"} and checks <= {"errors"}
    assert {"fairseq_compat", "runtime_checks"} <= dist


def test_hydra_multirun_runs_a_sweep_from_library_code(tmp_path):
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="compat_sweep", node={"x": 0})
    seen = []
    returns = fairseq_compat.hydra_multirun(
        "compat-test", "compat_sweep", lambda cfg: seen.append(cfg.x) or cfg.x * 10,
        ["x=1,2", f"hydra.sweep.dir={tmp_path}", "hydra/job_logging=none", "hydra/hydra_logging=none", "hydra.job.chdir=false"])
    assert sorted(seen) == [1, 2] and sorted(r.return_value for r in returns[0]) == [10, 20]


def test_reading_a_checkpoint_keeps_fairseqs_loaders_working(tmp_path):
    """Our narrow loader must not take argparse.Namespace off torch's allow-list: fairseq's own
    ``load_checkpoint_to_cpu`` reads checkpoints that hold one with a plain ``torch.load``. torch's
    ``safe_globals`` context removes on exit everything it was given, also what was allowed before."""
    import argparse

    import torch

    from kadapter_fairseq import checkpoint_utils as ku

    ours = tmp_path / "ours.pt"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(a=1)}, ours)
    assert ku.load_file(ours)["args"].a == 1
    assert argparse.Namespace in torch.serialization.get_safe_globals()
    assert torch.load(ours, map_location="cpu")["args"].a == 1  # as fairseq calls it
