"""The scoring service: champion and challenger from the registry behind an
authenticated API, with reason codes, a decision log, human oversight, releases
(canary, shadow, blue/green) and automatic rollback."""
