"""Train a sentiment model on a processed data set's train split and return everything a bundle needs.

A movie-blocked validation split is carved out of train (a block of consecutive review ids per label, chosen by
`split_seed` and recorded in the bundle so `evaluate --split validation` can rebuild it). It drives early stopping
for the torch architectures; the default `ngram` fit (modeling.linear) is convex and selects nothing on it, so its
validation figures are plain held-out figures. Neither trains on it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional

from workload.data.processed import ProcessedData, Review, split_validation
from workload.errors import WorkloadError
from workload.modeling.architectures import NgramNB, SentimentModel, build_model
from workload.modeling.features import DEFAULT_ARCH, Batch, ModelConfig, featurize
from workload.modeling.linear import (
    LinearFit,
    LinearHyperparameters,
    fit_nb_logistic,
    mean_loss_and_accuracy,
    presence_matrix,
)
from workload.modeling.text import TextEncoder, build_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int  # epochs without a better validation accuracy before stopping
    vocab_size: int
    threads: int | None  # default torch threads; None: every core this process may use


# Per-architecture defaults. The ngram ones were chosen on the 5 movie-blocked folds of the real train split
# (docs/model.md: C and the pseudo-label confidence); 2^20 hash buckets instead of 2^22 cost ~0.4 points.
DEFAULTS: dict[str, Hyperparameters | LinearHyperparameters] = {
    "ngram": LinearHyperparameters(
        # the real data's fits converge within 65 iterations a round: even the dev stack's `--epochs 2` lets them
        epochs=15,
        iterations_per_epoch=40,
        inverse_l2=0.3,
        pseudo_label_confidence=0.9,
        vocab_size=100_000,
        threads=1,  # scipy's sparse products run on one core
    ),
    "bilstm": Hyperparameters(
        epochs=3,
        batch_size=64,
        learning_rate=2e-3,
        weight_decay=0.0,
        patience=1,
        vocab_size=30_000,
        threads=None,
    ),
}


@dataclass(frozen=True)
class TrainOptions:
    arch: str = DEFAULT_ARCH
    epochs: int | None = None  # None: the architecture's default
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # None: the architecture's default
    validation_fraction: float = 0.1
    split_seed: int = 0
    train_fraction: float = 1.0  # < 1: train on a stratified sample of the rest (the validation split is unchanged)


@dataclass
class TrainedModel:
    model: SentimentModel
    tokenizer: Tokenizer
    config: ModelConfig
    metrics: dict
    training: dict  # options and hyperparameters, recorded in the bundle


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise WorkloadError("--device cuda was requested but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise WorkloadError(f"unknown device {requested!r} (expected auto, cpu or cuda)")
    return torch.device(requested)


def configure_threads(threads: int | None) -> int:
    """Pin intra-op threads explicitly (default: the cores this process may run on); no inter-op pool."""
    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # already set once in this process: the first setting stays
        torch.set_num_interop_threads(1)
    return count


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _labels(reviews: list[Review]) -> np.ndarray:
    return np.array([1 if review.label == "positive" else 0 for review in reviews], dtype=np.int64)


def predict_logits(model: nn.Module, batch: Batch, device: torch.device, batch_size: int = 512) -> np.ndarray:
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            indices = np.arange(start, min(start + batch_size, len(batch)))
            inputs = [torch.from_numpy(array).to(device) for array in batch.take(indices)]
            outputs.append(model(*inputs).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


def _train_epoch(
    model: SentimentModel, batch: Batch, targets: torch.Tensor, order: np.ndarray,
    optimizers: list[torch.optim.Optimizer], batch_size: int, device: torch.device, epoch: int,
) -> tuple[float, float]:  # fmt: skip
    """One pass over the training texts in `order`; returns the mean training loss and accuracy (as trained)."""
    from tqdm import tqdm

    model.train()
    total_loss = correct = 0.0
    for start in tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}", disable=not sys.stderr.isatty()):
        indices = order[start : start + batch_size]
        inputs = [torch.from_numpy(array).to(device) for array in batch.take(indices)]
        logits, batch_targets = model(*inputs), targets[indices].to(device)
        loss = functional.binary_cross_entropy_with_logits(logits, batch_targets)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        total_loss += loss.item() * len(indices)
        correct += float(((logits.detach() > 0).float() == batch_targets).sum())
    return total_loss / len(order), correct / len(order)


def _validate(model: SentimentModel, batch: Batch, labels: np.ndarray, device: torch.device) -> tuple[float, float]:
    """Validation accuracy and loss."""
    logits = predict_logits(model, batch, device)
    accuracy = float(((logits > 0).astype(np.int64) == labels).mean())
    loss = functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels).float())
    return accuracy, float(loss)


@dataclass
class BestEpoch:
    """The best validation result so far and a copy of the weights that gave it."""

    epoch: int = 0
    accuracy: float = -1.0
    loss: float = float("inf")
    state: dict | None = None

    def is_beaten_by(self, accuracy: float, loss: float) -> bool:
        # select on accuracy; the loss breaks ties (a small validation set saturates accuracy early)
        return accuracy > self.accuracy or (accuracy == self.accuracy and loss < self.loss)


def _hyperparameters(options: TrainOptions) -> Hyperparameters | LinearHyperparameters:
    if options.arch not in DEFAULTS:
        raise WorkloadError(f"unknown architecture {options.arch!r} (expected one of {', '.join(DEFAULTS)})")
    if options.epochs is None:
        return DEFAULTS[options.arch]
    if options.epochs < 1:
        raise WorkloadError("--epochs must be at least 1")
    return replace(DEFAULTS[options.arch], epochs=options.epochs)


def _fit(
    model: SentimentModel, train_batch: Batch, train_labels: np.ndarray, validation_batch: Batch,
    validation_labels: np.ndarray, hyper: Hyperparameters, seed: int, device: torch.device,
) -> tuple[BestEpoch, list[dict]]:  # fmt: skip
    """Train with early stopping on validation; returns the best epoch and every epoch's figures."""
    optimizers = model.make_optimizers(hyper.learning_rate, hyper.weight_decay)
    generator = np.random.default_rng(seed)
    targets = torch.from_numpy(train_labels.astype(np.float32))
    history: list[dict] = []
    best = BestEpoch()
    for epoch in range(1, hyper.epochs + 1):
        order = generator.permutation(len(train_batch))
        train_loss, train_accuracy = _train_epoch(
            model, train_batch, targets, order, optimizers, hyper.batch_size, device, epoch
        )
        accuracy, validation_loss = _validate(model, validation_batch, validation_labels, device)
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "validation_loss": validation_loss,
             "train_accuracy": train_accuracy, "validation_accuracy": accuracy}
        )  # fmt: skip
        log.info("epoch %d: train loss %.4f, validation loss %.4f, accuracy %.4f", epoch, train_loss,
                 validation_loss, accuracy)  # fmt: skip
        if best.is_beaten_by(accuracy, validation_loss):
            best = BestEpoch(epoch, accuracy, validation_loss, copy.deepcopy(model.state_dict()))
        elif epoch - best.epoch >= hyper.patience:
            break
    return best, history


