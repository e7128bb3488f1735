"""create decisions and positions

Revision ID: 8b4d2f6a1c37
Revises: 5c1e9a7d3b24
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b4d2f6a1c37"
down_revision: str | None = "5c1e9a7d3b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = sa.Numeric(precision=20, scale=8)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(precision=53), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], ondelete="CASCADE",
                                name=op.f("fk_decisions_signal_id_signals")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_decisions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_signal_id"), ["signal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_user_id"), ["user_id"], unique=False)
        batch_op.create_index("ix_decisions_user_id_created_at", ["user_id", "created_at"],
                              unique=False)

    op.create_table(
        "positions",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=28, scale=10), nullable=False),
        sa.Column("entry_price", PRICE, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("exit_price", PRICE, nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("realized_pnl", PRICE, nullable=True),
        sa.Column("unrealized_pnl", PRICE, nullable=True),
        sa.Column("mark_price", PRICE, nullable=True),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("closing_signal_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["closing_signal_id"], ["signals.id"], ondelete="SET NULL",
                                name=op.f("fk_positions_closing_signal_id_signals")),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], ondelete="SET NULL",
                                name=op.f("fk_positions_signal_id_signals")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_positions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
    )
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_positions_closing_signal_id"),
                              ["closing_signal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_signal_id"), ["signal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_user_id"), ["user_id"], unique=False)
        # The open-book scan of every decision: a user's open positions (per symbol).
        batch_op.create_index("ix_positions_user_id_status_symbol",
                              ["user_id", "status", "symbol"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_index("ix_positions_user_id_status_symbol")
        batch_op.drop_index(batch_op.f("ix_positions_user_id"))
        batch_op.drop_index(batch_op.f("ix_positions_signal_id"))
        batch_op.drop_index(batch_op.f("ix_positions_closing_signal_id"))
    op.drop_table("positions")

    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_user_id_created_at")
        batch_op.drop_index(batch_op.f("ix_decisions_user_id"))
        batch_op.drop_index(batch_op.f("ix_decisions_signal_id"))
    op.drop_table("decisions")
