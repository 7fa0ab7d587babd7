"""``kadapter-export --base``: a multitask checkpoint's trained RoBERTa as a base directory.

One real multitask run (a few updates of ``configs/multitask_cpu.yaml`` on the tiny
base) feeds every test: the export must reproduce the checkpoint's encoder bit for
bit, carry a new fingerprint, load under torch's weights_only default and serve as
``model.roberta_path`` of a further training run.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from kadapter_fairseq.errors import CheckpointError, ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PEOPLE = ["Barack Obama", "Marie Curie", "Alan Turing", "The city"]
PLACES = ["Hawaii", "Paris", "France", "Cambridge"]
TEMPLATES = {"P19": "{s} was born in {o} .", "P131": "{s} is located in {o} ."}


def write_knowledge_text(root):
    with open(root / "trex.jsonl", "w", encoding="utf-8") as f:
        for rel, template in TEMPLATES.items():
            for s in PEOPLE:
                for o in PLACES:
                    text = template.format(s=s, o=o)
                    sb, ob = text.index(s), text.rindex(o)
                    triple = {"subject": {"boundaries": [sb, sb + len(s)], "surfaceform": s},
                              "object": {"boundaries": [ob, ob + len(o)], "surfaceform": o}, "predicate": {"uri": rel}}
                    f.write(json.dumps({"docid": f"{rel}{s}{o}", "text": text, "triples": [triple]}) + "\n")
    with open(root / "heads.conllu", "w", encoding="utf-8") as f:
        for k, o in enumerate(PLACES * 3):
            f.write(f"# sent_id = s{k}\n")
            for i, (w, h) in enumerate(zip(["Obama", "was", "born", "in", o, "."], [3, 3, 0, 5, 3, 3]), 1):
                f.write(f"{i}\t{w}\t_\tX\tX\t_\t{h}\tdep\t_\t_\n")
            f.write("\n")


def run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def hydra(config, *overrides):
    return [os.path.join(BIN, "fairseq-hydra-train"), "--config-dir", os.path.join(REPO, "configs"),
            "--config-name", config, f"common.user_dir={os.path.join(REPO, 'kadapter_fairseq')}", *overrides]


@pytest.fixture(scope="module")
def multitask(tmp_path_factory, tiny_base):
    from data_prep import conllu as conllu_cli
    from data_prep import trex as trex_cli

    root = tmp_path_factory.mktemp("multitask")
    write_knowledge_text(root)
    trex_cli.main([str(root / "trex.jsonl"), "--roberta-dir", tiny_base, "--out", str(root / "rel"),
                   "--min-count", "5", "--valid-fraction", "0.2"])
    conllu_cli.main([str(root / "heads.conllu"), "--roberta-dir", tiny_base, "--out", str(root / "dep"),
                     "--valid-fraction", "0.2"])
    save = root / "ckpt"
    run(hydra("multitask_cpu", f"task.data={root / 'rel'}", f"task.dependency_data={root / 'dep'}",
              f"model.roberta_path={tiny_base}", f"checkpoint.save_dir={save}", "optimization.max_update=3"), cwd=root)
    return {"root": root, "base": tiny_base, "checkpoint": save / "checkpoint_last.pt", "rel": root / "rel"}


@pytest.fixture(scope="module")
def exported(multitask):
    from kadapter_fairseq.tools import export

    out = multitask["root"] / "multitask-base"
    export.main(["--base", str(multitask["checkpoint"]), str(out)])
    return out


def build_plain(base_dir):
    """roberta_kadapter with no adapters on ``base_dir``, built the way every config builds it."""
    from omegaconf import OmegaConf

    from kadapter_fairseq.hub import load_base_dictionary
    from kadapter_fairseq.models.roberta_kadapter import RobertaKAdapterConfig, RobertaKAdapterModel

    cfg = OmegaConf.structured(RobertaKAdapterConfig(roberta_path=str(base_dir), adapter_names="", train_phase="efficient"))
    return RobertaKAdapterModel.from_base(cfg, load_base_dictionary(str(base_dir)))


def test_export_round_trip(multitask, exported):
    assert sorted(os.listdir(exported)) == ["dict.txt", "export.json", "model.pt", "sentencepiece.bpe.model"]
    for name in ("dict.txt", "sentencepiece.bpe.model"):
        assert (exported / name).read_bytes() == open(os.path.join(multitask["base"], name), "rb").read()

    trained = torch.load(multitask["checkpoint"], map_location="cpu", weights_only=False)["model"]
    model = build_plain(exported)
    encoder = model.encoder.state_dict()
    assert set("encoder." + k for k in encoder) == {k for k in trained if k.startswith("encoder.")}
    for key, value in encoder.items():
        assert torch.equal(value, trained["encoder." + key]), key

    original = build_plain(multitask["base"])
    fc1 = "sentence_encoder.layers.0.fc1.weight"
    assert not torch.equal(original.encoder.state_dict()[fc1], encoder[fc1])
    assert model.base_fingerprint["weights"] != original.base_fingerprint["weights"]
    assert model.base_fingerprint["dictionary"] == original.base_fingerprint["dictionary"]

    record = json.loads((exported / "export.json").read_text())
    for key in ("weights", "dictionary"):
        assert record["fingerprint"][key] == model.base_fingerprint[key]
    assert record["original_fingerprint"]["weights"] == original.base_fingerprint["weights"]
    assert record["num_updates"] == 3 and record["train_phase"] == "full"
    assert 0 < record["tensors_changed"] <= record["tensors"]


def test_exported_model_loads_with_weights_only_default(exported):
    # a fresh interpreter without this package: nothing has widened torch's allow-list
    code = f"import torch; s = torch.load({str(exported / 'model.pt')!r}); print(len(s['model']), s['cfg']['model']['_name'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[1] == "roberta"


def test_exported_base_trains_as_roberta_path(multitask, exported, tmp_path):
    # kadapter-train, the project's launcher, with TensorBoard curves (tensorboardX) on the way
    save, tb = tmp_path / "ckpt", tmp_path / "tb"
    cmd = hydra("relation_pretrain_cpu", f"task.data={multitask['rel']}", f"model.roberta_path={exported}",
                f"checkpoint.save_dir={save}", "optimization.max_update=2", f"common.tensorboard_logdir={tb}")
    cmd[0] = os.path.join(BIN, "kadapter-train")
    log = run(cmd, cwd=tmp_path)
    adapter = torch.load(save / "adapters" / "fac.pt", map_location="cpu", weights_only=True)
    record = json.loads((exported / "export.json").read_text())
    assert adapter["base_fingerprint"]["weights"] == record["fingerprint"]["weights"]
    for subset in ("train", "valid"):
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(tb / subset)), subset
    assert "please install" not in log.lower()


def test_refuses_checkpoint_whose_base_stayed_frozen(multitask, tmp_path):
    from kadapter_fairseq.tools.export import main
    from kadapter_fairseq.tools.export_base import export_base

    state = torch.load(multitask["checkpoint"], map_location="cpu", weights_only=False)
    state["cfg"]["model"]["train_phase"] = "efficient"
    frozen = tmp_path / "frozen.pt"
    torch.save(state, frozen)
    with pytest.raises(CheckpointError, match=r"train_phase=efficient, which keeps RoBERTa frozen"):
        export_base(frozen, tmp_path / "out")
    with pytest.raises(SystemExit, match=r"^kadapter-export: .*train_phase=efficient"):
        main(["--base", str(frozen), str(tmp_path / "out")])
    assert not (tmp_path / "out" / "model.pt").exists()


def test_refuses_wrong_original_base_and_overwrite(multitask, exported, other_tiny_base, tmp_path):
    from kadapter_fairseq.tools.export_base import export_base

    with pytest.raises(CheckpointError, match=r"was trained from base .* pass --roberta-path"):
        export_base(multitask["checkpoint"], tmp_path / "out", roberta_path=other_tiny_base)
    with pytest.raises(ConfigError, match=r"model\.pt exists; --force overwrites it"):
        export_base(multitask["checkpoint"], exported)
    with pytest.raises(ConfigError, match="is the original base's directory"):
        export_base(multitask["checkpoint"], multitask["base"], force=True)


def test_base_that_moved_is_named_with_roberta_path(multitask, exported, tmp_path):
    from kadapter_fairseq.tools.export_base import export_base

    state = torch.load(multitask["checkpoint"], map_location="cpu", weights_only=False)
    state["cfg"]["model"]["roberta_path"] = str(tmp_path / "moved-away")
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    with pytest.raises(ConfigError, match=r"moved-away', which is gone .*pass --roberta-path"):
        export_base(moved, tmp_path / "out")
    record = export_base(moved, tmp_path / "out", roberta_path=multitask["base"])
    assert record["fingerprint"] == json.loads((exported / "export.json").read_text())["fingerprint"]
    again, first = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (tmp_path / "out", exported))
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
