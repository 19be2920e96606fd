"""Alert service: lifecycle, routing and escalation, silences, notification channels with a
persistent outbox, REST API and the duty console (``python -m alerts``)."""