def _presence(config: ModelConfig, encoder: TextEncoder, texts: list[str]) -> scipy.sparse.csr_matrix:
    """The texts' n-gram presence rows (their batch, as large, is dropped once converted)."""
    return presence_matrix(featurize(config, encoder, texts), config.vocab_size + config.n_buckets)  # type: ignore[arg-type]


def _fit_ngram(
    config: ModelConfig, train: scipy.sparse.csr_matrix, train_labels: np.ndarray,
    validation: scipy.sparse.csr_matrix, validation_labels: np.ndarray, unlabelled: scipy.sparse.csr_matrix | None,
    hyper: LinearHyperparameters,
) -> tuple[NgramNB, BestEpoch, list[dict], dict]:  # fmt: skip
    """The convex NB-weighted logistic regression, as the NgramNB module the bundle stores and the API folds; its
    curve's last point (the converged fit) is the model, and the fit's own figures are the details."""

    def monitor(point: LinearFit) -> dict:
        loss, accuracy = mean_loss_and_accuracy(point.logits(validation), validation_labels)
        return {"validation_loss": loss, "validation_accuracy": accuracy}

    fit = fit_nb_logistic(train, train_labels, unlabelled, hyper, config.nb_smoothing, monitor)
    model = NgramNB(config)
    model.load_linear_fit(fit.ratio, fit.weights, fit.bias)
    last = fit.history[-1]
    best = BestEpoch(len(fit.history), last["validation_accuracy"], last["validation_loss"])
    return model, best, fit.history, {"gradient_norm": fit.gradient_norm, "n_pseudo_labelled": fit.n_pseudo_labelled}


