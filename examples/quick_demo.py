"""A short, real demonstration of the machinery (the full quickstart pipeline is `make demo`'s
successor, tracked in its own issue).

Builds a tiny RoBERTa base (random weights: it shows the mechanics, not knowledge),
attaches two adapters, trains them a few steps on a toy span-pair objective with the base
frozen, and prints what changed and what did not.
"""
import os
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kadapter_fairseq import KAdapterHub  # noqa: E402
from kadapter_fairseq.modules.adapter import AdapterArchConfig, count_adapter_parameters  # noqa: E402
from kadapter_fairseq.tools.tiny_base import make_tiny_base  # noqa: E402


def main():
    work = tempfile.mkdtemp(prefix="kadapter-demo-")
    print(f"[1/4] building a tiny RoBERTa base (3 layers, H=32, random weights) in {work}/base")
    base = make_tiny_base(os.path.join(work, "base"))
    hub = KAdapterHub.from_pretrained(base, adapters={"fac": None, "lin": None}, arch="roberta_kadapter_tiny")
    model = hub.model
    model.base_trains, model.adapters_train = False, True  # knowledge pre-training phase
    model.adapters.requires_grad_(True)
    model.register_kadapter_head("rel", "span_pair", num_classes=2)
    n_base = sum(p.numel() for p in model.encoder.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"[2/4] base params {n_base:,} (frozen); trainable (adapters + fusion + head) {n_train:,}")
    print(f"      for scale: one paper-size adapter on roberta-large has {count_adapter_parameters(AdapterArchConfig()):,} params")

    sents = [("@ Obama @ was born in # Hawaii # .", 0), ("# Paris # is the capital of @ France @ .", 1)]
    rows = [hub.encode(s) for s, _ in sents]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), hub.dictionary.pad(), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    at, hash_ = hub.dictionary.index("▁@"), hub.dictionary.index("▁#")
    positions = torch.tensor([[int((r == at).nonzero()[0]), int((r == hash_).nonzero()[0])] for r in tokens])
    target = torch.tensor([y for _, y in sents])

    base_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapters_before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01)
    model.train()
    print("[3/4] training the adapters for 30 steps")
    for step in range(30):
        logits, _ = model(tokens, classification_head_name="rel", positions=positions)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == 29:
            print(f"      step {step:2d}  loss {loss.item():.4f}")

    base_same = all(torch.equal(v, base_before[k]) for k, v in model.encoder.state_dict().items())
    delta = max((v - adapters_before[k]).abs().max().item() for k, v in model.adapters.state_dict().items() if v.is_floating_point())
    print(f"[4/4] base weights bit-identical after training: {base_same}")
    print(f"      largest change of an adapter weight: {delta:.4f}")
    out = os.path.join(work, "adapters.pt")
    model.save_adapters(out, include_fusion=True, include_heads=True)
    print(f"      adapter-only checkpoint: {out} ({os.path.getsize(out) / 1024:.0f} KiB)")
    if not base_same:
        sys.exit("the base changed: this is a bug")


if __name__ == "__main__":
    main()
