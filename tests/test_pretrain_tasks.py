"""Knowledge pre-training end to end on CPU: converters -> fairseq-train / fairseq-hydra-train.

Synthetic, learnable data (the relation is given away by the verb; heads follow
fixed templates) so a few epochs of the tiny base show the validation loss fall.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from kadapter_fairseq.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

SUBJECTS = ["Barack Obama", "Marie Curie", "Alan Turing", "The river", "The city", "Mount Everest"]
OBJECTS = ["Hawaii", "Paris", "France", "Cambridge", "Honolulu", "the sea"]
TEMPLATES = {"P19": "{s} was born in {o} .", "P131": "{s} is located in {o} .", "P166": "{s} won the Nobel Prize in {o} ."}


def trex_jsonl(path):
    import json

    with open(path, "w", encoding="utf-8") as f:
        n = 0
        for rel, template in TEMPLATES.items():
            for s in SUBJECTS:
                for o in OBJECTS:
                    text = template.format(s=s, o=o)
                    sb, ob = text.index(s), text.rindex(o)
                    triple = {"subject": {"boundaries": [sb, sb + len(s)], "surfaceform": s},
                              "object": {"boundaries": [ob, ob + len(o)], "surfaceform": o},
                              "predicate": {"uri": rel}}
                    f.write(json.dumps({"docid": str(n), "text": text, "triples": [triple]}) + "\n")
                    n += 1


def conllu(path):
    sentences = []
    for s in ["Obama", "Curie", "Turing", "Paris", "France", "Hawaii"]:
        for o in ["Hawaii", "Paris", "France", "Cambridge", "Honolulu"]:
            sentences.append(([s, "was", "born", "in", o, "."], [3, 3, 0, 5, 3, 3]))
            sentences.append((["The", "river", "flows", "through", o, "."], [2, 3, 0, 5, 3, 3]))
    with open(path, "w", encoding="utf-8") as f:
        for k, (words, heads) in enumerate(sentences):
            f.write(f"# sent_id = s{k}\n")
            for i, (w, h) in enumerate(zip(words, heads), 1):
                f.write(f"{i}\t{w}\t_\tX\tX\t_\t{h}\tdep\t_\t_\n")
            f.write("\n")


@pytest.fixture(scope="module")
def knowledge_data(tmp_path_factory, tiny_base):
    from data_prep import conllu as conllu_cli
    from data_prep import trex as trex_cli

    root = tmp_path_factory.mktemp("knowledge")
    trex_jsonl(root / "trex.jsonl")
    conllu(root / "heads.conllu")
    trex_cli.main([str(root / "trex.jsonl"), "--roberta-dir", tiny_base, "--out", str(root / "rel"),
                   "--min-count", "5", "--valid-fraction", "0.2"])
    conllu_cli.main([str(root / "heads.conllu"), "--roberta-dir", tiny_base, "--out", str(root / "dep"),
                     "--valid-fraction", "0.2"])
    return {"rel": str(root / "rel"), "dep": str(root / "dep"), "base": tiny_base, "root": root}


def run(cmd, cwd=REPO):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def valid_values(log, key):
    lines = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    return [float(m.group(1)) for m in (re.search(rf"\| {key} ([0-9.]+)", line) for line in lines) if m]


def assert_base_unchanged(base_dir, checkpoint):
    base = torch.load(os.path.join(base_dir, "model.pt"), map_location="cpu", weights_only=False)["model"]
    trained = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    keys = [k for k in base if k.startswith("encoder.")]
    assert keys
    for k in keys:
        assert torch.equal(base[k], trained[k]), f"base weight {k} changed"


def test_relation_pretrain_fairseq_train(knowledge_data, tmp_path):
    save = tmp_path / "ckpt"
    log = run([
        os.path.join(BIN, "fairseq-train"), knowledge_data["rel"], "--user-dir", "kadapter_fairseq",
        "--task", "relation_pretrain", "--criterion", "relation_pretrain", "--arch", "roberta_kadapter_tiny",
        "--roberta-path", knowledge_data["base"], "--adapter-names", "fac", "--train-phase", "knowledge",
        "--optimizer", "adam", "--lr", "3e-3", "--batch-size", "16", "--max-epoch", "4",
        "--save-dir", str(save), "--no-epoch-checkpoints", "--num-workers", "0", "--log-format", "simple",
        "--seed", "1", "--cpu",
    ])
    losses = valid_values(log, "loss")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert "macro_f1" in log and "micro_f1" in log
    assert_base_unchanged(knowledge_data["base"], save / "checkpoint_last.pt")
    adapter = torch.load(save / "adapters" / "fac.pt", map_location="cpu", weights_only=False)
    assert list(adapter["adapters"]) == ["fac"]


def hydra(config, *overrides):
    # run from a temporary directory (hydra writes hydra_train.log into the run dir)
    return [os.path.join(BIN, "fairseq-hydra-train"), "--config-dir", os.path.join(REPO, "configs"),
            "--config-name", config, f"common.user_dir={os.path.join(REPO, 'kadapter_fairseq')}", *overrides]


def test_dependency_head_prediction_hydra(knowledge_data, tmp_path):
    save = tmp_path / "ckpt"
    log = run(hydra("dependency_head_prediction_cpu", f"task.data={knowledge_data['dep']}",
                    f"model.roberta_path={knowledge_data['base']}", f"checkpoint.save_dir={save}",
                    "optimization.max_epoch=4", "dataset.batch_size=16", "optimization.lr=[3e-3]"), cwd=tmp_path)
    losses = valid_values(log, "loss")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    uas = valid_values(log, "uas")
    assert uas and all(0 <= v <= 1 for v in uas), "metrics are fractions, as kadapter-score reports them"
    assert_base_unchanged(knowledge_data["base"], save / "checkpoint_last.pt")
    assert (save / "adapters" / "lin.pt").is_file()


def test_relation_pretrain_hydra_bf16(knowledge_data, tmp_path):
    save = tmp_path / "ckpt"
    log = run(hydra("relation_pretrain_cpu", f"task.data={knowledge_data['rel']}",
                    f"model.roberta_path={knowledge_data['base']}", f"checkpoint.save_dir={save}",
                    "optimization.max_update=3", "common.bf16=true"), cwd=tmp_path)
    accuracy = valid_values(log, "accuracy")
    assert accuracy and all(0 <= v <= 1 for v in accuracy)
    assert (save / "adapters" / "fac.pt").is_file()


def test_multitask_baseline_trains_base(knowledge_data, tmp_path):
    save = tmp_path / "ckpt"
    log = run(hydra("multitask_cpu", f"task.data={knowledge_data['rel']}", f"task.dependency_data={knowledge_data['dep']}",
                    f"model.roberta_path={knowledge_data['base']}", f"checkpoint.save_dir={save}",
                    "optimization.max_update=3"), cwd=tmp_path)
    for key in ("rel_loss", "dep_loss", "uas", "accuracy"):
        assert valid_values(log, key), key
    trained = re.search(r"num\. shared model params: ([0-9,]+) \(num\. trained: ([0-9,]+)\)", log)
    assert trained.group(1) == trained.group(2)  # everything trains
    base = torch.load(os.path.join(knowledge_data["base"], "model.pt"), map_location="cpu", weights_only=False)["model"]
    after = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert not torch.equal(base[key], after[key])
    assert not (save / "adapters").exists()


def setup_task(task_name, data, **extra):
    from fairseq import tasks
    from omegaconf import OmegaConf

    import kadapter_fairseq  # noqa: F401

    cfg = OmegaConf.create({"_name": task_name, "data": data, "seed": 1, **extra})
    return tasks.setup_task(cfg)


def test_bad_positions_line_names_file_and_line(knowledge_data, tmp_path):
    data = tmp_path / "rel"
    shutil.copytree(knowledge_data["rel"], data)
    lines = (data / "valid.positions").read_text().splitlines()
    lines[1] = "1 999"
    (data / "valid.positions").write_text("\n".join(lines) + "\n")
    task = setup_task("relation_pretrain", str(data))
    with pytest.raises(DataError, match=r"valid\.positions:2: positions \[1, 999\] fall outside"):
        task.load_dataset("valid")
    lines = (data / "valid.label").read_text().splitlines()
    lines[2] = "P999"
    (data / "valid.label").write_text("\n".join(lines) + "\n")
    (data / "valid.positions").write_text((data / "train.positions").read_text())
    with pytest.raises(DataError, match=r"valid\.positions: has \d+ lines but"):
        task.load_dataset("valid")


def test_unknown_label_and_bad_heads_name_file_and_line(knowledge_data, tmp_path):
    rel = tmp_path / "rel"
    shutil.copytree(knowledge_data["rel"], rel)
    lines = (rel / "valid.label").read_text().splitlines()
    lines[2] = "P999"
    (rel / "valid.label").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"valid\.label:3: label 'P999' is not in the label set"):
        setup_task("relation_pretrain", str(rel)).load_dataset("valid")

    dep = tmp_path / "dep"
    shutil.copytree(knowledge_data["dep"], dep)
    lines = (dep / "valid.heads").read_text().splitlines()
    lines[0] = lines[0] + " -100"
    (dep / "valid.heads").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"valid\.heads:1: has \d+ pointers but the sequence has"):
        setup_task("dependency_head_prediction", str(dep)).load_dataset("valid")
    lines[0] = " ".join(["70"] * (len(lines[0].split()) - 1))
    (dep / "valid.heads").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"valid\.heads:1: pointer 70 is outside"):
        setup_task("dependency_head_prediction", str(dep)).load_dataset("valid")
