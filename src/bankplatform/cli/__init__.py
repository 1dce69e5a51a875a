"""Command lines of bankplatform.

``main`` is the ``bankplatform`` command. This package is also where Kedro looks
for project commands (``<package>.cli.cli``): it overrides ``kedro run`` with
one that reports a failure in one line instead of a traceback (set
``BANKPLATFORM_DEBUG=1`` for the traceback). Kedro's own imports are slow, so
they load only when Kedro asks for ``cli`` or ``run``.

Third-party noise is filtered here, before any command imports a library.
"""

from __future__ import annotations

from typing import Any

from bankplatform.third_party import quiet_start

quiet_start()


def __getattr__(name: str) -> Any:
    if name in {"cli", "run"}:
        from bankplatform.cli import kedro_run

        return getattr(kedro_run, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
