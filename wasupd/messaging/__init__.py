"""Messages: the durable outbox with pacing and pool sending, the inbox, and webhooks."""
