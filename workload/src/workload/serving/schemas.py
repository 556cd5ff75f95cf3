"""Validation of `/predict` bodies: turns arbitrary JSON into texts, or a clear 422 message."""

from __future__ import annotations

from dataclasses import dataclass

from workload.serving.errors import ApiError


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    batch: bool  # True for {"texts": [...]}, False for {"text": "..."}


def _validate_text(value: object, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ApiError.validation(f"{where} must be a string")
    if not value.strip():
        raise ApiError.validation(f"{where} must not be empty")
    if len(value) > max_chars:
        raise ApiError.validation(f"{where} is longer than {max_chars} characters")
    try:
        # JSON allows lone surrogates (\ud800) that no tokenizer can encode: reject them here, not with a 500.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError.validation(f"{where} is not valid Unicode text") from None
    return value


def parse_predict_request(body: object, max_batch: int, max_text_chars: int) -> PredictRequest:
    if not isinstance(body, dict):
        raise ApiError.validation('body must be a JSON object: {"text": "..."} or {"texts": ["...", ...]}')
    keys = set(body)
    if keys == {"text"}:
        return PredictRequest([_validate_text(body["text"], "text", max_text_chars)], batch=False)
    if keys == {"texts"}:
        texts = body["texts"]
        if not isinstance(texts, list):
            raise ApiError.validation("texts must be an array of strings")
        if not texts:
            raise ApiError.validation("texts must not be empty")
        if len(texts) > max_batch:
            raise ApiError.validation(f"texts has {len(texts)} items; the maximum batch is {max_batch}")
        return PredictRequest(
            [_validate_text(text, f"texts[{index}]", max_text_chars) for index, text in enumerate(texts)],
            batch=True,
        )
    if {"text", "texts"} <= keys:
        raise ApiError.validation('send either "text" or "texts", not both')
    unknown = sorted(keys - {"text", "texts"})
    if unknown:
        raise ApiError.validation(f"unknown field(s): {', '.join(map(repr, unknown))}")
    raise ApiError.validation('missing field: "text" (one review) or "texts" (a batch)')
