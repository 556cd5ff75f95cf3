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


# Werkzeug's HTTP errors (routing, body size, unparsable requests) mapped to stable machine-readable codes
# (clients switch on `code`, not on text); any other status gets "http_error".
HTTP_ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Every code a client can see: the enum in the OpenAPI document. Beyond the ones above: the `ApiError` codes that
# api.py and schemas.py raise, "http_error", and "internal_error" for an unexpected exception.
ERROR_CODES = (
    *HTTP_ERROR_CODES.values(),
    "unsupported_media_type",
    "validation_error",
    "not_ready",
    "malformed_json",
    "http_error",
    "internal_error",
)
