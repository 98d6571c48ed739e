"""The server's errors answered over HTTP. They derive from :class:`KlasblikError`, the
project's one root (``klasblik.protocol.errors``), carry their status and code, and are
rendered in one JSON shape by ``web/middleware.py``:
``{"error": {"code": "...", "message": "..."}}`` (the same shape as protocol errors).
Pure: no HTTP library here, so the domain folders can raise them."""

from __future__ import annotations

from klasblik.protocol.errors import KlasblikError

__all__ = ["AccessDenied", "ApiError", "error_body"]


class ApiError(KlasblikError):
    """An error answered over HTTP: ``status``, and ``code`` + ``message`` in the body."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message, code)
        if status is not None:
            self.status = status


class AccessDenied(ApiError):
    """Authorisation refused: the code says why (forbidden, not_found, elsewhere, ...)."""

    status = 403


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
