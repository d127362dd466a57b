"""LTI 1.3 tool: LMS platforms, our signing keys, account links, courses (contexts) and their members as
launched, OIDC login states; events and recordings bound to a course ("course" visibility)

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('events', 'recordings')
RECORDING_TRIGGERS = [  # 0003's full-text search triggers, as 0006 recreates them
    "CREATE TRIGGER recording_fts_ai AFTER INSERT ON recordings BEGIN "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER recording_fts_ad AFTER DELETE ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); END",
    "CREATE TRIGGER recording_fts_au AFTER UPDATE OF title, description ON recordings BEGIN "
    "INSERT INTO recording_fts(recording_fts, rowid, title, description) "
    "VALUES ('delete', old.id, old.title, old.description); "
    "INSERT INTO recording_fts(rowid, title, description) VALUES (new.id, new.title, new.description); END",
]
DROP_RECORDING_TRIGGERS = [f"DROP TRIGGER IF EXISTS recording_fts_{name}" for name in ("ai", "ad", "au")]


def upgrade() -> None:
    op.create_table('lti_platforms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('deployment_ids', sa.Text(), nullable=False),
    sa.Column('auth_login_url', sa.String(length=1000), nullable=False),
    sa.Column('token_url', sa.String(length=1000), nullable=False),
    sa.Column('jwks_url', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_platforms')),
    sa.UniqueConstraint('issuer', 'client_id', name='uq_lti_platforms_issuer_client')
    )
    op.create_table('lti_tool_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('private_key', sa.Text(), nullable=False),
    sa.Column('public_jwk', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_tool_keys')),
    sa.UniqueConstraint('kid', name=op.f('uq_lti_tool_keys_kid'))
    )
    op.create_table('lti_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], name=op.f('fk_lti_accounts_platform_id_lti_platforms'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_lti_accounts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_accounts')),
    sa.UniqueConstraint('platform_id', 'sub', name='uq_lti_accounts_platform_sub')
    )
    with op.batch_alter_table('lti_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lti_accounts_user_id'), ['user_id'], unique=False)
    op.create_table('lti_contexts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.String(length=255), nullable=False),
    sa.Column('context_key', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], name=op.f('fk_lti_contexts_platform_id_lti_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_contexts')),
    sa.UniqueConstraint('platform_id', 'deployment_id', 'context_key', name='uq_lti_contexts_platform_deployment_key')
    )
    op.create_table('lti_memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('context_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('last_launch_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['context_id'], ['lti_contexts.id'], name=op.f('fk_lti_memberships_context_id_lti_contexts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_lti_memberships_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_memberships')),
    sa.UniqueConstraint('context_id', 'user_id', name='uq_lti_memberships_context_user')
    )
    with op.batch_alter_table('lti_memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lti_memberships_user_id'), ['user_id'], unique=False)
    op.create_table('lti_login_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('platform_id', sa.Integer(), nullable=False),
    sa.Column('target_link_uri', sa.String(length=1000), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['platform_id'], ['lti_platforms.id'], name=op.f('fk_lti_login_states_platform_id_lti_platforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_login_states')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_lti_login_states_state_hash'))
    )
    with op.batch_alter_table('lti_login_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lti_login_states_platform_id'), ['platform_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lti_login_states_expires_at'), ['expires_at'], unique=False)

    # On SQLite the two tables are rebuilt (a column's foreign key cannot be added otherwise), keeping
    # AUTOINCREMENT and the recordings' FTS triggers (as 0006 does).
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    for table in TABLES:
        kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': True}} if sqlite else {}
        with op.batch_alter_table(table, **kwargs) as batch_op:  # type: ignore[arg-type]
            batch_op.add_column(sa.Column('lti_context_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_lti_context_id_lti_contexts'), 'lti_contexts',
                                        ['lti_context_id'], ['id'], ondelete='SET NULL')
            batch_op.create_index(batch_op.f(f'ix_{table}_lti_context_id'), ['lti_context_id'], unique=False)
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)

def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        for statement in DROP_RECORDING_TRIGGERS:
            op.execute(statement)
    for table in TABLES:
        kwargs = {'recreate': 'always', 'table_kwargs': {'sqlite_autoincrement': True}} if sqlite else {}
        with op.batch_alter_table(table, **kwargs) as batch_op:  # type: ignore[arg-type]
            batch_op.drop_index(batch_op.f(f'ix_{table}_lti_context_id'))
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_lti_context_id_lti_contexts'), type_='foreignkey')
            batch_op.drop_column('lti_context_id')
    if sqlite:
        for statement in RECORDING_TRIGGERS:
            op.execute(statement)
    op.execute("UPDATE events SET visibility = 'authenticated' WHERE visibility = 'course'")
    op.execute("UPDATE recordings SET visibility = 'authenticated' WHERE visibility = 'course'")
    with op.batch_alter_table('lti_login_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lti_login_states_expires_at'))
        batch_op.drop_index(batch_op.f('ix_lti_login_states_platform_id'))
    op.drop_table('lti_login_states')
    with op.batch_alter_table('lti_memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lti_memberships_user_id'))
    op.drop_table('lti_memberships')
    op.drop_table('lti_contexts')
    with op.batch_alter_table('lti_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lti_accounts_user_id'))
    op.drop_table('lti_accounts')
    op.drop_table('lti_tool_keys')
    op.drop_table('lti_platforms')
