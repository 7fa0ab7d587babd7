"""kadapter-fairseq: K-Adapter knowledge adapters for a frozen fairseq RoBERTa.

Importing the package registers the ``roberta_kadapter`` model and its
architectures, the tasks and the criterions with fairseq (this is what
``--user-dir kadapter_fairseq`` and ``common.user_dir`` do), and puts the package's
patches of fairseq in place (``fairseq_compat``: CPU data-parallel training, atomic
checkpoint copies, multi-process resume), raising ``FairseqCompatError`` if one no
longer reaches fairseq's code. It checks no command line and never ends the process.
"""
from .third_party_logging import import_fairseq_quietly

import_fairseq_quietly()  # first: importing fairseq would otherwise configure the root logger at DEBUG

from . import fairseq_compat  # noqa: E402
from .checkpoint_utils import install_safe_globals  # noqa: E402

install_safe_globals()
fairseq_compat.install()  # every patch of fairseq, each checked to still reach its call sites

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
