"""Sub-word tokenizers, from local files only.

fairseq's GPT-2 BPE falls back to downloading ``encoder.json``/``vocab.bpe`` when
no path is given; this module never lets that happen. A base directory (the
``roberta.large/`` layout) is searched for the usual file names, explicit paths
win, and a missing file is a ``KAdapterError`` that says which names were tried.
"""
import os
from dataclasses import dataclass
from typing import Optional

from .errors import KAdapterError

GPT2_FILES = ("encoder.json", "vocab.bpe")
SENTENCEPIECE_FILES = ("sentencepiece.bpe.model", "spm.model", "sentencepiece.model")


@dataclass
class BPEFiles:
    kind: str  # "gpt2" or "sentencepiece"
    gpt2_encoder_json: Optional[str] = None
    gpt2_vocab_bpe: Optional[str] = None
    sentencepiece_model: Optional[str] = None

    def as_args(self):
        """The fairseq-style settings (``bpe=...`` plus its file paths)."""
        if self.kind == "gpt2":
            return {
                "bpe": "gpt2",
                "gpt2_encoder_json": self.gpt2_encoder_json,
                "gpt2_vocab_bpe": self.gpt2_vocab_bpe,
            }
        return {"bpe": "sentencepiece", "sentencepiece_model": self.sentencepiece_model}


def _require(path, what):
    if not os.path.isfile(path):
        raise KAdapterError(
            f"{what} not found: {path}. Nothing is downloaded at run time; "
            "pass the local file (e.g. the encoder.json/vocab.bpe shipped with roberta.large)."
        )
    return path


def find_bpe_files(
    base_dir=None,
    bpe=None,
    gpt2_encoder_json=None,
    gpt2_vocab_bpe=None,
    sentencepiece_model=None,
) -> BPEFiles:
    """Resolve which tokenizer files to use, checking that they exist."""
    if sentencepiece_model or bpe == "sentencepiece":
        if not sentencepiece_model:
            sentencepiece_model = _search(base_dir, SENTENCEPIECE_FILES, "sentencepiece model")
        return BPEFiles("sentencepiece", sentencepiece_model=_require(sentencepiece_model, "sentencepiece model"))
    if gpt2_encoder_json or gpt2_vocab_bpe or bpe == "gpt2":
        enc = gpt2_encoder_json or _search(base_dir, GPT2_FILES[:1], "GPT-2 encoder.json")
        voc = gpt2_vocab_bpe or _search(base_dir, GPT2_FILES[1:], "GPT-2 vocab.bpe")
        return BPEFiles("gpt2", _require(enc, "GPT-2 encoder.json"), _require(voc, "GPT-2 vocab.bpe"))
    if bpe not in (None, "auto"):
        raise KAdapterError(f"unknown bpe {bpe!r}: use 'gpt2' or 'sentencepiece'")
    if base_dir is None:
        raise KAdapterError("no tokenizer given: pass a base directory, GPT-2 BPE files or a sentencepiece model")
    for name in SENTENCEPIECE_FILES:
        if os.path.isfile(os.path.join(base_dir, name)):
            return BPEFiles("sentencepiece", sentencepiece_model=os.path.join(base_dir, name))
    if all(os.path.isfile(os.path.join(base_dir, n)) for n in GPT2_FILES):
        return BPEFiles("gpt2", *(os.path.join(base_dir, n) for n in GPT2_FILES))
    raise KAdapterError(
        f"no tokenizer files in {base_dir}: expected {' + '.join(GPT2_FILES)} (GPT-2 BPE) "
        f"or one of {', '.join(SENTENCEPIECE_FILES)} (sentencepiece). Nothing is downloaded at run time."
    )


def _search(base_dir, names, what):
    if base_dir is None:
        raise KAdapterError(f"{what}: no path given and no base directory to look in")
    for name in names:
        path = os.path.join(base_dir, name)
        if os.path.isfile(path):
            return path
    raise KAdapterError(f"{what} not found in {base_dir} (looked for {', '.join(names)}); nothing is downloaded at run time")


def load_bpe(files: BPEFiles):
    """Build fairseq's own BPE object (``.encode(str) -> str``, ``.decode``) from local files."""
    from argparse import Namespace

    if files.kind == "gpt2":
        from fairseq.data.encoders.gpt2_bpe import GPT2BPE

        return GPT2BPE(Namespace(gpt2_encoder_json=files.gpt2_encoder_json, gpt2_vocab_bpe=files.gpt2_vocab_bpe))
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE

    return SentencepieceBPE(Namespace(sentencepiece_model=files.sentencepiece_model, sentencepiece_enable_sampling=False, sentencepiece_alpha=None))
