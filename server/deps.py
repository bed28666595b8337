"""What the routes take from the application, as FastAPI dependencies.

Routes never reach into ``app.state`` themselves: ``ServiceDep`` is the application's
``server.service.Service`` (for HTTP and websocket routes alike).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from server.service import Service

__all__ = ["ServiceDep", "get_service"]


def get_service(connection: HTTPConnection) -> Service:
    """The ``Service`` of the application serving ``connection``."""
    return connection.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
