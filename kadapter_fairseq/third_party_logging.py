"""Keep fairseq's import-time logging side effects out of this toolkit's commands.

Importing fairseq configures the process's root logger: ``fairseq/models/wav2vec/
wav2vec2_classification.py`` calls ``logging.basicConfig(level=logging.DEBUG)`` at
import, and ``fairseq_cli/preprocess.py`` calls ``basicConfig(stream=sys.stdout,
level=INFO)``. From then on every INFO and DEBUG record of the process (fairseq's,
hydra's, ``Please install tensorboardX`` from ``fairseq.tasks.text_to_speech``)
is printed, and a command's own later ``basicConfig`` does nothing. A command that
imports fairseq through ``quiet_root_logging`` leaves the root logger as it found
it: unconfigured (so the command can still configure it) or configured by the
user or by fairseq's own CLIs, which are left alone.
"""
import contextlib
import logging

TENSORBOARDX_HINT = "Please install tensorboardX"


@contextlib.contextmanager
def quiet_root_logging():
    """Within the block, ``basicConfig`` calls are no-ops and nothing under WARNING is printed;
    afterwards the root logger has exactly the handlers and level it had before."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    placeholder = None
    if not handlers:
        # basicConfig does nothing while the root logger has a handler
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


class _DropMessage(logging.Filter):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in str(record.msg)


def import_fairseq_quietly():
    """Import fairseq (once) without its logging side effects. The tensorboardX hint is
    dropped for good: it comes from the text-to-speech task at import, whether or not anything
    logs to TensorBoard; fairseq's progress bar (``torch.utils.tensorboard`` or tensorboardX)
    warns by itself when ``common.tensorboard_logdir`` is set and neither is installed."""
    tts = logging.getLogger("fairseq.tasks.text_to_speech")
    if not any(isinstance(f, _DropMessage) for f in tts.filters):
        tts.addFilter(_DropMessage(TENSORBOARDX_HINT))
    with quiet_root_logging():
        import fairseq  # noqa: F401
