"""The torch model architectures (training only: serving never imports this module).

- `ngram` (default): NBSVM-style linear model over binarised uni/bi/trigram features: each feature's weight is
  its naive-Bayes log-count ratio r times a learned factor (w + offset). modeling.linear fits it (a convex
  logistic regression with scipy, not a torch loop); this module holds the result for the bundle and for parity.
- `bilstm`: embedding + bidirectional LSTM + max/mean pooling. Slower; kept as the sequence-model option.

`features.featurize` turns texts into each architecture's numpy batch; train.py's loop trains `bilstm`.
Each model also writes what the API needs besides the weights (`export_for_serving`): nothing for `ngram`,
which the API scores in numpy, and `model.onnx` for `bilstm`, which it runs with ONNX Runtime.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from workload.bundle.format import ONNX_MODEL
from workload.modeling.features import ModelConfig, SequenceBatch
from workload.modeling.text import PADDING_ID


class NgramNB(nn.Module):
    """logit = sum over present features f of scale * r_f * (w_f + offset) + bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n_features = config.vocab_size + config.n_buckets
        self.weight = nn.Parameter(torch.zeros(n_features, 1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("ratio", torch.zeros(n_features, 1))

    def load_linear_fit(self, ratio: np.ndarray, weights: np.ndarray, bias: float) -> None:
        """Hold a fit whose logit is sum_f ratio_f * weights_f + bias (modeling.linear) in this parametrisation."""
        scale, offset = self.config.nb_scale, self.config.nb_offset
        with torch.no_grad():
            self.ratio.copy_(torch.from_numpy((scale * ratio).astype(np.float32)).unsqueeze(1))
            self.weight.copy_(torch.from_numpy((weights / scale - offset).astype(np.float32)).unsqueeze(1))
            self.bias.fill_(bias)

    def forward(self, features: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        ratio = self.ratio[features].squeeze(1)
        learned = functional.embedding_bag(features, self.weight, offsets, mode="sum", per_sample_weights=ratio)
        prior = functional.embedding_bag(features, self.ratio, offsets, mode="sum")
        return (learned + self.config.nb_offset * prior).squeeze(1) + self.bias

    def export_for_serving(self, folder: Path) -> list[str]:
        """Nothing beyond the weights: the API scores this model in numpy from the safetensors file."""
        return []


class BiLSTMClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PADDING_ID)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_dim, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(4 * config.hidden_dim, 1)  # max- and mean-pooled states of both directions

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

    def export_for_serving(self, folder: Path) -> list[str]:
        """Write `model.onnx`: P(positive) from (ids, lengths), which the API runs with ONNX Runtime, not torch."""
        example = SequenceBatch(np.full((2, 3), PADDING_ID + 1, dtype=np.int64), np.array([3, 2])).all()
        with warnings.catch_warnings():
            # Its warnings (variable-length LSTM at another batch size, trace-time constants, the legacy exporter)
            # are about graphs that might not generalise: the ONNX/torch parity test checks this one does.
            warnings.simplefilter("ignore")
            # dynamo=False: the TorchScript exporter needs only `onnx`, not onnxscript; it exports in eval mode
            torch.onnx.export(
                _Probability(self), tuple(torch.from_numpy(array) for array in example), str(folder / ONNX_MODEL),
                input_names=["ids", "lengths"], output_names=["score"], dynamo=False,
                dynamic_axes={"ids": {0: "texts", 1: "tokens"}, "lengths": {0: "texts"}, "score": {0: "texts"}},
            )  # fmt: skip
        return [ONNX_MODEL]

    def make_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.AdamW(self.parameters(), lr=learning_rate, weight_decay=weight_decay)]


class _Probability(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(ids, lengths))


SentimentModel = NgramNB | BiLSTMClassifier


def build_model(config: ModelConfig) -> SentimentModel:
    return NgramNB(config) if config.arch == "ngram" else BiLSTMClassifier(config)
