"""The torch model can fit a tiny set, the numpy scorer equals the torch forward pass, training is seeded."""

from __future__ import annotations

import numpy as np
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


def test_bilstm_overfits_a_tiny_set():
    torch.manual_seed(0)
    encoder = TextEncoder(build_tokenizer(TEXTS, vocab_size=200, min_frequency=1))
    config = ModelConfig(arch="bilstm", vocab_size=encoder.tokenizer.get_vocab_size(), hidden_dim=16)
    model = build_model(config)
    batch = featurize(config, encoder, TEXTS)
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
    generator = np.random.default_rng(0)
    n_features = config.vocab_size + config.n_buckets
    # not zeros: every ratio, weight and the bias must take part
    model.load_linear_fit(generator.normal(size=n_features), generator.normal(size=n_features), 0.3)
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
    # the convex fit selects nothing on validation: its figures are the last curve point's
    assert metrics["validation_accuracy"] == metrics["history"][-1]["validation_accuracy"]
    assert metrics["best_epoch"] == metrics["epochs_run"] == len(metrics["history"]) <= 4  # 2 per round at most
    assert metrics["n_unlabelled"] == 10 and 0 <= metrics["n_pseudo_labelled"] <= 10
