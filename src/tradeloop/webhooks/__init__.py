"""Webhooks: the endpoints, their authentication, the intake and its group-commit writer."""
