"""A tiny RoBERTa base directory (``model.pt``, ``dict.txt``, ``sentencepiece.bpe.model``).

Random weights: for tests of the machinery only. The demo's base is pre-trained
with fairseq's ``masked_lm`` by ``kadapter_fairseq.tools.build_base``.
"""
import argparse
import os
import tempfile

import torch

DEFAULT_TEXT = [
    "Barack Obama was born in Honolulu , Hawaii .",
    "The Eiffel Tower is located in Paris , the capital of France .",
    "Marie Curie won the Nobel Prize in Physics in 1903 .",
    "The quick brown fox jumps over the lazy dog .",
    "Alan Turing studied at King's College , Cambridge .",
    "Mount Everest is the highest mountain above sea level .",
    "@ Obama @ was born in # Hawaii # .",
    "The river flows through the city into the sea .",
]


def train_sentencepiece(texts, model_prefix, vocab_size):
    import sentencepiece as spm

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for line in texts:
            f.write(line.strip() + "\n")
        # the span markers must exist as pieces of their own, as in GPT-2's vocabulary
        f.write("@ # @ # ( ) , . ' \"\n" * 3)
        corpus = f.name
    try:
        spm.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=model_prefix,
            vocab_size=vocab_size,
            model_type="bpe",
            character_coverage=1.0,
            byte_fallback=True,
            hard_vocab_limit=False,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            minloglevel=2,
        )
    finally:
        os.unlink(corpus)
    os.remove(model_prefix + ".vocab")  # a by-product: dict.txt is the vocabulary fairseq reads
    proc = spm.SentencePieceProcessor(model_file=model_prefix + ".model")
    return [proc.id_to_piece(i) for i in range(proc.get_piece_size()) if i != proc.unk_id()]


def write_dictionary(pieces, path):
    with open(path, "w", encoding="utf-8") as f:
        for piece in pieces:
            f.write(f"{piece} 1\n")


def roberta_cfg(layers, dim, heads, ffn, max_positions, data="."):
    """A complete fairseq config (as written by fairseq-train) for a small RoBERTa."""
    import warnings

    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    argv = [
        data, "--task", "masked_lm", "--arch", "roberta", "--criterion", "masked_lm",
        "--encoder-layers", str(layers), "--encoder-embed-dim", str(dim),
        "--encoder-attention-heads", str(heads), "--encoder-ffn-embed-dim", str(ffn),
        "--max-positions", str(max_positions), "--tokens-per-sample", str(max_positions),
        "--bpe", "sentencepiece", "--sentencepiece-model", "sentencepiece.bpe.model",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hydra's deprecation notices from fairseq's own compose call
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        cfg = OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True)
    # legacy (argparse) models keep a Namespace here; plain dicts load under weights_only
    for key, value in cfg.items():
        if isinstance(value, argparse.Namespace):
            cfg[key] = vars(value)
    return cfg


def make_tiny_base(out_dir, texts=None, layers=3, dim=32, heads=2, ffn=64, vocab_size=512, max_positions=128, seed=0):
    from argparse import Namespace

    from fairseq.models.roberta.model import RobertaEncoder, RobertaModel

    from ..data.dictionary import load_roberta_dictionary

    os.makedirs(out_dir, exist_ok=True)
    pieces = train_sentencepiece(texts or DEFAULT_TEXT, os.path.join(out_dir, "sentencepiece.bpe"), vocab_size)
    write_dictionary(pieces, os.path.join(out_dir, "dict.txt"))
    dictionary = load_roberta_dictionary(os.path.join(out_dir, "dict.txt"))
    cfg = roberta_cfg(layers, dim, heads, ffn, max_positions)
    torch.manual_seed(seed)
    model_args = Namespace(**cfg["model"])
    model = RobertaModel(model_args, RobertaEncoder(model_args, dictionary))
    state = {
        "args": None,
        "cfg": cfg,
        "model": model.state_dict(),
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam", "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {},
        "last_optimizer_state": None,
    }
    torch.save(state, os.path.join(out_dir, "model.pt"))
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out_dir")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--text", help="training text for the sentencepiece vocabulary, one sentence a line")
    a = p.parse_args(argv)
    texts = open(a.text, encoding="utf-8").read().splitlines() if a.text else None
    make_tiny_base(a.out_dir, texts, a.layers, a.dim, a.heads, a.ffn, a.vocab_size)
    print(f"wrote {a.out_dir}/model.pt, dict.txt, sentencepiece.bpe.model")


if __name__ == "__main__":
    main()
