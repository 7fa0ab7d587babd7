"""roberta_kadapter through fairseq's own command line, with fairseq's built-in sentence_prediction
task: the architecture is accepted, the base stays bit-identical, checkpoints load back."""
import os
import subprocess
import sys

import pytest
import torch

from kadapter_fairseq.checkpoint_utils import load_adapter_file
from kadapter_fairseq.data.binarize import binarize

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def sentence_data(tiny_base, tmp_path_factory):
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("sp")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tiny_base, "sentencepiece.bpe.model"))
    words = "the river flows through city into sea Obama was born in Hawaii Paris capital France".split()
    g = torch.Generator().manual_seed(0)
    for split, n in [("train", 32), ("valid", 8)]:
        with open(root / f"{split}.in", "w") as f, open(root / f"{split}.lab", "w") as lab:
            for _ in range(n):
                s = " ".join(words[int(i)] for i in torch.randint(len(words), (6,), generator=g))
                f.write(" ".join(sp.encode(s, out_type=str)) + "\n")
                lab.write(("pos" if "Obama" in s else "neg") + "\n")
    binarize({"train": str(root / "train.in"), "valid": str(root / "valid.in")}, str(root / "bin/input0"), os.path.join(tiny_base, "dict.txt"))
    (root / "labels.txt").write_text("pos 1\nneg 1\n")
    binarize({"train": str(root / "train.lab"), "valid": str(root / "valid.lab")}, str(root / "bin/label"), str(root / "labels.txt"))
    return root


