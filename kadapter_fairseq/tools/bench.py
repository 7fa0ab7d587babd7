"""kadapter-bench: K-Adapter's training and inference cost, side by side with full fine-tuning and LoRA.

Every configuration (a *row*) runs in its own child process, so that its peak memory can be read
(the process's maximum resident set on CPU, ``torch.cuda.max_memory_allocated`` on a GPU), at
random weights of a RoBERTa shape (``--size``): nothing is read or downloaded. A training step
is forward + backward + the optimizer step on one random batch of ``--batch`` sequences of
``--tokens`` tokens with a sentence-classification loss, through fairseq's own optimizer stack
(its Adam, wrapped as ``kadapter-train`` wraps it for the precision, the gradient norm clipped at
1.0 as the training configs clip it); the first step is a warm-up
and ``step_s`` is the median of the ``--steps`` timed ones. Machines are noisy: compare the
ratios, which are taken within one run.

Rows:
    full_finetune              fairseq RoBERTa, every weight trains
    lora                       HF RoBERTa of the same shape, PEFT LoRA r=8 on query/value
    kadapter_knowledge         one knowledge adapter (the paper's size for --size), base frozen
    kadapter_knowledge_cached  the same step, base features read from the feature cache
    kadapter_efficient         fine-tuning with base and two adapters frozen (fusion + head train)
    kadapter_efficient_cached  the same, adapters' outputs read from the feature cache
    inference_{1,2,4}_adapter(s)   forward only, eval mode, under torch.inference_mode

Precisions (--precision, comma-separated: run one after the other in one invocation, compared
side by side; --bf16 is short for --precision bf16):
    fp32           fp32 weights and arithmetic
    bf16           what `kadapter-train common.bf16=true` runs: fairseq's Trainer casts the whole model
                   to bf16 once (the frozen base is stored in bf16, never cast again) and its
                   FP16Optimizer keeps fp32 master weights for the trained parameters only (no loss
                   scaling in bf16); the loss is taken in fp32
    fp16           `common.fp16=true`, GPU only: the model in fp16, FP16Optimizer with dynamic loss scaling
    amp            `common.amp=true`, GPU only: fp32 weights, torch.autocast to fp16, fairseq's AMPOptimizer
    bf16-autocast  torch.autocast to bf16 over fp32 weights (no fairseq training mode runs this): every
                   frozen weight is cast again on every call (autocast caches casts only of weights that
                   require grad) and LayerNorm, GELU, residual sums and the rest stay in fp32, so the
                   frozen base gains much less than under bf16; see docs/benchmarks.md
    auto           bf16 where the CPU has AMX/AVX512-BF16 or the GPU is sm80+, else fp32 (said in the output)

Utilisation: before each precision's rows a `peak` row times torch.matmul of two 2048x2048
matrices in that precision's compute type on the device, the dense peak this machine reaches
(--peak-tflops replaces it as the denominator, e.g. a GPU's datasheet figure). Each row's model
FLOPs per token are counted in its untimed warm-up step from the modules that ran:
    6 per trained parameter (forward, input gradient, weight gradient)
    4 per frozen parameter the backward pass goes through (forward and input gradient: LoRA's base)
    2 per frozen parameter run forward only (K-Adapter's frozen base, inference)
    + attention: 4*T*d per token per self-attention of width d over T tokens run forward only
      (Q.K^T and A.V, 2*T*d each), 12*T*d where the backward pass goes through it
    embedding lookups are excluded (gathers, not products), and so are modules that do not run
    (the base's masked-LM head in a classification step)
  achieved TFLOP/s = FLOPs/token x tokens/step / step_s; util = achieved / peak;
  base util = the frozen base's own FLOPs over its base_forward time (rows that run it forward only).

Ratios (above 1 = faster than full fine-tuning, or than LoRA for adapter_vs_lora):
    adapter_vs_full = full / adapter step time, cached_adapter_vs_full, lora_vs_full,
    adapter_vs_lora = lora / adapter, two_vs_one_adapter_inference = 2-adapter / 1-adapter time (a cost;
    the FLOP model's own ratio is printed beside it). With several precisions, each row's speed-up
    over the first precision (e.g. bf16 over fp32).

--train-path also runs `kadapter-train` itself for the knowledge phase at the same shape and
precisions (kadapter_fairseq.tools.train_bench) and prints fairseq's words/s beside the
kadapter_knowledge row. --data-prep instead measures the knowledge-data converters (data_prep.trex,
data_prep.conllu): sentences/s at 1 and 2 workers and peak memory at 1x and 10x input.

Example:
    kadapter-bench --size large --batch 4 --tokens 128 --steps 3 --precision fp32,bf16 --json bench-large.json
"""
import argparse
import contextlib
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
LR = 1e-5
CLIP_NORM = 1.0  # optimization.clip_norm of the shipped training configs
PEAK_SHAPE = 2048  # the peak row's square matmul

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


