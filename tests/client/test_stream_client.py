"""The websocket client against a protocol-conformant test server: the conversation, pacing,
encodings and rates, and one exception per way a session can fail."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf

from client import errors
from client.stream import connect, detect, stream_file, stream_url
from client.sync import Client
from server import protocol as p
from tests.client.protocol_server import ProtocolServer, burst_clip


@pytest.fixture(scope="module")
def server_module() -> Iterator[ProtocolServer]:
    server = ProtocolServer()
    yield server
    server.close()


@pytest.fixture
def server(server_module: ProtocolServer) -> ProtocolServer:
    server_module.behaviour = "normal"
    server_module.sessions.clear()
    return server_module


def test_stream_url_forms() -> None:
    assert stream_url("ws://h:1") == "ws://h:1/v1/stream"
    assert stream_url("http://h:1/") == "ws://h:1/v1/stream"
    assert stream_url("https://h/v1/stream?x=1") == "wss://h/v1/stream?x=1"
    assert stream_url("h:8000") == "ws://h:8000/v1/stream"
    with pytest.raises(ValueError, match="ftp://h"):
        stream_url("ftp://h")


def test_session_conversation(server: ProtocolServer) -> None:
    clip = burst_clip()

    async def main() -> tuple[list[p.DetectionMessage | p.ScoresMessage], p.EndMessage]:
        async with connect(
            server.url, sample_rate=16000, keywords=["yes", "no"], thresholds={"yes": 0.6}
        ) as session:
            assert session.ready.labels[0] == "yes" and session.ready.lookahead_frames == 4
            await session.send_audio(clip)
            end = await session.finish()
            return session.poll(), end

    events, end = asyncio.run(main())
    got = server.sessions[-1]
    assert got.start == p.StartMessage(
        sample_rate=16000, keywords=["yes", "no"], thresholds={"yes": 0.6}
    )
    np.testing.assert_allclose(got.audio, clip, atol=1 / 32768)  # s16 round trip
    assert [type(e) for e in events] == [p.DetectionMessage]
    assert events[0].audio_ms == pytest.approx(600.0)
    assert end.audio_ms == pytest.approx(1000.0) and end.detections == 1
    assert got.stops == 1 and got.closed_with() == 1000


def test_iterating_a_session_ends_at_end(server: ProtocolServer) -> None:
    async def main() -> list[str]:
        async with connect(server.url, scores_every_ms=200) as session:
            await session.send_audio(burst_clip())
            await session.stop()
            await session.stop()  # idempotent
            kinds = [event.type async for event in session]
            assert session.end is not None and not session.open
            with pytest.raises(errors.ClientError, match="after stop"):
                await session.send_audio(np.zeros(10))
            return kinds

    kinds = asyncio.run(main())
    assert kinds.count("scores") == 5 and kinds.count("detection") == 1


def test_float_encoding_and_reset(server: ProtocolServer) -> None:
    clip = burst_clip(rate=22050)

    async def main() -> p.EndMessage:
        async with connect(server.url, sample_rate=22050, encoding="pcm_f32le") as session:
            await session.send_audio(clip[:2205])
            await session.reset()
            await session.send_audio(clip)
            return await session.finish()

    end = asyncio.run(main())
    got = server.sessions[-1]
    np.testing.assert_array_equal(got.audio, np.concatenate([clip[:2205], clip]))
    assert got.resets == 1 and end.audio_ms == pytest.approx(1000.0)


def test_raw_bytes_must_be_whole_samples(server: ProtocolServer) -> None:
    async def main() -> None:
        async with connect(server.url) as session:
            await session.send_audio(b"\x00\x01\x02\x03")
            with pytest.raises(ValueError, match="3 bytes is not a whole number of pcm_s16le"):
                await session.send_audio(b"\x00\x01\x02")

    asyncio.run(main())


def test_bad_start_values_are_refused_locally() -> None:
    with pytest.raises(ValueError, match="96000"):
        connect("ws://127.0.0.1:1", sample_rate=96000)


def test_stream_file_any_rate(server: ProtocolServer, tmp_path) -> None:
    path = tmp_path / "stereo96k.wav"
    clip = burst_clip(rate=96000)
    sf.write(path, np.stack([clip, clip], axis=1), 96000, subtype="PCM_16")

    async def main() -> list[p.ReadyMessage | p.DetectionMessage | p.ScoresMessage | p.EndMessage]:
        return [m async for m in stream_file(server.url, path, chunk_ms=50)]

    messages = asyncio.run(main())
    assert server.sessions[-1].start.sample_rate == 16000  # 96 kHz is outside 8-48 kHz
    assert [m.type for m in messages] == ["ready", "detection", "end"]
    assert messages[-1].audio_ms == pytest.approx(1000.0)


def test_realtime_paces_audio(server: ProtocolServer) -> None:
    clip = burst_clip(seconds=0.6)

    async def timed(realtime: bool) -> float:
        t0 = time.monotonic()
        await detect(server.url, clip, 16000, realtime=realtime, chunk_ms=50)
        return time.monotonic() - t0

    assert asyncio.run(timed(False)) < 0.4
    assert asyncio.run(timed(True)) >= 0.55


def test_on_chunk_reports_progress(server: ProtocolServer) -> None:
    seen: list[int] = []
    asyncio.run(
        detect(server.url, burst_clip(), 16000, chunk_ms=250, on_chunk=lambda n, t: seen.append(n))
    )
    assert seen == [4000, 8000, 12000, 16000]


def test_refused_with_1013(server: ProtocolServer) -> None:
    server.behaviour = "full"
    with pytest.raises(errors.SessionRefusedError, match=r"1013.*64 sessions"):
        asyncio.run(detect(server.url, burst_clip(), 16000))


def test_refused_with_http_503(server: ProtocolServer) -> None:
    server.behaviour = "http503"
    with pytest.raises(errors.SessionRefusedError, match="HTTP 503") as caught:
        asyncio.run(detect(server.url, burst_clip(), 16000))
    assert caught.value.retry_after == 2.0


def test_error_before_ready_names_code_and_close(server: ProtocolServer) -> None:
    with pytest.raises(errors.ServerClosedError, match="unknown_keyword") as caught:
        asyncio.run(detect(server.url, burst_clip(), 16000, keywords=["banana"]))
    assert caught.value.close_code == p.CloseCode.POLICY_VIOLATION
    assert caught.value.error is not None and "banana" in caught.value.error.message


def test_bad_ready(server: ProtocolServer) -> None:
    server.behaviour = "garbage_ready"
    with pytest.raises(errors.BadServerReplyError, match="hello"):
        asyncio.run(detect(server.url, burst_clip(), 16000))


def test_bad_event(server: ProtocolServer) -> None:
    server.behaviour = "garbage_event"
    with pytest.raises(errors.BadServerReplyError, match="detection"):
        asyncio.run(detect(server.url, burst_clip(), 16000))
    assert server.sessions[-1].closed_with() == 1002


def test_dropped_connection(server: ProtocolServer) -> None:
    server.behaviour = "drop"
    with pytest.raises(errors.ServerClosedError, match="connection lost") as caught:
        asyncio.run(detect(server.url, burst_clip(), 16000))
    assert caught.value.close_code is None


def test_shutdown_after_end_is_a_normal_end(server: ProtocolServer) -> None:
    server.behaviour = "shutdown"

    async def main() -> tuple[p.EndMessage, int | None]:
        async with connect(server.url) as session:
            await session.send_audio(np.zeros(16000, np.float32))
            async for _ in session:
                pass
            assert session.end is not None
            return session.end, session.close_code

    end, code = asyncio.run(main())
    assert end.audio_ms == pytest.approx(1000.0) and code == 1001


def test_shutdown_without_end(server: ProtocolServer) -> None:
    server.behaviour = "shutdown_no_end"
    with pytest.raises(errors.ServerShuttingDownError, match="1001"):
        asyncio.run(detect(server.url, burst_clip(), 16000))


def test_no_end_times_out(server: ProtocolServer) -> None:
    server.behaviour = "no_end"
    with pytest.raises(errors.ServerClosedError, match=r"no 'end'.*0\.3 s"):
        asyncio.run(detect(server.url, burst_clip(), 16000, end_timeout=0.3))


def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.ConnectError, match=f"127.0.0.1:{port}"):
        asyncio.run(detect(f"ws://127.0.0.1:{port}", burst_clip(), 16000, open_timeout=2))


def test_sync_client(server: ProtocolServer, tmp_path) -> None:
    path = tmp_path / "clip.wav"
    sf.write(path, burst_clip(rate=8000), 8000)
    with Client(server.url.replace("ws://", "http://")) as client:
        result = client.detect_file(path, scores_every_ms=500)
        assert [d.keyword for d in result.detections] == ["yes"]
        assert len(result.scores) == 2 and result.end.detections == 1
        kinds = [m.type for m in client.stream_array(burst_clip(), 16000)]
        assert kinds == ["ready", "detection", "end"]
        # leaving an iteration early closes its session
        for message in client.stream_array(burst_clip(seconds=3.0), 16000, realtime=True):
            assert message.type == "ready"
            break
        server.behaviour = "full"
        with pytest.raises(errors.SessionRefusedError):
            client.detect_array(burst_clip(), 16000)
    assert server.sessions[-2].closed_with() == 1000 and server.sessions[-2].stops == 0
