"""create gex and context snapshots

Revision ID: c5d2e3f4a502
Revises: b4c1d2e3f401
Create Date: 2026-11-26 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5d2e3f4a502"
down_revision: str | None = "b4c1d2e3f401"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gex_signals",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("net_gex", sa.Numeric(precision=28, scale=4), nullable=False),
        sa.Column("gamma_flip", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("call_wall", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("put_wall", sa.Numeric(precision=20, scale=8), nullable=False),
        sa.Column("spot_price", sa.Numeric(precision=20, scale=8), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_gex_signals_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gex_signals")),
    )
    with op.batch_alter_table("gex_signals", schema=None) as batch_op:
        batch_op.create_index("ix_gex_signals_as_of", ["as_of"], unique=False)
        batch_op.create_index(batch_op.f("ix_gex_signals_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_gex_signals_user_id_symbol_as_of", ["user_id", "symbol", "as_of"], unique=True
        )

    op.create_table(
        "context_snapshots",
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("degraded_reasons", sa.JSON(), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("build_ms", sa.Float(precision=53), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_context_snapshots_decision_id_decisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_context_snapshots_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_context_snapshots_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_snapshots")),
    )
    with op.batch_alter_table("context_snapshots", schema=None) as batch_op:
        batch_op.create_index("ix_context_snapshots_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_context_snapshots_decision_id"), ["decision_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_context_snapshots_signal_id"), ["signal_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_context_snapshots_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ingest_ms", sa.Float(precision=53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_column("ingest_ms")

    with op.batch_alter_table("context_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_context_snapshots_user_id"))
        batch_op.drop_index(batch_op.f("ix_context_snapshots_signal_id"))
        batch_op.drop_index(batch_op.f("ix_context_snapshots_decision_id"))
        batch_op.drop_index("ix_context_snapshots_created_at")

    op.drop_table("context_snapshots")
    with op.batch_alter_table("gex_signals", schema=None) as batch_op:
        batch_op.drop_index("uq_gex_signals_user_id_symbol_as_of")
        batch_op.drop_index(batch_op.f("ix_gex_signals_user_id"))
        batch_op.drop_index("ix_gex_signals_as_of")

    op.drop_table("gex_signals")