class Precision:
    """How one precision runs: the weights' type, autocast, the optimizer wrapper, the cache's type."""

    # name: (weights, autocast type or None, fairseq common.* flag, feature-cache storage type, GPU only)
    TABLE = {
        "fp32": ("float32", None, None, "float16", False),
        "bf16": ("bfloat16", None, "bf16", "bfloat16", False),
        "fp16": ("float16", None, "fp16", "float16", True),
        "amp": ("float32", "float16", "amp", "float16", True),
        "bf16-autocast": ("float32", "bfloat16", None, "bfloat16", False),
    }

    def __init__(self, name):
        import torch

        if name not in self.TABLE:
            raise BenchError(f"unknown precision {name!r}; choose from {', '.join(CHOICES)}")
        weights, autocast, flag, cache, gpu_only = self.TABLE[name]
        self.name = name
        self.weights = getattr(torch, weights)
        self.autocast = getattr(torch, autocast) if autocast else None
        self.fairseq_flag = flag  # common.bf16 / common.fp16 / common.amp
        self.cache = getattr(torch, cache)
        self.gpu_only = gpu_only

    @property
    def compute(self):
        """The type matrix products run in (what the peak row measures)."""
        return self.autocast or self.weights

    def autocast_context(self, device):
        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=self.autocast)

    def cast(self, model):
        """As fairseq's Trainer does for common.bf16/fp16: the whole model, once."""
        return model if self.weights is next(model.parameters()).dtype else model.to(dtype=self.weights)


CHOICES = tuple(Precision.TABLE) + ("auto",)


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

    with torch.no_grad():
        feats = model.compute_cacheable_features(src)
    return _map_tensors(feats, lambda t: t.to(dtype))


def _map_tensors(obj, fn):
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return fn(obj)


def fairseq_optimizer(params, precision: Precision):
    """The optimizer ``kadapter-train`` builds for these parameters: fairseq's Adam (AdamW), wrapped
    in FP16Optimizer (fp32 master copies; loss scaling for fp16 only) or AMPOptimizer, as fairseq's
    Trainer wraps it for common.bf16 / common.fp16 / common.amp."""
    from fairseq import optim
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.optim.adam import FairseqAdamConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(FairseqConfig())
    cfg.optimizer = OmegaConf.structured(FairseqAdamConfig(adam_betas="(0.9, 0.98)", adam_eps=1e-6, weight_decay=0.01))
    cfg.optimizer._name = "adam"
    cfg.optimization.lr = [LR]
    if precision.fairseq_flag is None:
        return optim.build_optimizer(cfg.optimizer, params)
    setattr(cfg.common, precision.fairseq_flag, True)
    if precision.fairseq_flag == "amp":
        return optim.AMPOptimizer.build_optimizer(cfg, params)
    return optim.FP16Optimizer.build_optimizer(cfg, params)


