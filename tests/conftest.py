import json
import os
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def experiment(*args):
    """``kadapter-experiment ARGS`` in this process; its exit code."""
    from kadapter_fairseq.experiment.cli import main

    return main([str(a) for a in args])


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def shared_data(*parts):
    """Path under ../shared/data, or skip the test with the reason."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real sample data not available: {os.path.normpath(path)} is absent (it sits beside the repo in CI)")
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny random RoBERTa base directory (3 layers, H=32, sentencepiece vocabulary)."""
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    return make_tiny_base(str(tmp_path_factory.mktemp("tiny_base")), seed=0)


@pytest.fixture(scope="session")
def other_tiny_base(tmp_path_factory):
    """Same shape and vocabulary as ``tiny_base``, different weights."""
    from kadapter_fairseq.tools.tiny_base import make_tiny_base

    return make_tiny_base(str(tmp_path_factory.mktemp("other_base")), seed=1)
