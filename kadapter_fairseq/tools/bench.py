"""kadapter-bench: K-Adapter's training and inference cost, side by side with full fine-tuning and LoRA.

Every configuration (a *row*) runs in its own child process, so that its peak memory can be read
(the process's maximum resident set on CPU, ``torch.cuda.max_memory_allocated`` on a GPU), at
random weights of a RoBERTa shape (``--size``): nothing is read or downloaded. A training step
is forward + backward + AdamW on one random batch of ``--batch`` sequences of ``--tokens``
tokens with a sentence-classification loss; the first step is a warm-up and ``step_s`` is the
median of the ``--steps`` timed ones. Machines are noisy: compare the ratios, which are taken
within one run.

Rows:
    full_finetune              fairseq RoBERTa, every weight trains
    lora                       HF RoBERTa of the same shape, PEFT LoRA r=8 on query/value
    kadapter_knowledge         one knowledge adapter (the paper's size for --size), base frozen
    kadapter_knowledge_cached  the same step, base features read from the feature cache
    kadapter_efficient         fine-tuning with base and two adapters frozen (fusion + head train)
    kadapter_efficient_cached  the same, adapters' outputs read from the feature cache
    inference_{1,2,4}_adapter(s)   forward only, eval mode

Ratios (above 1 = faster than full fine-tuning, or than LoRA for ``adapter_vs_lora``):
    adapter_vs_full = full / adapter step time, cached_adapter_vs_full, lora_vs_full,
    adapter_vs_lora = lora / adapter, two_vs_one_adapter_inference = 2-adapter / 1-adapter time (a cost).

``--data-prep`` instead measures the knowledge-data converters (``data_prep.trex``,
``data_prep.conllu``): sentences/s at 1 and 2 workers and peak memory at 1x and 10x input.

Example:
    kadapter-bench --size large --batch 4 --tokens 128 --steps 5 --json bench-large.json
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace

from ..errors import KAdapterError

PROG = "kadapter-bench"

SIZES = {
    # layers, hidden, heads, ffn, vocabulary (RoBERTa's 50265 for base and large)
    "tiny": dict(layers=3, dim=32, heads=2, ffn=64, vocab=512),
    "base": dict(layers=12, dim=768, heads=12, ffn=3072, vocab=50265),
    "large": dict(layers=24, dim=1024, heads=16, ffn=4096, vocab=50265),
}
NUM_CLASSES = 2
HEAD = "bench"
LORA_RANK = 8

ROWS = (
    "full_finetune",
    "lora",
    "kadapter_knowledge",
    "kadapter_knowledge_cached",
    "kadapter_efficient",
    "kadapter_efficient_cached",
    "inference_1_adapter",
    "inference_2_adapters",
    "inference_4_adapters",
)


class BenchError(KAdapterError):
    pass


# ----------------------------------------------------------------------------------------------
# one row, inside its own process


def _roberta_args(size, tokens):
    from fairseq.models.roberta.model import base_architecture

    s = SIZES[size]
    args = Namespace(
        encoder_layers=s["layers"],
        encoder_embed_dim=s["dim"],
        encoder_attention_heads=s["heads"],
        encoder_ffn_embed_dim=s["ffn"],
        max_positions=max(512, tokens),
    )
    base_architecture(args)
    return args


def _dictionary(vocab):
    from fairseq.data import Dictionary

    d = Dictionary()
    for i in range(vocab - len(d) - 1):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


def _batch(dictionary, batch, tokens, device, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    src = torch.randint(dictionary.nspecial, len(dictionary) - 1, (batch, tokens), generator=g)
    src[:, 0] = dictionary.bos()
    src[:, -1] = dictionary.eos()
    target = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    return src.to(device), target.to(device)


def _kadapter_model(size, tokens, dictionary, adapters, phase):
    """The project's model around a random base, built from a plain dict config."""
    from fairseq.models.roberta.model import RobertaEncoder

    from ..models.roberta_kadapter import RobertaKAdapterModel, apply_arch_defaults

    cfg = {"_name": f"roberta_kadapter_{size}", "adapter_names": ",".join(adapters), "train_phase": phase}
    apply_arch_defaults(cfg)
    model = RobertaKAdapterModel(cfg, RobertaEncoder(_roberta_args(size, tokens), dictionary))
    model.register_kadapter_head(HEAD, "sentence", NUM_CLASSES)
    return model


