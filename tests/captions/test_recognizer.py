"""The real Vosk test model: loaded once, speech recognized at the right media time, deterministically."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from captions.vosk_models import LoadedModel, ModelRegistry, ModelUnavailable, check_models
from captions.recognizer import BYTES_PER_SECOND, PcmChunk, RecognitionStream, RecognitionUpdate, StreamRecognizer
from tests.captions.speech import Speech, pcm_of
from tests.processes import cli_in_process

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _recognize(recognizer: StreamRecognizer, pcm: bytes, media_start: float, chunk: float = 0.25) -> list[RecognitionUpdate]:
    size = int(BYTES_PER_SECOND * chunk)
    updates = []
    for offset in range(0, len(pcm), size):
        updates.append(recognizer.feed(PcmChunk(media_start + offset / BYTES_PER_SECOND, pcm[offset: offset + size])))
    updates.append(recognizer.flush())
    return updates


def test_registry_loads_a_model_once_and_explains_missing_ones(ko_model: Path, tmp_path: Path) -> None:
    registry = ModelRegistry({"ko": ko_model, "fr": tmp_path / "nowhere", "en": tmp_path})
    first = registry.get("ko")
    assert registry.get("ko") is first and first.supports_grammar
    with pytest.raises(ModelUnavailable, match=r"no Vosk model configured for language 'de' \(configured: en, fr, ko\)"):
        registry.get("de")
    with pytest.raises(ModelUnavailable, match="is not a folder"):
        registry.get("fr")
    with pytest.raises(ModelUnavailable, match=r"not a Vosk model folder \(missing am/final.mdl, conf/model.conf\)"):
        registry.get("en")
    assert registry.loaded_languages() == ["ko"]


def test_models_check_command(ko_model: Path, tmp_path: Path) -> None:
    """``live-server models check`` (its ``main()``, in this process: the model loads once, not in a second
    interpreter and again here): one line per language, exit 1 when one fails to load."""
    env = {"LIVE_VOSK_MODELS": f"ko={ko_model},fr={tmp_path / 'missing'}"}
    out = cli_in_process(env, "models", "check", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = dict(line.split("\t", 1) for line in out.stdout.strip().splitlines())
    assert lines["ko"].startswith("ok\t") and "grammar supported" in lines["ko"]  # check_models() said ok for ko
    assert lines["fr"].startswith("FAILED\t") and "is not a folder" in lines["fr"]
    assert [c.ok for c in check_models({"fr": tmp_path / "missing"})] == [False]


def test_speech_comes_back_as_hangul_words_at_its_media_time(ko_loaded: LoadedModel, ko_speech: Speech) -> None:
    model = ko_loaded
    silence = bytes(2 * BYTES_PER_SECOND)
    pcm = silence + pcm_of(ko_speech.wav) + silence + silence
    runs = []
    for _ in range(2):
        updates = _recognize(StreamRecognizer(model), pcm, media_start=100.0)
        finals = [w for u in updates for words in u.finals for w in words]
        runs.append([(w.text, w.start, w.end) for w in finals])
        assert finals and all(HANGUL.search(w.text) for w in finals)
        onset = 100.0 + 2.0 + ko_speech.onset
        assert abs(finals[0].start - onset) < 1.0, (finals[0], onset)
        assert finals[-1].end <= 100.0 + 2.0 + ko_speech.offset + 1.0
        assert any(u.partial for u in updates), "partial results while speaking"
        assert updates[-1].settled_until == pytest.approx(100.0 + len(pcm) / BYTES_PER_SECOND)
    assert runs[0] == runs[1], "dither=0 makes recognition deterministic"


def test_vocabulary_becomes_a_grammar(ko_loaded: LoadedModel, ko_speech: Speech) -> None:
    model = ko_loaded
    known, unknown = model.known_words(["안녕하세요", "컴퓨터", "zzqxv"])
    assert "zzqxv" in unknown and "컴퓨터" in known
    recognizer = StreamRecognizer(model, known)
    assert recognizer.grammar == [*known, "[unk]"]
    updates = _recognize(recognizer, bytes(BYTES_PER_SECOND) + pcm_of(ko_speech.wav) + bytes(2 * BYTES_PER_SECOND), 0.0)
    words = {w.text for u in updates for ws in u.finals for w in ws}
    assert words and words <= set(known)


async def test_a_slow_recognizer_drops_the_oldest_audio_and_counts_it(ko_loaded: LoadedModel) -> None:
    model = ko_loaded
    updates: list[RecognitionUpdate] = []
    stream = RecognitionStream(lambda: StreamRecognizer(model), None, max_queue_seconds=1.0, on_update=updates.append)
    chunk = bytes(BYTES_PER_SECOND // 4)
    for i in range(40):  # 10 s of audio pushed at once into a 1 s queue
        stream.push(PcmChunk(i * 0.25, chunk))
    assert stream.queued_seconds <= 1.0
    assert stream.dropped_chunks >= 35
    assert await stream.drain(30)
    assert updates and updates[-1].processed_until == pytest.approx(10.0)  # the newest audio was kept
    assert stream.real_time_factor is not None
    await stream.close()
    assert stream.failed is None


async def test_a_missing_model_fails_the_stream_not_the_caller(tmp_path: Path) -> None:
    reasons: list[str] = []
    registry = ModelRegistry({"ko": tmp_path})
    stream = RecognitionStream(lambda: StreamRecognizer(registry.get("ko")), None, 1.0, lambda u: None, reasons.append)
    stream.push(PcmChunk(0.0, bytes(800)))
    assert await stream.drain(5)
    assert stream.failed and "not a Vosk model folder" in stream.failed and reasons == [stream.failed]
    stream.push(PcmChunk(0.1, bytes(800)))  # ignored, no error
    await stream.close()
    await asyncio.sleep(0)
