"""The browser demo (server/static/) in headless Debian Chromium against a real ``lmukws serve``.

Chromium's fake microphone plays a WAV with tone bursts (in a loop); the test presses Start, waits
for the tone model's keywords in the detection log, presses Stop and checks the session's end.
The screenshot is kept as an artifact: $LMUKWS_TEST_ARTIFACTS (default reports/tmp/artifacts/).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.browser import Browser, Page, chromium_path
from tests.client.conftest import calibrated_copy, write_tones
from tests.client.live_server import LiveServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]


def artifact_dir() -> Path:
    return Path(os.environ.get("LMUKWS_TEST_ARTIFACTS", ROOT / "reports" / "tmp" / "artifacts"))


@pytest.fixture
def page(live_server: LiveServer, tmp_path: Path) -> Iterator[Page]:
    wav = write_tones(tmp_path / "fake-mic.wav", 48000, 1)
    browser = Browser(tmp_path / "profile", wav)
    tab = None
    try:
        tab = browser.open(live_server.http + "/")
        yield tab
    finally:
        if tab is not None:
            tab.close()
        browser.close()


def test_browser_demo_detects_keywords(page: Page, live_server: LiveServer) -> None:
    # the model card is filled from GET /v1/model before anything starts
    assert page.wait_for("document.getElementById('model').textContent !== '…'")
    assert page.evaluate("document.getElementById('model').textContent") == "lmuformer"
    assert page.evaluate("document.getElementById('algorithmic').textContent") == "55 ms"
    page.evaluate("document.getElementById('start').click()", gesture=True)
    try:
        found = page.wait_for(
            "(() => { const k = [...document.querySelectorAll('#log tr.detection')]"
            ".map(r => r.dataset.keyword);"
            " return k.includes('low') && k.includes('high') && k; })()",
            timeout=60,
        )
    finally:
        shot = page.screenshot(artifact_dir() / "browser-demo.png")
        print(f"screenshot: {shot}")
        print("page state:", page.evaluate("JSON.stringify({rate: lmukws.rate, sent: lmukws.sent,"
                                           " error: lmukws.lastError})"))  # fmt: skip
        print("console:", page.console)
    assert {"low", "high"} <= set(found)
    state = json.loads(
        page.evaluate(
            "JSON.stringify({rate: lmukws.rate, ready: lmukws.ready, dets: lmukws.detections})"
        )
    )
    assert state["ready"]["sample_rate"] == state["rate"] and 8000 <= state["rate"] <= 48000
    # the sensitivity slider's value goes out in start (0.5: the checkpoint's own thresholds)
    assert page.evaluate("lmukws.startMessage.sensitivity") == 0.5
    for d in state["dets"]:
        assert d["latency"]["algorithmic_ms"] == 55.0
        assert d["e2e_ms"] is not None and d["e2e_ms"] >= d["latency"]["server_ms"]
    # the bars show live posteriors
    bars = page.evaluate("document.querySelectorAll('#bars .bar .fill').length")
    assert bars == 5
    # Stop: the page sends stop, the server answers end and closes normally
    page.evaluate("document.getElementById('start').click()", gesture=True)
    end = page.wait_for("lmukws.end && JSON.stringify(lmukws.end)", timeout=20)
    assert json.loads(end)["detections"] >= 2
    page.wait_for("document.getElementById('start').textContent === 'Start'")
    assert page.evaluate("document.getElementById('error').textContent") == ""
    assert "Session:" in page.evaluate("document.getElementById('summary').textContent")
    sent = json.loads(page.evaluate("JSON.stringify(lmukws.startMessage)"))
    assert "wake_word" not in sent
    # no speech gate served: its box is off and disabled, and start leaves the server's default
    assert "speech_gate_ms" not in sent
    assert page.evaluate("document.getElementById('speech-gate').disabled") is True
    # a wake word goes out with the commands' sensitivity, and the server takes it
    page.evaluate("document.getElementById('wake-word').value = 'low'")
    page.evaluate("document.getElementById('start').click()", gesture=True)
    ready = json.loads(page.wait_for("lmukws.ready && JSON.stringify(lmukws.ready)", timeout=20))
    start = json.loads(page.evaluate("JSON.stringify(lmukws.startMessage)"))
    assert (start["wake_word"], start["command_sensitivity"]) == ("low", 1)
    assert ready["wake_word"] == "low"
    # the wake word's detections are marked in the log, apart from the commands
    assert page.wait_for(
        "document.querySelector('#log tr.detection.wake[data-keyword=\"low\"] .wake') !== null",
        timeout=60,
    )
    assert page.evaluate("document.querySelector('#log tr.wake[data-keyword=\"high\"]')") is None
    page.evaluate("document.getElementById('start').click()", gesture=True)
    page.wait_for("document.getElementById('start').textContent === 'Start'", timeout=20)
    assert page.evaluate("document.getElementById('error').textContent") == ""


def test_browser_demo_reports_a_full_server(tmp_path: Path, tone_checkpoint: Path) -> None:
    """The only session taken, Start says the server is full; the command-sensitivity slider
    starts at the served default (here the server's setting, from ``GET /v1/model``), the
    sensitivity slider says what its calibrated point measured, and the served speech gate is
    on until its box is cleared, which sends ``speech_gate_ms: 0``."""
    server = LiveServer(
        calibrated_copy(tone_checkpoint, tmp_path / "calibrated.safetensors"),
        tmp_path / "serve",
        LMUKWS_MAX_SESSIONS="1",
        LMUKWS_COMMAND_SENSITIVITY="0.7",
        LMUKWS_SPEECH_GATE_MS="1500",
    )
    wav = write_tones(tmp_path / "fake-mic.wav", 16000, 1)
    browser = Browser(tmp_path / "profile", wav)
    try:
        import asyncio

        from client.stream import connect

        async def run(tab: Page, script: str, *args: object) -> object:
            return await asyncio.to_thread(tab.evaluate, script, *args)

        async def scenario() -> tuple[str, dict, dict, object]:
            tab = await asyncio.to_thread(browser.open, server.http + "/")
            try:
                async with connect(server.ws):  # takes the only session
                    slider = "document.getElementById('command-sensitivity-value').textContent"
                    assert await asyncio.to_thread(tab.wait_for, f"{slider} === '0.70'", 30)
                    gate = "document.getElementById('speech-gate')"
                    assert await run(tab, f"[{gate}.checked, {gate}.disabled]") == [True, False]
                    assert (
                        await run(tab, "document.getElementById('speech-gate-value').textContent")
                        == "(after 1.5 s of speech)"
                    )
                    expect = "document.getElementById('sensitivity-expect').textContent"
                    shown = [await run(tab, expect)]
                    await run(
                        tab,
                        "(() => { const s = document.getElementById('sensitivity');"
                        " s.value = 1; s.dispatchEvent(new Event('input')); })()",
                    )
                    shown.append(await run(tab, expect))
                    assert shown == [
                        "nearest calibrated point (0.50), on the validation streams: 21 false"
                        " alarms/h (12/h on recorded speech), 42 % of keywords found",
                        "nearest calibrated point (1.00), on the validation streams: 88 false"
                        " alarms/h, 61 % of keywords found",
                    ]
                    await run(tab, "document.getElementById('start').click()", True)
                    error = await asyncio.to_thread(
                        tab.wait_for, "document.getElementById('error').textContent", 30
                    )
                # the session is free again: Start with the gate switched off
                await asyncio.to_thread(
                    tab.wait_for, "document.getElementById('start').textContent === 'Start'", 20
                )
                await run(tab, f"{gate}.checked = false")
                await run(tab, "document.getElementById('start').click()", True)
                ready = json.loads(
                    await asyncio.to_thread(
                        tab.wait_for, "lmukws.ready && JSON.stringify(lmukws.ready)", 30
                    )
                )
                start = json.loads(await run(tab, "JSON.stringify(lmukws.startMessage)"))
                await run(tab, "document.getElementById('start').click()", True)
                stopped = await asyncio.to_thread(
                    tab.wait_for, "document.getElementById('start').textContent === 'Start'", 20
                )
                return error, start, ready, stopped
            finally:
                tab.close()

        error, start, ready, stopped = asyncio.run(scenario())
    finally:
        browser.close()
        server.stop()
    assert "full" in error and "try again later" in error
    assert start["speech_gate_ms"] == 0 and ready["speech_gate_ms"] == 0
    assert stopped