def _build_row(name, a, device, precision: Precision):
    """``(model, loss function, inference function, base module)`` for one row; exactly one of the
    two functions is set. ``base`` is the frozen or fine-tuned RoBERTa body (for the profile)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    s = SIZES[a.size]
    dictionary = _dictionary(s["vocab"])
    src, target = _batch(dictionary, a.batch, a.tokens, device)

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
        model = precision.cast(model.to(device)).train()

        def loss_fn():
            logits = model(input_ids=src).logits
            return F.cross_entropy(logits.float(), target)

        return model, loss_fn, None, model.base_model.model.roberta

    if name == "full_finetune":
        from fairseq.models.roberta.model import RobertaEncoder, RobertaModel

        from ..modules.low_precision import prepare

        args = _roberta_args(a.size, a.tokens)
        model = RobertaModel(args, RobertaEncoder(args, dictionary))
        model.register_classification_head(HEAD, num_classes=NUM_CLASSES)
        # what this project runs for full fine-tuning (roberta_kadapter, train_phase=full) has these too
        prepare(model, model.encoder.sentence_encoder.layers)
        model = precision.cast(model.to(device)).train()

        def loss_fn():
            logits, _ = model(src, features_only=True, classification_head_name=HEAD)
            return F.cross_entropy(logits.float(), target)

        return model, loss_fn, None, model.encoder.sentence_encoder

    if name.startswith("inference_"):
        n = int(name.split("_")[1])
        model = _kadapter_model(a.size, a.tokens, dictionary, [f"k{i}" for i in range(n)], "efficient")
        model = precision.cast(model.to(device)).eval()

        def infer():
            with torch.inference_mode(), precision.autocast_context(device):
                model(src, classification_head_name=HEAD)

        return model, None, infer, model.encoder.sentence_encoder

    phase, adapters = ("knowledge", ["fac"]) if name.startswith("kadapter_knowledge") else ("efficient", ["fac", "lin"])
    model = _kadapter_model(a.size, a.tokens, dictionary, adapters, phase)
    model = precision.cast(model.to(device))
    cached = None
    if name.endswith("_cached"):
        with precision.autocast_context(device):
            cached = _cached(model, src, precision.cache)
    model_dtype = next(model.parameters()).dtype

    def loss_fn():
        kwargs = {}
        if cached is not None:  # batches come off the cache in its 16-bit type, converted for the model
            CLOCK.start("cache_read")
            kwargs["cached_features"] = _map_tensors(cached, lambda t: t.to(model_dtype))
            CLOCK.stop("cache_read")
        logits, _ = model(src, classification_head_name=HEAD, **kwargs)
        return F.cross_entropy(logits.float(), target)

    return model, loss_fn, None, model.encoder.sentence_encoder


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


def _watch_parts(model, base, clock):
    clock.watch(base, "base_forward")
    for adapter in getattr(model, "adapters", {}).values():
        clock.watch(adapter, "adapters_forward")


class FlopCounter:
    """Model FLOPs per token of one step, from the modules that ran in it (the rule is in the
    module docstring): hooks on every parameter-holding leaf module and every self-attention,
    attached for one step and then removed. Each call adds its per-token FLOPs (every module of
    these rows sees every token of the batch once). ``base`` marks the base's share."""

    def __init__(self, model, base, seq_len):
        import torch.nn as nn
        from fairseq.modules.multihead_attention import MultiheadAttention

        self.seq_len = seq_len
        self.total = 0
        self.base = 0
        self.base_forward_only = True
        base_modules = set(base.modules())
        inside_fairseq_attention = set()
        self.handles = []
        for m in model.modules():
            if isinstance(m, MultiheadAttention):
                # fairseq's fast path calls F.multi_head_attention_forward with the projections' weights:
                # their Linear modules never run as modules, so the attention counts their parameters
                inside_fairseq_attention.update(x for x in m.modules() if x is not m)
        for m in model.modules():
            if m in inside_fairseq_attention or isinstance(m, nn.Embedding):
                continue
            if isinstance(m, MultiheadAttention):
                width, params = m.embed_dim, list(m.parameters())
            elif type(m).__name__.endswith("SelfAttention") and hasattr(m, "all_head_size"):  # HF RoBERTa
                width, params = m.all_head_size, list(m.parameters(recurse=False))
            elif not list(m.children()) and list(m.parameters(recurse=False)):
                width, params = None, list(m.parameters(recurse=False))
            else:
                continue
            self.handles.append(m.register_forward_hook(self._hook(width, params, m in base_modules)))

    def _hook(self, width, params, in_base):
        import torch

        def count(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            backward = torch.is_tensor(out) and out.requires_grad
            flops = sum((6 if p.requires_grad else 4 if backward else 2) * p.numel() for p in params)
            if width is not None:
                flops += (12 if backward else 4) * self.seq_len * width
            self.total += flops
            if in_base:
                self.base += flops
                self.base_forward_only &= not backward

        return count

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def run_row(name, a, precision_name):
    """Time one row in this process; returns its JSON row (with its FLOP count and profile)."""
    import torch

    global CLOCK
    device = a.device
    if a.threads:
        torch.set_num_threads(a.threads)
    precision = Precision(precision_name)
    _check_device(device, precision)
    CLOCK = clock = PhaseClock(device)
    model, loss_fn, infer, base = _build_row(name, a, device, precision)
    trained = [p for p in model.parameters() if p.requires_grad] if infer is None else []
    if infer is None:
        opt = fairseq_optimizer(trained, precision)

        def step():
            clock.start("forward")
            with precision.autocast_context(device):
                loss = loss_fn()
            clock.stop("forward")
            clock.start("backward")
            opt.backward(loss)
            clock.stop("backward")
            clock.start("optimizer")
            try:  # as fairseq's Trainer: the gradient norm (clipped at the configs' clip_norm), then the step
                opt.clip_grad_norm(CLIP_NORM)
                opt.step()
            except FloatingPointError:  # an fp16/amp loss-scale overflow: the Trainer skips the update too
                pass
            opt.zero_grad()
            clock.stop("optimizer")
    else:
        def step():
            clock.start("forward")
            infer()
            clock.stop("forward")
    _watch_parts(model, base, clock)
    base_calls = [0]  # the cached rows' claim: the base never runs in their steps
    base.register_forward_pre_hook(lambda *_: base_calls.__setitem__(0, base_calls[0] + 1))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    counter = FlopCounter(model, base, a.tokens)
    times, phases = [], []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            base_calls[0] = 0
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i == 0:
            counter.remove()  # counted in the first step, which is never timed when --warmup >= 1
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
    profile = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in sorted(set().union(*phases))}
    row = {
        "name": name,
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "peak_mem_mb": peak,
        "trained_params": sum(p.numel() for p in trained),
        "base_calls_per_step": base_calls[0] / a.steps,
        "flops_per_token": counter.total,
        "tflops_per_s": counter.total * tokens / step_s / 1e12,
        "_profile": profile,
    }
    if counter.base and counter.base_forward_only and profile.get("base_forward"):
        row["base_tflops_per_s"] = counter.base * tokens / profile["base_forward"] / 1e12
    return row


