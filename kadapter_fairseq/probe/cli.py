"""``kadapter-probe lama``: zero-shot LAMA / LAMA-UHN probe of a base with or without adapters.

    kadapter-probe lama --roberta-dir BASE --adapters fac=fac.pt --data LAMA/data --corpus TREx \\
        --compare --out probe_trex

Writes ``predictions.jsonl`` (one line per probed fact), ``results.json`` and ``results.md``
to ``--out``. See docs/probing.md.
"""
import argparse
import os
import sys

from ..errors import ConfigError, KAdapterError
from . import lama, report
from .run import FUSIONS, run_lama


def parse_adapters(spec):
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--adapters: expected name=path[,name=path...], got {item!r}")
        if name.strip() in out:
            raise ConfigError(f"--adapters names {name.strip()!r} twice")
        out[name.strip()] = path.strip()
    return out


def _fusion(value):
    if value == "add":
        raise argparse.ArgumentTypeError(
            "the probe's `add` readout is now called `delta` (h_L + Σ (a_K − s_K), the model's delta fusion): "
            "use --fusion delta. (The model's own `add` fusion, h_L + Σ a_K, is not a probe readout.)")
    return value


def build_parser():
    p = argparse.ArgumentParser(prog="kadapter-probe", description="Zero-shot probes of a base and its adapters.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("lama", help="LAMA / LAMA-UHN factual probe (the paper's Tables 5 and 6)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--roberta-dir", required=True, help="base directory: model.pt, dict.txt and its tokenizer files")
    q.add_argument("--adapters", default="", help="name=adapter.pt[,name=adapter.pt...]; none = the base alone")
    q.add_argument("--fusion", choices=FUSIONS, default="delta", type=_fusion,
                   help="how the adapters reach the LM head. delta (default): h_L + Σ (a_K − s_K), each adapter's output "
                        "minus what its skip connections alone carry, the model's `delta` fusion: it needs no trained "
                        "weights and gives the base's own predictions when an adapter adds nothing. concat: the model's "
                        "concat fusion with the weights saved in the adapter files (kadapter-export --include-fusion). "
                        "(KAdapterHub.from_pretrained defaults to concat, the fusion downstream fine-tuning trains; the "
                        "probe defaults to delta because the base's LM head has only ever seen h_L-like features.) "
                        "The name `add` was this readout's name before it became a model fusion; it is refused, since "
                        "the model's `add` is h_L + Σ a_K")
    precision = q.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                           help="fp32 (default); bf16: the model stored in bf16 once, scores over the vocabulary still in "
                                "fp32; auto: bf16 where the CPU has AMX/AVX512-BF16, else fp32")
    precision.add_argument("--bf16", action="store_const", const="bf16", dest="precision", help="same as --precision bf16")
    q.add_argument("--data", required=True, help="LAMA's data directory (relations.jsonl, TREx/, Google_RE/, ...)")
    q.add_argument("--corpus", required=True, choices=lama.CORPORA)
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--templates", dest="templates", action="store_true", default=None,
                      help="query with the relation templates (default for TREx and Google_RE)")
    mode.add_argument("--evidence", dest="templates", action="store_false",
                      help="query with the facts' own masked sentences (the only mode for ConceptNet and Squad)")
    q.add_argument("--uhn", action="store_true", help="LAMA-UHN: drop facts guessable from the entity name (both filters)")
    q.add_argument("--uhn-model", help="base directory judging the person-name filter (default: the probed base)")
    q.add_argument("--common-vocab", help="LAMA's common vocabulary file: rank only these words")
    q.add_argument("--top-k", type=int, default=10, help="generations kept per fact (default 10)")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--compare", action="store_true", help="also probe without the adapters, side by side (one base pass)")
    q.add_argument("--table6-rows", type=int, default=20, help="disagreements shown in results.md with --compare")
    q.add_argument("--out", required=True, help="output directory")
    return p


def options(a) -> dict:
    """``run_lama``'s keyword arguments from the parsed command line."""
    return dict(roberta_dir=a.roberta_dir, data=a.data, corpus=a.corpus, adapters=parse_adapters(a.adapters),
                fusion=a.fusion, precision=a.precision, templates=a.templates, uhn=a.uhn, uhn_model=a.uhn_model,
                common_vocab=a.common_vocab, top_k=a.top_k, batch_size=a.batch_size, compare=a.compare, out=a.out,
                table6_rows=a.table6_rows)


def probe_lama(a) -> dict:
    """The probe for parsed arguments: ``run_lama`` (kadapter_fairseq/probe/run.py), writing to ``--out``."""
    return run_lama(**options(a))


def summary(results: dict, out: str) -> str:
    """What the command prints: facts, skips, macro P@1 beside its chance level, and the time."""
    s = results["seconds"]
    line = f"macro P@1 {report.pct(results['macro_p@1'])}"
    if "without_adapters" in results:
        line = f"macro P@1 without adapters {report.pct(results['without_adapters']['macro_p@1'])}, with {report.pct(results['macro_p@1'])}"
    line += f" (chance, the majority baseline: {report.pct(results['macro_majority'])})"
    return (f"{results['corpus']}{' (UHN)' if results['uhn'] else ''}: {results['n_facts']} facts in "
            f"{results['n_relations']} relations, {sum(results['skipped'].values())} skipped"
            + (f", {sum(results['uhn_removed'].values())} removed by LAMA-UHN" if results["uhn"] else "") + f"; {line}\n"
            f"forward {s['forward']:.1f} s ({results['n_facts'] / max(s['forward'], 1e-9):.0f} facts/s), "
            f"total {sum(s.values()):.1f} s; wrote {os.path.join(out, 'results.md')}, results.json, predictions.jsonl")


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        results = probe_lama(a)
    except KAdapterError as e:
        sys.exit(f"kadapter-probe: {e}")
    print(summary(results, a.out))


if __name__ == "__main__":
    main()
