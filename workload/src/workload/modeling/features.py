"""The model config and the numpy batches each architecture reads: shared by training and serving, torch-free.

Serving imports this module (never `architectures`), so the API runs in an environment without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from workload.errors import WorkloadError
from workload.modeling.text import PADDING_ID, TextEncoder, ngram_features

ARCHITECTURES = ("ngram", "bilstm")
DEFAULT_ARCH = "ngram"


@dataclass(frozen=True)
class ModelConfig:
    arch: str = DEFAULT_ARCH
    vocab_size: int = 0  # filled in from the trained tokenizer
    ngram_order: int = 3
    n_buckets: int = 1 << 22
    # NgramNB's stored parametrisation (the bundle's `ratio` is scale * r, its factor w + offset), kept so that
    # bundles trained before the convex fit still load; NgramNB.load_linear_fit converts a fit into it
    nb_offset: float = 0.4
    nb_scale: float = 0.1
    nb_smoothing: float = 1.0
    # bilstm sizes: 64/64/256 trains ~4x faster per batch on CPU than 128/128/400 (measured)
    embedding_dim: int = 64
    hidden_dim: int = 64
    max_tokens: int = 256  # bilstm truncates longer reviews

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise WorkloadError(f"unknown model config keys: {', '.join(unknown)}")
        config = cls(**values)
        if config.arch not in ARCHITECTURES:
            raise WorkloadError(f"unknown architecture {config.arch!r} (expected one of {', '.join(ARCHITECTURES)})")
        return config


@dataclass(frozen=True)
class BagBatch:
    """Per-text feature id lists in CSR form (ids flat, offsets of each text's first id)."""

    features: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def sizes(self) -> np.ndarray:
        """The number of feature ids of each text."""
        # not np.diff(..., append=): that is ~4x slower on the one-text batches of the API's hot path
        return np.concatenate((self.offsets[1:], [len(self.features)])) - self.offsets

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chosen texts' (features, offsets), as a batch of their own."""
        starts, sizes = self.offsets[indices], self.sizes[indices]
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        # gather the chosen texts' slices without a Python loop: one index per kept feature
        positions = np.repeat(starts - offsets, sizes) + np.arange(sizes.sum())
        return self.features[positions], offsets

    def all(self) -> tuple[np.ndarray, np.ndarray]:
        return self.features, self.offsets


@dataclass(frozen=True)
class SequenceBatch:
    """Padded token ids (texts x max_tokens) and each text's length."""

    ids: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chosen texts' (ids, lengths), padded only to the longest of them."""
        lengths = self.lengths[indices]
        width = max(int(lengths.max(initial=1)), 1)
        return self.ids[indices, :width], lengths

    def all(self) -> tuple[np.ndarray, np.ndarray]:
        return self.take(np.arange(len(self)))


Batch = BagBatch | SequenceBatch


def featurize(config: ModelConfig, encoder: TextEncoder, texts: Sequence[str]) -> Batch:
    """The batch `config.arch` reads: n-gram bags for `ngram`, padded token ids for sequence models."""
    flat, lengths = encoder.encode(texts)
    if config.arch == "ngram":
        features, offsets = ngram_features(
            flat, lengths, order=config.ngram_order, vocab_size=config.vocab_size, n_buckets=config.n_buckets
        )
        return BagBatch(features, offsets)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    position = np.arange(len(flat)) - np.repeat(starts, lengths)
    kept = position < config.max_tokens
    ids = np.full((len(lengths), config.max_tokens), PADDING_ID, dtype=np.int64)
    ids[np.repeat(np.arange(len(lengths)), lengths)[kept], position[kept]] = flat[kept]
    return SequenceBatch(ids, np.minimum(lengths, config.max_tokens))
