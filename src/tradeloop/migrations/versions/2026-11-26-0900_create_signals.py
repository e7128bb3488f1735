"""create webhook endpoints, signals and processing errors

Revision ID: 5c1e9a7d3b24
Revises: 7005528a8135
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e9a7d3b24"
down_revision: str | None = "7005528a8135"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = sa.Numeric(precision=20, scale=8)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("endpoint_key", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("auth_modes", sa.JSON(), nullable=False),
        sa.Column("ip_allowlist", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("risk", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_webhook_endpoints_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_endpoints_user_id"), ["user_id"],
                              unique=False)
        batch_op.create_index("uq_webhook_endpoints_endpoint_key", ["endpoint_key"],
                              unique=True)

    op.create_table(
        "signals",
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("raw_direction", sa.String(length=16), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("signal_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price", PRICE, nullable=True),
        sa.Column("score", sa.Float(precision=53), nullable=True),
        sa.Column("confidence", sa.Float(precision=53), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("prompt_template_id", sa.Uuid(), nullable=True),
        sa.Column("prompt_version", sa.Integer(), nullable=True),
        sa.Column("prompt_type", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("actual_r_multiple", sa.Float(precision=53), nullable=True),
        sa.Column("profit_loss", PRICE, nullable=True),
        sa.Column("exit_price", PRICE, nullable=True),
        sa.Column("exit_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_price_low", PRICE, nullable=True),
        sa.Column("entry_price_high", PRICE, nullable=True),
        sa.Column("stop_loss", PRICE, nullable=True),
        sa.Column("target_conservative", PRICE, nullable=True),
        sa.Column("target_aggressive", PRICE, nullable=True),
        sa.Column("execution_price", PRICE, nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="SET NULL",
                                name=op.f("fk_signals_endpoint_id_webhook_endpoints")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_signals_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signals_endpoint_id"), ["endpoint_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_signals_user_id"), ["user_id"], unique=False)
        batch_op.create_index("uq_signals_user_id_idempotency_key",
                              ["user_id", "idempotency_key"], unique=True)
        # The outbox scan: queued rows in arrival order.
        batch_op.create_index("ix_signals_status_received_at", ["status", "received_at"],
                              unique=False)
        batch_op.create_index("ix_signals_user_id_received_at", ["user_id", "received_at"],
                              unique=False)

    op.create_table(
        "processing_errors",
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("raw_body", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="SET NULL",
                                name=op.f("fk_processing_errors_endpoint_id_webhook_endpoints")),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], ondelete="CASCADE",
                                name=op.f("fk_processing_errors_signal_id_signals")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_processing_errors_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_errors")),
    )
    with op.batch_alter_table("processing_errors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processing_errors_endpoint_id"), ["endpoint_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_processing_errors_signal_id"), ["signal_id"],
                              unique=False)
        batch_op.create_index("ix_processing_errors_user_id_received_at",
                              ["user_id", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("processing_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_processing_errors_user_id_received_at")
        batch_op.drop_index(batch_op.f("ix_processing_errors_signal_id"))
        batch_op.drop_index(batch_op.f("ix_processing_errors_endpoint_id"))
    op.drop_table("processing_errors")

    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_user_id_received_at")
        batch_op.drop_index("ix_signals_status_received_at")
        batch_op.drop_index("uq_signals_user_id_idempotency_key")
        batch_op.drop_index(batch_op.f("ix_signals_user_id"))
        batch_op.drop_index(batch_op.f("ix_signals_endpoint_id"))
    op.drop_table("signals")

    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index("uq_webhook_endpoints_endpoint_key")
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_user_id"))
    op.drop_table("webhook_endpoints")
