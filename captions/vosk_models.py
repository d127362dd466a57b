"""Vosk speech models by language: loaded once, on first use, and shared by every stream of that language.

A model is ~500 MiB and takes seconds to load, so it is never loaded per stream (Esup-Pod's
captioner reloaded it every few seconds). One ``vosk.Model`` is safe to share across threads.
Models are only ever read from configured folders: nothing is downloaded.
"""

from __future__ import annotations

import shutil

import os

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

__all__ = ["ModelUnavailable", "LoadedModel", "ModelRegistry", "ModelCheck", "check_models", "model_problem"]

#: Files every Vosk model folder has; their absence gives a readable message instead of Kaldi's.
REQUIRED_FILES = ("am/final.mdl", "conf/model.conf")


class ModelUnavailable(Exception):
    """No usable model for a language; the message is meant for the event's owner."""


@dataclass
class LoadedModel:
    language: str
    path: Path
    model: Any  # vosk.Model
    load_seconds: float
    #: dynamic graph (HCLr.fst + Gr.fst): the recognizer accepts a grammar (word list) at run time
    supports_grammar: bool

    def known_words(self, words: list[str]) -> tuple[list[str], list[str]]:
        """Split a vocabulary into words the model knows and words it does not."""
        known: list[str] = []
        unknown: list[str] = []
        for word in words:
            (known if self.model.vosk_model_find_word(word) >= 0 else unknown).append(word)
        return known, unknown


def model_problem(path: Path) -> str | None:
    """Why a folder is not a Vosk model (None when it looks like one)."""
    if not path.is_dir():
        return f"{path} is not a folder"
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        return f"{path} is not a Vosk model folder (missing {', '.join(missing)})"
    return None


def _supports_grammar(path: Path) -> bool:
    return (path / "graph" / "HCLr.fst").is_file() and (path / "graph" / "Gr.fst").is_file()


def _load(language: str, path: Path) -> LoadedModel:
    problem = model_problem(path)
    if problem:
        raise ModelUnavailable(problem)
    import vosk

    vosk.SetLogLevel(-1)
    started = time.monotonic()
    try:
        model = vosk.Model(str(path))
    except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
        raise ModelUnavailable(f"{path}: Vosk could not load the model ({exc})") from None
    return LoadedModel(language, path, model, time.monotonic() - started, _supports_grammar(path))


@dataclass
class ModelRegistry:
    """The configured models (``settings.vosk_models``), each loaded at most once."""

    paths: Mapping[str, Path]
    _loaded: dict[str, LoadedModel] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def languages(self) -> list[str]:
        return sorted(self.paths)

    def get(self, language: str) -> LoadedModel:
        """The model for ``language``, loading it now if needed (blocking: call from a thread)."""
        path = self.paths.get(language)
        if path is None:
            configured = ", ".join(self.languages) or "none"
            raise ModelUnavailable(f"no Vosk model configured for language {language!r} (configured: {configured})")
        with self._lock:
            if language in self._loaded:
                return self._loaded[language]
            if language in self._failed:
                raise ModelUnavailable(self._failed[language])
            try:
                loaded = _load(language, Path(path))
            except ModelUnavailable as exc:
                self._failed[language] = str(exc)
                log.error("captions: model for %s unusable: %s", language, exc)
                raise
            self._loaded[language] = loaded
            log.info("captions: loaded the %s model from %s in %.1f s", language, path, loaded.load_seconds)
            return loaded

    async def load(self, language: str, executor: Executor | None = None) -> LoadedModel:
        """``get`` off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(executor, self.get, language)

    def loaded_languages(self) -> list[str]:
        return sorted(self._loaded)


@dataclass(frozen=True)
class ModelCheck:
    language: str
    path: Path
    ok: bool
    message: str


def check_models(paths: Mapping[str, Path]) -> list[ModelCheck]:
    """Load every configured model once (``live-server models check``)."""
    results = []
    for language in sorted(paths):
        path = Path(paths[language])
        try:
            loaded = _load(language, path)
        except ModelUnavailable as exc:
            results.append(ModelCheck(language, path, False, str(exc)))
            continue
        grammar = "grammar supported" if loaded.supports_grammar else "no run-time grammar"
        results.append(ModelCheck(language, path, True, f"loaded in {loaded.load_seconds:.1f} s; {grammar}"))
        del loaded
    return results


def without_dither(source: Path, target: Path) -> Path:
    """A copy of a model folder whose feature config turns Kaldi's random dither off, so the same
    audio always decodes to the same words (tests, benchmarks). Big files are symlinked."""
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "conf":
            os.symlink(entry, target / entry.name)
    shutil.copytree(source / "conf", target / "conf")
    mfcc = target / "conf" / "mfcc.conf"
    mfcc.write_text(mfcc.read_text().rstrip("\n") + "\n--dither=0\n")
    return target
