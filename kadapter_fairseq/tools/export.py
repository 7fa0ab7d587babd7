"""``kadapter-export``: adapter-only checkpoint(s) out of a full ``fairseq-train`` checkpoint."""
import argparse
import sys

from ..errors import KAdapterError


def main(argv=None):
    p = argparse.ArgumentParser(prog="kadapter-export", description=__doc__)
    p.add_argument("checkpoint", help="checkpoint_best.pt / checkpoint_last.pt written by fairseq-train")
    p.add_argument("output", help="adapter checkpoint to write (.pt)")
    p.add_argument("--adapters", help="comma-separated adapter names (default: all)")
    p.add_argument("--include-fusion", action="store_true", help="also save the output-fusion weights")
    p.add_argument("--include-heads", action="store_true", help="also save the task heads")
    p.add_argument("--data-dir", help="binarized data directory, if it moved since training")
    p.add_argument("--roberta-path", help="base RoBERTa directory, if it moved since training")
    a = p.parse_args(argv)
    from .. import KAdapterHub

    try:
        hub = KAdapterHub.from_checkpoint(a.checkpoint, data_dir=a.data_dir, roberta_path=a.roberta_path)
        names = a.adapters.split(",") if a.adapters else None
        hub.save_adapters(a.output, names, a.include_fusion, a.include_heads)
    except KAdapterError as e:
        sys.exit(f"kadapter-export: {e}")
    print(f"wrote {a.output}: adapters {names or list(hub.model.adapters)}")


if __name__ == "__main__":
    main()