def _cached(model, src, dtype):
    """What the feature cache would hand the model for ``src``, stored in the cache's 16-bit dtype."""
    import torch

    if not hasattr(model, "compute_cacheable_features"):
        raise BenchError("the model has no feature-cache interface (compute_cacheable_features) in this checkout")
    with torch.no_grad():
        feats = model.compute_cacheable_features(src)
    return _map_tensors(feats, lambda t: t.to(dtype))


def _map_tensors(obj, fn):
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return fn(obj)


def _build_row(name, a, device):
    """``(model, step function, trained params, params run per step)`` for one row."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    s = SIZES[a.size]
    dictionary = _dictionary(s["vocab"])
    src, target = _batch(dictionary, a.batch, a.tokens, device)
    autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=a.bf16)  # noqa: E731
    cache_dtype = torch.bfloat16 if a.bf16 else torch.float16
    compute_dtype = torch.float32

    if name == "lora":
        from peft import LoraConfig, get_peft_model
        from transformers import RobertaConfig, RobertaForSequenceClassification

        hf = RobertaConfig(
            vocab_size=s["vocab"], hidden_size=s["dim"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
            intermediate_size=s["ffn"], max_position_embeddings=max(512, a.tokens) + 2, type_vocab_size=1,
            num_labels=NUM_CLASSES, pad_token_id=dictionary.pad(), bos_token_id=dictionary.bos(), eos_token_id=dictionary.eos(),
        )
        model = get_peft_model(
            RobertaForSequenceClassification(hf),
            LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.1, target_modules=["query", "value"], task_type="SEQ_CLS"),
        )

        def loss_fn():
            return model(input_ids=src, labels=target).loss

        return model.to(device).train(), loss_fn, None

    if name == "full_finetune":
        from fairseq.models.roberta.model import RobertaEncoder, RobertaModel

        args = _roberta_args(a.size, a.tokens)
        model = RobertaModel(args, RobertaEncoder(args, dictionary))
        model.register_classification_head(HEAD, num_classes=NUM_CLASSES)

        def loss_fn():
            logits, _ = model(src, features_only=True, classification_head_name=HEAD)
            return F.cross_entropy(logits.float(), target)

        return model.to(device).train(), loss_fn, None

    if name.startswith("inference_"):
        n = int(name.split("_")[1])
        model = _kadapter_model(a.size, a.tokens, dictionary, [f"k{i}" for i in range(n)], "efficient").to(device).eval()

        def infer():
            with torch.inference_mode(), autocast():
                model(src, classification_head_name=HEAD)

        return model, None, infer

    phase, adapters = ("knowledge", ["fac"]) if name.startswith("kadapter_knowledge") else ("efficient", ["fac", "lin"])
    model = _kadapter_model(a.size, a.tokens, dictionary, adapters, phase).to(device)
    cached = None
    if name.endswith("_cached"):
        cached = _cached(model, src, cache_dtype)

    def loss_fn():
        kwargs = {}
        if cached is not None:  # batches come off the cache in its 16-bit dtype
            CLOCK.start("cache_read")
            kwargs["cached_features"] = _map_tensors(cached, lambda t: t.to(compute_dtype))
            CLOCK.stop("cache_read")
        logits, _ = model(src, classification_head_name=HEAD, **kwargs)
        return F.cross_entropy(logits.float(), target)

    return model, loss_fn, None


def _count(params):
    return sum(p.numel() for p in params)


class PhaseClock:
    """Seconds spent per phase of a step (forward, base forward, adapters, backward, optimizer...),
    for the profile that says where a row's time goes. On a GPU every boundary synchronises."""

    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.open, self.spent = {}, {}

    def start(self, phase):
        self.sync()
        self.open[phase] = time.perf_counter()

    def stop(self, phase):
        self.sync()
        self.spent[phase] = self.spent.get(phase, 0.0) + time.perf_counter() - self.open.pop(phase)

    def watch(self, module, phase):
        """Time every call of ``module`` as ``phase``."""
        module.register_forward_pre_hook(lambda *_: self.start(phase))
        module.register_forward_hook(lambda *_: self.stop(phase))

    def take(self):
        spent, self.spent = self.spent, {}
        return spent


CLOCK = None  # the running row's PhaseClock (one row per process)


def _watch_parts(model, name, clock):
    if name == "lora":
        clock.watch(model.base_model.model.roberta, "base_forward")
        return
    clock.watch(model.encoder.sentence_encoder, "base_forward")
    for adapter in getattr(model, "adapters", {}).values():
        clock.watch(adapter, "adapters_forward")


