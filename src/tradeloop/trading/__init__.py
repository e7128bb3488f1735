"""Trading: decisions, risk rules, the GEX regime, paper positions and their marks."""
