"""create backtests

Revision ID: 7005528a8135
Revises: 8f925abcbc1b
Create Date: 2026-11-26 08:33:32
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7005528a8135"
down_revision: str | None = "8f925abcbc1b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backtest_runs",
        sa.Column("strategy_id", sa.Uuid(), nullable=False),
        sa.Column("strategy_name", sa.String(length=100), nullable=False),
        sa.Column("strategy_version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("symbols", sa.String(length=2000), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("cash", sa.Float(precision=53), nullable=False),
        sa.Column("commission", sa.Float(precision=53), nullable=False),
        sa.Column("commission_fixed", sa.Float(precision=53), nullable=False),
        sa.Column("slippage_bps", sa.Float(precision=53), nullable=False),
        sa.Column("fill", sa.String(length=8), nullable=False),
        sa.Column("size_units", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(precision=53), nullable=True),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_backtest_runs_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backtest_runs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_runs")),
    )
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backtest_runs_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_backtest_runs_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "ix_backtest_runs_user_id_inserted_at", ["user_id", "inserted_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_backtest_runs_user_id_status", ["user_id", "status"], unique=False
        )
        batch_op.create_index("uq_backtest_runs_cache_key", ["cache_key"], unique=True)

    op.create_table(
        "backtest_sweeps",
        sa.Column("strategy_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_backtest_sweeps_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_backtest_sweeps_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_sweeps")),
    )
    with op.batch_alter_table("backtest_sweeps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_backtest_sweeps_strategy_id"), ["strategy_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_backtest_sweeps_user_id"), ["user_id"], unique=False)

    op.create_table(
        "backtest_results",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("equity_ts", sa.LargeBinary(), nullable=False),
        sa.Column("equity_values", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_days", sa.Float(precision=53), nullable=True),
        sa.Column("years", sa.Float(precision=53), nullable=True),
        sa.Column("num_bars", sa.Integer(), nullable=True),
        sa.Column("num_days", sa.Integer(), nullable=True),
        sa.Column("periods_per_year", sa.Integer(), nullable=True),
        sa.Column("equity_initial", sa.Float(precision=53), nullable=True),
        sa.Column("equity_final", sa.Float(precision=53), nullable=True),
        sa.Column("equity_peak", sa.Float(precision=53), nullable=True),
        sa.Column("net_profit", sa.Float(precision=53), nullable=True),
        sa.Column("return_pct", sa.Float(precision=53), nullable=True),
        sa.Column("return_ann_pct", sa.Float(precision=53), nullable=True),
        sa.Column("cagr_pct", sa.Float(precision=53), nullable=True),
        sa.Column("avg_daily_return_pct", sa.Float(precision=53), nullable=True),
        sa.Column("positive_days_pct", sa.Float(precision=53), nullable=True),
        sa.Column("best_day_pct", sa.Float(precision=53), nullable=True),
        sa.Column("worst_day_pct", sa.Float(precision=53), nullable=True),
        sa.Column("best_month_pct", sa.Float(precision=53), nullable=True),
        sa.Column("worst_month_pct", sa.Float(precision=53), nullable=True),
        sa.Column("best_year_pct", sa.Float(precision=53), nullable=True),
        sa.Column("worst_year_pct", sa.Float(precision=53), nullable=True),
        sa.Column("volatility_ann_pct", sa.Float(precision=53), nullable=True),
        sa.Column("volatility_daily_pct", sa.Float(precision=53), nullable=True),
        sa.Column("downside_deviation_ann_pct", sa.Float(precision=53), nullable=True),
        sa.Column("var_95_pct", sa.Float(precision=53), nullable=True),
        sa.Column("cvar_95_pct", sa.Float(precision=53), nullable=True),
        sa.Column("skew", sa.Float(precision=53), nullable=True),
        sa.Column("kurtosis", sa.Float(precision=53), nullable=True),
        sa.Column("sharpe_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("sortino_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("calmar_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("sharpe_ratio_arithmetic", sa.Float(precision=53), nullable=True),
        sa.Column("sortino_ratio_arithmetic", sa.Float(precision=53), nullable=True),
        sa.Column("omega_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("tail_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("stability", sa.Float(precision=53), nullable=True),
        sa.Column("recovery_factor", sa.Float(precision=53), nullable=True),
        sa.Column("max_drawdown_pct", sa.Float(precision=53), nullable=True),
        sa.Column("avg_drawdown_pct", sa.Float(precision=53), nullable=True),
        sa.Column("max_drawdown_duration_days", sa.Float(precision=53), nullable=True),
        sa.Column("avg_drawdown_duration_days", sa.Float(precision=53), nullable=True),
        sa.Column("max_drawdown_cash", sa.Float(precision=53), nullable=True),
        sa.Column("current_drawdown_pct", sa.Float(precision=53), nullable=True),
        sa.Column("num_drawdowns", sa.Integer(), nullable=True),
        sa.Column("time_in_drawdown_pct", sa.Float(precision=53), nullable=True),
        sa.Column("ulcer_index", sa.Float(precision=53), nullable=True),
        sa.Column("num_trades", sa.Integer(), nullable=True),
        sa.Column("win_rate_pct", sa.Float(precision=53), nullable=True),
        sa.Column("best_trade_pct", sa.Float(precision=53), nullable=True),
        sa.Column("worst_trade_pct", sa.Float(precision=53), nullable=True),
        sa.Column("avg_trade_pct", sa.Float(precision=53), nullable=True),
        sa.Column("max_trade_duration_days", sa.Float(precision=53), nullable=True),
        sa.Column("avg_trade_duration_days", sa.Float(precision=53), nullable=True),
        sa.Column("profit_factor", sa.Float(precision=53), nullable=True),
        sa.Column("expectancy_pct", sa.Float(precision=53), nullable=True),
        sa.Column("sqn", sa.Float(precision=53), nullable=True),
        sa.Column("kelly_criterion", sa.Float(precision=53), nullable=True),
        sa.Column("commissions", sa.Float(precision=53), nullable=True),
        sa.Column("num_winning_trades", sa.Integer(), nullable=True),
        sa.Column("num_losing_trades", sa.Integer(), nullable=True),
        sa.Column("num_long_trades", sa.Integer(), nullable=True),
        sa.Column("num_short_trades", sa.Integer(), nullable=True),
        sa.Column("long_win_rate_pct", sa.Float(precision=53), nullable=True),
        sa.Column("short_win_rate_pct", sa.Float(precision=53), nullable=True),
        sa.Column("long_pnl", sa.Float(precision=53), nullable=True),
        sa.Column("short_pnl", sa.Float(precision=53), nullable=True),
        sa.Column("gross_profit", sa.Float(precision=53), nullable=True),
        sa.Column("gross_loss", sa.Float(precision=53), nullable=True),
        sa.Column("profit_factor_pnl", sa.Float(precision=53), nullable=True),
        sa.Column("avg_trade_pnl", sa.Float(precision=53), nullable=True),
        sa.Column("largest_win", sa.Float(precision=53), nullable=True),
        sa.Column("largest_loss", sa.Float(precision=53), nullable=True),
        sa.Column("avg_win_pct", sa.Float(precision=53), nullable=True),
        sa.Column("avg_loss_pct", sa.Float(precision=53), nullable=True),
        sa.Column("payoff_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("max_consecutive_wins", sa.Integer(), nullable=True),
        sa.Column("max_consecutive_losses", sa.Integer(), nullable=True),
        sa.Column("avg_bars_in_trade", sa.Float(precision=53), nullable=True),
        sa.Column("max_bars_in_trade", sa.Integer(), nullable=True),
        sa.Column("trades_per_year", sa.Float(precision=53), nullable=True),
        sa.Column("num_stop_loss_exits", sa.Integer(), nullable=True),
        sa.Column("num_take_profit_exits", sa.Integer(), nullable=True),
        sa.Column("exposure_time_pct", sa.Float(precision=53), nullable=True),
        sa.Column("exposure_adjusted_return_pct", sa.Float(precision=53), nullable=True),
        sa.Column("longest_flat_period_days", sa.Float(precision=53), nullable=True),
        sa.Column("buy_hold_return_pct", sa.Float(precision=53), nullable=True),
        sa.Column("buy_hold_return_ann_pct", sa.Float(precision=53), nullable=True),
        sa.Column("buy_hold_max_drawdown_pct", sa.Float(precision=53), nullable=True),
        sa.Column("excess_return_pct", sa.Float(precision=53), nullable=True),
        sa.Column("alpha_pct", sa.Float(precision=53), nullable=True),
        sa.Column("beta", sa.Float(precision=53), nullable=True),
        sa.Column("correlation", sa.Float(precision=53), nullable=True),
        sa.Column("tracking_error_ann_pct", sa.Float(precision=53), nullable=True),
        sa.Column("information_ratio", sa.Float(precision=53), nullable=True),
        sa.Column("up_capture", sa.Float(precision=53), nullable=True),
        sa.Column("down_capture", sa.Float(precision=53), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["backtest_runs.id"],
            name=op.f("fk_backtest_results_run_id_backtest_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_backtest_results")),
    )
    op.create_table(
        "backtest_trades",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("size", sa.Float(precision=53), nullable=False),
        sa.Column("entry_bar", sa.Integer(), nullable=False),
        sa.Column("exit_bar", sa.Integer(), nullable=False),
        sa.Column("entry_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exit_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry_price", sa.Float(precision=53), nullable=False),
        sa.Column("exit_price", sa.Float(precision=53), nullable=False),
        sa.Column("commission", sa.Float(precision=53), nullable=False),
        sa.Column("pnl", sa.Float(precision=53), nullable=False),
        sa.Column("return_pct", sa.Float(precision=53), nullable=False),
        sa.Column("exit_reason", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["backtest_runs.id"],
            name=op.f("fk_backtest_trades_run_id_backtest_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtest_trades")),
    )
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        batch_op.create_index("ix_backtest_trades_run_id_seq", ["run_id", "seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("backtest_trades", schema=None) as batch_op:
        batch_op.drop_index("ix_backtest_trades_run_id_seq")

    op.drop_table("backtest_trades")
    op.drop_table("backtest_results")
    with op.batch_alter_table("backtest_sweeps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_backtest_sweeps_user_id"))
        batch_op.drop_index(batch_op.f("ix_backtest_sweeps_strategy_id"))

    op.drop_table("backtest_sweeps")
    with op.batch_alter_table("backtest_runs", schema=None) as batch_op:
        batch_op.drop_index("uq_backtest_runs_cache_key")
        batch_op.drop_index("ix_backtest_runs_user_id_status")
        batch_op.drop_index("ix_backtest_runs_user_id_inserted_at")
        batch_op.drop_index(batch_op.f("ix_backtest_runs_user_id"))
        batch_op.drop_index(batch_op.f("ix_backtest_runs_strategy_id"))

    op.drop_table("backtest_runs")
