"""Exceptions of the client: every failure a caller may want to handle has its own type.

``ClientError``
  ├─ ``ConnectError``             the server cannot be reached (refused, DNS, timeout, bad URL)
  ├─ ``SessionRefusedError``      the server is full: close 1013 or HTTP 503 (``retry_after``)
  ├─ ``ServerClosedError``        the server closed the session early (``close_code``, ``error``)
  │    └─ ``ServerShuttingDownError``  close 1001 before the session ended
  ├─ ``BadServerReplyError``      a message or response the protocol does not allow
  └─ ``RequestFailedError``       a REST call answered with an error status
"""

from __future__ import annotations

from server.protocol import CloseCode, ErrorMessage


class ClientError(Exception):
    """Base class of every client error."""


class ConnectError(ClientError):
    """The server could not be reached."""


class SessionRefusedError(ClientError):
    """The server refused the session because it is full (close 1013 or HTTP 503)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerClosedError(ClientError):
    """The server closed the websocket before the session ended.

    ``close_code`` is the websocket close code (None when the connection dropped without a
    close frame); ``error`` is the ``error`` message that preceded the close, if any.
    """

    def __init__(
        self, message: str, close_code: int | None = None, error: ErrorMessage | None = None
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.error = error


class ServerShuttingDownError(ServerClosedError):
    """The server is shutting down (close 1001)."""


class BadServerReplyError(ClientError):
    """The server sent something the protocol does not allow."""


class RequestFailedError(ClientError):
    """A REST request answered with an error status."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def close_error(
    close_code: int | None, reason: str = "", error: ErrorMessage | None = None
) -> ClientError:
    """The exception for a session that the server closed with ``close_code``."""
    detail = error.message if error is not None else reason
    what = f"close {close_code}" if close_code is not None else "connection lost"
    text = f"server closed the session ({what})" + (f": {detail}" if detail else "")
    if error is not None:
        text += f" [{error.code.value}]"
    if close_code == CloseCode.TRY_AGAIN_LATER:
        return SessionRefusedError(
            "server is full and refused the session (close 1013)"
            + (f": {detail}" if detail else "")
        )
    if close_code == CloseCode.GOING_AWAY:
        return ServerShuttingDownError(text, close_code, error)
    return ServerClosedError(text, close_code, error)


__all__ = [
    "BadServerReplyError",
    "ClientError",
    "ConnectError",
    "RequestFailedError",
    "ServerClosedError",
    "ServerShuttingDownError",
    "SessionRefusedError",
    "close_error",
]
