"""kadapter-fairseq: K-Adapter knowledge adapters for a frozen fairseq RoBERTa.

Importing the package registers the ``roberta_kadapter`` model and its
architectures, the tasks and the criterions with fairseq (this is what
``--user-dir kadapter_fairseq`` and ``common.user_dir`` do).
"""
from .third_party_logging import import_fairseq_quietly

import_fairseq_quietly()  # first: importing fairseq would otherwise configure the root logger at DEBUG

from .checkpoint_utils import install_atomic_checkpoint_copies, install_safe_globals
from .distributed import install as install_distributed
from .runtime_checks import check_current_command

install_safe_globals()
install_atomic_checkpoint_copies()
install_distributed()  # CPU data-parallel runs through fairseq's launcher (see distributed.py)
check_current_command()

from . import models  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
from . import criterions  # noqa: E402,F401

__version__ = "0.1.0"


def __getattr__(name):
    # the hub pulls in BPE code; load it only when asked for
    if name == "KAdapterHub":
        from .hub import KAdapterHub

        return KAdapterHub
    raise AttributeError(name)
