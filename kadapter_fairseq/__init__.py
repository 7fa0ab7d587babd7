"""kadapter-fairseq: K-Adapter knowledge adapters for a frozen fairseq RoBERTa.

Importing the package registers the ``roberta_kadapter`` model and its
architectures, the tasks and the criterions with fairseq (this is what
``--user-dir kadapter_fairseq`` and ``common.user_dir`` do).
"""
from .checkpoint_utils import install_safe_globals

install_safe_globals()

from . import models  # noqa: E402,F401

try:  # tasks and criterions register themselves on import
    from . import tasks  # noqa: F401
    from . import criterions  # noqa: F401
except ImportError as _e:  # pragma: no cover - only while a sub-package is absent
    if "kadapter_fairseq.tasks" not in str(_e) and "kadapter_fairseq.criterions" not in str(_e):
        raise

__version__ = "0.1.0"


def __getattr__(name):
    # the hub pulls in BPE code; load it only when asked for
    if name == "KAdapterHub":
        from .hub import KAdapterHub

        return KAdapterHub
    raise AttributeError(name)
