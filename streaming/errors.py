"""Why the engine refuses a session or a command: one exception per reason."""

from __future__ import annotations

__all__ = ["EngineClosedError", "EngineFullError", "SessionClosedError"]


class EngineFullError(RuntimeError):
    """No room for a session: every slot is taken (``max_sessions``), or every engine process
    is gone; try again later."""


class EngineClosedError(RuntimeError):
    """The engine is shutting down: it takes no new sessions."""


class SessionClosedError(RuntimeError):
    """Audio or a command for a session that was stopped or closed."""
