"""The commands an experiment runs, echoed as a user would type them, executed in-process or as CLIs.

Every step of an experiment is one of the project's command-line tools (``kadapter-train``,
``kadapter-export``, ``kadapter-predict``, ``kadapter-score``, ``python -m data_prep.*``). A
``Command`` holds its name and arguments; ``execute`` runs it either as that CLI in a child
process (``execution: subprocess``) or by calling the same entry function in this process
(``execution: inprocess``, the default: each fairseq CLI start spends seconds importing, which
dominates small runs). Both write the tool's output to a log file; the in-process path resets
the module-level state fairseq keeps between runs (its best-checkpoint and early-stopping
memories), so a run gives the same numbers either way (tests/test_experiment.py checks it).
"""
import contextlib
import io
import logging
import os
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import List, Optional

from ..errors import KAdapterError
from ..fairseq_compat import compose_train_config, reset_training_state  # noqa: F401  (re-exported)

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"

# console script -> module whose main(argv) it runs
TOOLS = {
    "kadapter-train": "kadapter_fairseq.tools.train",
    "kadapter-export": "kadapter_fairseq.tools.export",
    "kadapter-predict": "kadapter_fairseq.predict",
    "kadapter-score": "kadapter_fairseq.scoring.cli",
    "kadapter-build-base": "kadapter_fairseq.tools.build_base",
}


class StepFailed(KAdapterError):
    """A command of the experiment exited with an error; the message names its log."""


@dataclass
class Command:
    tool: str  # a console script of TOOLS, or a module run with ``python -m``
    args: List[str]
    threads: Optional[int] = None  # torch threads: part of the command, since other counts give other floats

    @property
    def module(self) -> str:
        return TOOLS.get(self.tool, self.tool)

    def shown(self) -> str:
        prefix = [self.tool] if self.tool in TOOLS else ["python", "-m", self.tool]
        env = [f"OMP_NUM_THREADS={self.threads}"] if self.threads else []
        return " ".join(env + [quote(a) for a in prefix + list(self.args)])

    def argv(self) -> List[str]:
        script = os.path.join(os.path.dirname(sys.executable), self.tool)
        if self.tool in TOOLS and os.path.isfile(script):
            return [script] + list(self.args)
        return [sys.executable, "-m", self.module] + list(self.args)


def quote(arg: str) -> str:
    """Shell quoting that keeps hydra's own quotes readable: ``"model.x='0,2,3'"``."""
    if "'" in arg and not re.search(r'["$`\\]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def child_env(threads: Optional[int]) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # libgomp's busy-waiting threads make small models many times slower on shared cores
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def execute(cmd: Command, log_path: str, inprocess: bool, cwd: Optional[str] = None) -> str:
    """Run ``cmd``, appending its output to ``log_path``; returns what it printed on stdout."""
    threads = cmd.threads
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {cmd.shown()}\n")
        log.flush()
        if inprocess:
            out, code = _in_process(cmd, log, threads, cwd)
        else:
            out, code = _subprocess(cmd, log, threads, cwd)
    if code:
        tail = _tail(log_path, 25)
        raise StepFailed(f"{cmd.tool} failed (exit {code}); log: {log_path}\n{tail}")
    return out


def _tail(path: str, n: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _subprocess(cmd, log, threads, cwd):
    proc = subprocess.run(cmd.argv(), stdout=subprocess.PIPE, stderr=log, text=True, env=child_env(threads), cwd=cwd)
    log.write(proc.stdout)
    return proc.stdout, proc.returncode


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


@contextlib.contextmanager
def _captured(log, threads):
    """Route logging, stdout and stderr of in-process tools to ``log``; restore everything after."""
    import torch

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    old_threads, old_env = torch.get_num_threads(), {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # for the tools' own children
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(_Tee(out, log)), contextlib.redirect_stderr(log):
            yield out
    finally:
        root.handlers = handlers
        root.setLevel(level)
        torch.set_num_threads(old_threads)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        log.flush()


def _in_process(cmd, log, threads, cwd):
    import importlib

    if cwd and os.path.abspath(cwd) != os.getcwd():
        raise KAdapterError("in-process commands run in the current directory")
    with _captured(log, threads) as out:
        try:
            if cmd.tool == "kadapter-train":
                train_in_process(cmd.args)
                code = 0
            else:
                code = importlib.import_module(cmd.module).main(list(cmd.args)) or 0
        except SystemExit as e:  # argparse and the tools' own exits
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except KAdapterError as e:
            print(f"{cmd.tool}: error: {e}", file=sys.stderr)
            code = 2
        except Exception:  # noqa: BLE001  (a crash in a tool: keep the traceback in its log)
            import traceback

            traceback.print_exc()
            code = 1
    return out.getvalue(), code


# ---------------------------------------------------------------------------------------------- training


def split_train_args(args: List[str]):
    """``(config_dir, config_name, overrides)`` of a ``kadapter-train`` argument list."""
    config_dir, config_name, overrides, i = None, None, [], 0
    while i < len(args):
        a = args[i]
        if a in ("--config-dir", "-cd"):
            config_dir, i = args[i + 1], i + 2
        elif a in ("--config-name", "-cn"):
            config_name, i = args[i + 1], i + 2
        else:
            overrides.append(a)
            i += 1
    if not config_dir or not config_name:
        raise KAdapterError("kadapter-train needs --config-dir and --config-name")
    return config_dir, config_name, overrides


def train_in_process(args: List[str]):
    """``kadapter-train ARGS`` in this process (single process: the experiment's runs are CPU or one GPU each)."""
    from fairseq import distributed_utils
    from fairseq_cli.train import main as fairseq_main

    cfg = compose_train_config(*split_train_args(args))
    reset_training_state()
    distributed_utils.call_main(cfg, fairseq_main)
