"""``kadapter-cache``: fill the base-feature cache ahead of training.

Takes the training command's config and overrides, so the cache it writes is
the one the training run will find (same model, data and ``task.feature_cache``)::

    kadapter-cache --config-dir configs --config-name relation_pretrain_cpu \\
        task.data=data-bin/trex model.roberta_path=roberta.large task.feature_cache=cache/trex

It fills ``train`` and the ``dataset.valid_subset`` splits (``--splits`` picks
others), printing the size of each cache before writing it. An interrupted run
leaves only complete, marked examples behind; running it again fills the rest.
Without this command a training run fills the cache during its first epoch.
"""
import argparse
import logging
import os
import sys
import time

from ..errors import KAdapterError

logger = logging.getLogger("kadapter_fairseq.tools.cache")


def compose_config(config_dir: str, config_name: str, overrides):
    """The config ``kadapter-train`` would run with (fairseq's schema, task/model defaults filled)."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    hydra_init(config_name)
    # version_base 1.1: hydra keeps its version base process-wide, and fairseq's own Namespace->config
    # conversion (hydra.experimental.initialize) refuses to run once it is 1.2 or later
    with initialize_config_dir(config_dir=os.path.abspath(config_dir), version_base="1.1"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    add_defaults(cfg)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def fill_split(task, model, cfg, split: str, use_cuda: bool) -> dict:
    """Iterate one split in order and cache every example not cached yet."""
    import torch
    from fairseq import utils

    task.load_dataset(split, combine=False, epoch=1)
    dataset = task.dataset(split)
    itr = task.get_batch_iterator(
        dataset=dataset,
        max_tokens=cfg.dataset.max_tokens,
        max_sentences=cfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=cfg.dataset.skip_invalid_size_inputs_valid_test,
        required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
        seed=cfg.common.seed,
        num_workers=cfg.dataset.num_workers,
        data_buffer_size=cfg.dataset.data_buffer_size,
    ).next_epoch_itr(shuffle=False)
    start, computed, batches = time.perf_counter(), 0, 0
    for sample in itr:
        if use_cuda:
            sample = utils.move_to_cuda(sample)
        with torch.no_grad():
            computed += task.feature_cache.fill(sample, model)
        batches += 1
    task.feature_cache.commit()
    return {"batches": batches, "computed": computed, "seconds": time.perf_counter() - start}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="kadapter-cache",
        description="Fill the base-feature cache (task.feature_cache) ahead of training, from the training config.",
    )
    parser.add_argument("--config-dir", required=True, help="directory of the training configs (as for kadapter-train)")
    parser.add_argument("--config-name", required=True, help="training config name, without .yaml")
    parser.add_argument("--splits", default=None, help="comma-separated splits (default: train and dataset.valid_subset)")
    parser.add_argument("--commit-every", type=float, default=None, metavar="SECONDS",
                        help="mark finished examples at least this often (default: the training default, 30 s)")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, e.g. task.data=... task.feature_cache=DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout)

    import kadapter_fairseq  # noqa: F401  (registers the tasks and models before the config is composed)

    try:
        import torch
        from fairseq import tasks

        cfg = compose_config(args.config_dir, args.config_name, args.overrides)
        if not cfg.task.get("feature_cache"):
            raise KAdapterError("task.feature_cache is not set: name the cache directory, e.g. task.feature_cache=cache/train")
        task = tasks.setup_task(cfg.task)
        if args.commit_every is not None:
            task.feature_cache.commit_interval_s = args.commit_every
        model = task.build_model(cfg.model)
        use_cuda = torch.cuda.is_available() and not cfg.common.cpu
        # cast once, as fairseq's Trainer will for the training run: the cache holds what that run's base computes
        # (its key records the precision, so a run in another precision refuses it)
        if cfg.common.bf16:
            model = model.bfloat16()
        elif cfg.common.fp16 and use_cuda:
            model = model.half()
        logger.info(f"computing the cached features in {next(model.parameters()).dtype}")
        model.eval()
        if use_cuda:
            model = model.cuda()
        splits = args.splits.split(",") if args.splits else ["train"] + cfg.dataset.valid_subset.split(",")
        for split in filter(None, (s.strip() for s in splits)):
            result = fill_split(task, model, cfg, split, use_cuda)
            for name, store in task.feature_cache.stores.items():
                if name == split or name.startswith(f"{split}.") or name.endswith(f"-{split}"):
                    print(
                        f"kadapter-cache: {store.path}: {store.filled_count()}/{len(store)} examples cached "
                        f"({result['computed']} computed now, {result['batches']} batches, {result['seconds']:.1f} s)"
                    )
    except KAdapterError as e:
        sys.exit(f"kadapter-cache: {e}")


if __name__ == "__main__":
    main()
