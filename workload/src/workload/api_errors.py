"""The API's one error shape: `{"error": {"code": ..., "message": ...}}` with a matching HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def validation(cls, message: str) -> ApiError:
        return cls(422, "validation_error", message)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


# Werkzeug's HTTP errors mapped to stable machine-readable codes (clients switch on `code`, not on text).
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}
# Codes the app sets itself (api.py), beyond the HTTP ones above: a body that is not JSON, an HTTP error with no
# code of its own, and an unexpected exception.
APP_ERROR_CODES = ("malformed_json", "http_error", "internal_error")
# Every code a client can see: the enum in the OpenAPI document.
ERROR_CODES = tuple(dict.fromkeys([*HTTP_ERROR_CODES.values(), *APP_ERROR_CODES]))
