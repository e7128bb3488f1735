"""add backtest_runs.end_fill: where a trade still open at the end closes

Revision ID: d3e8f1a2b604
Revises: a9c3d5e7f901
Create Date: 2026-12-07 22:00:00

New runs default to "open" (the last bar's open, backtesting.py's finalize_trades). Runs
stored before this revision were computed by the engine that closed open trades at the last
bar's close, so they get "close": the column says how their results were computed.

Both directions alter the table in place (ALTER TABLE ADD / DROP COLUMN, which SQLite has
since 3.35): a batch "move and copy" would drop the old table, and with foreign keys on, its
ON DELETE CASCADE would empty backtest_results, backtest_trades and backtest_run_symbols.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d3e8f1a2b604"
down_revision: str | None = "a9c3d5e7f901"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backtest_runs", sa.Column("end_fill", sa.String(length=8), nullable=False,
                                             server_default="open"))
    # Every row so far was computed by the engine that closed at the last close.
    op.execute(sa.text("UPDATE backtest_runs SET end_fill = 'close'"))


def downgrade() -> None:
    op.drop_column("backtest_runs", "end_fill")
