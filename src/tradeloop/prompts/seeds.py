"""The six templates every installation starts with (seed 000): three analyses (daily, weekly,
consolidation) and the system message that goes with each. Seeding is idempotent: a template
is found again by its `seed_key`, and an existing one (perhaps edited since) is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.prompts import service
from tradeloop.prompts.analysis import ANALYSIS_VARIABLES
from tradeloop.prompts.models import PromptTemplate

OUTPUT_CONTRACT = """\
Answer with one JSON object and nothing else:
{
  "direction": "LONG" | "SHORT" | "NEUTRAL",
  "entry_price_low": number,
  "entry_price_high": number,
  "stop_loss": number,
  "target_conservative": number,
  "target_aggressive": number,
  "confidence": number between 0 and 1,
  "reasoning": "3-6 sentences naming the evidence you used"
}
For LONG: stop_loss < entry_price_low <= entry_price_high < target_conservative <= \
target_aggressive. For SHORT the order is reversed. For NEUTRAL give the range you would wait
for, with the levels that would change your mind as stop and targets, and confidence below 0.5."""

_COMMON_DATA = """\
{% set i = indicators -%}
Symbol: {{ symbol }}    Timeframe: {{ timeframe }}    Data as of: {{ as_of }}
{% if strategy %}Requested by strategy "{{ strategy.name }}" with parameters \
{{ strategy.params|tojson }}.
{% endif %}
## Recent bars (oldest first)
{{ bars_table }}

## Indicators (latest bar)
- Close {{ i.close|na }} ({{ i.change_pct|na }}% vs previous bar)
- SMA 20 / 50 / 200: {{ i.sma_20|na }} / {{ i.sma_50|na }} / {{ i.sma_200|na }}
- EMA 12 / 26: {{ i.ema_12|na }} / {{ i.ema_26|na }}
- RSI 14: {{ i.rsi_14|na }}
- MACD {{ i.macd|na }}, signal {{ i.macd_signal|na }}, histogram {{ i.macd_histogram|na }}
- Bollinger 20/2: upper {{ i.bb_upper|na }}, middle {{ i.bb_middle|na }}, \
lower {{ i.bb_lower|na }} (width {{ i.bb_width_pct|na }}%)
- ATR 14: {{ i.atr_14|na }} ({{ i.atr_pct|na }}% of price)
- Volume {{ i.volume|na }} vs 20-bar average {{ i.volume_avg_20|na }} \
(ratio {{ i.volume_ratio|na }})

## Support and resistance
- Support (nearest first): {{ levels.support|join(", ") or "none below price" }}
- Resistance (nearest first): {{ levels.resistance|join(", ") or "none above price" }}
- 20-bar range {{ levels.low_20|na }} - {{ levels.high_20|na }}; 52-week range \
{{ levels.low_52w|na }} - {{ levels.high_52w|na }}
{% if market_context %}
## Market context
{% for key, value in market_context|dictsort %}- {{ key }}: {{ value }}
{% endfor %}{% endif %}{% if gex %}
## Options positioning (GEX)
{% for key, value in gex|dictsort %}- {{ key }}: {{ value }}
{% endfor %}{% endif %}"""

DAILY = _COMMON_DATA + """
## Task
Analyse the daily chart of {{ symbol }} for a swing trade of a few days to a few weeks.
1. Trend: where is price relative to SMA 20, 50 and 200, and are they stacked bullishly
   (20 > 50 > 200) or bearishly? Is the 200-day slope supportive?
2. Momentum: RSI 14 (above 70 overbought, below 30 oversold, 40-60 neutral) and the MACD
   histogram's sign and direction. Note any divergence between price and momentum.
3. Volatility: Bollinger width and ATR; size the stop at 1-2 ATR beyond the nearest
   support (long) or resistance (short), never inside the normal noise of one ATR.
4. Volume: does the ratio to the 20-bar average confirm the latest move?
5. Levels: place the entry zone near support for longs (resistance for shorts), the
   conservative target at the next level and the aggressive target at the one after.
Require a reward-to-risk of at least 1.5 to the conservative target; otherwise answer NEUTRAL.

""" + OUTPUT_CONTRACT

WEEKLY = _COMMON_DATA + """
## Task
These are weekly bars of {{ symbol }}: judge the primary trend for a position held for
weeks to months.
1. Primary trend: higher highs and higher lows, or lower highs and lower lows, over the bars
   shown; price against the 20- and 50-week averages.
