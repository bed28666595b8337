"""``python -m client.healthcheck``: exit 0 when the local service answers ``GET /healthz``.

The Docker image's HEALTHCHECK. Standard library only, so it starts fast. The address comes from
``LMUKWS_HOST`` / ``LMUKWS_PORT`` (a wildcard bind address is checked on the loopback), or from
``--url``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def local_url(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """``http://HOST:PORT`` of the service configured by ``LMUKWS_HOST`` and ``LMUKWS_PORT``."""
    host = environ.get("LMUKWS_HOST", "127.0.0.1").strip()
    port = environ.get("LMUKWS_PORT", "8000").strip() or "8000"
    if host in WILDCARDS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(healthy, what happened) for ``GET {url}/healthz``."""
    target = url.rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            return 200 <= response.status < 300, f"{target}: HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{target}: HTTP {error.code}"
    except (OSError, ValueError) as error:
        return False, f"{target}: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help="service base URL (default: from LMUKWS_*)")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    healthy, detail = check(args.url or local_url(), args.timeout)
    print(detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
