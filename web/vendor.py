"""Front-end libraries installed from npm (package-lock.json), served at /vendor/<name>.

Only the files listed here are reachable; node_modules itself is never exposed.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
VENDOR_FILES = {
    "hls.min.js": "hls.js/dist/hls.min.js",
    "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
    "axe.min.js": "axe-core/axe.min.js",
}


def vendor_routes(node_modules: Path = NODE_MODULES) -> list[web.RouteDef]:
    cache: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        rel = VENDOR_FILES.get(name)
        if rel is None:
            raise web.HTTPNotFound()
        if name not in cache:
            path = node_modules / rel
            if not path.is_file():
                raise web.HTTPServiceUnavailable(text=f"{name} is not installed; run `make run` (npm ci)\n")
            cache[name] = path.read_bytes()
        return web.Response(
            body=cache[name],
            content_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [web.get("/vendor/{name}", serve)]
