"""One router per concern: stream (WS /v1/stream), classify, model, health, metrics."""
