"""Commands as a user types them, and running a tool in this process or as its CLI.

Every step of an experiment is equivalent to one of the project's command-line tools
(``kadapter-train``, ``kadapter-export``, ``kadapter-predict``, ``kadapter-score``,
``kadapter-probe``, ``kadapter-build-base``, ``python -m data_prep.*``). A ``Command`` is derived from a step's typed
description and only ever goes one way: to the echo, to ``metrics.json`` (the resume check) and to
a child process (``execution: subprocess``). Nothing reads a command line back.

``run_tool`` runs a tool whose result is the files it writes (converters, export, predict, build
base): as its CLI in a child process, or by calling the same ``main(argv)`` in this process
(``execution: inprocess``, the default: each fairseq CLI start spends seconds importing, which
dominates small runs). ``captured`` routes what an in-process step prints to its log.
"""
import contextlib
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..errors import KAdapterError

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"

# console script -> module whose main(argv) it runs
TOOLS = {
    "kadapter-train": "kadapter_fairseq.tools.train",
    "kadapter-export": "kadapter_fairseq.tools.export",
    "kadapter-predict": "kadapter_fairseq.predict",
    "kadapter-score": "kadapter_fairseq.scoring.cli",
    "kadapter-build-base": "kadapter_fairseq.tools.build_base",
    "kadapter-probe": "kadapter_fairseq.probe.cli",
}


class StepFailed(KAdapterError):
    """A step of the experiment exited with an error; the message names its log."""


def shown(path: str) -> str:
    """A path as commands show it: relative to the current directory when inside it."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


@dataclass
class Command:
    tool: str  # a console script of TOOLS, or a module run with ``python -m``
    args: List[str] = field(default_factory=list)
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


def tail(path: str, n: int = 25) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def failed(cmd: Command, code: int, log_path: str) -> StepFailed:
    return StepFailed(f"{cmd.tool} failed (exit {code}); log: {log_path}\n{tail(log_path)}")


def run_cli(cmd: Command, log_path: str):
    """``cmd`` as its CLI in a child process, its output appended to ``log_path`` (which shows the command first)."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {cmd.shown()}\n")
        log.flush()
        code = subprocess.run(cmd.argv(), stdout=log, stderr=subprocess.STDOUT, env=child_env(cmd.threads)).returncode
    if code:
        raise failed(cmd, code, log_path)


def run_in_process(cmd: Command, log_path: str, fn: Callable[[], Optional[int]]):
    """``fn()``, the in-process equivalent of ``cmd``, with its output appended to ``log_path``."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {cmd.shown()}\n")
        log.flush()
        with captured(log, cmd.threads):
            try:
                code = fn() or 0
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
    if code:
        raise failed(cmd, code, log_path)


def run_tool(cmd: Command, log_path: str, inprocess: bool):
    """A tool whose result is the files it writes: its ``main(argv)`` here, or its CLI."""
    if not inprocess:
        return run_cli(cmd, log_path)
    import importlib

    return run_in_process(cmd, log_path, lambda: importlib.import_module(cmd.module).main(list(cmd.args)))


@contextlib.contextmanager
def captured(log, threads: Optional[int]):
    """Route logging, stdout and stderr of in-process steps to ``log`` and fix torch's thread
    count; restore everything after."""
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
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
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
