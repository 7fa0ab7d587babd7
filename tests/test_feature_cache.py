"""The base-feature cache (task.feature_cache): equality with uncached training, refusal of
stale caches, no trust in entries a killed run left unmarked, and the disk-room check.

Training runs in-process through fairseq's own ``train.main`` on the tiny base, so every
step's loss is read at full precision (from the criterion) instead of from rounded logs.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from kadapter_fairseq.data import feature_cache as fc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

WORDS = ["Obama", "Curie", "Turing", "Paris", "France", "Hawaii", "the big river", "a small town"]


def write_conllu(path, n_sentences=40):
    """Sentences of varied length (so batches are padded) with template heads."""
    with open(path, "w", encoding="utf-8") as f:
        for k in range(n_sentences):
            subj = WORDS[k % len(WORDS)].split()
            obj = WORDS[(k * 3 + 1) % len(WORDS)].split()
            words = subj + ["was", "born", "in"] + obj + ["."] * (1 + k % 3)
            verb = len(subj) + 2  # "born", 1-based
            heads = [verb] * len(subj) + [verb, 0, len(words) - len(obj) - (k % 3)] + [verb] * len(obj) + [verb] * (1 + k % 3)
            f.write(f"# sent_id = s{k}\n")
            for i, (w, h) in enumerate(zip(words, heads), 1):
                f.write(f"{i}\t{w}\t_\tX\tX\t_\t{h}\tdep\t_\t_\n")
            f.write("\n")


@pytest.fixture(scope="module")
def dep_data(tmp_path_factory, tiny_base):
    from data_prep import conllu as conllu_cli

    root = tmp_path_factory.mktemp("fcache")
    write_conllu(root / "heads.conllu")
    conllu_cli.main([str(root / "heads.conllu"), "--roberta-dir", tiny_base, "--out", str(root / "dep"),
                     "--valid-fraction", "0.25"])
    return str(root / "dep")


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory, tiny_base):
    """An adapter file for the efficient phase (random weights, far from the near-identity init)."""
    from omegaconf import OmegaConf

    from kadapter_fairseq.data.dictionary import load_roberta_dictionary
    from kadapter_fairseq.models.roberta_kadapter import ARCH_DEFAULTS, RobertaKAdapterConfig, RobertaKAdapterModel

    cfg = OmegaConf.structured(RobertaKAdapterConfig(roberta_path=tiny_base, adapter_names="lin"))
    for key, value in ARCH_DEFAULTS["roberta_kadapter_tiny"].items():
        cfg[key] = value
    torch.manual_seed(3)
    model = RobertaKAdapterModel.from_base(cfg, load_roberta_dictionary(os.path.join(tiny_base, "dict.txt"), "tiny base"))
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("adapter") / "lin.pt"
    model.save_adapters(str(path))
    return str(path)


def train(data, base, *extra, epochs=2, phase="knowledge", adapter_paths=""):
    """Train in-process; returns [(training?, loss)] for every criterion call, in order,
    and the number of base forward passes."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models.roberta.model import RobertaEncoder
    from fairseq_cli.train import main as train_main

    from kadapter_fairseq.criterions.dependency_head_prediction import DependencyHeadPredictionCriterion

    argv = [
        data, "--user-dir", os.path.join(REPO, "kadapter_fairseq"), "--task", "dependency_head_prediction",
        "--criterion", "dependency_head_prediction", "--arch", "roberta_kadapter_tiny", "--roberta-path", base,
        "--adapter-names", "lin", "--train-phase", phase, "--optimizer", "adam", "--lr", "3e-3",
        "--batch-size", "8", "--required-batch-size-multiple", "1", "--max-epoch", str(epochs), "--no-save", "--num-workers", "0",
        "--log-format", "none", "--seed", "1", "--cpu", "--adapter-dropout", "0", "--adapter-attention-dropout", "0",
        "--head-dropout", "0", *extra,
    ]
    if adapter_paths:
        argv += ["--adapter-paths", adapter_paths]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    args.tpu = False  # fairseq's argparse path turns --bf16 into a TPU run; common.bf16 under kadapter-train does not
    cfg = convert_namespace_to_omegaconf(args)
    losses, base_passes = [], [0]
    forward, extract = DependencyHeadPredictionCriterion.forward, RobertaEncoder.extract_features

    def recording_forward(self, model, sample, reduce=True):
        out = forward(self, model, sample, reduce)
        losses.append((model.training, out[0].item()))
        return out

    def counting_extract(self, *a, **k):
        base_passes[0] += 1
        return extract(self, *a, **k)

    DependencyHeadPredictionCriterion.forward = recording_forward
    RobertaEncoder.extract_features = counting_extract
    try:
        train_main(cfg)
    finally:
        DependencyHeadPredictionCriterion.forward = forward
        RobertaEncoder.extract_features = extract
    return losses, base_passes[0]


@pytest.fixture(scope="module")
def plain(dep_data, tiny_base):
    """Uncached knowledge-phase training, two epochs: the reference every cached run must match."""
    return train(dep_data, tiny_base)


