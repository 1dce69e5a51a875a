"""The key and audit service: key custody, access decisions and audit writing,
out of the caller's process (``bankplatform keyservice``)."""
