"""Scoring a bundle's model without torch: folded numpy weights for `ngram`, ONNX Runtime for sequence models.

A scorer maps a featurized batch to P(positive) per text. Weights must be finite: a NaN weight would otherwise
pass every check and come out as a score that is not even valid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from workload.bundle.format import ONNX_MODEL, WEIGHTS, BundleError
from workload.modeling.features import BagBatch, Batch, ModelConfig, SequenceBatch

Scorer = Callable[[Batch], np.ndarray]


# safetensors dtype names of the tensors training writes (torch float32 parameters and buffers)
_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    """The bundle's tensors as numpy arrays; a non-finite value anywhere is a BundleError.

    Read tensor by tensor with plain file reads: `safetensors.numpy` maps the file and copies each tensor out
    of the mapping, which holds the ngram weights twice at the load peak (about 34 MB more per worker).
    The layout is the documented one: an 8-byte little-endian header size, a JSON header of dtype, shape and
    data offsets per tensor, then the data.
    """
    with (folder / WEIGHTS).open("rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_size))
        header.pop("__metadata__", None)
        weights = {}
        for name, spec in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            start, end = spec["data_offsets"]
            dtype = np.dtype(_DTYPES[spec["dtype"]])
            handle.seek(8 + header_size + start)
            array = np.fromfile(handle, dtype=dtype, count=(end - start) // dtype.itemsize)
            if array.size != int(np.prod(spec["shape"])):
                raise BundleError(f"{WEIGHTS} is truncated at {name!r}")
            if np.issubdtype(dtype, np.floating) and not np.isfinite(array).all():
                raise BundleError(f"{WEIGHTS} holds non-finite values in {name!r}")
            weights[name] = array.reshape(spec["shape"])
    return weights


def ngram_scorer(config: ModelConfig, weights: dict[str, np.ndarray]) -> Scorer:
    """P(positive) from frozen NgramNB weights: one gather and one sum per text.

    Its forward pass computes sum_f r_f * w_f + offset * sum_f r_f, which is sum_f r_f * (w_f + offset): fold
    that into one weight per feature once, here, instead of two weighted sums per request.
    """
    effective = weights.pop("weight").squeeze(1)
    effective += np.float32(config.nb_offset)  # in place: no second copy of the few million weights
    effective *= weights.pop("ratio").squeeze(1)
    bias = float(weights["bias"][0])

    def score(batch: BagBatch) -> np.ndarray:
        owner = np.repeat(np.arange(len(batch)), batch.sizes)
        logits = np.bincount(owner, weights=effective[batch.features], minlength=len(batch)) + bias
        return 1.0 / (1.0 + np.exp(-logits))

    return score  # type: ignore[return-value]


def onnx_scorer(folder: Path) -> Scorer:
    """P(positive) from the exported network, run by ONNX Runtime on one thread (the API scales by worker)."""
    path = folder / ONNX_MODEL
    if not path.is_file():
        raise BundleError(f"no {ONNX_MODEL} (a sequence model's bundle needs it; format 1 bundles must be retrained)")
    import onnxruntime  # here, not at the top: only sequence models pay for loading ONNX Runtime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score(batch: SequenceBatch) -> np.ndarray:
        ids, lengths = batch.all()
        (scores,) = session.run(["score"], {"ids": ids, "lengths": lengths})
        return scores

    return score  # type: ignore[return-value]


def load_scorer(config: ModelConfig, folder: Path) -> Scorer:
    """The scorer for a verified bundle folder's model, after checking its weights."""
    weights = load_weights(folder)
    return ngram_scorer(config, weights) if config.arch == "ngram" else onnx_scorer(folder)
