"""Core-banking booking events into fresh online features, on NATS JetStream."""
