"""``kadapter-build-base``: pre-train a RoBERTa base on your own text with fairseq's ``masked_lm``.

Text files (one sentence or paragraph a line) in; a base directory out, in the
layout of fairseq's released ``roberta.*`` directories, so every other command
takes it where it takes ``roberta.large``:

    OUT/model.pt                  fairseq-train's checkpoint (best valid loss), optimizer state dropped
    OUT/dict.txt                  the fairseq dictionary of the sentencepiece pieces
    OUT/sentencepiece.bpe.model   the vocabulary, trained on the same text (``@`` and ``#`` are pieces)
    OUT/build.json                the request (sizes, schedule, text hashes) and the MLM validation
                                  loss of the random initialisation and of the trained model
    OUT/work/                     binarized text, fairseq's log (train.log)

The steps are sentencepiece training, encoding, ``fairseq-preprocess``
(``kadapter_fairseq.data.binarize``) and ``fairseq-train --task masked_lm
--arch roberta``. When ``OUT/build.json`` records the same request (same sizes,
schedule and text contents) the base is reused and nothing runs; ``--force``
rebuilds. The defaults are sized for a laptop CPU; a larger base is the same
command with larger sizes and more text and updates, e.g.

    kadapter-build-base --text wiki.txt books.txt --out my-base --layers 12 --dim 768 --heads 12 \\
        --ffn 3072 --max-positions 512 --vocab-size 32000 --updates 100000 --batch-size 256 --lr 6e-4
"""
import argparse
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import time

from ..errors import KAdapterError

BUILD_FILE = "build.json"
BASE_FILES = ("model.pt", "dict.txt", "sentencepiece.bpe.model")
# the request keys that decide whether an existing base can be reused
SIZE_KEYS = ("layers", "dim", "heads", "ffn", "max_positions", "vocab_size")
SCHEDULE_KEYS = ("updates", "lr", "warmup", "batch_size", "dropout", "valid_fraction", "seed")


def build_parser():
    p = argparse.ArgumentParser(prog="kadapter-build-base", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", nargs="+", required=True, help="plain-text files, one sentence or paragraph a line")
    p.add_argument("--out", required=True, help="base directory to write (or reuse)")
    g = p.add_argument_group("model size (fairseq's roberta arch)")
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--dim", type=int, default=256, help="hidden size H")
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--ffn", type=int, default=1024, help="FFN size")
    g.add_argument("--max-positions", type=int, default=128, help="longest sequence, <s> and </s> included")
    g.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size")
    g = p.add_argument_group("training")
    g.add_argument("--updates", type=int, default=1000, help="masked-LM updates")
    g.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (polynomial decay to 0)")
    g.add_argument("--warmup", type=int, default=None, help="warm-up updates (default: 10%% of --updates)")
    g.add_argument("--batch-size", type=int, default=32, help="blocks of --max-positions tokens per update")
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--valid-fraction", type=float, default=0.05, help="share of the lines held out for validation")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")
    p.add_argument("--force", action="store_true", help="rebuild even when OUT/build.json records the same request")
    return p


# ----------------------------------------------------------------------------------------------
# the request and the cache


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_request(args) -> dict:
    for path in args.text:
        if not os.path.isfile(path):
            raise KAdapterError(f"text file not found: {path}")
    if args.dim % args.heads:
        raise KAdapterError(f"--dim {args.dim} must be a multiple of --heads {args.heads}")
    if not 0.0 < args.valid_fraction < 0.5:
        raise KAdapterError(f"--valid-fraction must be in (0, 0.5): {args.valid_fraction}")
    request = {k: getattr(args, k) for k in SIZE_KEYS + SCHEDULE_KEYS}
    if request["warmup"] is None:
        request["warmup"] = max(1, args.updates // 10)
    # contents, not paths, decide: the same text copied elsewhere reuses the base
    request["text_sha256"] = [file_sha256(p) for p in args.text]
    return request


def cached_build(out_dir, request):
    """The recorded build when ``out_dir`` holds a complete base built from ``request``."""
    path = os.path.join(out_dir, BUILD_FILE)
    if not os.path.isfile(path) or not all(os.path.isfile(os.path.join(out_dir, f)) for f in BASE_FILES):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            build = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return build if build.get("request") == request else None


# ----------------------------------------------------------------------------------------------
# steps


def read_lines(paths):
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines.extend(s for s in (line.strip() for line in f) if s)
    if not lines:
        raise KAdapterError(f"no text in {', '.join(paths)}")
    return lines


def split_lines(lines, valid_fraction, seed):
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(len(lines) * valid_fraction)))
    valid = set(order[:n_valid])
    return [l for i, l in enumerate(lines) if i not in valid], [l for i, l in enumerate(lines) if i in valid]


