"""The default model's convex fit reaches its optimum and self-trains only on confident unlabelled reviews."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
from workload.bundle.scorers import ngram_scorer
from workload.modeling.architectures import NgramNB
from workload.modeling.features import BagBatch, ModelConfig
from workload.modeling.linear import LinearHyperparameters, fit_nb_logistic, log_count_ratio, presence_matrix

N_FEATURES = 40
HYPER = LinearHyperparameters(
    epochs=50, iterations_per_epoch=5, inverse_l2=0.5, pseudo_label_confidence=0.9, vocab_size=0, threads=1
)


def no_validation(point: object) -> dict:
    return {"validation_loss": 0.0, "validation_accuracy": 0.0}


def noisy_corpus(n_texts: int, seed: int) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """Texts whose label tilts the odds of features 0-9 (positive) and 10-19 (negative); 20-39 are noise."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, n_texts)
    odds = np.full((n_texts, N_FEATURES), 0.2)
    odds[:, :10] += 0.25 * labels[:, None]
    odds[:, 10:20] += 0.25 * (1 - labels[:, None])
    return scipy.sparse.csr_matrix((generator.random(odds.shape) < odds).astype(np.float64)), labels


def test_the_fit_is_a_stationary_point_of_the_penalised_log_loss():
    """At the optimum, X_r^T (sigmoid(z) - y) + w / C = 0 and sum(sigmoid(z) - y) = 0 (computed here, densely)."""
    presence, labels = noisy_corpus(300, seed=1)
    fit = fit_nb_logistic(presence, labels, None, HYPER, smoothing=1.0, monitor=no_validation)
    scaled = presence.toarray() * log_count_ratio(presence, labels, 1.0)
    residual = 1 / (1 + np.exp(-(scaled @ fit.weights + fit.bias))) - labels
    gradient = np.append(scaled.T @ residual + fit.weights / HYPER.inverse_l2, residual.sum())
    assert np.abs(gradient).max() < 1e-3 and fit.gradient_norm < 1e-3  # the summed loss is about 90 here
    assert np.abs(fit.weights).max() > 0.1  # not the trivial zero start
    assert fit.history[-1]["train_accuracy"] > 0.75  # the tilted features carry the label


def test_the_ratio_is_the_smoothed_log_count_ratio():
    presence = scipy.sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float64))
    ratio = log_count_ratio(presence, np.array([1, 1, 0]), smoothing=1.0)
    # positive counts + 1: [3, 2, 1] of 6; negative: [1, 1, 2] of 4
    np.testing.assert_allclose(ratio, np.log([3 / 6 / (1 / 4), 2 / 6 / (1 / 4), 1 / 6 / (2 / 4)]))


def test_self_training_adds_only_the_confident_unlabelled_texts():
    presence, labels = noisy_corpus(400, seed=2)
    every_positive_feature = (np.arange(N_FEATURES) < 10).astype(np.float64)
    every_negative_feature = ((np.arange(N_FEATURES) >= 10) & (np.arange(N_FEATURES) < 20)).astype(np.float64)
    clear = scipy.sparse.csr_matrix(np.vstack([every_positive_feature, every_negative_feature] * 3))
    unclear = scipy.sparse.csr_matrix((4, N_FEATURES))  # no feature at all: P is the bias's, about one half
    unlabelled = scipy.sparse.vstack([clear, unclear], format="csr")
    plain = fit_nb_logistic(presence, labels, None, HYPER, smoothing=1.0, monitor=no_validation)
    probability = 1 / (1 + np.exp(-plain.logits(unlabelled)))
    assert (np.maximum(probability, 1 - probability)[:6] > 0.9).all() and (abs(probability[6:] - 0.5) < 0.1).all()

    selftrained = fit_nb_logistic(presence, labels, unlabelled, HYPER, smoothing=1.0, monitor=no_validation)
    assert selftrained.n_pseudo_labelled == 6
    assert len(selftrained.history) > len(plain.history)  # the second round's curve follows the first's
    assert [row["epoch"] for row in selftrained.history] == list(range(1, len(selftrained.history) + 1))


def test_the_torch_module_and_the_numpy_scorer_serve_the_fitted_logits():
    """The bundle holds the fit as NgramNB (ratio, weight, bias): both its scorers must give the fit's own P."""
    config = ModelConfig(vocab_size=10, n_buckets=54)  # 64 features
    presence, labels = noisy_corpus(200, seed=3)
    presence = scipy.sparse.hstack([presence, scipy.sparse.csr_matrix((200, 24))], format="csr")
    fit = fit_nb_logistic(presence, labels, None, HYPER, smoothing=1.0, monitor=no_validation)
    batch = BagBatch(np.array([3, 7, 50, 1, 2, 3, 4, 5], dtype=np.int64), np.array([0, 3, 3]))  # the 2nd is empty
    expected = 1 / (1 + np.exp(-fit.logits(presence_matrix(batch, 64))))
    model = NgramNB(config)
    model.load_linear_fit(fit.ratio, fit.weights, fit.bias)
    with torch.inference_mode():
        from_torch = torch.sigmoid(model(*map(torch.from_numpy, batch.all()))).numpy()
    from_numpy = ngram_scorer(config, {name: tensor.numpy().copy() for name, tensor in model.state_dict().items()})
    np.testing.assert_allclose(from_torch, expected, rtol=1e-5)
    np.testing.assert_allclose(from_numpy(batch), expected, rtol=1e-5)
