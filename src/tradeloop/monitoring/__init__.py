"""Monitoring of live signals: the /metrics figures and the /health components."""