def test_fp32_cache_is_bit_equal_and_skips_the_base(dep_data, tiny_base, plain, tmp_path):
    plain, plain_passes = plain
    cache = tmp_path / "cache"
    cached, cached_passes = train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32")
    assert len(cached) == len(plain) > 4
    assert cached == plain  # step by step, bit for bit
    # epoch 1 fills (one base pass per batch), epoch 2 reads: the base ran half as often
    assert plain_passes == len(plain) and cached_passes == len(plain) // 2
    manifest = json.loads((cache / "train" / fc.MANIFEST).read_text())
    assert manifest["key"]["slots"] == ["state.0", "state.1", "state.2", "last"]
    filled = np.fromfile(cache / "train" / fc.FILLED, dtype=np.uint8)
    assert filled.all() and len(filled) == manifest["examples"]


@pytest.mark.parametrize("dtype,tolerance", [("fp16", 2e-3), ("bf16", 2e-2)])
def test_half_precision_cache_matches_within_rounding(dep_data, tiny_base, plain, tmp_path, dtype, tolerance):
    plain, _ = plain
    cached, _ = train(dep_data, tiny_base, "--feature-cache", str(tmp_path / dtype), "--feature-cache-dtype", dtype)
    half = len(plain) // 2
    assert cached[:half] == plain[:half]  # epoch 1 runs on the computed features
    rel = [abs(c - p) / abs(p) for (_, c), (_, p) in zip(cached[half:], plain[half:])]
    assert max(rel) < tolerance, rel
    assert any(r > 0 for r in rel)  # the stored features really were rounded


def test_efficient_phase_caches_adapter_outputs(dep_data, tiny_base, adapter_file, tmp_path):
    plain, plain_passes = train(dep_data, tiny_base, phase="efficient", adapter_paths=f"lin={adapter_file}")
    cache = tmp_path / "cache"
    cached, cached_passes = train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32",
                                  phase="efficient", adapter_paths=f"lin={adapter_file}")
    assert cached == plain and cached_passes == len(plain) // 2
    key = json.loads((cache / "train" / fc.MANIFEST).read_text())["key"]
    assert key["slots"] == ["adapter.lin", "last"] and list(key["adapters"]) == ["lin"]

    # another adapter file behind the same name: refused, naming the adapter and its file
    changed = tmp_path / "lin2.pt"
    state = torch.load(adapter_file, weights_only=False)
    entry = state["adapters"]["lin"]
    entry["state_dict"] = {k: v + 0.01 for k, v in entry["state_dict"].items()}
    torch.save(state, changed)
    with pytest.raises(fc.FeatureCacheError, match=re.escape(f"is stale: adapter 'lin' changed (adapter file {changed})")):
        train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32",
              phase="efficient", adapter_paths=f"lin={changed}")


def test_stale_cache_is_refused_with_the_reason(dep_data, tiny_base, other_tiny_base, tmp_path):
    data = tmp_path / "dep"
    shutil.copytree(dep_data, data)
    cache = tmp_path / "cache"
    train(str(data), tiny_base, "--feature-cache", str(cache), epochs=1)
    opts = ("--feature-cache", str(cache))
    with pytest.raises(fc.FeatureCacheError, match=r"stale: it stores fp16 but task.feature_cache_dtype=bf16"):
        train(str(data), tiny_base, *opts, "--feature-cache-dtype", "bf16", epochs=1)
    with pytest.raises(fc.FeatureCacheError, match=r"stale: it was built from another base model"):
        train(str(data), other_tiny_base, *opts, epochs=1)
    with pytest.raises(fc.FeatureCacheError, match=r"plug-in points or adapters differ"):
        train(str(data), tiny_base, *opts, "--adapter-plug-layers", "0,2", epochs=1)
    # features from an fp32 base are not what a bf16 run's base computes, whatever the storage type
    with pytest.raises(fc.FeatureCacheError, match=r"filled by a model computing in fp32, this run computes in bf16"):
        train(str(data), tiny_base, *opts, "--bf16", epochs=1)
    os.utime(data / "input0" / "train.bin", ns=(1, 1))  # re-binarized data: same bytes, new file
    with pytest.raises(fc.FeatureCacheError, match=re.escape(f"stale: data file {data}/input0/train.bin changed")):
        train(str(data), tiny_base, *opts, epochs=1)


def test_finetune_phase_is_refused(dep_data, tiny_base, tmp_path):
    from kadapter_fairseq.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train_phase=finetune trains the base"):
        train(dep_data, tiny_base, "--feature-cache", str(tmp_path / "c"), phase="finetune", epochs=1)


