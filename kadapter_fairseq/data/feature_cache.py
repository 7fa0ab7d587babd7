"""The base-feature cache (``task.feature_cache=DIR``).

While adapters train on a frozen base (``train_phase=knowledge``) the base's
hidden states never change, and in ``train_phase=efficient`` neither do the
adapters' outputs. The cache keeps what the frozen part computes for every
example, so that after the first epoch a step runs only the trained parts.

Layout, one directory per cached source (``DIR/<name>/``, e.g. ``train``,
``valid``, ``train.input2`` for CosmosQA's third choice, ``dependency-train``
for the multitask set):

- ``features.bin``: a memory-mapped ``tokens × states × H`` array in the
  cache dtype; examples are stored unpadded, one after another, at offsets
  given by the cumulative sizes of the binarized split (the ``.idx`` fixes
  them, and its hash is part of the key); batches are re-padded on collation
  exactly as ``RightPadDataset`` pads ``src_tokens``;
- ``filled.bin``: one byte per example, set only after that example's
  features have been flushed to ``features.bin``;
- ``manifest.json``: the key (base fingerprint, phase, cached states, the
  frozen adapters' fingerprints in the efficient phase, the data files, the
  storage dtype, and the precision the base computed in: a ``common.bf16``
  run's base is stored in bf16), written atomically when the directory is created. A cache whose key
  differs from the running model and data is refused with the reason.

Filling happens in the training process itself (``FeatureCache.fill``, called
by the task's ``train_step``/``valid_step`` in the main process: DataLoader
workers are forked, so their writes would never reach the trainer) or ahead
of training with ``kadapter-cache``. A killed run leaves examples written but
unmarked; the next run recomputes exactly those and never trusts them.
"""
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
from fairseq.data import FairseqDataset
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from .. import atomic
from ..checkpoint_utils import fingerprint_weights
from ..errors import ConfigError, KAdapterError
from ..models.roberta_kadapter import parse_adapter_paths

logger = logging.getLogger(__name__)

FORMAT = "kadapter-fairseq/feature-cache"
VERSION = 1
MANIFEST = "manifest.json"
FEATURES = "features.bin"
FILLED = "filled.bin"
# marks are committed in groups: one msync of the features every this many seconds, not one per batch
COMMIT_INTERVAL_S = 30.0

# name: (numpy storage type, torch type); numpy has no bfloat16, so bf16 is stored as its raw 16 bits
DTYPES = {
    "fp16": (np.float16, torch.float16),
    "bf16": (np.int16, torch.bfloat16),
    "fp32": (np.float32, torch.float32),
}


class FeatureCacheError(KAdapterError):
    """A feature cache that cannot be used as it is (stale, damaged, no room)."""


@dataclass
class FeatureCacheConfig(FairseqDataclass):
    """The cache options every K-Adapter task config inherits."""

    feature_cache: str = field(
        default="",
        metadata={"help": "directory of the base-feature cache (empty: off); needs model.train_phase=knowledge or efficient"},
    )
    feature_cache_dtype: ChoiceEnum(list(DTYPES)) = field(
        default="fp16", metadata={"help": "storage type of the cached features (fp32: bit-equal to uncached training)"}
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n:.1f} TB"  # pragma: no cover


# --------------------------------------------------------------------------- keys


def _unwrap(model):
    while hasattr(model, "module"):  # DDP / fairseq's distributed wrappers
        model = model.module
    return model


def _cfg(model, name):
    cfg = model.cfg  # an OmegaConf node, a dataclass or (models built from Python) a plain dict
    return cfg.get(name) if isinstance(cfg, dict) else getattr(cfg, name, None)


