"""Task heads that read the fused B×T×H feature (docs/reference/kadapter.md §2-3).

Heads are registered by type name, the way fairseq registers models, and are
attached to a model with ``model.register_kadapter_head(name, type, num_classes)``,
mirroring RoBERTa's ``register_classification_head``. Every head ends in a
Linear called ``out_proj`` (the class count lives there, which lets a loader
check a saved head against the label set).
"""
import torch
import torch.nn as nn

KADAPTER_HEAD_REGISTRY = {}


def register_kadapter_head_type(name):
    def wrap(cls):
        if name in KADAPTER_HEAD_REGISTRY:
            raise ValueError(f"head type {name!r} registered twice")
        cls.head_type = name
        KADAPTER_HEAD_REGISTRY[name] = cls
        return cls

    return wrap


def build_head(head_type, hidden_dim, num_classes, **kwargs):
    if head_type not in KADAPTER_HEAD_REGISTRY:
        raise ValueError(f"unknown head type {head_type!r}; known: {sorted(KADAPTER_HEAD_REGISTRY)}")
    return KADAPTER_HEAD_REGISTRY[head_type](hidden_dim, num_classes, **kwargs)


def gather_positions(features, positions):
    """features B×T×H, positions B×k → B×k×H."""
    index = positions.long().unsqueeze(-1).expand(-1, -1, features.size(-1))
    return features.gather(1, index)


class _ClassifierHead(nn.Module):
    """Linear(in→H) → dropout → Linear(H→classes); no activation, as released."""

    def __init__(self, in_dim, hidden_dim, num_classes, dropout):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_dim, num_classes)

    def classify(self, x):
        return self.out_proj(self.dropout(self.dense(x)))


@register_kadapter_head_type("sentence")
class SentenceHead(_ClassifierHead):
    """Feature at ``<s>``; CosmosQA uses it with one class per choice."""

    def __init__(self, hidden_dim, num_classes, dropout=0.1):
        super().__init__(hidden_dim, hidden_dim, num_classes, dropout)

    def forward(self, features, positions=None, padding_mask=None):
        return self.classify(features[:, 0])


@register_kadapter_head_type("span")
class SpanHead(_ClassifierHead):
    """Feature at the first marker (entity typing: the first ``@``)."""

    def __init__(self, hidden_dim, num_classes, dropout=0.1):
        super().__init__(hidden_dim, hidden_dim, num_classes, dropout)

    def forward(self, features, positions, padding_mask=None):
        return self.classify(gather_positions(features, positions[:, :1]).squeeze(1))


@register_kadapter_head_type("span_pair")
class SpanPairHead(_ClassifierHead):
    """Concatenated features at two markers (first ``@`` and first ``#``)."""

    def __init__(self, hidden_dim, num_classes, dropout=0.1):
        super().__init__(2 * hidden_dim, hidden_dim, num_classes, dropout)

    def forward(self, features, positions, padding_mask=None):
        pair = gather_positions(features, positions[:, :2])
        return self.classify(pair.reshape(pair.size(0), -1))


@register_kadapter_head_type("dependency")
class DependencyHead(nn.Module):
    """Pointer head for dependency heads (docs/reference/kadapter.md §2.2): one single-head self-attention
    block (output projection, residual, LayerNorm), Linear H→H, dropout, and
    Linear H→max positions. Pointers to padding or past the sequence end are
    masked out, so the argmax is always a real position."""

    def __init__(self, hidden_dim, num_classes, dropout=0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden_dim, 1, dropout=dropout, batch_first=True)
        self.attn_norm = nn.LayerNorm(hidden_dim)
        self.dense = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_dim, num_classes)

    def forward(self, features, positions=None, padding_mask=None):
        attended, _ = self.attn(features, features, features, key_padding_mask=padding_mask, need_weights=False)
        x = self.attn_norm(features + attended)
        logits = self.out_proj(self.dropout(self.dense(x)))
        bsz, seq_len, classes = logits.shape
        invalid = torch.zeros(bsz, classes, dtype=torch.bool, device=logits.device)
        if classes > seq_len:
            invalid[:, seq_len:] = True
        if padding_mask is not None:
            width = min(seq_len, classes)
            invalid[:, :width] |= padding_mask[:, :width]
        return logits.masked_fill(invalid.unsqueeze(1), torch.finfo(logits.dtype).min)


@register_kadapter_head_type("span_qa")
class SpanQAHead(nn.Module):
    """Start and end logits per token (B×T×2); padding gets the lowest score."""

    def __init__(self, hidden_dim, num_classes=2, dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_dim, 2)

    def forward(self, features, positions=None, padding_mask=None):
        logits = self.out_proj(self.dropout(features))
        if padding_mask is not None:
            logits = logits.masked_fill(padding_mask.unsqueeze(-1), torch.finfo(logits.dtype).min)
        return logits