def killed_fill_script(data, base, cache):
    return textwrap.dedent(f"""
        import time
        import numpy as np
        import torch
        from omegaconf import OmegaConf
        import kadapter_fairseq  # noqa: F401
        from fairseq import tasks
        from kadapter_fairseq.data import feature_cache as fc

        task = tasks.setup_task(OmegaConf.create({{"_name": "dependency_head_prediction", "data": {data!r}, "seed": 1,
                                                  "feature_cache": {cache!r}, "feature_cache_dtype": "fp32"}}))
        model = task.build_model(OmegaConf.create({{"_name": "roberta_kadapter_tiny", "roberta_path": {base!r},
                                                   "adapter_names": "lin", "train_phase": "knowledge"}}))
        task.load_dataset("train")
        # the training run's batches (features computed in other batches may differ in the last bit)
        itr = task.get_batch_iterator(task.dataset("train"), max_sentences=8).next_epoch_itr(shuffle=False)
        task.feature_cache.commit_interval_s = 0.0  # mark after every batch
        for n, sample in enumerate(itr):
            if n == 2:
                task.feature_cache.commit_interval_s = float("inf")  # written from here on, never marked
            task.feature_cache.fill(sample, model)
            if n == 2:
                break
        store = task.feature_cache.stores["train"]
        # the worst a kill can leave: unmarked examples whose bytes are garbage
        unmarked = np.repeat(np.asarray(store._filled) == 0, store.sizes)
        store._data[unmarked] = 1e4
        store._data.flush()
        print("READY", int(np.count_nonzero(store._filled)), len(store), flush=True)
        time.sleep(600)
    """)


def test_killed_fill_leaves_no_trusted_half_written_entry(dep_data, tiny_base, plain, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", killed_fill_script(dep_data, tiny_base, str(cache))],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), line + proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    _, marked, total = line.split()
    assert 0 < int(marked) < int(total)  # killed mid-way: some examples marked, the rest garbage

    plain, _ = plain
    resumed, passes = train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32")
    assert resumed == plain  # the garbage was never read
    assert 0 < passes < len(plain) // 2  # the marked examples were read, the others computed
    assert np.fromfile(cache / "train" / fc.FILLED, dtype=np.uint8).all()


def test_creation_that_died_before_its_manifest_starts_over(dep_data, tiny_base, plain, tmp_path):
    cache = tmp_path / "cache"
    (cache / "train").mkdir(parents=True)
    # files of a creation killed before the manifest was renamed into place: marks that claim everything
    (cache / "train" / fc.FILLED).write_bytes(b"\x01" * 1000)
    (cache / "train" / fc.FEATURES).write_bytes(b"\xff" * 1000)
    first_epoch = plain[0][: len(plain[0]) // 2]
    cached, passes = train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32", epochs=1)
    assert cached == first_epoch and passes == len(first_epoch)


def test_disk_room_is_checked_before_writing(dep_data, tiny_base, tmp_path, monkeypatch, capsys):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(fc.shutil, "disk_usage", lambda path: usage(100, 90, 10))
    from kadapter_fairseq.tasks.base import load_source, load_task_dictionary

    src = load_source(dep_data, "valid", load_task_dictionary(dep_data))  # opened first: valid loads before train
    tokens = int(src.sizes.sum())
    need = tokens * 4 * 32 * 2  # tokens × (3 plug-in states + last layer) × H=32 × fp16
    with pytest.raises(fc.FeatureCacheError, match=rf"needs {need} bytes .*{tokens} tokens × 4 states × H=32 × 2 bytes.* only 10 bytes"):
        train(dep_data, tiny_base, "--feature-cache", str(tmp_path / "cache"), epochs=1)
    assert not (tmp_path / "cache" / "valid" / fc.MANIFEST).exists()


def test_kadapter_cache_fills_ahead_of_training(dep_data, tiny_base, plain, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [os.path.join(BIN, "kadapter-cache"), "--config-dir", os.path.join(REPO, "configs"),
         "--config-name", "dependency_head_prediction_cpu", f"task.data={dep_data}", f"model.roberta_path={tiny_base}",
         f"task.feature_cache={cache}", "task.feature_cache_dtype=fp32", "dataset.batch_size=8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"feature cache \S+/train: \d+ examples, \d+ tokens × 4 states × H=32 × 4 bytes \(fp32\) = \d+ bytes",
                     proc.stdout)
    assert re.search(r"kadapter-cache: \S+/valid: (\d+)/\1 examples cached", proc.stdout)
    cached, passes = train(dep_data, tiny_base, "--feature-cache", str(cache), "--feature-cache-dtype", "fp32")
    assert cached == plain[0] and passes == 0  # the base never ran during training

    # common.bf16: the fill stores the base in bf16 once, as the training run will; that run finds it complete
    cache16 = tmp_path / "cache16"
    proc = subprocess.run(
        [os.path.join(BIN, "kadapter-cache"), "--config-dir", os.path.join(REPO, "configs"),
         "--config-name", "dependency_head_prediction_cpu", f"task.data={dep_data}", f"model.roberta_path={tiny_base}",
         f"task.feature_cache={cache16}", "task.feature_cache_dtype=bf16", "dataset.batch_size=8", "common.bf16=true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((cache16 / "train" / fc.MANIFEST).read_text())["key"]["compute"] == "bf16"
    _, passes = train(dep_data, tiny_base, "--feature-cache", str(cache16), "--feature-cache-dtype", "bf16", "--bf16")
    assert passes == 0