def run_row(name, a):
    """Time one row in this process; returns its JSON row plus the FLOP count and profile of a step."""
    import torch

    global CLOCK
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA GPU is available")
    CLOCK = clock = PhaseClock(device)
    model, loss_fn, infer = _build_row(name, a, device)
    trained = [p for p in model.parameters() if p.requires_grad] if infer is None else []
    if infer is not None:
        frozen_run = _count(model.parameters())
    elif name.endswith("_cached"):  # what is frozen is exactly what the cache stands in for
        frozen_run = 0
    else:
        frozen_run = _count(p for p in model.parameters() if not p.requires_grad)
    if infer is None:
        opt = torch.optim.AdamW(trained, lr=1e-5)

        def step():
            clock.start("forward")
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=a.bf16):
                loss = loss_fn()
            clock.stop("forward")
            clock.start("backward")
            loss.backward()
            clock.stop("backward")
            clock.start("optimizer")
            opt.step()
            opt.zero_grad(set_to_none=True)
            clock.stop("optimizer")
    else:
        def step():
            clock.start("forward")
            infer()
            clock.stop("forward")
    _watch_parts(model, name, clock)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, phases = [], []
    for i in range(a.warmup + a.steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - start)
            phases.append(clock.take())
        clock.take()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    step_s = statistics.median(times)
    tokens = a.batch * a.tokens
    n_trained = _count(trained)
    return {
        "name": name,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "peak_mem_mb": peak,
        "trained_params": n_trained,
        # model FLOPs: 6·N·T for trained parameters, 2·N·T for frozen ones that run
        "_flops": (6 * n_trained + 2 * frozen_run) * tokens,
        "_profile": {k: statistics.median(p.get(k, 0.0) for p in phases) for k in sorted(set().union(*phases))},
    }


# ----------------------------------------------------------------------------------------------
# the driver


def _row_process(name, a, conn):
    try:
        conn.send(run_row(name, a))
    except Exception as e:  # noqa: BLE001  (reported by the driver, with the row's name)
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def run_row_process(name, a):
    """``run_row`` in a child process of its own, so that its peak memory is its own.

    The child is forked where the platform allows: it starts with torch and fairseq already
    imported (the driver imported them once; on a loaded 2-core machine that is ~10 s a row
    saved). CUDA is never initialised in the driver, so forking is safe on a GPU too."""
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_row_process, args=(name, a, send), daemon=True)
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = {"error": "its process died without a result (killed for memory?)"}
    proc.join()
    if "error" in result:
        raise BenchError(f"row {name} failed: {result['error']}")
    return result


def ratios(rows):
    t = {r["name"]: r["step_s"] for r in rows}
    return {
        "adapter_vs_full": t["full_finetune"] / t["kadapter_knowledge"],
        "cached_adapter_vs_full": t["full_finetune"] / t["kadapter_knowledge_cached"],
        "lora_vs_full": t["full_finetune"] / t["lora"],
        "adapter_vs_lora": t["lora"] / t["kadapter_knowledge"],
        "two_vs_one_adapter_inference": t["inference_2_adapters"] / t["inference_1_adapter"],
    }


def model_benchmark(a, log=print):
    rows, flops, profile = [], {}, {}
    for name in ROWS:
        log(f"{PROG}: {name} ...", file=sys.stderr)
        row = run_row_process(name, a)
        flops[name] = row.pop("_flops")
        profile[name] = row.pop("_profile")
        rows.append(row)
        log(f"{PROG}: {name}: {row['step_s']:.4g} s/step, peak {row['peak_mem_mb']:.0f} MB", file=sys.stderr)
    mem = {r["name"]: r["peak_mem_mb"] for r in rows}
    result = {
        "size": a.size,
        "batch": a.batch,
        "tokens": a.tokens,
        "device": a.device,
        "bf16": a.bf16,
        "steps": a.steps,
        "rows": rows,
        "ratios": ratios(rows),
        "peak_mem_ratios": {
            "adapter_vs_full": mem["kadapter_knowledge"] / mem["full_finetune"],
            "cached_adapter_vs_full": mem["kadapter_knowledge_cached"] / mem["full_finetune"],
        },
        # median seconds per phase of a step; base_forward, adapters_forward and cache_read are parts of forward
        "profile": profile,
    }
    if a.device == "cuda":
        util = {}
        for r in rows:
            achieved = flops[r["name"]] / r["step_s"] / 1e12
            util[r["name"]] = {"tflops_per_s": achieved}
            if a.peak_tflops:
                util[r["name"]]["mfu"] = achieved / a.peak_tflops
        result["model_flops"] = util
    return result


