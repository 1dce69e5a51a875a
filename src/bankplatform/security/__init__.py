"""Security core: keys (KMS interface, local keyring) and the tamper-evident audit log."""
