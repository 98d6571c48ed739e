"""The project's one exception root. Every error of Klasblik's own (protocol, server,
agent) derives from :class:`KlasblikError` and carries a stable ``code`` (one of
:class:`~klasblik.protocol.codes.ErrorCode` where it travels over the wire) and, where it
reaches an HTTP client, the ``status`` it is answered with.

::

    KlasblikError
    ├── ProtocolError            a message broke the protocol (codes from ErrorCode)
    ├── server: ApiError         answered over HTTP (status, code) ── AccessDenied (403)
    │           SettingsError, BlobStoreError, GraphError ── DeltaExpired, M365Error,
    │           TokenRefused, SignInRefused, SyncBusy, CsvImportError, LessonHoursError,
    │           UnknownStudent
    └── agent:  AgentConfigError, CaptureError
"""

from __future__ import annotations

__all__ = ["KlasblikError", "ProtocolError"]


class KlasblikError(Exception):
    """Base of every Klasblik error: a short lower-case ``message`` and a stable ``code``."""

    #: the default code of this class of error; an instance may carry a more specific one
    code: str = "internal_error"
    #: the HTTP status this error is answered with, where it reaches an HTTP client
    status: int = 500

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ProtocolError(KlasblikError):
    """A message broke the protocol. ``code`` is one of :class:`ErrorCode`."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)