def format_table(result):
    out = [f"size {result['size']}, batch {result['batch']}x{result['tokens']}, {result['device']}"
           + (" bf16" if result.get("bf16") else "") + f", median of {result['steps']} steps", "",
           "| row | step s | tokens/s | peak MB | trained params |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        out.append(f"| {r['name']} | {r['step_s']:.4g} | {r['tokens_per_s']:.4g} | {r['peak_mem_mb']:.0f} | {r['trained_params']:,} |")
    out += ["", "| ratio | value |", "|---|---:|"]
    out += [f"| {k} | {v:.2f} |" for k, v in result["ratios"].items()]
    out += [f"| peak memory {k} | {v:.2f} |" for k, v in result["peak_mem_ratios"].items()]
    phases = ["forward", "base_forward", "adapters_forward", "cache_read", "backward", "optimizer"]
    out += ["", "| profile (s) | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for name, prof in result["profile"].items():
        out.append(f"| {name} | " + " | ".join(f"{prof[k]:.3g}" if k in prof else "-" for k in phases) + " |")
    for name, u in result.get("model_flops", {}).items():
        out.append(f"| {name} TFLOP/s | {u['tflops_per_s']:.1f}" + (f" (MFU {u['mfu']:.1%})" if "mfu" in u else "") + " |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# --data-prep


def _find_input(explicit, candidates, what):
    if explicit:
        if not os.path.isfile(explicit):
            raise BenchError(f"{what} input not found: {explicit}")
        return explicit
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise BenchError(f"no {what} sample found (looked for {', '.join(candidates)}); pass it explicitly")


def _repeat(src, dest, times):
    """``times`` copies of ``src`` one after the other (records of a 10x input are the sample's, repeated)."""
    with open(src, "rb") as f:
        data = f.read()
    if not data.endswith(b"\n"):
        data += b"\n"
    with open(dest, "wb") as f:
        for _ in range(times):
            f.write(data)
            if dest.endswith(".conllu") and not data.endswith(b"\n\n"):
                f.write(b"\n")  # a CoNLL-U sentence ends at a blank line
    return dest


# Runs a converter module and writes its own peak memory (kB) to argv[1] at exit. The peak is read
# inside the process because a fork+exec child's ru_maxrss keeps the RSS it had before exec, i.e.
# the benchmark's own footprint; VmHWM is reset by exec.
_PEAK_WRAPPER = """
import atexit, resource, runpy, sys
out, module = sys.argv[1], sys.argv[2]
def report():
    kb = None
    try:
        with open("/proc/self/status") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(out, "w") as f:
        f.write(str(kb))
atexit.register(report)
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _measure_converter(module, args, out_dir):
    """Wall seconds, records read and peak memory (MB) of one converter run in a child process."""
    peak_file, log_file = out_dir + ".peak", out_dir + ".log"
    start = time.perf_counter()
    with open(log_file, "w") as log:
        code = subprocess.call([sys.executable, "-c", _PEAK_WRAPPER, peak_file, module, *args], stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code != 0:
        with open(log_file) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        raise BenchError(f"{module} failed: {lines[-1] if lines else f'exit status {code}'}")
    with open(os.path.join(out_dir, "prep.json")) as f:
        counts = json.load(f)["counts"]
    with open(peak_file) as f:
        peak_kb = int(f.read())
    records = counts["kept"] + sum(counts["skipped"].values())
    return seconds, records, peak_kb / 1024


def data_prep_benchmark(a, log=print):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.path.join(repo, "..", "shared", "data")
    trex = _find_input(a.trex, [os.path.join(shared, "trex", "rebel_sample.jsonl")], "T-REx")
    conllu = _find_input(a.conllu, [os.path.join(shared, "ud_english_ewt", "en_ewt-ud-dev.conllu"),
                                    os.path.join(repo, "examples", "data", "ud_english_ewt", "en_ewt-ud-dev_sample.conllu")], "CoNLL-U")
    work = tempfile.mkdtemp(prefix="kadapter-bench.")
    try:
        base = a.roberta_dir
        if base is None:
            from .tiny_base import make_tiny_base

            base = make_tiny_base(os.path.join(work, "base"), seed=0)
        converters = {
            "trex": (trex, ".jsonl", ["data_prep.trex", "--min-count", "1"]),
            "conllu": (conllu, ".conllu", ["data_prep.conllu"]),
        }
        rows = []
        for conv, (sample, ext, cmd) in converters.items():
            inputs = {1: sample, a.scale: _repeat(sample, os.path.join(work, f"{conv}.x{a.scale}{ext}"), a.scale)}
            for scale, workers in ((1, 1), (a.scale, 1), (a.scale, 2)):
                out = os.path.join(work, f"{conv}.x{scale}.w{workers}")
                log(f"{PROG}: data_prep.{conv} x{scale} input, {workers} worker(s) ...", file=sys.stderr)
                args = [inputs[scale], *cmd[1:], "--roberta-dir", base, "--out", out, "--workers", str(workers)]
                seconds, records, peak = _measure_converter(cmd[0], args, out)
                rows.append({"converter": f"data_prep.{conv}", "input_scale": scale, "workers": workers,
                             "sentences": records, "seconds": seconds, "sentences_per_s": records / seconds,
                             "peak_mem_mb": peak})
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for conv in converters:
        by = {(r["input_scale"], r["workers"]): r for r in rows if r["converter"] == f"data_prep.{conv}"}
        summary[f"data_prep.{conv}"] = {
            "peak_mem_growth": by[a.scale, 1]["peak_mem_mb"] / by[1, 1]["peak_mem_mb"],
            "two_vs_one_worker_speed": by[a.scale, 2]["sentences_per_s"] / by[a.scale, 1]["sentences_per_s"],
        }
    return {"mode": "data_prep", "scale": a.scale, "base": "tiny random base (sentencepiece)" if a.roberta_dir is None else a.roberta_dir,
            "rows": rows, "summary": summary}


def format_data_prep(result):
    out = ["| converter | input | workers | sentences | seconds | sentences/s | peak MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        out.append(f"| {r['converter']} | {r['input_scale']}x | {r['workers']} | {r['sentences']} | {r['seconds']:.1f} "
                   f"| {r['sentences_per_s']:.0f} | {r['peak_mem_mb']:.0f} |")
    out.append("")
    for conv, s in result["summary"].items():
        out.append(f"{conv}: peak memory {result['scale']}x / 1x input = {s['peak_mem_growth']:.2f}, "
                   f"2 workers / 1 worker speed = {s['two_vs_one_worker_speed']:.2f}")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# command line


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="RoBERTa shape, random weights (default tiny)")
    p.add_argument("--batch", type=int, default=4, help="sequences per step (default 4)")
    p.add_argument("--tokens", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row, after the warm-up (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (and a bf16 feature cache)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s at the run's precision, to report model-FLOPs utilisation (cuda)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--data-prep", action="store_true", help="benchmark data_prep.trex and data_prep.conllu instead")
    p.add_argument("--trex", help="--data-prep: T-REx sample (default ../shared/data/trex/rebel_sample.jsonl)")
    p.add_argument("--conllu", help="--data-prep: CoNLL-U sample (default ../shared/data/ud_english_ewt, else examples/data)")
    p.add_argument("--roberta-dir", help="--data-prep: base with dict.txt + tokenizer (default: a tiny random base)")
    p.add_argument("--scale", type=int, default=10, help="--data-prep: the large input is the sample repeated this often")
    p.add_argument("--distributed", action="store_true",
                   help="also measure updates/s with 1 and 2 processes (kadapter_fairseq.distributed_bench)")
    p.add_argument("--row", choices=ROWS, help="run only this row, in this process, and print its JSON (profiling one row)")
    return p


def _distributed_rows(a):
    try:
        from .. import distributed_bench
    except ImportError:
        raise BenchError("--distributed: this checkout has no kadapter_fairseq.distributed_bench") from None
    # its own small model and run lengths: fairseq's launcher, not this benchmark's shapes, is what it measures
    return distributed_bench.measure()


def _positive(a, p):
    for name in ("batch", "tokens", "steps", "scale"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.warmup < 0:
        p.error("--warmup must be at least 0")


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    _positive(a, p)
    try:
        if a.row:
            print(json.dumps(run_row(a.row, a)))
            return 0
        if a.data_prep:
            result = data_prep_benchmark(a)
            print(format_data_prep(result))
        else:
            result = model_benchmark(a)
            if a.distributed:
                result["distributed"] = _distributed_rows(a)
            print(format_table(result))
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
    except KAdapterError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
