"""Captured WHIP offers (``data/``) and a seeded mutation of an offer's text, for the SDP tests and the publish tests."""

from __future__ import annotations

import re
from pathlib import Path

DATA = Path(__file__).parent / "data"
FFMPEG_OFFER = (DATA / "ffmpeg_offer.sdp").read_bytes().decode()
#: What a mutation writes: SDP's own punctuation, non-ASCII digits, controls, and bits of real lines.
SPLICES = ["0", "9", "65536", "²", "٣", "１", "\x00", "\r\n", "\n", " ", ":", "/", "=", ";", "a=", "m=audio 0 ",
           "a=bundle-only", "a=group:BUNDLE ", "a=setup:", "a=rtpmap:", "a=fmtp:", "a=mid:", "\ud800", "é", "-1"]
#: What replaces a number: other numbers, and digits ``str.isdigit`` accepts but ``int`` may not.
NUMBERS = ["0", "²", "٣٣", "１１１", "99999", "4294967296", "9" * 5000, "-1", "", "1.5", "0x7f"]


def mutate(text: str, seed: int, count: int) -> str:
    """A seeded mutation: ``count`` number swaps, splices, deletions, line duplications or truncations."""
    import random

    rng = random.Random(seed)
    for _ in range(count):
        choice = rng.randrange(5)
        if choice == 4:
            numbers = list(re.finditer(r"[0-9]+", text))
            if numbers:
                number = rng.choice(numbers)
                text = text[:number.start()] + rng.choice(NUMBERS) + text[number.end():]
            continue
        at = rng.randrange(len(text) + 1)
        if choice == 0:
            text = text[:at] + rng.choice(SPLICES) + text[at + rng.randrange(3):]
        elif choice == 1:
            text = text[:at] + text[at + rng.randrange(1, 40):]
        elif choice == 2:
            lines = text.split("\r\n")
            index = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[index])
            text = "\r\n".join(lines)
        else:
            text = text[:max(at, 20)]
    return text
