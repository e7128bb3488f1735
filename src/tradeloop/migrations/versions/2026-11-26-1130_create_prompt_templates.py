"""create prompt templates

Revision ID: f8a5b6c7d805
Revises: c5d2e3f4a502
Create Date: 2026-11-26 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f8a5b6c7d805"
down_revision: str | None = "c5d2e3f4a502"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    cache_state = op.create_table(
        "prompt_cache_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_cache_state")),
    )
    # The one counter row every template change bumps (prompts.cache).
    op.bulk_insert(cache_state, [{"id": 1, "counter": 0}])
    op.create_table(
        "prompt_templates",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("template_type", sa.String(length=32), nullable=False),
        sa.Column("timeframe", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("strategy_id", sa.Uuid(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("seed_key", sa.String(length=64), nullable=True),
        sa.Column("executions_count", sa.BigInteger(), nullable=False),
        sa.Column("success_count", sa.BigInteger(), nullable=False),
        sa.Column("total_latency_ms", sa.Float(precision=53), nullable=False),
        sa.Column("last_executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_prompt_templates_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_prompt_templates_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_templates")),
    )
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prompt_templates_scope", ["user_id", "strategy_id", "template_type"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_prompt_templates_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_prompt_templates_user_id"), ["user_id"], unique=False)
        batch_op.create_index("uq_prompt_templates_seed_key", ["seed_key"], unique=True)

    op.create_table(
        "prompt_label_events",
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompt_label_events_template_id_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_label_events")),
    )
    with op.batch_alter_table("prompt_label_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prompt_label_events_template_id_at", ["template_id", "at"], unique=False
        )

    op.create_table(
        "prompt_labels",
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompt_labels_template_id_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "label", name=op.f("pk_prompt_labels")),
    )
    op.create_table(
        "prompt_template_versions",
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Uuid(), nullable=True),
        sa.Column("template_text", sa.Text(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("model_config", sa.JSON(), nullable=False),
        sa.Column("change_note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["prompt_template_versions.id"],
            name=op.f("fk_prompt_template_versions_previous_version_id_prompt_template_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompt_template_versions_template_id_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_template_versions")),
    )
    with op.batch_alter_table("prompt_template_versions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_prompt_template_versions_template_id_version",
            ["template_id", "version"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("prompt_template_versions", schema=None) as batch_op:
        batch_op.drop_index("uq_prompt_template_versions_template_id_version")

    op.drop_table("prompt_template_versions")
    op.drop_table("prompt_labels")
    with op.batch_alter_table("prompt_label_events", schema=None) as batch_op:
        batch_op.drop_index("ix_prompt_label_events_template_id_at")

    op.drop_table("prompt_label_events")
    with op.batch_alter_table("prompt_templates", schema=None) as batch_op:
        batch_op.drop_index("uq_prompt_templates_seed_key")
        batch_op.drop_index(batch_op.f("ix_prompt_templates_user_id"))
        batch_op.drop_index(batch_op.f("ix_prompt_templates_strategy_id"))
        batch_op.drop_index("ix_prompt_templates_scope")

    op.drop_table("prompt_templates")
    op.drop_table("prompt_cache_state")
