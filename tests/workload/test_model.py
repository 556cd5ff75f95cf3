"""Both architectures can fit a tiny set; training is seeded and keeps the best validation epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from workload.bundle.scorers import ngram_scorer
from workload.data.processed import open_processed
from workload.modeling.architectures import build_model
from workload.modeling.features import ModelConfig, featurize
from workload.modeling.text import TextEncoder, build_tokenizer
from workload.modeling.train import TrainOptions, train

torch.set_num_threads(1)  # tiny models: extra threads only contend with other work on the machine

TEXTS = [
    "a wonderful moving film", "brilliant acting and a superb story", "i loved this delightful masterpiece",
    "an amazing film", "a dull boring film", "awful acting and a tedious story", "i hated this dreadful waste",
    "a terrible film",
]  # fmt: skip
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("arch", ["ngram", "bilstm"])
def test_model_overfits_a_tiny_set(arch):
    torch.manual_seed(0)
    encoder = TextEncoder(build_tokenizer(TEXTS, vocab_size=200, min_frequency=1))
    config = ModelConfig(arch=arch, vocab_size=encoder.tokenizer.get_vocab_size(), n_buckets=1 << 12, hidden_dim=16)
    model = build_model(config)
    batch = featurize(config, encoder, TEXTS)
    model.fit_prior(batch, LABELS)
    optimizers = model.make_optimizers(0.05, 0.0)
    targets = torch.from_numpy(LABELS.astype(np.float32))
    every = np.arange(len(TEXTS))
    losses = []
    model.train()
    for _ in range(200):
        loss = nn.functional.binary_cross_entropy_with_logits(model(*map(torch.from_numpy, batch.take(every))), targets)
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.inference_mode():
        predicted = (model(*map(torch.from_numpy, batch.take(every))) > 0).numpy().astype(int)
    assert predicted.tolist() == LABELS.tolist()
    assert losses[-1] < 0.1 * losses[0]


def test_numpy_ngram_scorer_matches_the_trained_forward_pass():
    """The API scores ngram with folded numpy weights (no torch): it must equal sigmoid(forward)."""
    torch.manual_seed(0)
    encoder = TextEncoder(build_tokenizer(TEXTS, vocab_size=200, min_frequency=1))
    config = ModelConfig(vocab_size=encoder.tokenizer.get_vocab_size(), n_buckets=1 << 12)
    model = build_model(config)
    texts = [*TEXTS, ""]  # an empty review scores the bias alone
    batch = featurize(config, encoder, texts)
    model.fit_prior(batch, np.append(LABELS, 0))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))  # not the zero init: every weight must take part
    model.eval()
    with torch.inference_mode():
        expected = torch.sigmoid(model(*map(torch.from_numpy, batch.all()))).numpy()
    weights = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    np.testing.assert_allclose(ngram_scorer(config, weights)(batch), expected, rtol=1e-5, atol=1e-6)


def test_bag_batch_take_gathers_the_chosen_texts():
    encoder = TextEncoder(build_tokenizer(TEXTS, vocab_size=200, min_frequency=1))
    config = ModelConfig(vocab_size=encoder.tokenizer.get_vocab_size(), n_buckets=1 << 12)
    features, offsets = featurize(config, encoder, TEXTS).take(np.array([5, 2]))
    alone_5, _ = featurize(config, encoder, [TEXTS[5]]).all()
    alone_2, _ = featurize(config, encoder, [TEXTS[2]]).all()
    assert features.tolist() == alone_5.tolist() + alone_2.tolist()
    assert offsets.tolist() == [0, len(alone_5)]


def test_training_is_seeded_and_records_its_validation_choice(processed_data):
    with open_processed(str(processed_data)) as data:
        first = train(data, TrainOptions(epochs=2, seed=3, threads=1))
        second = train(data, TrainOptions(epochs=2, seed=3, threads=1))
    assert torch.equal(first.model.weight, second.model.weight)
    metrics = first.metrics
    assert metrics["n_train"] == 108 and metrics["n_validation"] == 12  # 10 % of 60 + 60, stratified
    assert metrics["validation_accuracy"] == max(epoch["validation_accuracy"] for epoch in metrics["history"])
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 2
