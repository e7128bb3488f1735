"""create users and tokens

Revision ID: 0e1a50ba0c69
Revises:
Create Date: 2026-11-25 06:24:32
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0e1a50ba0c69"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "users_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token", sa.LargeBinary(length=32), nullable=False),
        sa.Column("context", sa.String(length=32), nullable=False),
        sa.Column("sent_to", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_users_tokens_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users_tokens")),
    )
    with op.batch_alter_table("users_tokens") as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tokens_expires_at"), ["expires_at"])
        batch_op.create_index(batch_op.f("ix_users_tokens_user_id"), ["user_id"])
        batch_op.create_index("uq_users_tokens_context_token", ["context", "token"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("users_tokens") as batch_op:
        batch_op.drop_index("uq_users_tokens_context_token")
        batch_op.drop_index(batch_op.f("ix_users_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_users_tokens_expires_at"))
    op.drop_table("users_tokens")
    op.drop_table("users")
