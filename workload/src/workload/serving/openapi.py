"""The OpenAPI 3.0 description of the app port (`/predict`, the page), built from the live limits so it never goes
stale. The ops port serves it at `/openapi.json`; its own paths are operator-only and documented in docs/serving.md."""

from __future__ import annotations

from typing import Any

from workload import __version__
from workload.serving.errors import ERROR_CODES
from workload.serving.settings import ServeSettings


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def _error(description: str) -> dict[str, Any]:
    return _json("#/components/schemas/Error", description)


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def openapi_document(settings: ServeSettings) -> dict[str, Any]:
    # A review must contain something other than whitespace, as Python's str.strip() sees it: that is the
    # ECMA regex \s plus the separators U+001C-U+001F and U+0085, which \S alone would let through.
    not_only_space = r"[^\s\x1c-\x1f\x85]"
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_chars, "pattern": not_only_space}
    label = {"type": "string", "enum": ["positive", "negative"]}
    score = {"type": "number", "minimum": 0, "maximum": 1, "description": "P(positive)"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "IMDB sentiment API",
            "version": __version__,
            "description": "Classifies movie reviews as positive or negative.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Classify one review or a batch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/SingleRequest"},
                                        {"$ref": "#/components/schemas/BatchRequest"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Prediction(s)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/SingleResponse"},
                                            {"$ref": "#/components/schemas/BatchResponse"},
                                        ]
                                    }
                                }
                            },
                        },
                        "400": _error("Body is not valid JSON"),
                        "413": _error(f"Body larger than {settings.max_body_bytes} bytes"),
                        "415": _error("Content-Type is not application/json"),
                        "422": _error("Body does not match the schema"),
                        "503": _error("Model not loaded yet"),
                    },
                }
            },
            "/": {
                "get": {"summary": "Web page", "responses": {"200": _html("The page")}},
                "post": {
                    "summary": "Web page form submission (works without JavaScript)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {"type": "object", "properties": {"text": text}, "required": ["text"]}
                            }
                        },
                    },
                    "responses": {
                        "200": _html("The page with the prediction"),
                        "413": _error(f"Body larger than {settings.max_body_bytes} bytes"),
                        "422": _html("The page with the validation message"),
                        "503": _html("The page saying the model is not ready"),
                    },
                },
            },
        },
        "components": {
            "schemas": {
                "SingleRequest": {
                    "type": "object",
                    "properties": {"text": text},
                    "required": ["text"],
                    "additionalProperties": False,
                },
                "BatchRequest": {
                    "type": "object",
                    "properties": {
                        "texts": {"type": "array", "items": text, "minItems": 1, "maxItems": settings.max_batch}
                    },
                    "required": ["texts"],
                    "additionalProperties": False,
                },
                "Prediction": {
                    "type": "object",
                    "properties": {"label": label, "score": score},
                    "required": ["label", "score"],
                },
                "SingleResponse": {
                    "type": "object",
                    "properties": {"label": label, "score": score, "model_version": {"type": "string"}},
                    "required": ["label", "score", "model_version"],
                },
                "BatchResponse": {
                    "type": "object",
                    "properties": {
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                        "model_version": {"type": "string"},
                    },
                    "required": ["predictions", "model_version"],
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "enum": list(ERROR_CODES)},
                                "message": {"type": "string"},
                            },
                            "required": ["code", "message"],
                        }
                    },
                    "required": ["error"],
                },
            }
        },
    }