def _unlabelled_reviews(data: ProcessedData, hyper: Hyperparameters | LinearHyperparameters) -> list[Review]:
    """The unsup reviews, when the architecture self-trains on them and the data has them."""
    if not isinstance(hyper, LinearHyperparameters) or hyper.pseudo_label_confidence is None:
        return []
    return data.reviews("unsup") if data.has_split("unsup") else []


def train(data: ProcessedData, options: TrainOptions) -> TrainedModel:
    hyper = _hyperparameters(options)
    device = resolve_device(options.device)
    threads = configure_threads(options.threads or hyper.threads)
    seed_everything(options.seed)
    started = time.perf_counter()

    if not 0 < options.train_fraction <= 1:
        raise WorkloadError(f"--train-fraction must be in (0, 1], got {options.train_fraction}")
    train_reviews, validation_reviews = split_validation(
        data.reviews("train"), options.validation_fraction, options.split_seed
    )
    if options.train_fraction < 1 and train_reviews:  # the same stratified, seeded carve-out picks the sample
        smallest_label = min(Counter(review.label for review in train_reviews).values())
        fraction = max(options.train_fraction, 1 / smallest_label)  # keep at least one review of each label
        train_reviews = split_validation(train_reviews, fraction, options.seed)[1]
    if not train_reviews or not validation_reviews:
        raise WorkloadError("the train split is too small to carve out a validation split")
    train_texts = [review.text for review in train_reviews]
    validation_texts = [review.text for review in validation_reviews]
    unlabelled_texts = [review.text for review in _unlabelled_reviews(data, hyper)]
    n_unlabelled = len(unlabelled_texts)
    # the tokenizer learns from every text the model trains on, labels unused: the validation texts stay unseen
    tokenizer = build_tokenizer([*train_texts, *unlabelled_texts], vocab_size=hyper.vocab_size)
    config = ModelConfig(arch=options.arch, vocab_size=tokenizer.get_vocab_size())
    encoder = TextEncoder(tokenizer)
    train_labels, validation_labels = _labels(train_reviews), _labels(validation_reviews)
    if isinstance(hyper, LinearHyperparameters):  # straight to sparse rows: no batch stays alive beside them
        train_set = _presence(config, encoder, train_texts)
        validation_set = _presence(config, encoder, validation_texts)
        unlabelled_set = _presence(config, encoder, unlabelled_texts) if unlabelled_texts else None
        del unlabelled_texts
        featurize_seconds = time.perf_counter() - started
        model, best, history, details = _fit_ngram(
            config, train_set, train_labels, validation_set, validation_labels, unlabelled_set, hyper
        )
    else:
        train_batch = featurize(config, encoder, train_texts)
        validation_batch = featurize(config, encoder, validation_texts)
        featurize_seconds = time.perf_counter() - started
        model = build_model(config).to(device)
        best, history = _fit(
            model, train_batch, train_labels, validation_batch, validation_labels, hyper, options.seed, device
        )
        model.load_state_dict(best.state)
        details = {}
    model.to("cpu").eval()
    log.info("trained %s on %d reviews (%d unlabelled offered): validation accuracy %.4f", options.arch,
             len(train_reviews), n_unlabelled, best.accuracy)  # fmt: skip
    metrics = {
        "validation_accuracy": best.accuracy,
        "validation_loss": best.loss,
        "best_epoch": best.epoch,
        "epochs_run": len(history),
        "history": history,
        "n_train": len(train_reviews),
        "n_validation": len(validation_reviews),
        "n_unlabelled": n_unlabelled,
        **details,
        "training_seconds": time.perf_counter() - started,
        "featurize_seconds": featurize_seconds,
        "device": str(device),
        "threads": threads,
    }
    training = {"options": asdict(options), "hyperparameters": asdict(hyper)}
    return TrainedModel(model, tokenizer, config, metrics, training)
