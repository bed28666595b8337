"""What a session's operating point measured, as one line for the terminal clients.

``operating_point_line`` reads the calibrated points of ``GET /v1/model`` (or of a local
engine's curve); ``served_operating_point`` fetches them from a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from client.errors import ClientError


def operating_point_line(
    points: Sequence[Mapping[str, Any]], sensitivity: float | None
) -> str | None:
    """What the calibration measured at the operating point nearest ``sensitivity`` (None:
    the default, 0.5), from ``GET /v1/model``'s ``operating_points``: held-out false alarms
    per hour and recall, and the false alarms on recorded speech; None when uncalibrated."""
    if not points:
        return None
    s = 0.5 if sensitivity is None else float(sensitivity)
    near = min(points, key=lambda p: abs(float(p["sensitivity"]) - s))  # the first on ties

    def rate(x: float) -> str:
        return f"{x:.1f}" if x < 10 else f"{x:.0f}"

    def held_out_else_measured(name: str) -> float | None:
        value = near.get(f"heldout_{name}")
        return near.get(name) if value is None else value

    fa = held_out_else_measured("fa_per_hour")
    recall = held_out_else_measured("recall")
    recorded = (near.get("fa_per_hour_by_set") or {}).get("negatives/recorded")
    text = (
        f"sensitivity {s:.2f}: nearest calibrated point ({float(near['sensitivity']):.2f}), "
        "on the validation streams: "
    )
    text += "false alarms not measured" if fa is None else f"{rate(fa)} false alarms/h"
    if recorded is not None:
        text += f" ({rate(recorded)}/h on recorded speech)"
    if recall is not None:
        text += f", {round(100 * recall)} % of keywords found"
    return text


async def served_operating_point(url: str, sensitivity: float | None) -> str | None:
    """``operating_point_line`` of the served model; None if ``GET /v1/model`` fails (the
    session itself is open: the line is information, not a requirement)."""
    from client.rest import RestClient

    try:
        async with RestClient(url, timeout=5.0) as rest:
            info = await rest.model()
    except (ClientError, OSError, ValueError):
        return None
    return operating_point_line(info.operating_points, sensitivity)