def _check_device(device, precision: Precision):
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA GPU is available")
    if precision.gpu_only and device != "cuda":
        raise BenchError(f"precision {precision.name} needs a CUDA GPU (fairseq's common.{precision.fairseq_flag}); "
                         "on CPU use bf16")


def measure_peak(a, precision_name):
    """The dense matmul peak in TFLOP/s: torch.matmul of two PEAK_SHAPE² matrices in the precision's
    compute type, median of 5 timed rounds of at least 0.2 s each after a warm-up."""
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    precision = Precision(precision_name)
    _check_device(a.device, precision)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(PEAK_SHAPE, PEAK_SHAPE, generator=g).to(a.device, precision.compute) for _ in range(2))
    flops = 2 * PEAK_SHAPE**3
    start = time.perf_counter()
    reps = 0
    while time.perf_counter() - start < 0.2 or reps < 2:  # warm-up, and how many calls make 0.2 s
        torch.matmul(x, y)
        sync()
        reps += 1
    rates = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            torch.matmul(x, y)
        sync()
        rates.append(flops * reps / (time.perf_counter() - t) / 1e12)
    return {"name": "peak", "op": f"torch.matmul {PEAK_SHAPE}x{PEAK_SHAPE} @ {PEAK_SHAPE}x{PEAK_SHAPE}",
            "dtype": str(precision.compute).replace("torch.", ""), "tflops_per_s": statistics.median(rates),
            "threads": torch.get_num_threads()}


def resolve_auto(a):
    """``auto``'s precision, decided where CUDA may be initialised (a child process)."""
    from ..precision import resolve

    return resolve("auto", on_gpu=a.device == "cuda")


# ----------------------------------------------------------------------------------------------
# the driver


