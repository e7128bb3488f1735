"""The signal fixtures (an app with the webhooks, its client) shared with tests/signals."""

from tests.signals.conftest import signals_app, signals_client  # noqa: F401 - fixtures
