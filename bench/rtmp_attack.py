"""Server memory under the unauthenticated RTMP memory attack of issue 17 (items 1 and 17).

Starts ``python -m ingest.rtmp`` (the production listener with its settings, an FLV-dump
publisher) from a checkout (``--root``, default this one, so another checkout can be compared),
then ``--attackers`` connections at once each try to send ``--mib`` MiB of one big message
without ever publishing:

* ``chunk-size-1``: Set Chunk Size 1, then 1-byte chunks (the issue's attack);
* ``chunk-size-4``: the same with 4-byte chunks (distinct ``bytes`` objects in the old reader);
* ``chunk-size-128``: 128-byte chunks (the floor) over 60 chunk streams, after ``connect``.

Reported: MiB the sockets took before the server closed them, the server's RSS before, its peak
(``VmHWM``) and its RSS after. Run: ``.venv/bin/python -m bench.rtmp_attack --attackers 10 --mib 16``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

from tests.ingest.rtmp.rtmp_captures import control, plain_handshake
from tests.ingest.rtmp.attacks import attack, floor_chunks, message_header, rss_kib, tiny_chunks

ROOT = Path(__file__).resolve().parent.parent


def small_chunks() -> tuple[bytes, bytes]:
    opening = plain_handshake() + control(1, (4).to_bytes(4, "big")) + message_header(6, 8_000_000)
    return opening, b"\xc6\x01\x02\x03\x04" * 13107


KINDS = {"chunk-size-1": tiny_chunks, "chunk-size-4": small_chunks, "chunk-size-128": floor_chunks}


async def run(root: Path, kind: str, attackers: int, mib: int) -> str:
    with tempfile.TemporaryDirectory() as work:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "LIVE_DATA_DIR": work,
               "LIVE_RTMP_MAX_PENDING_PER_ADDRESS": str(max(attackers, 8))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest.rtmp", "--host", "127.0.0.1", "--port", "0", "--dir", f"{work}/flv",
            env=env, cwd=work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))  # type: ignore[union-attr]
        await asyncio.sleep(0.5)
        before = rss_kib(proc.pid)
        opening, repeat = KINDS[kind]()
        sent = sum(await asyncio.gather(*(attack(port, opening, repeat, mib * 2**20) for _ in range(attackers))))
        await asyncio.sleep(0.5)
        peak, after = rss_kib(proc.pid, "VmHWM"), rss_kib(proc.pid)
        proc.terminate()
        await proc.wait()
    return (f"{kind}: {attackers} attacker(s), sent {sent / 2**20:.1f} MiB; RSS before {before / 1024:.0f} MiB, "
            f"peak {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f}), after {after / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose server to attack")
    parser.add_argument("--kind", choices=sorted(KINDS), nargs="+", default=sorted(KINDS))
    parser.add_argument("--attackers", type=int, default=10)
    parser.add_argument("--mib", type=int, default=16, help="MiB each attacker tries to send")
    args = parser.parse_args()
    for kind in args.kind:
        print(asyncio.run(run(args.root.resolve(), kind, args.attackers, args.mib)), flush=True)


if __name__ == "__main__":
    main()