def run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_fairseq_train_accepts_roberta_kadapter(tiny_base, sentence_data, tmp_path):
    save = tmp_path / "ckpt"
    code, log = run(
        [
            os.path.join(BIN, "fairseq-train"), str(sentence_data / "bin"), "--user-dir", "kadapter_fairseq",
            "--task", "sentence_prediction", "--num-classes", "2", "--criterion", "sentence_prediction",
            "--arch", "roberta_kadapter_tiny", "--roberta-path", tiny_base, "--adapter-names", "fac,lin",
            "--train-phase", "knowledge", "--max-positions", "128", "--init-token", "0", "--separator-token", "2",
            "--batch-size", "8", "--optimizer", "adam", "--weight-decay", "0.1", "--lr", "1e-3",
            "--max-update", "4", "--save-dir", str(save), "--no-epoch-checkpoints", "--cpu", "--num-workers", "0",
        ],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert code == 0, log[-3000:]
    assert "RobertaKAdapterModel" in log
    # only adapters, fusion and head are in the optimizer
    line = next(l for l in log.splitlines() if "num. shared model params" in l)
    trained = int(line.split("num. trained: ")[1].split(")")[0].replace(",", ""))
    total = int(line.split("num. shared model params: ")[1].split(" ")[0].replace(",", ""))
    base = sum(v.numel() for k, v in torch.load(os.path.join(tiny_base, "model.pt"))["model"].items() if k.startswith("encoder.") and "lm_head.weight" not in k)
    assert trained < total and total - trained >= base - 1000

    state = torch.load(save / "checkpoint_last.pt")  # torch's weights_only default
    original = torch.load(os.path.join(tiny_base, "model.pt"))["model"]
    base_keys = [k for k in original if k.startswith("encoder.")]
    assert base_keys and all(torch.equal(state["model"][k], original[k]) for k in base_keys)

    from kadapter_fairseq import KAdapterHub

    hub = KAdapterHub.from_checkpoint(str(save / "checkpoint_last.pt"))
    assert "sentence_classification_head" in hub.model.heads
    assert hub.extract_features(hub.encode("Obama was born in Hawaii"))["fused"].shape[-1] == 32

    code, log = run([os.path.join(BIN, "kadapter-export"), str(save / "checkpoint_last.pt"), str(tmp_path / "fac.pt"), "--adapters", "fac"], tmp_path)
    assert code == 0, log[-2000:]
    exported = load_adapter_file(tmp_path / "fac.pt")
    assert list(exported["adapters"]) == ["fac"]
    sd = exported["adapters"]["fac"][1]
    assert all(torch.equal(v, state["model"]["adapters.fac." + k]) for k, v in sd.items())


def test_fp16_on_cpu_is_a_clear_error(tiny_base, sentence_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    code, log = run(
        [
            os.path.join(BIN, "fairseq-train"), str(sentence_data / "bin"), "--user-dir", "kadapter_fairseq",
            "--task", "sentence_prediction", "--num-classes", "2", "--criterion", "sentence_prediction",
            "--arch", "roberta_kadapter_tiny", "--roberta-path", tiny_base, "--max-positions", "128",
            "--batch-size", "8", "--optimizer", "adam", "--max-update", "1", "--save-dir", str(tmp_path), "--fp16",
        ],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert code != 0
    assert "kadapter-fairseq: --fp16 needs a CUDA GPU" in log and "bf16" in log
    assert "Traceback" not in log
    assert not list(tmp_path.iterdir())  # refused before fairseq started: its --save-dir was never made


def test_kadapter_train_rejects_cpu_setups_fairseq_would_run_wrongly():
    from omegaconf import OmegaConf

    from kadapter_fairseq.errors import ConfigError
    from kadapter_fairseq.runtime_checks import check_fairseq_train_argv, check_runtime

    def cfg(ws=1, **common):
        c = {"fp16": False, "memory_efficient_fp16": False, "amp": False, "bf16": False}
        c.update(common)
        return OmegaConf.create({"common": c, "distributed_training": {"distributed_world_size": ws}})

    check_runtime(cfg(), cuda_available=False)
    check_runtime(cfg(bf16=True), cuda_available=False)
    with pytest.raises(ConfigError, match="bf16"):
        check_runtime(cfg(fp16=True), cuda_available=False)
    with pytest.raises(ConfigError, match="silently run in fp32"):
        check_runtime(cfg(amp=True), cuda_available=False)
    check_runtime(cfg(ws=2), cuda_available=False)  # several CPU processes run over gloo (test_distributed.py)
    check_runtime(cfg(fp16=True, ws=2), cuda_available=True)

    check_fairseq_train_argv(["data", "--task", "x", "--cpu"], cuda_available=False)
    for argv, message in [
        (["--fp16"], "bf16"),
        (["--amp"], "silently run in fp32"),
        (["--bf16"], "--tpu"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check_fairseq_train_argv(["data"] + argv, cuda_available=False)
    check_fairseq_train_argv(["--fp16", "--distributed-world-size", "8"], cuda_available=True)


def test_kadapter_train_composes_a_defaults_list_config_and_checks_the_runtime(tiny_base, sentence_data, tmp_path):
    # a defaults list naming a kadapter task only works because kadapter-train imports the package first
    (tmp_path / "cfg.yaml").write_text(
        f"""
defaults:
  - task: relation_pretrain
  - _self_
task: {{_name: relation_pretrain}}
common: {{user_dir: kadapter_fairseq, cpu: true, log_format: simple}}
model: {{_name: roberta_kadapter_tiny, roberta_path: {tiny_base}, adapter_names: fac}}
optimizer: {{_name: adam}}
lr_scheduler: {{_name: fixed}}
optimization: {{max_update: 2, lr: [0.001]}}
dataset: {{batch_size: 8, num_workers: 0}}
checkpoint: {{save_dir: {tmp_path / 'ckpt'}, no_save: true}}
hydra: {{run: {{dir: .}}}}
"""
    )
    launcher = os.path.join(BIN, "kadapter-train")
    code, log = run([launcher, "--config-dir", str(tmp_path), "--config-name", "cfg", "task.data=/nowhere", "common.fp16=true"], tmp_path)
    assert code != 0 and "kadapter-train: common.fp16 needs a CUDA GPU" in log and "Traceback" not in log
    # typed override of a kadapter task field: a wrong type is caught by hydra against the dataclass
    code, log = run([launcher, "--config-dir", str(tmp_path), "--config-name", "cfg", "task.data=/nowhere", "task.max_positions=many"], tmp_path)
    assert code != 0 and "max_positions" in log and "RelationPretrainConfig" in log
