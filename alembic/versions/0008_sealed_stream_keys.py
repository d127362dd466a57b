"""stream keys sealed at rest

``stream_keys.secret`` held the key in clear; it now holds ``v1.<AES-256-GCM sealed key>`` under a key
derived from the server secret (live_server/security.py, StreamKeyCipher). No schema change: the
sealed value fits the column. Existing rows are sealed here, which needs the server secret:
`live-server db upgrade` passes it. An empty catalog needs nothing.

Revision ID: 0008
Revises: 0007
"""
from typing import Any, Callable, Sequence, Union

from alembic import context, op
import sqlalchemy as sa

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PREFIX = "v1."


def _convert(sealed: bool, change: Callable[[Any, str, str], str]) -> None:
    bind = op.get_bind()
    keys = sa.table('stream_keys', sa.column('id', sa.Integer), sa.column('key_id', sa.String), sa.column('secret', sa.String))
    rows = [r for r in bind.execute(sa.select(keys.c.id, keys.c.key_id, keys.c.secret)) if r.secret.startswith(PREFIX) == sealed]
    if not rows:
        return
    cipher = context.config.attributes.get("stream_key_cipher")
    if cipher is None:
        raise RuntimeError("stream keys are sealed with the server secret: run `live-server db upgrade`/`downgrade` "
                           "with the server's settings (LIVE_SECRET_KEY or its data_dir)")
    for row in rows:
        bind.execute(keys.update().where(keys.c.id == row.id).values(secret=change(cipher, row.key_id, row.secret)))


def upgrade() -> None:
    _convert(False, lambda cipher, key_id, secret: cipher.seal(key_id, secret))


def downgrade() -> None:
    _convert(True, lambda cipher, key_id, sealed: cipher.open(key_id, sealed))
