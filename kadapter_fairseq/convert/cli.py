"""``kadapter-convert``: bring your own weights.

    kadapter-convert hf-roberta SRC DEST                      # HF RoBERTa dir -> fairseq RoBERTa dir
    kadapter-convert kadapter-adapter CKPT OUT --layers 0,11,22 # released adapter -> adapter checkpoint
    kadapter-convert fairseq-roberta SRC DEST                 # fairseq roberta.large/ -> checked, self-contained dir
    kadapter-convert check-base DIR                           # can DIR serve as model.roberta_path?
"""
import argparse
import json
import logging
import sys

from ..errors import KAdapterError


def _layers(text):
    try:
        layers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices like 0,11,22, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("at least one plug-in layer is needed")
    return layers


def build_parser():
    p = argparse.ArgumentParser(prog="kadapter-convert", description="Convert third-party weights into kadapter-fairseq's formats (nothing is downloaded).")
    sub = p.add_subparsers(dest="command", required=True)

    hf = sub.add_parser("hf-roberta", help="Hugging Face RoBERTa directory -> fairseq RoBERTa directory")
    hf.add_argument("src", help="HF directory: config.json, pytorch_model.bin or model.safetensors, vocab.json + merges.txt")
    hf.add_argument("dest", help="output directory: model.pt, dict.txt, encoder.json, vocab.bpe, conversion.json")
    hf.add_argument("--force", action="store_true", help="write into a non-empty DEST")
    hf.add_argument("--verify", dest="verify", action="store_true", default=None,
                    help="compare hidden states with the source model (needs transformers; default: when installed)")
    hf.add_argument("--no-verify", dest="verify", action="store_false")
    hf.add_argument("--allow-eps-mismatch", action="store_true",
                    help="convert a model whose layer_norm_eps is not fairseq's 1e-5 (its outputs will differ)")

    ad = sub.add_parser("kadapter-adapter", help="adapter pytorch_model.bin from the authors' release -> adapter checkpoint")
    ad.add_argument("ckpt", help="the released adapter's pytorch_model.bin")
    ad.add_argument("out", help="output adapter checkpoint (.pt)")
    ad.add_argument("--layers", type=_layers, required=True, help="base hidden states the adapter layers read, e.g. 0,11,22 (released)")
    ad.add_argument("--adapter-heads", type=int, default=12, help="attention heads inside the adapter (not readable from shapes; released: 12)")
    ad.add_argument("--layer-norm-eps", type=float, default=1e-5, help="adapter LayerNorm eps (released: 1e-5)")
    ad.add_argument("--name", help="adapter name stored in the file (default: fac/lin guessed from the path, else 'adapter')")
    ad.add_argument("--base", help="check the adapter fits this base (RoBERTa dir or model.pt) before writing")
    ad.add_argument("--force", action="store_true", help="overwrite OUT")

    fs = sub.add_parser("fairseq-roberta", help="fairseq roberta.base/roberta.large dir -> self-contained, weights_only-loadable dir")
    fs.add_argument("src", help="directory with model.pt and dict.txt")
    fs.add_argument("dest", help="output directory")
    _bpe_args(fs)
    fs.add_argument("--force", action="store_true", help="write into a non-empty DEST")

    ck = sub.add_parser("check-base", help="check that a directory can serve as model.roberta_path")
    ck.add_argument("dir")
    _bpe_args(ck)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _bpe_args(p):
    p.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json (when not inside the directory)")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe (when not inside the directory)")
    p.add_argument("--sentencepiece-model", help="sentencepiece model (instead of GPT-2 BPE)")


def _bpe_kwargs(a):
    return dict(gpt2_encoder_json=a.gpt2_encoder_json, gpt2_vocab_bpe=a.gpt2_vocab_bpe, sentencepiece_model=a.sentencepiece_model)


def run(a):
    if a.command == "hf-roberta":
        from .hf_roberta import convert_hf_roberta

        r = convert_hf_roberta(a.src, a.dest, overwrite=a.force, verify=a.verify, allow_eps_mismatch=a.allow_eps_mismatch)
        m = r.model_args
        print(f"wrote {a.dest}: {m['encoder_layers']} layers, H={m['encoder_embed_dim']}, {r.vocab_rows} tokens, max_positions {m['max_positions']}")
        print(f"  LM head: {r.lm_head}")
        for k, why in sorted(r.dropped.items()):
            print(f"  dropped {k}: {why}")
        for note in r.notes:
            print(f"  note: {note}")
        if r.max_abs_diff is None:
            print("  not verified against the source (install transformers or pass --verify)")
        else:
            print(f"  verified: max |hidden state difference| vs the source = {r.max_abs_diff:.2e}")
    elif a.command == "kadapter-adapter":
        from .released_adapter import convert_released_adapter

        r = convert_released_adapter(a.ckpt, a.out, a.layers, heads=a.adapter_heads, layer_norm_eps=a.layer_norm_eps,
                                     name=a.name, base=a.base, overwrite=a.force)
        print(f"wrote {a.out}: adapter {r.name!r} " + json.dumps(r.arch))
        if r.skipped:
            print(f"  skipped {len(r.skipped)} pre-training head tensor(s): {', '.join(r.skipped)}")
        print(f"  load it with: KAdapterHub.from_pretrained(BASE_DIR, adapters={{{r.name!r}: {a.out!r}}})")
    elif a.command == "fairseq-roberta":
        from .fairseq_roberta import repack_roberta_dir

        r = repack_roberta_dir(a.src, a.dest, overwrite=a.force, **_bpe_kwargs(a))
        print(f"wrote {a.dest}: {r.summary}")
        for note in r.notes:
            print(f"  note: {note}")
    elif a.command == "check-base":
        from .fairseq_roberta import check_roberta_dir

        r = check_roberta_dir(a.dir, **_bpe_kwargs(a))
        print(f"OK {a.dir}: {r.summary}")
        for note in r.notes:
            print(f"  note: {note}")


def main(argv=None):
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(a)
    except KAdapterError as e:
        print(f"kadapter-convert {a.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
