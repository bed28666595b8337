"""REST calls of the service (httpx): classify files, model facts, health and readiness."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from client.errors import BadServerReplyError, ConnectError, RequestFailedError, SessionRefusedError
from server.protocol import CLASSIFY_PATH, MODEL_PATH, ClassifyResponse, ClassifyResult, ModelInfo

DEFAULT_TIMEOUT_S = 60.0


def http_url(url: str) -> str:
    """Base http(s) URL (scheme and host only) from ``http://…``, ``ws://…`` or ``host:port``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http or websocket URL: {url!r}; expected e.g. http://host:8000")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if response.status_code == 503:
        retry = response.headers.get("Retry-After")
        raise SessionRefusedError(
            f"{response.request.url} is unavailable (HTTP 503): {detail}",
            float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
        )
    raise RequestFailedError(
        f"{response.request.method} {response.request.url} failed with HTTP "
        f"{response.status_code}: {detail}",
        response.status_code,
    )


class RestClient:
    """Async REST client: ``await RestClient(url).classify(paths)``; use ``async with``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = http_url(url)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ConnectError(f"cannot reach {self.base_url}{path}: {error!r}") from None
        _raise_for_status(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise BadServerReplyError(
                f"{method} {path} answered non-JSON: {response.text[:200]!r}"
            ) from None

    async def classify(self, paths: Sequence[str | Path]) -> list[ClassifyResult]:
        """Classify audio files in one request (multipart field ``files``); results in order."""
        if not paths:
            return []
        files = [("files", (Path(p).name, Path(p).read_bytes(), "audio/wav")) for p in paths]
        data = await self._json("POST", CLASSIFY_PATH, files=files)
        try:
            response = ClassifyResponse.model_validate(data)
        except ValidationError as error:
            raise BadServerReplyError(f"bad classify response {data!r:.200}: {error}") from None
        if len(response.results) != len(paths):
            raise BadServerReplyError(
                f"classify answered {len(response.results)} results for {len(paths)} files"
            )
        return response.results

    async def model(self) -> ModelInfo:
        """``GET /v1/model``: the served model's facts."""
        data = await self._json("GET", MODEL_PATH)
        try:
            return ModelInfo.model_validate(data)
        except ValidationError as error:
            raise BadServerReplyError(f"bad model response {data!r:.200}: {error}") from None

    async def healthy(self) -> bool:
        """``GET /healthz`` answered 2xx."""
        try:
            await self._request("GET", "/healthz")
        except (ConnectError, RequestFailedError, SessionRefusedError):
            return False
        return True

    async def ready(self) -> bool:
        """``GET /readyz`` answered 2xx (model loaded, accepting sessions)."""
        try:
            await self._request("GET", "/readyz")
        except (ConnectError, RequestFailedError, SessionRefusedError):
            return False
        return True

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["RestClient", "http_url"]