def check_model(model):
    """Refuse, before any data is read, a model whose features cannot be cached."""
    model = _unwrap(model)
    if not hasattr(model, "compute_cacheable_features"):
        raise ConfigError(f"task.feature_cache needs the roberta_kadapter model; {type(model).__name__} cannot fill it")
    if model.base_trains:
        raise ConfigError(
            f"task.feature_cache: model.train_phase={_cfg(model, 'train_phase')} trains the base, so there is nothing "
            "fixed to cache (use train_phase=knowledge or efficient, or unset task.feature_cache)"
        )
    if model.base_fingerprint is None:
        raise ConfigError("task.feature_cache: the model has no base fingerprint to key the cache with")
    if model.adapters_train:
        bad = [name for name, a in model.adapters.items() if not a.cfg.mask_padding]
        if bad:
            # such adapters read the base at padding positions, which depend on the batch, not the example
            raise ConfigError(
                f"task.feature_cache: adapters {bad} attend to padding (adapter_mask_padding=false), so their input "
                "depends on the batch and cannot be cached per example"
            )
    return model


def model_key(model, dtype: str) -> dict:
    """The part of the key the model decides: what is cached, from which base and adapters."""
    model = check_model(model)
    key = {
        "base": {"weights": model.base_fingerprint["weights"], "dictionary": model.base_fingerprint["dictionary"]},
        "phase": "knowledge" if model.adapters_train else "efficient",
        "hidden": int(model.hidden_dim),
        "dtype": dtype,
        # what the frozen part computed in (a common.bf16 run stores the base in bf16): features from a
        # bf16 base are not the fp32 run's, whatever the storage type
        "compute": compute_precision(model),
        "adapters": {},
    }
    if model.adapters_train:
        key["slots"] = [f"state.{p}" for p in model.cacheable_plug_layers()] + ["last"]
    else:
        key["slots"] = [f"adapter.{name}" for name in model.adapters] + ["last"]
        paths = parse_adapter_paths(_cfg(model, "adapter_paths") or "")
        for name, adapter in model.adapters.items():
            h = hashlib.sha256(json.dumps(adapter.cfg.to_dict(), sort_keys=True).encode())
            # in fp32 whatever the run's precision (the Trainer may have cast the model already)
            h.update(fingerprint_weights({k: v.float() for k, v in adapter.state_dict().items()}).encode())
            key["adapters"][name] = {"fingerprint": h.hexdigest(), "file": paths.get(name, "")}
    return key