def _child(fn, args, conn):
    try:
        conn.send({"result": fn(*args)})
    except Exception as e:  # noqa: BLE001  (reported by the driver, with what it was running)
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def in_child(what, fn, *args, device="cpu"):
    """``fn(*args)`` in a child process of its own, so that its peak memory is its own.

    Never a plain ``fork`` of the caller: once the caller has run torch ops (a test, or
    ``train_bench`` building its random base), torch's thread pools hold locks, and a forked copy
    waits on them for ever. On CPU the child is forked from a ``forkserver`` that has imported
    torch and fairseq but run nothing, so each row still skips the imports (~10 s on a loaded
    2-core machine). With ``--device cuda`` it is spawned, so that no process that a row inherits
    from has touched the CUDA driver."""
    import multiprocessing as mp

    if device == "cpu" and "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "fairseq", "kadapter_fairseq.tools.bench"])
    else:
        ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, send), daemon=True)
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = {"error": "its process died without a result (killed for memory?)"}
    proc.join()
    if "error" in result:
        raise BenchError(f"{what} failed: {result['error']}")
    return result["result"]


def run_row_process(name, a, precision_name):
    return in_child(f"row {name} ({precision_name})", run_row, name, a, precision_name, device=a.device)


def ratios(rows):
    t = {r["name"]: r["step_s"] for r in rows}
    return {
        "adapter_vs_full": t["full_finetune"] / t["kadapter_knowledge"],
        "cached_adapter_vs_full": t["full_finetune"] / t["kadapter_knowledge_cached"],
        "lora_vs_full": t["full_finetune"] / t["lora"],
        "adapter_vs_lora": t["lora"] / t["kadapter_knowledge"],
        "two_vs_one_adapter_inference": t["inference_2_adapters"] / t["inference_1_adapter"],
    }


def precision_benchmark(a, precision_name, log=print):
    """The peak row, then every row, in one precision."""
    peak = in_child(f"peak ({precision_name})", measure_peak, a, precision_name, device=a.device)
    denominator = a.peak_tflops or peak["tflops_per_s"]
    log(f"{PROG}: [{precision_name}] peak: {peak['op']} in {peak['dtype']}: {peak['tflops_per_s'] * 1e3:.4g} GFLOP/s",
        file=sys.stderr)
    rows, profile = [], {}
    for name in ROWS:
        log(f"{PROG}: [{precision_name}] {name} ...", file=sys.stderr)
        row = run_row_process(name, a, precision_name)
        profile[name] = row.pop("_profile")
        row["util"] = row["tflops_per_s"] / denominator
        if "base_tflops_per_s" in row:
            row["base_util"] = row["base_tflops_per_s"] / denominator
        rows.append(row)
        log(f"{PROG}: [{precision_name}] {name}: {row['step_s']:.4g} s/step, {_pct(row['util'])} of peak, "
            f"peak memory {row['peak_mem_mb']:.0f} MB", file=sys.stderr)
    by = {r["name"]: r for r in rows}
    mem = {r["name"]: r["peak_mem_mb"] for r in rows}
    return {
        "precision": precision_name,
        "peak": peak,
        "peak_tflops_used": denominator,
        "peak_source": "--peak-tflops" if a.peak_tflops else "measured (peak row)",
        "rows": rows,
        "ratios": ratios(rows),
        "flop_ratios": {
            "two_vs_one_adapter_inference": by["inference_2_adapters"]["flops_per_token"] / by["inference_1_adapter"]["flops_per_token"],
        },
        "peak_mem_ratios": {
            "adapter_vs_full": mem["kadapter_knowledge"] / mem["full_finetune"],
            "cached_adapter_vs_full": mem["kadapter_knowledge_cached"] / mem["full_finetune"],
        },
        # median seconds per phase of a step; base_forward, adapters_forward and cache_read are parts of forward
        "profile": profile,
    }


def parse_precisions(a, p):
    names = [n.strip() for n in (a.precision or "fp32").split(",") if n.strip()]
    if a.bf16:
        names = [n for n in names if n != "fp32" or a.precision] + ["bf16"]
    names = list(dict.fromkeys(names))
    bad = [n for n in names if n not in CHOICES]
    if bad or not names:
        p.error(f"--precision: {', '.join(bad) or 'nothing'} is not one of {', '.join(CHOICES)}")
    return names


