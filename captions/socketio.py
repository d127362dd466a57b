"""Live caption events to viewers over Socket.IO (the chat's ``AsyncServer``, whichever manager it uses)."""

from __future__ import annotations

from typing import Any, Callable, Protocol

__all__ = ["SocketIOCaptionSink", "default_room"]


class _Emitter(Protocol):
    async def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None,
                   namespace: str | None = None, **kwargs: Any) -> None: ...


def default_room(event_id: int) -> str:
    return f"event:{event_id}"


class SocketIOCaptionSink:
    """A ``CaptionSink`` that emits ``caption`` events to the event's room."""

    def __init__(self, server: _Emitter, room: Callable[[int], str] = default_room, namespace: str = "/") -> None:
        self.server = server
        self.room = room
        self.namespace = namespace

    async def send_caption(self, event_id: int, caption: dict[str, Any]) -> None:
        await self.server.emit("caption", caption, room=self.room(event_id), namespace=self.namespace)
