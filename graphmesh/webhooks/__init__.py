"""Webhooks: a run's status changes posted, signed, to a URL its creator chose (docs/webhooks.md)."""
