"""What makes a model stored in bf16 (or fp16) run at the speed of its matrix units, with fp32 untouched.

Two things in fairseq's RoBERTa layers waste most of a bf16 forward on CPU; neither changes a
number in fp32, and :func:`prepare` (called when ``roberta_kadapter`` is built) removes both:

- **Strided inputs to frozen linear layers.** fairseq turns the embeddings from B×T×C into
  T×B×C by ``transpose(0, 1)``, a strided view; layer 0's query/key/value projections (and an
  adapter plugged at 0) read that view. ``torch.matmul`` folds a 3-D input into one matrix
  product only when the input is laid out row after row *or the weight requires grad*; a frozen
  weight with a strided input takes the batched path, which materialises the weight once per
  time step (T copies of a H×H matrix). In bf16 on CPU that copy costs more than the whole rest
  of the forward (measured: 0.58 s of CPU time against 0.15 s for a 12-layer H=768 base at 4×128
  tokens). The remedy is one contiguous copy of the B×T×H input (:func:`dense_layout`), applied
  where products run in 16 bits (16-bit weights, or autocast): in plain fp32 both paths run at the
  same speed, and the strided one is what every fp32 result of this project was computed with
  (the two differ in the last bits).
- **fairseq's GELU** computes ``gelu(x.float()).type_as(x)``: two casts of the B×T×4H activation
  per layer. torch's own bf16/fp16 GELU kernels compute in fp32 internally and round once, which is
  the same number: the casts are pure cost (7× slower than the kernel on this CPU at 512×3072).
  In fp32 both casts are no-ops, so the replacement is the same function there.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

LOW_PRECISION = (torch.bfloat16, torch.float16)


def dense_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` laid out row after row when its products run in 16 bits (a 16-bit tensor, or any
    tensor under autocast: see the module docstring); otherwise (plain fp32) as it is."""
    if not x.is_contiguous() and (x.dtype in LOW_PRECISION or torch.is_autocast_enabled(x.device.type)):
        return x.contiguous()
    return x


def _contiguous_first_input(module, args, kwargs):
    if args and torch.is_tensor(args[0]):
        x = dense_layout(args[0])
        if x is not args[0]:
            return (x,) + tuple(args[1:]), kwargs
    return None


def native_gelu(module: nn.Module) -> int:
    """Give every fairseq transformer layer under ``module`` torch's GELU in place of fairseq's
    cast-to-fp32 one (identical results: see the module docstring). Returns how many changed."""
    from fairseq.modules.gelu import gelu as fairseq_gelu

    changed = 0
    for m in module.modules():
        if getattr(m, "activation_fn", None) is fairseq_gelu:
            m.activation_fn = F.gelu
            changed += 1
    return changed


def prepare(model: nn.Module, layers) -> None:
    """Both remedies: torch's GELU throughout ``model``; contiguous 16-bit inputs to ``layers``
    (the base's transformer layers, whose first input is fairseq's transposed embedding)."""
    native_gelu(model)
    for layer in layers:
        layer.register_forward_pre_hook(_contiguous_first_input, with_kwargs=True)
