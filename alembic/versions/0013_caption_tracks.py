"""caption tracks: any number of text tracks per recording (language, kind, label, origin) with saved
versions; caption_segments.track_id (the published cues of a track other than the automatic one, indexed
for search); caption_segments.language widened to BCP 47 tags. Each recording that has caption rows gets
its automatic track (the live captions, or the transcription when a transcription job finished).

Revision ID: 0013
Revises: 0012
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0013'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# A batch copy of caption_segments (SQLite) drops the FTS5 triggers 0003 made: they are made again.
CAPTION_TRIGGERS = [
    "DROP TRIGGER IF EXISTS caption_fts_ai",
    "DROP TRIGGER IF EXISTS caption_fts_ad",
    "DROP TRIGGER IF EXISTS caption_fts_au",
    "CREATE TRIGGER caption_fts_ai AFTER INSERT ON caption_segments BEGIN "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER caption_fts_ad AFTER DELETE ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER caption_fts_au AFTER UPDATE OF text ON caption_segments BEGIN "
    "INSERT INTO caption_fts(caption_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO caption_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO caption_fts(caption_fts) VALUES ('rebuild')",
]

# The automatic track of every recording with caption rows: its language is the rows' (the first one
# when a recording has several), its origin a finished transcription's, else the live captions'.
AUTOMATIC_TRACKS = (
    "INSERT INTO caption_tracks (recording_id, language, kind, label, origin, automatic_of, forced, "
    "published_version, created_at) "
    "SELECT c.recording_id, MIN(c.language), 'captions', '', "
    "CASE WHEN EXISTS (SELECT 1 FROM transcription_jobs j WHERE j.recording_id = c.recording_id "
    "AND j.state = 'done') THEN 'transcription' ELSE 'live' END, "
    "c.recording_id, false, 0, MIN(c.created_at) "
    "FROM caption_segments c WHERE c.recording_id IS NOT NULL GROUP BY c.recording_id"
)


def upgrade() -> None:
    op.create_table('caption_tracks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('automatic_of', sa.Integer(), nullable=True),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('published_version', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recording_id'], ['recordings.id'], name=op.f('fk_caption_tracks_recording_id_recordings'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_caption_tracks_created_by_id_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caption_tracks')),
    sa.UniqueConstraint('automatic_of', name='uq_caption_tracks_automatic_of'),
    )
    with op.batch_alter_table('caption_tracks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caption_tracks_recording_id'), ['recording_id'], unique=False)
    op.create_table('caption_track_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('cues', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['track_id'], ['caption_tracks.id'], name=op.f('fk_caption_track_versions_track_id_caption_tracks'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_caption_track_versions_author_id_users'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caption_track_versions')),
    sa.UniqueConstraint('track_id', 'number', name='uq_caption_track_versions_track_number'),
    )
    with op.batch_alter_table('caption_track_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caption_track_versions_track_id'), ['track_id'], unique=False)
    sqlite = op.get_bind().dialect.name == 'sqlite'
    with op.batch_alter_table('caption_segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('track_id', sa.Integer(), nullable=True))
        batch_op.alter_column('language', existing_type=sa.String(length=8), type_=sa.String(length=35),
                              existing_nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_caption_segments_track_id_caption_tracks'), 'caption_tracks',
                                    ['track_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_caption_segments_track_id'), ['track_id'], unique=False)
    if sqlite:
        for statement in CAPTION_TRIGGERS:
            op.execute(statement)
    op.execute(AUTOMATIC_TRACKS)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    op.execute("DELETE FROM caption_segments WHERE track_id IS NOT NULL")  # uploaded tracks' cues go with them
    op.execute("UPDATE caption_segments SET language = substr(language, 1, 8) WHERE length(language) > 8")
    with op.batch_alter_table('caption_segments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caption_segments_track_id'))
        batch_op.drop_constraint(batch_op.f('fk_caption_segments_track_id_caption_tracks'), type_='foreignkey')
        batch_op.drop_column('track_id')
        batch_op.alter_column('language', existing_type=sa.String(length=35), type_=sa.String(length=8),
                              existing_nullable=False)
    if sqlite:
        for statement in CAPTION_TRIGGERS:
            op.execute(statement)
    with op.batch_alter_table('caption_track_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caption_track_versions_track_id'))
    op.drop_table('caption_track_versions')
    with op.batch_alter_table('caption_tracks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caption_tracks_recording_id'))
    op.drop_table('caption_tracks')