def model_benchmark(a, log=print):
    precisions = []
    notes = []
    for name in a.precisions:
        if name == "auto":
            chosen, reason = in_child("precision auto", resolve_auto, a, device=a.device)
            notes.append(f"precision auto: {chosen} ({reason})")
            log(f"{PROG}: {notes[-1]}", file=sys.stderr)
            name = chosen
        if name not in precisions:
            precisions.append(name)
    runs = {name: precision_benchmark(a, name, log) for name in precisions}
    result = {
        "size": a.size,
        "batch": a.batch,
        "tokens": a.tokens,
        "device": a.device,
        "steps": a.steps,
        "precisions": precisions,
        "runs": runs,
    }
    if notes:
        result["notes"] = notes
    if len(precisions) > 1:
        first = runs[precisions[0]]
        times = {r["name"]: r["step_s"] for r in first["rows"]}
        result["speedups"] = {
            f"{name}_vs_{precisions[0]}": {r["name"]: times[r["name"]] / r["step_s"] for r in runs[name]["rows"]}
            for name in precisions[1:]
        }
    return result


def _provenance(a, precisions):
    """Where the figures come from (collected after every fork: on a GPU it initialises CUDA)."""
    import torch

    from ..provenance import collect

    if a.threads:
        torch.set_num_threads(a.threads)
    return collect(dtype=",".join(precisions), threads=torch.get_num_threads(), device=a.device)


def _fmt_flops(x):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.4g} {unit}"
    return f"{x:.4g}"


def _pct(x):
    return f"{100 * x:.3g}%"


def format_table(result):
    prov = result.get("provenance") or {}
    dev = prov.get("device") or {}
    where = dev.get("name") or f"{dev.get('model', '?')} [{' '.join(dev.get('flags', []))}]"
    out = [f"size {result['size']}, batch {result['batch']}x{result['tokens']}, {result['device']}, "
           f"median of {result['steps']} steps; {where}, {prov.get('threads', '?')} threads, "
           f"torch {prov.get('torch', '?')}, {prov.get('fairseq', '?')}"]
    out += [f"note: {n}" for n in result.get("notes", [])]
    phases = ["forward", "base_forward", "adapters_forward", "cache_read", "backward", "optimizer"]
    for name in result["precisions"]:
        run = result["runs"][name]
        peak = run["peak"]
        out += ["", f"## {name}", "",
                f"peak: {peak['op']} in {peak['dtype']}, {peak['threads']} threads: {peak['tflops_per_s'] * 1e3:.4g} GFLOP/s"
                + ("" if run["peak_source"].startswith("measured") else f"; utilisation against --peak-tflops {run['peak_tflops_used']:g}"),
                "",
                "| row | step s | tokens/s | peak MB | trained params | FLOPs/token | GFLOP/s | util | base util |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in run["rows"]:
            base = _pct(r["base_util"]) if "base_util" in r else "-"
            out.append(f"| {r['name']} | {r['step_s']:.4g} | {r['tokens_per_s']:.4g} | {r['peak_mem_mb']:.0f} | "
                       f"{r['trained_params']:,} | {_fmt_flops(r['flops_per_token'])} | {r['tflops_per_s'] * 1e3:.4g} | "
                       f"{_pct(r['util'])} | {base} |")
        out += ["", "| ratio | value |", "|---|---:|"]
        out += [f"| {k} | {v:.3g} |" for k, v in run["ratios"].items()]
        out += [f"| {k} (FLOP model) | {v:.3g} |" for k, v in run["flop_ratios"].items()]
        out += [f"| peak memory {k} | {v:.2f} |" for k, v in run["peak_mem_ratios"].items()]
        out += ["", "| profile (s) | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
        for row, prof in run["profile"].items():
            out.append(f"| {row} | " + " | ".join(f"{prof[k]:.3g}" if k in prof else "-" for k in phases) + " |")
    for key, speedup in result.get("speedups", {}).items():
        a, b = key.split("_vs_")
        out += ["", f"## {key}: step time in {b} / in {a}", "", f"| row | {b} step s | {a} step s | speed-up |", "|---|---:|---:|---:|"]
        ta = {r["name"]: r["step_s"] for r in result["runs"][a]["rows"]}
        tb = {r["name"]: r["step_s"] for r in result["runs"][b]["rows"]}
        out += [f"| {row} | {tb[row]:.4g} | {ta[row]:.4g} | {v:.2f} |" for row, v in speedup.items()]
    if "train_path" in result:
        from .train_bench import format_train_path

        out += ["", format_train_path(result["train_path"])]
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
    conllu = _find_input(a.conllu, [os.path.join(repo, "examples", "data", "ud_english_ewt", "en_ewt-ud-dev_sample.conllu")],
                         "CoNLL-U")
    samples = {"conllu": conllu}
    if a.trex:  # no T-REx sample ships with the repository (its licence): the user names one
        samples["trex"] = _find_input(a.trex, [], "T-REx")
    else:
        log(f"{PROG}: data_prep.trex skipped: pass --trex FILE (T-REx documents as JSON lines, e.g. a REBEL T-REx sample)",
            file=sys.stderr)
    work = tempfile.mkdtemp(prefix="kadapter-bench.")
    try:
        base = a.roberta_dir
        if base is None:
            from .tiny_base import make_tiny_base

            base = make_tiny_base(os.path.join(work, "base"), seed=0)
        converters = {
            "trex": (samples.get("trex"), ".jsonl", ["data_prep.trex", "--min-count", "1"]),
            "conllu": (conllu, ".conllu", ["data_prep.conllu"]),
        }
        converters = {k: v for k, v in converters.items() if v[0] is not None}
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
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1; the first one also counts the FLOPs)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", default=None,
                   help=f"comma-separated, run side by side: {', '.join(CHOICES)} (default fp32; see above)")
    p.add_argument("--bf16", action="store_true", help="add bf16 (kadapter-train's common.bf16=true) to --precision")
    p.add_argument("--threads", type=int, default=None, help="torch threads in every row (default: torch's, i.e. OMP_NUM_THREADS)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="divide by this peak TFLOP/s (e.g. a GPU's datasheet figure at the run's precision) instead of "
                        "the measured peak row")
    p.add_argument("--train-path", action="store_true",
                   help="also run kadapter-train itself (knowledge phase, same shape and precisions) and print fairseq's "
                        "words/s beside the kadapter_knowledge row (kadapter_fairseq.tools.train_bench)")
    p.add_argument("--train-updates", type=int, default=6, help="--train-path: updates per run (default 6; the first 2 are warm-up)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--data-prep", action="store_true", help="benchmark data_prep.trex and data_prep.conllu instead")
    p.add_argument("--trex", help="--data-prep: T-REx documents as JSON lines (no sample ships with the repository; "
                                  "without it data_prep.trex is skipped)")
    p.add_argument("--conllu", help="--data-prep: CoNLL-U sample (default examples/data/ud_english_ewt's)")
    p.add_argument("--roberta-dir", help="--data-prep: base with dict.txt + tokenizer (default: a tiny random base)")
    p.add_argument("--scale", type=int, default=10, help="--data-prep: the large input is the sample repeated this often")
    p.add_argument("--distributed", action="store_true",
                   help="also measure updates/s with 1 and 2 processes (kadapter_fairseq.tools.distributed_bench)")
    p.add_argument("--row", choices=ROWS, help="run only this row, in this process, and print its JSON (profiling one row)")
    return p