2. Momentum: weekly RSI 14 and MACD; weekly extremes matter more than daily ones.
3. Structure: the 52-week range and where price sits in it; major support and resistance.
4. Risk: stops belong beyond weekly swing points, typically 1.5-3 weekly ATR away.
Only call a direction when trend and momentum agree; a weekly chart in transition is NEUTRAL.

""" + OUTPUT_CONTRACT

CONSOLIDATION = _COMMON_DATA + """
## Task
{{ symbol }} may be consolidating. Decide whether it is, and which way it is likely to break.
1. Range: the 20-bar high and low; is price inside it, and how many times has each edge held?
2. Compression: Bollinger width (low and falling = squeeze) and ATR against its recent level.
3. Volume: drying up inside the range and expanding on a break is the classic pattern.
4. Bias: the side of SMA 50/200 price sits on and the RSI midline (50) hint at the break's
   direction.
For a LONG, enter on a close above the range high with the stop back inside the range; for a
SHORT, the mirror image. Targets: the range height projected from the break (conservative)
and the next major level (aggressive). No clear range or no bias means NEUTRAL.

""" + OUTPUT_CONTRACT

SYSTEM_DAILY = """\
You are a disciplined technical analyst who trades daily charts. You reason only from the
data in the user's message - prices, indicators, levels and context - and never invent news,
earnings or prices you were not given. You prefer no trade to a weak trade, you always define
risk before reward, and you answer with exactly one JSON object in the requested format."""

SYSTEM_WEEKLY = """\
You are a position-trading analyst who reads weekly charts to judge primary trends. You ignore
day-to-day noise, you only call a direction when trend and momentum agree, and you place stops
beyond weekly swing points. You reason only from the data given and answer with exactly one
JSON object in the requested format."""

SYSTEM_CONSOLIDATION = """\
You are a technical analyst specialised in ranges, squeezes and breakouts. You measure a
range before you trade it, you wait for confirmation on volume, and you project targets from
the range height. You reason only from the data given and answer with exactly one JSON object
in the requested format."""

ANALYSIS_MODEL = {"provider": None, "model_name": None, "temperature": 0.2, "max_tokens": 800}


@dataclass(frozen=True)
class SeedTemplate:
    key: str
    name: str
    template_type: str
    timeframe: str
    description: str
    text: str


SEED_TEMPLATES = (
    SeedTemplate("analysis-daily", "Daily Chart Technical Analysis", "analysis", "daily",
                 "Swing-trade analysis of the daily chart: trend, momentum, volatility, "
                 "volume and levels.", DAILY),
    SeedTemplate("analysis-weekly", "Weekly Chart Trend Analysis", "analysis", "weekly",
                 "Primary-trend analysis of the weekly chart for position trades.", WEEKLY),
    SeedTemplate("analysis-consolidation", "Consolidation Analysis", "analysis",
                 "consolidation", "Range, squeeze and breakout analysis.", CONSOLIDATION),
    SeedTemplate("system-daily", "Daily Analyst System Message", "system", "daily",
                 "System message for daily chart analysis.", SYSTEM_DAILY),
    SeedTemplate("system-weekly", "Weekly Analyst System Message", "system", "weekly",
                 "System message for weekly trend analysis.", SYSTEM_WEEKLY),
    SeedTemplate("system-consolidation", "Consolidation Analyst System Message", "system",
                 "consolidation", "System message for consolidation analysis.",
                 SYSTEM_CONSOLIDATION),
)


def seed_prompt_templates(*, session: Session) -> list[str]:
    """Insert the seeded templates that are missing (global, active, default for their type
    and timeframe, created_by 'system'); returns the names inserted now."""
    present = set(session.scalars(select(PromptTemplate.seed_key).where(
        PromptTemplate.seed_key.is_not(None))))
    created = []
    for seed in SEED_TEMPLATES:
        if seed.key in present:
            continue
        variables = list(ANALYSIS_VARIABLES) if seed.template_type == "analysis" else []
        service.create_template(session=session, actor=service.SYSTEM, draft=service.TemplateDraft(
            name=seed.name, description=seed.description, template_type=seed.template_type,
            timeframe=seed.timeframe, is_default=True, seed_key=seed.key,
            content=service.TemplateContent(seed.text, variables, dict(ANALYSIS_MODEL)),
            change_note="seeded"))
        created.append(seed.name)
    return created
