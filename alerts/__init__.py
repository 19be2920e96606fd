"""Alert lifecycle, escalation and notification (issue 5; not built yet)."""
