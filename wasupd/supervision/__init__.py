"""Session supervision: states, Chromium process trees, backoff and the per-session runner."""