def _distributed_rows(a):
    from . import distributed_bench

    # its own small model and run lengths: fairseq's launcher, not this benchmark's shapes, is what it measures
    return distributed_bench.measure()


def _positive(a, p):
    for name in ("batch", "tokens", "steps", "scale", "train_updates"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0:
        p.error("--warmup must be at least 0")
    if a.threads is not None and a.threads < 1:
        p.error("--threads must be at least 1")


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    _positive(a, p)
    a.precisions = parse_precisions(a, p)
    try:
        if a.row:
            name = a.precisions[0] if a.precisions[0] != "auto" else resolve_auto(a)[0]
            print(json.dumps(run_row(a.row, a, name)))
            return 0
        if a.data_prep:
            result = data_prep_benchmark(a)
            print(format_data_prep(result))
        else:
            result = model_benchmark(a)
            if a.train_path:
                from .train_bench import measure as train_measure

                result["train_path"] = train_measure(a.size, a.batch, a.tokens, result["precisions"], a.train_updates,
                                                     a.device, threads=a.threads, bench_rows=result)
            if a.distributed:
                result["distributed"] = _distributed_rows(a)
            result["provenance"] = _provenance(a, result["precisions"])
            print(format_table(result))
        if a.json:
            from ..atomic import write_json

            write_json(a.json, result, indent=2)
    except KAdapterError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
