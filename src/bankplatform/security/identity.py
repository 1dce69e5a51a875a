"""Who is acting. Until tokens and roles arrive (security.yml), the identity is
``$BANKPLATFORM_USER`` or the operating-system user."""

from __future__ import annotations

import getpass
import os


def acting_identity() -> str:
    """Who started the action: ``$BANKPLATFORM_USER``, else the operating-system user."""
    return os.environ.get("BANKPLATFORM_USER") or getpass.getuser()
