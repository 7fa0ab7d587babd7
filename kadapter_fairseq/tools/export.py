"""``kadapter-export``: adapter-only checkpoint(s), or with ``--base`` the trained RoBERTa as a base
directory, out of a full ``fairseq-train`` checkpoint.

    kadapter-export checkpoints/fac/checkpoint_best.pt fac.pt
    kadapter-export --base checkpoints/multitask/checkpoint_best.pt multitask-base/
"""
import argparse
import sys

from ..errors import KAdapterError


def main(argv=None):
    p = argparse.ArgumentParser(prog="kadapter-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint_best.pt / checkpoint_last.pt written by fairseq-train")
    p.add_argument("output", help="adapter checkpoint to write (.pt), or with --base the base directory to write")
    p.add_argument("--base", action="store_true",
                   help="export the checkpoint's trained RoBERTa (train_phase full or finetune, e.g. the multitask "
                   "baseline) as a base directory (model.pt, dict.txt, tokenizer files) for model.roberta_path")
    p.add_argument("--adapters", help="comma-separated adapter names (default: all)")
    p.add_argument("--include-fusion", action="store_true", help="also save the output-fusion weights")
    p.add_argument("--include-heads", action="store_true", help="also save the task heads")
    p.add_argument("--data-dir", help="binarized data directory, if it moved since training")
    p.add_argument("--roberta-path", help="base RoBERTa directory the checkpoint was trained from, if it moved since training")
    p.add_argument("--force", action="store_true", help="with --base: overwrite an existing OUTPUT/model.pt")
    a = p.parse_args(argv)
    from ..distributed import get_rank, is_master

    if not is_master():  # started once per rank by torchrun/srun: rank 0 alone writes the output
        print(f"kadapter-export: rank {get_rank()}: rank 0 writes {a.output}", file=sys.stderr)
        return
    if a.base:
        if a.adapters or a.include_fusion or a.include_heads or a.data_dir:
            p.error("--base exports the RoBERTa only: --adapters, --include-fusion, --include-heads "
                    "and --data-dir do not apply")
        return _export_base(a)
    from .. import KAdapterHub

    try:
        hub = KAdapterHub.from_checkpoint(a.checkpoint, data_dir=a.data_dir, roberta_path=a.roberta_path)
        names = a.adapters.split(",") if a.adapters else None
        hub.save_adapters(a.output, names, a.include_fusion, a.include_heads)
    except KAdapterError as e:
        sys.exit(f"kadapter-export: {e}")
    print(f"wrote {a.output}: adapters {names or list(hub.model.adapters)}")


def _export_base(a):
    import kadapter_fairseq  # noqa: F401  (the package's narrow torch.load allow-list)

    from .export_base import export_base

    try:
        record = export_base(a.checkpoint, a.output, roberta_path=a.roberta_path, force=a.force)
    except KAdapterError as e:
        sys.exit(f"kadapter-export: {e}")
    print(f"wrote {a.output}: {', '.join(record['files'])} (RoBERTa after {record['num_updates']} updates of "
          f"train_phase={record['train_phase']}; {record['tensors_changed']} of {record['tensors']} tensors differ "
          f"from {record['original_base']})")
    print(f"  fingerprint {record['fingerprint']['weights'][:12]} "
          f"(original base {record['original_fingerprint']['weights'][:12]})")
    if not record["tokenizer_copied"]:
        print(f"  note: {record['original_base']} has no tokenizer files (encoder.json + vocab.bpe or "
              "sentencepiece.bpe.model); copy them into the new directory or pass them to the converters")


if __name__ == "__main__":
    main()
