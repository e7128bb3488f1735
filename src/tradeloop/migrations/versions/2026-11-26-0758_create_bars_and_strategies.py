"""create bars and strategies

Revision ID: 8f925abcbc1b
Revises: 0e1a50ba0c69
Create Date: 2026-11-26 07:58:22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8f925abcbc1b"
down_revision: str | None = "0e1a50ba0c69"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("bar_series",
    sa.Column("symbol", sa.String(length=32), nullable=False),
    sa.Column("timeframe", sa.String(length=8), nullable=False),
    sa.Column("source", sa.String(length=200), nullable=False),
    sa.Column("synthetic", sa.Boolean(), nullable=False),
    sa.Column("row_count", sa.Integer(), nullable=False),
    sa.Column("first_ts", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_ts", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("symbol", "timeframe", name=op.f("pk_bar_series"))
    )
    op.create_table("bars",
    sa.Column("symbol", sa.String(length=32), nullable=False),
    sa.Column("timeframe", sa.String(length=8), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("open", sa.Float(precision=53), nullable=False),
    sa.Column("high", sa.Float(precision=53), nullable=False),
    sa.Column("low", sa.Float(precision=53), nullable=False),
    sa.Column("close", sa.Float(precision=53), nullable=False),
    sa.Column("volume", sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint("symbol", "timeframe", "ts", name=op.f("pk_bars"))
    )
    op.create_table("strategies",
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("definition", sa.Text(), nullable=False),
    sa.Column("metadata", sa.JSON(), nullable=False),
    sa.Column("lock_version", sa.Integer(), nullable=False),
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                            name=op.f("fk_strategies_user_id_users")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies"))
    )
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.create_index("ix_strategies_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_strategies_user_id"), ["user_id"], unique=False)
        batch_op.create_index("uq_strategies_user_id_name_version",
                              ["user_id", "name", "version"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.drop_index("uq_strategies_user_id_name_version")
        batch_op.drop_index(batch_op.f("ix_strategies_user_id"))
        batch_op.drop_index("ix_strategies_status")

    op.drop_table("strategies")
    op.drop_table("bars")
    op.drop_table("bar_series")
