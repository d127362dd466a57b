"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str


async def login(client: Any, account: Account) -> str:
    """Log a test client in through the API; returns the CSRF token for later writes."""
    resp = await client.post("/api/v1/auth/login", json={"username": account.username, "password": account.password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf_token"]
