"""Name -> function registries filled by import, as fairseq's ``register_task``.

``kadapter-predict`` and ``kadapter-score`` look their ``--task`` up in one; the
modules that register into it are imported first, and one absent from a
partial checkout only removes its names from ``--task``. Standard library only.
"""
import importlib
from typing import Callable, Dict, Iterable

from .errors import KAdapterError


def registration(registry: Dict[str, Callable], what: str):
    """The ``@register_<what>(name)`` decorator of ``registry``; a second function for a name is an error."""

    def register(name: str):
        def wrap(fn):
            if name in registry and registry[name] is not fn:
                raise KAdapterError(f"a {what} for {name!r} is already registered ({registry[name].__module__})")
            registry[name] = fn
            return fn

        return wrap

    return register


def import_registering(modules: Iterable[str]):
    """Import ``modules`` for the entries they register, passing over those absent from this checkout."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
