"""initial schema: regions, tokens, submissions, review items, decisions, audit log, service config

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 05:04:43.592475
"""

from alembic import op
import sqlalchemy as sa
import api.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The chain starts from a fixed genesis hash.
    op.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")
    op.create_table('regions',
    sa.Column('code', sa.String(length=13), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('parent_code', sa.String(length=13), nullable=True),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('service_config',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', api.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tps_kode', sa.String(length=13), nullable=True),
    sa.Column('region_scope', sa.String(length=10), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('created_at', api.models.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', api.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('submissions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tps_kode', sa.String(length=13), nullable=False),
    sa.Column('form_set', sa.String(length=64), nullable=False),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_name', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('uploaded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', api.models.UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('check', sa.JSON(), nullable=True),
    sa.Column('reading', sa.JSON(), nullable=True),
    sa.Column('page_status', sa.String(length=16), nullable=True),
    sa.Column('read_at', api.models.UTCDateTime(), nullable=True),
    sa.Column('superseded_at', api.models.UTCDateTime(), nullable=True),
    sa.Column('superseded_by_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['uploaded_by'], ['tokens.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uploaded_by', 'idempotency_key', name='uq_submissions_idempotency')
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submissions_sha256'), ['sha256'], unique=False)
        batch_op.create_index('ix_submissions_status', ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_tps_kode'), ['tps_kode'], unique=False)
        batch_op.create_index('ix_submissions_tps_sha', ['tps_kode', 'sha256'], unique=False)
        batch_op.create_index('uq_submissions_current_slot', ['tps_kode', 'form_set', 'page'], unique=True, sqlite_where=sa.text('superseded_at IS NULL'), postgresql_where=sa.text('superseded_at IS NULL'))

    op.create_table('review_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.String(length=36), nullable=False),
    sa.Column('tps_kode', sa.String(length=13), nullable=False),
    sa.Column('form_set', sa.String(length=64), nullable=False),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('field_id', sa.String(length=64), nullable=False),
    sa.Column('machine_value', sa.Integer(), nullable=True),
    sa.Column('machine_text', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Double(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('double_entry', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('lease_holder', sa.Integer(), nullable=True),
    sa.Column('lease_expires_at', api.models.UTCDateTime(), nullable=True),
    sa.Column('final_action', sa.String(length=16), nullable=True),
    sa.Column('final_value', sa.Integer(), nullable=True),
    sa.Column('resolved_at', api.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', api.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lease_holder'], ['tokens.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('submission_id', 'field_id', name='uq_review_items_field')
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index('ix_review_items_queue', ['state', 'tps_kode'], unique=False)

    op.create_table('decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('old_value', sa.Integer(), nullable=True),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', api.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], ),
    sa.ForeignKeyConstraint(['token_id'], ['tokens.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_item_id'), ['item_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_item_id'))

    op.drop_table('decisions')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_queue')

    op.drop_table('review_items')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index('uq_submissions_current_slot', sqlite_where=sa.text('superseded_at IS NULL'), postgresql_where=sa.text('superseded_at IS NULL'))
        batch_op.drop_index('ix_submissions_tps_sha')
        batch_op.drop_index(batch_op.f('ix_submissions_tps_kode'))
        batch_op.drop_index('ix_submissions_status')
        batch_op.drop_index(batch_op.f('ix_submissions_sha256'))

    op.drop_table('submissions')
    op.drop_table('tokens')
    op.drop_table('service_config')
    op.drop_table('regions')
    op.drop_table('audit_head')
    op.drop_table('audit_events')
