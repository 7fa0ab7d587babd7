"""``kadapter-export``: adapter-only checkpoint(s), or with ``--base`` the trained RoBERTa as a base
directory, out of a full ``fairseq-train`` checkpoint; or with ``--random`` an untrained adapter file.

    kadapter-export checkpoints/fac/checkpoint_best.pt fac.pt
    kadapter-export --base checkpoints/multitask/checkpoint_best.pt multitask-base/
    kadapter-export --random fac --roberta-path BASE --seed 1 --arch roberta_kadapter_tiny fac-random.pt

``--random`` writes adapters as a model initialises them before any training, with their concat
fusion (so the file serves the ``delta`` and the ``concat`` readout alike): ``torch.manual_seed(SEED)``,
then the model is built around the base (``KAdapterHub.from_pretrained``) with the architecture of
``--arch`` and ``--set adapter_*=value`` overrides. The same seed, base and options give the same
file. It is the untrained control of a probe (kadapter-experiment: a ``random`` adapter slot).
"""
import argparse
import sys

from ..errors import KAdapterError


def main(argv=None):
    p = argparse.ArgumentParser(prog="kadapter-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="checkpoint_best.pt / checkpoint_last.pt written by fairseq-train "
                   "(with --random: give only the output)")
    p.add_argument("output", nargs="?", help="adapter checkpoint to write (.pt), or with --base the base directory to write")
    p.add_argument("--base", action="store_true",
                   help="export the checkpoint's trained RoBERTa (train_phase full or finetune, e.g. the multitask "
                   "baseline) as a base directory (model.pt, dict.txt, tokenizer files) for model.roberta_path")
    p.add_argument("--adapters", help="comma-separated adapter names (default: all)")
    p.add_argument("--include-fusion", action="store_true", help="also save the output-fusion weights")
    p.add_argument("--include-heads", action="store_true", help="also save the task heads")
    p.add_argument("--data-dir", help="binarized data directory, if it moved since training")
    p.add_argument("--roberta-path", help="base RoBERTa directory the checkpoint was trained from, if it moved since training")
    p.add_argument("--force", action="store_true", help="with --base: overwrite an existing OUTPUT/model.pt")
    r = p.add_argument_group("an untrained adapter (--random)")
    r.add_argument("--random", metavar="NAMES", help="comma-separated names of randomly initialised adapters to write "
                   "(needs --roberta-path and --seed; the only positional argument is the output file)")
    r.add_argument("--seed", type=int, help="--random: torch's seed before the model is built")
    r.add_argument("--arch", default="roberta_kadapter_large", help="--random: the model architecture whose adapter "
                   "sizes apply (default roberta_kadapter_large)")
    r.add_argument("--set", dest="settings", action="append", default=[], metavar="adapter_KEY=VALUE",
                   help="--random: an adapter setting of the model config (e.g. adapter_down_dim=32); repeatable")
    a = p.parse_args(argv)
    if a.random is not None:
        if a.output is not None or a.checkpoint is None:
            p.error("--random takes one positional argument, the adapter file to write")
        if a.roberta_path is None or a.seed is None:
            p.error("--random needs --roberta-path (the base) and --seed")
        if a.base or a.adapters or a.include_fusion or a.include_heads or a.data_dir or a.force:
            p.error("--random writes untrained adapters (with their fusion): --base, --adapters, --include-fusion, "
                    "--include-heads, --data-dir and --force do not apply")
    elif a.checkpoint is None or a.output is None:
        p.error("the following arguments are required: checkpoint, output")
    elif a.seed is not None or a.settings or a.arch != "roberta_kadapter_large":
        p.error("--seed, --arch and --set apply to --random only")
    from ..distributed import get_rank, is_master

    if not is_master():  # started once per rank by torchrun/srun: rank 0 alone writes the output
        print(f"kadapter-export: rank {get_rank()}: rank 0 writes {a.output}", file=sys.stderr)
        return
    if a.random is not None:
        return _export_random(a)
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


def random_settings(settings) -> dict:
    """``--set adapter_KEY=VALUE`` items as model-config values of the field's type."""
    from dataclasses import fields

    from ..errors import ConfigError
    from ..models.roberta_kadapter import RobertaKAdapterConfig

    known = {f.name: f for f in fields(RobertaKAdapterConfig) if f.name.startswith("adapter_")
             and f.name not in ("adapter_names", "adapter_paths", "adapter_fusion")}
    out = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"--set: expected adapter_KEY=VALUE with KEY one of "
                              f"{', '.join(sorted(k[len('adapter_'):] for k in known))}, got {item!r}")
        default = known[key].default
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                out[key] = value.lower() == "true"
            elif isinstance(default, (int, float)):
                out[key] = type(default)(value)
            else:
                out[key] = value
        except ValueError:
            raise ConfigError(f"--set {key}: expected a {type(default).__name__}, got {value!r}") from None
    return out


def _export_random(a):
    import torch

    from .. import KAdapterHub

    names = [n.strip() for n in a.random.split(",") if n.strip()]
    try:
        if not names or len(set(names)) != len(names):
            raise KAdapterError(f"--random: expected distinct adapter names, got {a.random!r}")
        settings = random_settings(a.settings)
        torch.manual_seed(a.seed)
        hub = KAdapterHub.from_pretrained(a.roberta_path, adapters={n: None for n in names}, fusion="concat",
                                          arch=a.arch, **settings)
        hub.save_adapters(a.checkpoint, include_fusion=True)
    except KAdapterError as e:
        sys.exit(f"kadapter-export: {e}")
    print(f"wrote {a.checkpoint}: untrained adapters {names} (seed {a.seed}) with their concat fusion")


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
