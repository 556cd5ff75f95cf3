"""The OpenAPI 3.0 description served at `/openapi.json`, built from the live limits so it never goes stale."""

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
    # A review must contain something other than whitespace; "\S" says so for schema-driven clients.
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_chars, "pattern": r"\S"}
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
            "/health": {
                "get": {
                    "summary": "Readiness: model loaded, verified and self-tested",
                    "responses": {
                        "200": _json("#/components/schemas/Health", "Ready"),
                        "503": _json("#/components/schemas/Health", "Not ready, with the reason"),
                    },
                }
            },
            "/health/live": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _json("#/components/schemas/Live", "The process answers")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (all workers)",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.0 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
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
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["ready", "not_ready"]},
                        "model_version": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                    "required": ["status"],
                },
                "Live": {
                    "type": "object",
                    "properties": {"status": {"type": "string", "enum": ["alive"]}},
                    "required": ["status"],
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