def encode_file(bpe, lines, path, desc):
    from tqdm import tqdm

    with open(path, "w", encoding="utf-8") as f:
        for line in tqdm(lines, desc=desc, unit="line", disable=not sys.stderr.isatty(), mininterval=0.5):
            f.write(bpe.encode(line) + "\n")


def unigram_bits(train_file, valid_file, vocab_size):
    """Cross-entropy (bits per piece) of a context-free unigram model of the train pieces on the
    valid pieces, add-one smoothed: the bar a masked LM must get under to be using context."""
    from collections import Counter

    with open(train_file, encoding="utf-8") as f:
        counts = Counter(piece for line in f for piece in line.split())
    total, bits, n = sum(counts.values()), 0.0, 0
    with open(valid_file, encoding="utf-8") as f:
        for line in f:
            for piece in line.split():
                bits -= math.log2((counts[piece] + 1) / (total + vocab_size))
                n += 1
    return bits / max(n, 1)


def train_command(bin_dir, save_dir, request, sp_model):
    r = request
    return [
        os.path.join(os.path.dirname(sys.executable), "fairseq-train"), bin_dir,
        "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
        "--encoder-layers", str(r["layers"]), "--encoder-embed-dim", str(r["dim"]),
        "--encoder-attention-heads", str(r["heads"]), "--encoder-ffn-embed-dim", str(r["ffn"]),
        "--max-positions", str(r["max_positions"]), "--tokens-per-sample", str(r["max_positions"]),
        "--sample-break-mode", "none", "--dropout", str(r["dropout"]), "--attention-dropout", str(r["dropout"]),
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
        "--clip-norm", "1.0", "--lr", str(r["lr"]), "--lr-scheduler", "polynomial_decay",
        "--warmup-updates", str(r["warmup"]), "--total-num-update", str(r["updates"]), "--max-update", str(r["updates"]),
        "--batch-size", str(r["batch_size"]), "--seed", str(r["seed"]),
        # validate a few times along the way (not at every epoch end: epochs are short on small text)
        "--validate-interval", "1000000", "--validate-interval-updates", str(max(1, r["updates"] // 5)),
        "--save-interval", "1000000", "--no-epoch-checkpoints", "--save-dir", save_dir,
        "--bpe", "sentencepiece", "--sentencepiece-model", sp_model,
        "--log-format", "json", "--log-interval", str(max(1, min(50, r["updates"] // 20))),
        "--num-workers", "0", "--cpu", "--skip-invalid-size-inputs-valid-test",
    ]


# fairseq-train's masked_lm cuts the text into blocks of max_positions tokens; with its default batch-size
# multiple of 8, a validation split of fewer blocks than that gives an empty validation set, and fairseq-train
# stops with "dataset is empty" deep in its log
MIN_VALID_BLOCKS = 8


def check_valid_blocks(valid_pieces: str, max_positions: int):
    with open(valid_pieces, encoding="utf-8") as f:
        tokens = sum(len(line.split()) + 1 for line in f)  # + the end-of-sentence token of each line
    blocks = math.ceil(tokens / (max_positions - 1))  # masked_lm makes room for the <s> it prepends
    if blocks < MIN_VALID_BLOCKS:
        raise KAdapterError(
            f"the validation split holds {tokens} tokens, {blocks} block(s) of --max-positions {max_positions}; "
            f"fairseq-train needs at least {MIN_VALID_BLOCKS}: give more text or a larger --valid-fraction")


def run_logged(cmd, log_path):
    """Run ``cmd``, streaming its output to this process's stdout and to ``log_path``."""
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail = []
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
            tail = (tail + [line])[-20:]
        code = proc.wait()
    if code != 0:
        raise KAdapterError(f"{os.path.basename(cmd[0])} failed (exit {code}); full log: {log_path}\n" + "".join(tail))


def mlm_valid_loss(task, model, criterion, split="valid", batch_size=32):
    """Mean masked-LM loss in bits per masked token (fairseq's reporting unit) over ``split``."""
    import torch

    model.eval()
    itr = task.get_batch_iterator(
        dataset=task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(),
        ignore_invalid_inputs=True, seed=1, epoch=1,
    ).next_epoch_itr(shuffle=False)
    loss, tokens = 0.0, 0
    with torch.no_grad():
        for sample in itr:
            _, sample_size, out = criterion(model, sample)
            loss += float(out["loss"])
            tokens += int(sample_size)
    return loss / max(tokens, 1) / math.log(2)


def evaluate_before_after(checkpoint, bin_dir):
    """Validation MLM loss of the trained model and of the same architecture freshly initialised
    with the training seed (the state before the first update), on identical masks."""
    from fairseq import checkpoint_utils, utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": bin_dir})
    task.load_dataset("valid", combine=False, epoch=1)
    criterion = task.build_criterion(cfg.criterion)
    after = mlm_valid_loss(task, models[0], criterion)
    utils.set_torch_seed(cfg.common.seed)  # as fairseq-train does before it builds the model
    fresh = task.build_model(cfg.model)
    before = mlm_valid_loss(task, fresh, criterion)
    return before, after


def save_base_checkpoint(src, dst):
    """fairseq's checkpoint without the optimizer state (a third of the size, as released bases ship)."""
    import torch

    state = torch.load(src, map_location="cpu")
    state["last_optimizer_state"] = None
    # fairseq keeps a legacy arch's settings as an argparse.Namespace inside cfg; plain dicts load
    # under torch's weights_only default and in every reader of cfg["model"]
    for key, value in list((state.get("cfg") or {}).items()):
        if isinstance(value, argparse.Namespace):
            state["cfg"][key] = vars(value)
    torch.save(state, dst)


def check_loads(out_dir, layers):
    """Build ``roberta_kadapter`` on the new base with a fresh adapter and run one sentence through it."""
    import torch

    from ..hub import KAdapterHub

    plug = sorted({0, layers // 2, layers - 1})
    hub = KAdapterHub.from_pretrained(
        out_dir, adapters={"fac": None}, arch="roberta_kadapter_tiny",
        adapter_plug_layers=",".join(map(str, plug)), adapter_layers=1, adapter_down_dim=32, adapter_heads=2,
        adapter_ffn_dim=64,
    )
    out = hub.extract_features(hub.encode("@ Marie Curie @ was born in # Warsaw # ."))
    if not torch.isfinite(out["fused"]).all():
        raise KAdapterError(f"the base in {out_dir} produces non-finite features")
    return tuple(out["fused"].shape), plug


# ----------------------------------------------------------------------------------------------


def build(args):
    out = args.out
    request = make_request(args)
    found = cached_build(out, request)
    if found and not args.force:
        print(f"kadapter-build-base: reusing the base in {out} (built {found.get('built_at', '?')} from the same text "
              f"and settings; --force rebuilds)")
        print(f"  MLM validation loss: random init {found['valid_loss_before']:.3f} -> pre-trained "
              f"{found['valid_loss_after']:.3f} bits/token (unigram model {found.get('valid_unigram_bits', float('nan')):.3f})")
        return found

    from ..bpe import find_bpe_files, load_bpe
    from ..data.binarize import binarize
    from .tiny_base import train_sentencepiece, write_dictionary

    started = time.time()
    os.makedirs(out, exist_ok=True)
    for name in BASE_FILES + (BUILD_FILE,):  # never leave a half-old base that looks complete
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    work = os.path.join(out, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    lines = read_lines(args.text)
    train, valid = split_lines(lines, args.valid_fraction, args.seed)
    print(f"[build-base] {len(lines)} lines of text ({len(train)} train, {len(valid)} valid)")

    sp_prefix = os.path.join(out, "sentencepiece.bpe")
    pieces = train_sentencepiece(train, sp_prefix, args.vocab_size)
    write_dictionary(pieces, os.path.join(out, "dict.txt"))
    print(f"[build-base] sentencepiece vocabulary: {len(pieces)} pieces -> {out}/dict.txt")

    bpe = load_bpe(find_bpe_files(sentencepiece_model=sp_prefix + ".model"))
    piece_files = {"train": os.path.join(work, "train.pieces"), "valid": os.path.join(work, "valid.pieces")}
    encode_file(bpe, train, piece_files["train"], "encode train")
    encode_file(bpe, valid, piece_files["valid"], "encode valid")
    bin_dir = os.path.join(work, "bin")
    binarize(piece_files, bin_dir, os.path.join(out, "dict.txt"), workers=args.workers)
    unigram = unigram_bits(piece_files["train"], piece_files["valid"], len(pieces))
    check_valid_blocks(piece_files["valid"], request["max_positions"])
    for path in piece_files.values():
        os.remove(path)
    print(f"[build-base] binarized -> {bin_dir}")

    save_dir = os.path.join(work, "checkpoints")
    cmd = train_command(bin_dir, save_dir, request, sp_prefix + ".model")
    print("[build-base] masked-LM pre-training:\n  " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    run_logged(cmd, os.path.join(work, "train.log"))
    train_seconds = time.time() - t0
    best = os.path.join(save_dir, "checkpoint_best.pt")
    if not os.path.isfile(best):
        best = os.path.join(save_dir, "checkpoint_last.pt")
    if not os.path.isfile(best):
        raise KAdapterError(f"fairseq-train wrote no checkpoint in {save_dir}; see {work}/train.log")

    before, after = evaluate_before_after(best, bin_dir)
    print(f"[build-base] MLM validation loss (bits per masked token): random init {before:.3f} "
          f"(ppl {2 ** before:.0f}) -> pre-trained {after:.3f} (ppl {2 ** after:.1f}); a context-free unigram model: "
          f"{unigram:.3f}")
    if not after < unigram:
        print("[build-base] warning: the model does not beat a unigram model yet (it has not learnt to use context); "
              "give it more --updates, more text or another --lr")
    save_base_checkpoint(best, os.path.join(out, "model.pt"))
    shutil.rmtree(save_dir, ignore_errors=True)

    shape, plug = check_loads(out, args.layers)
    print(f"[build-base] KAdapterHub.from_pretrained({out!r}, adapters={{'fac': None}}) loads; "
          f"fused features {shape} with an adapter at {plug}")

    build_info = {
        "request": request,
        "text_files": [os.path.abspath(p) for p in args.text],
        "lines": {"train": len(train), "valid": len(valid)},
        "vocabulary": len(pieces),
        "valid_loss_before": before,
        "valid_loss_after": after,
        "valid_ppl_after": 2 ** after,
        "valid_unigram_bits": unigram,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": cmd[1:],
    }
    with open(os.path.join(out, BUILD_FILE), "w", encoding="utf-8") as f:
        json.dump(build_info, f, indent=2)
        f.write("\n")
    print(f"[build-base] wrote {out}/model.pt, dict.txt, sentencepiece.bpe.model, build.json "
          f"({build_info['total_seconds']:.0f} s)")
    return build_info


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        build(args)
    except KAdapterError as e:
        sys.exit(f"kadapter-build-base: {e}")


if __name__ == "__main__":
    main()
