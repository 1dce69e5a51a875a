"""Kedro pipelines run inside the test process: Kedro's own session, hooks and
runner on a throw-away workspace, without a ``kedro run`` subprocess.

What ships (the ``kedro`` command, its start-up, its exit code and output) is
tested by one ``kedro run`` subprocess per pipeline; everything else a pipeline
does is tested here, where a run costs no interpreter start and reuses the test
process's Ray.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

from bankplatform.security import runtime
from bankplatform.security.client import TOKEN_ENV_VAR, USER_ENV_VAR

# What a command's environment would not carry in (tests.conftest.command_env).
_OUTSIDE = ("BANKPLATFORM_PROJECT", "KEDRO_ENV", TOKEN_ENV_VAR, USER_ENV_VAR)


@contextlib.contextmanager
def _as_a_command(root: Path, user: str | None) -> Iterator[None]:
    """The process as a command started in ``root`` by ``user`` would see it;
    the environment, folder and active key service client come back after."""
    environment, folder, security = dict(os.environ), Path.cwd(), runtime._active
    for name in _OUTSIDE:
        os.environ.pop(name, None)
    if user:
        os.environ[USER_ENV_VAR] = user
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)
        runtime._active = security


def run_in_memory(
    root: Path,
    *pipelines: str,
    env: str = "test",
    params: Sequence[str] = (),
    user: str | None = None,
    **run_args: Any,
) -> None:
    """``kedro run --pipelines <pipelines> --env <env> --params <params>`` in ``root``,
    inside this process.

    Args:
        root: The workspace.
        *pipelines: Registered pipeline names; none runs ``__default__``.
        env: Kedro env.
        params: ``--params`` items (``"monitoring.window=2026-01-05"``), parsed
            as the command parses them.
        user: ``$BANKPLATFORM_USER`` of the run (unset: the OS user, the developer).
        **run_args: Passed to ``KedroSession.run`` (``runner=`` ...).

    Raises:
        Exception: Whatever the run raised; the workspace holds what it wrote.
    """
    with _as_a_command(root, user):
        bootstrap_project(root)
        runtime_params = OmegaConf.to_container(OmegaConf.from_dotlist(list(params)))
        with KedroSession.create(
            project_path=root, env=env, runtime_params=runtime_params
        ) as session:
            session.run(pipeline_names=list(pipelines) or None, **run_args)
