"""The model architectures and the input batches they consume.

- `ngram` (default): NBSVM-style linear model over binarised uni/bi/trigram features ("NBSVM++" as in
  fast.ai): each feature's weight is its naive-Bayes log-count ratio r times a learned factor (w + offset),
  so training starts from the NB solution; early stopping keeps it near there. Fast and strong on CPU.
- `bilstm`: embedding + bidirectional LSTM + max/mean pooling. Slower; kept as the sequence-model option.

Each model turns texts into its own batch type (`featurize`) and is trained by the same loop in train.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional

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
    nb_offset: float = 0.4  # the learned factor starts at w + offset = offset for every feature
    nb_scale: float = 0.1  # r is scaled down so that the starting logits are O(1), not saturated
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


# Scores a featurized batch as P(positive) per text, for inference only (no gradients).
Scorer = Callable[["BagBatch | SequenceBatch"], np.ndarray]


class Batch(Protocol):
    def __len__(self) -> int: ...

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, ...]: ...


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

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        starts, sizes = self.offsets[indices], self.sizes[indices]
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        # gather the chosen texts' slices without a Python loop: one index per kept feature
        positions = np.repeat(starts - offsets, sizes) + np.arange(sizes.sum())
        return torch.from_numpy(self.features[positions]), torch.from_numpy(offsets)

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.features), torch.from_numpy(self.offsets)


@dataclass(frozen=True)
class SequenceBatch:
    """Padded token ids (texts x max_tokens) and each text's length."""

    ids: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths[indices]
        width = max(int(lengths.max(initial=1)), 1)
        return torch.from_numpy(self.ids[indices, :width]), torch.from_numpy(lengths)

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.take(np.arange(len(self)))


class NgramNB(nn.Module):
    """logit = sum over present features f of scale * r_f * (w_f + offset) + bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n_features = config.vocab_size + config.n_buckets
        self.weight = nn.Parameter(torch.zeros(n_features, 1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("ratio", torch.zeros(n_features, 1))

    def featurize(self, encoder: TextEncoder, texts: Sequence[str]) -> BagBatch:
        flat, lengths = encoder.encode(texts)
        features, offsets = ngram_features(
            flat, lengths, order=self.config.ngram_order, vocab_size=self.config.vocab_size,
            n_buckets=self.config.n_buckets,
        )  # fmt: skip
        return BagBatch(features, offsets)

    def fit_prior(self, batch: BagBatch, labels: np.ndarray) -> None:
        """Set r = log((p / |p|) / (q / |q|)) from smoothed feature counts in positive (p) and negative (q) texts."""
        n_features = self.ratio.shape[0]
        owner = np.repeat(labels, batch.sizes)
        alpha = self.config.nb_smoothing
        positive = np.bincount(batch.features[owner == 1], minlength=n_features) + alpha
        negative = np.bincount(batch.features[owner == 0], minlength=n_features) + alpha
        ratio = self.config.nb_scale * (np.log(positive / positive.sum()) - np.log(negative / negative.sum()))
        self.ratio.copy_(torch.from_numpy(ratio.astype(np.float32)).unsqueeze(1))

    def forward(self, features: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        ratio = self.ratio[features].squeeze(1)
        # sparse gradients: a step touches only the batch's features, not all few million weights
        learned = functional.embedding_bag(
            features, self.weight, offsets, mode="sum", per_sample_weights=ratio, sparse=True
        )
        prior = functional.embedding_bag(features, self.ratio, offsets, mode="sum")
        return (learned + self.config.nb_offset * prior).squeeze(1) + self.bias

    def inference_scorer(self) -> Scorer:
        """P(positive) from frozen weights: one gather and one sum per text, no torch dispatch on the hot path.

        forward() computes sum_f r_f * w_f + offset * sum_f r_f, which is sum_f r_f * (w_f + offset): fold that
        into one weight per feature once, here, instead of two embedding bags per request.
        """
        with torch.no_grad():
            effective = (self.ratio * (self.weight + self.config.nb_offset)).squeeze(1).numpy().copy()
            bias = float(self.bias)

        def score(batch: BagBatch) -> np.ndarray:
            owner = np.repeat(np.arange(len(batch)), batch.sizes)
            logits = np.bincount(owner, weights=effective[batch.features], minlength=len(batch)) + bias
            return 1.0 / (1.0 + np.exp(-logits))

        return score

    def make_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        """SparseAdam for the sparse feature weights (it has no weight decay: early stopping regularises)."""
        return [
            torch.optim.SparseAdam([self.weight], lr=learning_rate),
            torch.optim.Adam([self.bias], lr=learning_rate),
        ]


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PADDING_ID)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_dim, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(4 * config.hidden_dim, 1)  # max- and mean-pooled states of both directions

    def featurize(self, encoder: TextEncoder, texts: Sequence[str]) -> SequenceBatch:
        flat, lengths = encoder.encode(texts)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        position = np.arange(len(flat)) - np.repeat(starts, lengths)
        kept = position < self.config.max_tokens
        ids = np.full((len(lengths), self.config.max_tokens), PADDING_ID, dtype=np.int64)
        ids[np.repeat(np.arange(len(lengths)), lengths)[kept], position[kept]] = flat[kept]
        return SequenceBatch(ids, np.minimum(lengths, self.config.max_tokens))

    def fit_prior(self, batch: SequenceBatch, labels: np.ndarray) -> None:
        """No data-derived initialisation for this architecture."""

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(min=1)  # an empty review is read as one padding token
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(2)
        pooled_max = states.masked_fill(~mask, float("-inf")).amax(dim=1)
        pooled_mean = (states * mask).sum(dim=1) / lengths[:, None].to(states.dtype)
        return self.head(self.dropout(torch.cat([pooled_max, pooled_mean], dim=1))).squeeze(1)

    def inference_scorer(self) -> Scorer:
        def score(batch: SequenceBatch) -> np.ndarray:
            with torch.inference_mode():
                return torch.sigmoid(self(*batch.all())).numpy()

        return score

    def make_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(self.parameters(), lr=learning_rate, weight_decay=weight_decay)]


SentimentModel = NgramNB | BiLSTMClassifier


def build_model(config: ModelConfig) -> SentimentModel:
    return NgramNB(config) if config.arch == "ngram" else BiLSTMClassifier(config)