COMPUTE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def compute_precision(model) -> str:
    """The type the model's frozen base is stored (and so computes) in."""
    dtype = model.encoder.sentence_encoder.embed_tokens.weight.dtype
    return COMPUTE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def data_key(prefix: str, sizes: np.ndarray) -> dict:
    """The data side of the key: the binarized split's files and the example sizes they give."""
    bin_path, idx_path = prefix + ".bin", prefix + ".idx"
    key = {"sizes": hashlib.sha256(np.asarray(sizes, dtype=np.int64).tobytes()).hexdigest()}
    if os.path.isfile(bin_path):
        st = os.stat(bin_path)
        key["bin"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if os.path.isfile(idx_path):
        with open(idx_path, "rb") as f:
            key["idx"] = hashlib.sha256(f.read()).hexdigest()
    return key


def stale_reasons(stored: dict, wanted: dict, prefix: str) -> List[str]:
    """Why a cache built under ``stored`` cannot serve ``wanted``, in words; empty when it can."""
    reasons = []
    if stored.get("base") != wanted["base"]:
        theirs, ours = stored.get("base") or {}, wanted["base"]
        reasons.append(
            f"it was built from another base model (weights {str(theirs.get('weights'))[:12]}, "
            f"this model's base is {ours['weights'][:12]})"
        )
    if stored.get("phase") != wanted["phase"]:
        reasons.append(f"it holds {stored.get('phase')}-phase features, this run is in the {wanted['phase']} phase")
    elif stored.get("slots") != wanted["slots"]:
        reasons.append(f"it holds {stored.get('slots')}, this model needs {wanted['slots']} (plug-in points or adapters differ)")
    theirs, ours = stored.get("adapters") or {}, wanted["adapters"]
    for name in sorted(set(theirs) | set(ours)):
        if name in theirs and name in ours and theirs[name]["fingerprint"] != ours[name]["fingerprint"]:
            file = ours[name].get("file") or theirs[name].get("file")
            where = f" (adapter file {file})" if file else ""
            reasons.append(f"adapter {name!r} changed{where}: its weights or architecture differ from those the cache was built with")
    if stored.get("dtype") != wanted["dtype"]:
        reasons.append(f"it stores {stored.get('dtype')} but task.feature_cache_dtype={wanted['dtype']}")
    # caches written before the key recorded it are taken as they are: nothing says what they were computed in
    if "compute" in stored and stored["compute"] != wanted["compute"]:
        reasons.append(f"it was filled by a model computing in {stored['compute']}, this run computes in {wanted['compute']} "
                       "(common.bf16 / common.fp16)")
    if stored.get("hidden") != wanted["hidden"]:
        reasons.append(f"it holds H={stored.get('hidden')}, the model's H is {wanted['hidden']}")
    sd, wd = stored.get("data") or {}, wanted["data"]
    if sd.get("bin") != wd.get("bin"):
        reasons.append(f"data file {prefix}.bin changed since the cache was built (size or modification time differ)")
    if sd.get("idx") != wd.get("idx"):
        reasons.append(f"data file {prefix}.idx changed since the cache was built")
    elif sd.get("sizes") != wd.get("sizes"):
        reasons.append(f"the examples of {prefix} have other lengths than when the cache was built")
    return reasons


# --------------------------------------------------------------------------- one cached source


def _storage(t: torch.Tensor, dtype: str) -> np.ndarray:
    """A tensor as the numpy array the cache stores."""
    t = t.detach().to(DTYPES[dtype][1]).cpu()
    if dtype == "bf16":
        t = t.view(torch.int16)
    return t.numpy()


def _tensor(a: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == "bf16" else t


class FeatureStore:
    """The cache of one binarized source (one split of one input directory)."""

    def __init__(self, directory: str, name: str, data_prefix: str, sizes):
        self.directory = directory
        self.name = name
        self.path = os.path.join(directory, name)
        self.data_prefix = data_prefix
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.key = None
        self.slots = None
        self.dtype = None
        self._data = None
        self._filled = None
        self._pending = []
        self._pending_set = set()

    def __len__(self):
        return len(self.sizes)

    @property
    def opened(self) -> bool:
        return self.key is not None

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    def nbytes(self, num_slots, hidden, dtype) -> int:
        return self.tokens * num_slots * hidden * np.dtype(DTYPES[dtype][0]).itemsize

    def open(self, key: dict):
        """Open the cache for ``key`` (the model's part; the data part is added here): create it
        when absent, resume it when it matches, refuse it with the reasons when it is stale."""
        key = dict(key, data=data_key(self.data_prefix, self.sizes))
        manifest_path = os.path.join(self.path, MANIFEST)
        os.makedirs(self.directory, exist_ok=True)
        # several processes of one run (DDP ranks) open the same cache: one creates it, the others find it
        with open(os.path.join(self.directory, f".{self.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._open_locked(key, manifest_path)
        return self

    def _open_locked(self, key, manifest_path):
        if os.path.isfile(manifest_path):
            manifest = self._read_manifest(manifest_path)
            reasons = stale_reasons(manifest["key"], key, self.data_prefix)
            if reasons:
                raise FeatureCacheError(
                    f"feature cache {self.path} is stale: " + "; ".join(reasons)
                    + ". Delete it, or set task.feature_cache to another directory."
                )
            self._set(key)
            self._check_files()
            self._map()
            done = self.filled_count()
            state = "complete" if done == len(self) else f"resuming: {done} of {len(self)} examples cached"
            logger.info(f"feature cache {self.path}: {state}")
        else:
            self._create(key, manifest_path)

    def _read_manifest(self, path) -> dict:
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise FeatureCacheError(f"{path}: not a readable feature-cache manifest ({e}); delete {self.path}") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION or "key" not in manifest:
            raise FeatureCacheError(f"{path}: not a {FORMAT} manifest of version {VERSION}; delete {self.path}")
        return manifest

    def _set(self, key):
        self.key = key
        self.slots = list(key["slots"])
        self.dtype = key["dtype"]
        self.hidden = int(key["hidden"])

    def _create(self, key, manifest_path):
        self._set(key)
        size = self.nbytes(len(self.slots), self.hidden, self.dtype)
        itemsize = np.dtype(DTYPES[self.dtype][0]).itemsize
        logger.info(
            f"feature cache {self.path}: {len(self)} examples, {self.tokens} tokens × {len(self.slots)} states × "
            f"H={self.hidden} × {itemsize} bytes ({self.dtype}) = {size} bytes ({human_bytes(size)})"
        )
        parent = self.directory
        free = shutil.disk_usage(parent).free
        if size > free:
            raise FeatureCacheError(
                f"feature cache {self.path} needs {size} bytes ({human_bytes(size)}: {self.tokens} tokens × "
                f"{len(self.slots)} states × H={self.hidden} × {itemsize} bytes) but {parent} has only "
                f"{free} bytes ({human_bytes(free)}) free"
            )
        os.makedirs(self.path, exist_ok=True)
        # a directory without manifest is a creation that died: start over, trusting none of its files
        with open(os.path.join(self.path, FEATURES), "wb") as f:
            f.truncate(size)
        with open(os.path.join(self.path, FILLED), "wb") as f:
            f.write(bytes(len(self)))
            f.flush()
            os.fsync(f.fileno())
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "key": key,
            "examples": len(self),
            "tokens": self.tokens,
            "bytes": size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic.write_json(manifest_path, manifest, indent=1, sort_keys=True)  # the cache exists from here on, whole or not at all
        self._map()

    def _check_files(self):
        want = {FEATURES: self.nbytes(len(self.slots), self.hidden, self.dtype), FILLED: len(self)}
        for name, size in want.items():
            path = os.path.join(self.path, name)
            have = os.path.getsize(path) if os.path.isfile(path) else None
            if have != size:
                raise FeatureCacheError(f"feature cache {self.path} is damaged: {name} has {have} bytes, expected {size}; delete it")

    def _map(self):
        if self.tokens == 0:
            return
        shape = (self.tokens, len(self.slots), self.hidden)
        self._data = np.memmap(os.path.join(self.path, FEATURES), dtype=DTYPES[self.dtype][0], mode="r+", shape=shape)
        self._filled = np.memmap(os.path.join(self.path, FILLED), dtype=np.uint8, mode="r+", shape=(len(self),))

    def __getstate__(self):
        # a pickled copy (spawned worker) maps the files itself; pending marks belong to the writer only
        state = dict(self.__dict__, _data=None, _filled=None, _pending=[], _pending_set=set())
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.opened:
            self._map()

    # reading and writing

    def filled_count(self) -> int:
        return len(self) if self._filled is None else int(np.count_nonzero(self._filled))

    def is_filled(self, index: int) -> bool:
        return self.opened and (self._filled is None or bool(self._filled[index]))

    def read(self, index: int) -> Optional[torch.Tensor]:
        """Example ``index`` as a ``tokens × states × H`` tensor in the cache dtype, or None if not cached."""
        if not self.is_filled(index):
            return None
        o0, o1 = self.offsets[index], self.offsets[index + 1]
        if self._data is None:
            return torch.zeros((0, len(self.slots), self.hidden), dtype=DTYPES[self.dtype][1])
        return _tensor(np.array(self._data[o0:o1]), self.dtype)

    def write(self, indices, stacked: np.ndarray) -> int:
        """Store rows of ``stacked`` (B × T × states × H, storage dtype) for examples ``indices``;
        examples already cached or waiting for their mark are left alone. Returns how many were written."""
        written = 0
        for row, index in enumerate(indices):
            index = int(index)
            if self._filled is None or self._filled[index] or index in self._pending_set:
                continue
            o0, o1 = self.offsets[index], self.offsets[index + 1]
            self._data[o0:o1] = stacked[row, : o1 - o0]
            self._pending.append(index)
            self._pending_set.add(index)
            written += 1
        return written

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> int:
        """Flush the written features, then mark their examples (the marks are flushed last)."""
        if not self._pending:
            return 0
        self._data.flush()
        self._filled[np.asarray(self._pending, dtype=np.int64)] = 1
        self._filled.flush()
        n = len(self._pending)
        self._pending, self._pending_set = [], set()
        if self.filled_count() == len(self):
            logger.info(f"feature cache {self.path}: all {len(self)} examples cached")
        return n


# --------------------------------------------------------------------------- datasets and batches


class PendingFeatures:
    """What a batch carries under ``net_input["cached_features"]`` while some of its examples
    are not cached yet: which (cache, example) each row is. The task's ``fill`` replaces it
    with computed features; the model treats it as "compute" (it is not a mapping)."""

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        return f"PendingFeatures({len(self.rows)} rows)"


def slot_path(slot: str):
    """``state.11`` → ("states", 11); ``adapter.fac`` → ("adapters", "fac"); ``last`` → ("last", None)."""
    if slot == "last":
        return "last", None
    group, name = slot.split(".", 1)
    return ("states", int(name)) if group == "state" else ("adapters", name)


def slot_tensor(features: Mapping, slot: str) -> torch.Tensor:
    group, name = slot_path(slot)
    return features[group] if name is None else features[group][name]


def assemble(slots, tensors) -> dict:
    out = {}
    for slot, t in zip(slots, tensors):
        group, name = slot_path(slot)
        if name is None:
            out[group] = t
        else:
            out.setdefault(group, {})[name] = t
    return out


class CachedFeatureDataset(FairseqDataset):
    """``net_input["cached_features"]`` of a source: each item is the example's cached
    features (or None); a batch collates to the model's ``cached_features`` mapping,
    right-padded with zeros like ``RightPadDataset``, or to ``PendingFeatures``."""

    def __init__(self, store: FeatureStore):
        super().__init__()
        self.store = store

    def __getitem__(self, index):
        return self.store.name, int(index), self.store.read(index)

    def __len__(self):
        return len(self.store)

    @property
    def sizes(self):
        return self.store.sizes

    def num_tokens(self, index):
        return int(self.store.sizes[index])

    def size(self, index):
        return int(self.store.sizes[index])

    def collater(self, samples):
        if not samples:
            return None
        if any(features is None for _, _, features in samples):
            return PendingFeatures((name, index) for name, index, _ in samples)
        width = max(f.size(0) for _, _, f in samples)
        first = samples[0][2]
        num_slots, hidden = first.size(1), first.size(2)
        buffers = [first.new_zeros(len(samples), width, hidden) for _ in range(num_slots)]
        for row, (_, _, features) in enumerate(samples):
            for k in range(num_slots):
                buffers[k][row, : features.size(0)] = features[:, k]
        return assemble(self.store.slots, buffers)


def _map_features(features, fn):
    if isinstance(features, Mapping):
        return {k: _map_features(v, fn) for k, v in features.items()}
    return fn(features)


def select_rows(features, rows):
    """The cached features of a subset of a batch's rows (a mask or an index); None stays None."""
    if not isinstance(features, Mapping):
        return None
    return _map_features(features, lambda t: t[rows])


def concat_rows(features_list, width: int):
    """Cached features of several batches stacked along the batch, right-padded to ``width``
    (as ``tasks.base.pad_batch`` stacks their tokens); None unless every part is a mapping."""
    if not features_list or not all(isinstance(f, Mapping) for f in features_list):
        return None

    def pad(t):
        return torch.nn.functional.pad(t, (0, 0, 0, width - t.size(1)))

    first = features_list[0]

    def join(path):
        parts = []
        for f in features_list:
            for p in path:
                f = f[p]
            parts.append(pad(f))
        return torch.cat(parts, dim=0)

    out = {}
    for group, value in first.items():
        if isinstance(value, Mapping):
            out[group] = {name: join((group, name)) for name in value}
        else:
            out[group] = join((group,))
    return out


# --------------------------------------------------------------------------- a task's caches


class FeatureCache:
    """All cached sources of one task: registered while datasets load, opened once the
    model exists (its key), filled from batches in the main process."""

    def __init__(self, directory: str, dtype: str = "fp16", commit_interval_s: float = COMMIT_INTERVAL_S):
        if str(dtype) not in DTYPES:
            raise ConfigError(f"task.feature_cache_dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.directory = os.path.abspath(directory)
        self.dtype = str(dtype)
        self.commit_interval_s = commit_interval_s
        self.stores: Dict[str, FeatureStore] = {}
        self._model_key = None
        self._last_commit = time.monotonic()

    def dataset(self, name: str, data_prefix: str, sizes) -> CachedFeatureDataset:
        """The ``cached_features`` dataset of one source; opened now when the model is known."""
        old = self.stores.get(name)
        if old is not None and old.opened:
            old.commit()
        store = FeatureStore(self.directory, name, data_prefix, sizes)
        self.stores[name] = store
        if self._model_key is not None:
            store.open(self._model_key)
        return CachedFeatureDataset(store)

    def open(self, model):
        """Key the cache with ``model`` (first call) and open every store registered so far."""
        if self._model_key is None:
            self._model_key = model_key(model, self.dtype)
        for store in self.stores.values():
            if not store.opened:
                store.open(self._model_key)

    def fill(self, sample, model) -> int:
        """Compute the features of every row of ``sample`` that is not cached, store them, and
        put them in the batch so the step that follows does not compute them again."""
        if not sample:
            return 0
        written = 0
        model = _unwrap(model)
        for key, net_input in sample.items():
            if not key.startswith("net_input") or not isinstance(net_input, dict):
                continue
            pending = net_input.get("cached_features")
            if not isinstance(pending, PendingFeatures):
                continue
            self.open(model)
            src_tokens = net_input["src_tokens"]
            features = model.compute_cacheable_features(src_tokens)
            written += self._store(pending, features, src_tokens, model.padding_idx)
            net_input["cached_features"] = features
        if written and (time.monotonic() - self._last_commit >= self.commit_interval_s or self._all_written()):
            self.commit()
        return written

    def _store(self, pending: PendingFeatures, features, src_tokens, pad) -> int:
        slots = self._model_key["slots"]
        stacked = _storage(torch.stack([slot_tensor(features, s) for s in slots], dim=2), self.dtype)
        lengths = src_tokens.ne(pad).sum(dim=1).tolist()
        by_store = {}
        for row, (name, index) in enumerate(pending.rows):
            store = self.stores.get(name)
            if store is None or not store.opened:
                raise FeatureCacheError(f"batch row from feature cache {name!r}, which this task has not opened")
            if lengths[row] != store.sizes[index]:
                raise FeatureCacheError(
                    f"feature cache {store.path}: example {index} has {store.sizes[index]} tokens in the data but "
                    f"{lengths[row]} in the batch; the cache stores whole, unpadded examples"
                )
            by_store.setdefault(name, ([], []))
            by_store[name][0].append(row)
            by_store[name][1].append(index)
        written = 0
        for name, (rows, indices) in by_store.items():
            written += self.stores[name].write(indices, stacked[rows])
        return written

    def _all_written(self) -> bool:
        return any(s.pending and s.filled_count() + s.pending == len(s) for s in self.stores.values())

    def commit(self) -> int:
        self._last_commit = time.monotonic()
        return sum(store.commit() for store in self.stores.values() if store.opened)
