"""create llm executions, model prices and guardrails

Revision ID: e7f4a5b6c704
Revises: f8a5b6c7d805
Create Date: 2026-11-26 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7f4a5b6c704"
down_revision: str | None = "f8a5b6c7d805"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_prices",
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input_per_million", sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column("output_per_million", sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_prices")),
        sa.UniqueConstraint("provider", "model", name=op.f("uq_model_prices_provider_model")),
    )
    op.create_table(
        "prompt_executions",
        sa.Column("template_id", sa.Uuid(), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("strategy_id", sa.Uuid(), nullable=True),
        sa.Column("signal_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_type", sa.String(length=50), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("response_time_ms", sa.Float(), nullable=False),
        sa.Column("input_token_count", sa.Integer(), nullable=False),
        sa.Column("output_token_count", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=12), nullable=False),
        sa.Column("guardrail_results", sa.JSON(), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_prompt_executions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_executions")),
    )
    with op.batch_alter_table("prompt_executions", schema=None) as batch_op:
        batch_op.create_index("ix_prompt_executions_executed_at", ["executed_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_prompt_executions_signal_id"), ["signal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_prompt_executions_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(
            "ix_prompt_executions_template_id_executed_at",
            ["template_id", "executed_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_prompt_executions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "ix_prompt_executions_user_id_executed_at", ["user_id", "executed_at"], unique=False
        )

    op.create_table(
        "prompt_guardrails",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rule_type", sa.String(length=30), nullable=False),
        sa.Column("applies_to", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_prompt_guardrails_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_guardrails")),
    )
    with op.batch_alter_table("prompt_guardrails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prompt_guardrails_is_active_template_id", ["is_active", "template_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("prompt_guardrails", schema=None) as batch_op:
        batch_op.drop_index("ix_prompt_guardrails_is_active_template_id")

    op.drop_table("prompt_guardrails")
    with op.batch_alter_table("prompt_executions", schema=None) as batch_op:
        batch_op.drop_index("ix_prompt_executions_user_id_executed_at")
        batch_op.drop_index(batch_op.f("ix_prompt_executions_user_id"))
        batch_op.drop_index("ix_prompt_executions_template_id_executed_at")
        batch_op.drop_index(batch_op.f("ix_prompt_executions_strategy_id"))
        batch_op.drop_index(batch_op.f("ix_prompt_executions_signal_id"))
        batch_op.drop_index("ix_prompt_executions_executed_at")

    op.drop_table("prompt_executions")
    op.drop_table("model_prices")
