"""create backtest run symbols, sweep points, run attempts

Revision ID: b4c1d2e3f401
Revises: 8b4d2f6a1c37
Create Date: 2026-11-26 10:50:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b4c1d2e3f401"
down_revision: str | None = "8b4d2f6a1c37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5_000


def upgrade() -> None:
    op.create_table(
        "backtest_run_symbols",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["backtest_runs.id"],
            name=op.f("fk_backtest_run_symbols_run_id_backtest_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backtest_run_symbols_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "symbol", name=op.f("pk_backtest_run_symbols")),
    )
    with op.batch_alter_table("backtest_run_symbols", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backtest_run_symbols_user_id_symbol_inserted_at",
            ["user_id", "symbol", "inserted_at", "run_id"],
            unique=False,
        )

    op.create_table(
        "backtest_sweep_points",
        sa.Column("sweep_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["backtest_runs.id"],
            name=op.f("fk_backtest_sweep_points_run_id_backtest_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["backtest_sweeps.id"],
            name=op.f("fk_backtest_sweep_points_sweep_id_backtest_sweeps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sweep_id", "seq", name=op.f("pk_backtest_sweep_points")),
    )
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))

    with op.batch_alter_table("backtest_sweeps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(length=16), server_default="runs", nullable=False)
        )
        batch_op.add_column(sa.Column("request", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("total", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("top", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("descending", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("cached", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("ranked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))

    _index_existing_run_symbols()
    _points_for_existing_sweeps()


def _index_existing_run_symbols() -> None:
    """One backtest_run_symbols row per symbol of every run stored before this revision."""
    connection = op.get_bind()
    runs = sa.table(
        "backtest_runs",
        sa.column("id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("symbols", sa.String()),
        sa.column("inserted_at", sa.DateTime(timezone=True)),
    )
    rows = sa.table(
        "backtest_run_symbols",
        sa.column("run_id", sa.Uuid()),
        sa.column("symbol", sa.String()),
        sa.column("user_id", sa.Uuid()),
        sa.column("inserted_at", sa.DateTime(timezone=True)),
    )
    batch: list[dict] = []
    for run in connection.execute(sa.select(runs)).all():
        batch.extend(
            {
                "run_id": run.id,
                "symbol": symbol,
                "user_id": run.user_id,
                "inserted_at": run.inserted_at,
            }
            for symbol in run.symbols.split(",")
            if symbol
        )
        if len(batch) >= _BATCH:
            connection.execute(sa.insert(rows), batch)
            batch = []
    if batch:
        connection.execute(sa.insert(rows), batch)


def _points_for_existing_sweeps() -> None:
    """Sweeps stored before this revision ran every combination in full: one point per run."""
    connection = op.get_bind()
    sweeps = sa.table(
        "backtest_sweeps",
        sa.column("id", sa.Uuid()),
        sa.column("run_ids", sa.JSON()),
        sa.column("total", sa.Integer()),
        sa.column("top", sa.Integer()),
        sa.column("inserted_at", sa.DateTime(timezone=True)),
        sa.column("ranked_at", sa.DateTime(timezone=True)),
    )
    runs = sa.table("backtest_runs", sa.column("id", sa.Uuid()), sa.column("params", sa.JSON()))
    points = sa.table(
        "backtest_sweep_points",
        sa.column("sweep_id", sa.Uuid()),
        sa.column("seq", sa.Integer()),
        sa.column("params", sa.JSON()),
        sa.column("run_id", sa.Uuid()),
    )
    for sweep in connection.execute(sa.select(sweeps)).all():
        params = dict(
            connection.execute(
                sa.select(runs.c.id, runs.c.params).where(
                    runs.c.id.in_([_uuid(i) for i in sweep.run_ids])
                )
            ).all()
        )
        rows = [
            {
                "sweep_id": sweep.id,
                "seq": seq,
                "params": params.get(_uuid(run_id), {}),
                "run_id": _uuid(run_id) if _uuid(run_id) in params else None,
            }
            for seq, run_id in enumerate(sweep.run_ids)
        ]
        if rows:
            connection.execute(sa.insert(points), rows)
        connection.execute(
            sa.update(sweeps)
            .where(sweeps.c.id == sweep.id)
            .values(total=len(rows), top=len(rows), ranked_at=sweep.inserted_at)
        )


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(str(text))


def downgrade() -> None:
    with op.batch_alter_table("backtest_sweeps", schema=None) as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("ranked_at")
        batch_op.drop_column("cached")
        batch_op.drop_column("descending")
        batch_op.drop_column("top")
        batch_op.drop_column("total")
        batch_op.drop_column("request")
        batch_op.drop_column("method")

    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.drop_column("attempts")

    op.drop_table("backtest_sweep_points")
    with op.batch_alter_table("backtest_run_symbols", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_run_symbols_user_id_symbol_inserted_at")

    op.drop_table("backtest_run_symbols")
