"""``bankplatform serve``, ``traffic`` and ``decision``: the scoring service, its
release controls and the reconstruction of a decision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from bankplatform.serving.trace import TraceInputs

_ENV = click.option(
    "--env",
    help="Kedro env whose serving.yml and security.yml apply [manifest default].",
)


@click.command()
@click.option(
    "--tls/--no-tls", default=None, help="Serve HTTPS only [serving.yml tls]."
)
@click.option(
    "--port", type=click.IntRange(1, 65_535), help="TCP port [serving.yml port]."
)
@click.option("--host", help="Interface to listen on [serving.yml host, 127.0.0.1].")
@click.option(
    "--engine",
    type=click.Choice(["uvicorn", "ray"]),
    default="uvicorn",
    show_default=True,
    help="uvicorn on this machine, or Ray Serve (RAY_ADDRESS or a local Ray).",
)
@_ENV
def serve(
    tls: bool | None, port: int | None, host: str | None, engine: str, env: str | None
) -> None:
    """Start the scoring service (champion and challenger by registry alias)."""
    from bankplatform.context import workspace_context
    from bankplatform.serving.server import ServeOptions, serve_uvicorn

    options = ServeOptions(workspace_context(env), tls, port, host)
    if engine == "ray":
        from bankplatform.serving.on_ray import serve_ray

        serve_ray(options)
    else:
        serve_uvicorn(options)


@click.group()
def traffic() -> None:
    """Canary, shadow, blue/green and the kill switch of a running scoring service."""


@traffic.command("set")
@click.option(
    "--challenger-weight",
    type=click.FloatRange(0, 1),
    required=True,
    help="Share of customers the challenger answers (1: blue/green switch, 0: back).",
)
@click.option("--reason", default="release change", show_default=True)
@_ENV
def set_weight(challenger_weight: float, reason: str, env: str | None) -> None:
    """Set the challenger's share of traffic (sticky by customer)."""
    _show(
        _admin(
            env,
            "/v1/admin/traffic",
            {"challenger_weight": challenger_weight, "reason": reason},
        )
    )


@traffic.command("shadow")
@click.argument("mode", type=click.Choice(["on", "off"]))
@click.option("--reason", default="shadow release", show_default=True)
@_ENV
def shadow(mode: str, reason: str, env: str | None) -> None:
    """The challenger silently scores every request (on) or not (off)."""
    _show(_admin(env, "/v1/admin/traffic", {"shadow": mode == "on", "reason": reason}))


@traffic.command("halt")
@click.option("--reason", required=True, help="Why automated decisions stop.")
@_ENV
def halt(reason: str, env: str | None) -> None:
    """Kill switch: refer every application to manual underwriting."""
    _show(_admin(env, "/v1/admin/halt", {"halted": True, "reason": reason}))


@traffic.command("resume")
@click.option("--reason", required=True, help="Why automated decisions may resume.")
@_ENV
def resume(reason: str, env: str | None) -> None:
    """Resume automated decisions after a halt."""
    _show(_admin(env, "/v1/admin/halt", {"halted": False, "reason": reason}))


@traffic.command("rollback")
@click.option("--reason", required=True)
@_ENV
def rollback(reason: str, env: str | None) -> None:
    """Take the challenger out of traffic now (weight 0, shadow off)."""
    _show(_admin(env, "/v1/admin/rollback", {"reason": reason}))


@traffic.command("status")
@_ENV
def status(env: str | None) -> None:
    """Served versions, refusals, the release state and the challenger's window."""
    _show(_admin(env, "/v1/models", None))


@click.group()
def simulate() -> None:
    """Send synthetic work to a running service (demos, load, monitoring drills)."""


@simulate.command("traffic")
@click.option(
    "--requests",
    "count",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--drift",
    type=click.FloatRange(0, 3),
    default=0.0,
    show_default=True,
    help="The generator's drift knob applied to the applicants: more stressed "
    "customers apply, for larger loans (0 = the book as it is).",
)
@click.option(
    "--wait-seconds",
    type=click.FloatRange(0, 600),
    default=120,
    show_default=True,
    help="How long to wait for the service to answer.",
)
@_ENV
def simulate_traffic(
    count: int, seed: int, drift: float, wait_seconds: float, env: str | None
) -> None:
    """Score COUNT applications of known customers as the origination system."""
    from bankplatform.serving.remote import (
        SIMULATED_CLIENT,
        ScoringClient,
        simulate_applications,
        wait_until_up,
    )
    from bankplatform.synthetic.applicants import (
        APPLICANT_COLUMNS,
        draw_applications,
    )
    from bankplatform.workspace import open_workspace

    # Known customers, read through the catalog (the key service decides).
    table = open_workspace(env).catalog.load("customer_features")
    features = table.read(columns=APPLICANT_COLUMNS)
    applications = draw_applications(features, count, seed, drift)
    client = ScoringClient.for_workspace(env, SIMULATED_CLIENT)
    wait_until_up(client, wait_seconds)
    summary = simulate_applications(client, applications)
    click.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


@simulate.command("outcomes")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the export (.csv).",
)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--customers",
    type=click.IntRange(1, 10_000_000),
    help="Customer numbers C00000001... the servicing system knows [the env's "
    "synthetic_extract.customers].",
)
@_ENV
def simulate_outcomes(
    out: Path, seed: int, customers: int | None, env: str | None
) -> None:
    """Write the loan-servicing system's export for the served decisions that
    granted a loan and have no outcome yet (demos, drills): each defaulted with
    the probability the model gave it. Import it with `bankplatform data outcomes`."""
    from datetime import UTC, datetime

    import numpy as np

    from bankplatform.cli.data import catalog_dataset
    from bankplatform.context import workspace_context
    from bankplatform.monitoring.outcomes import OUTCOMES, servicing_export
    from bankplatform.monitoring.windows import (
        logged_decisions,
        vouched_decision_lines,
    )
    from bankplatform.security.client import acting_for
    from bankplatform.security.pseudonyms import IdentifierKind
    from bankplatform.security.runtime import activate, granted_run
    from bankplatform.synthetic.text import numbered_ids

    ctx = workspace_context(env)
    activate(ctx.security)
    count = customers or int(
        (ctx.params.get("synthetic_extract") or {}).get("customers", 20_000)
    )
    with granted_run(ctx.security, ["loan_outcomes"]), acting_for("loan_outcomes"):
        numbers = numbered_ids("C", np.arange(1, count + 1), 8)
        tokens = ctx.security.pseudonymiser().tokens(numbers, IdentifierKind.CUSTOMER)
        records = ctx.security.audit_log().records(resource="request:")
        decisions = logged_decisions(
            ctx.serving.decision_log, vouched_decision_lines(records)
        )
        delivered_parts = catalog_dataset(ctx, OUTCOMES).load()
        delivered = {
            str(r) for load in delivered_parts.values() for r in load()["request_id"]
        }
    export = servicing_export(
        decisions,
        dict(zip(tokens.astype(str), numbers.astype(str), strict=True)),
        delivered,
        seed,
        datetime.now(UTC).date(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    export.to_csv(out, index=False)
    click.echo(
        f"wrote {out}: {len(export):,} outcomes of granted loans "
        f"({int(export['defaulted'].sum()):,} defaulted) as loan servicing exports them"
    )


@click.group()
def decision() -> None:
    """Logged decisions: re-scored, and traced back to the raw extract."""


@decision.command("show")
@click.argument("request_id")
@_ENV
def show(request_id: str, env: str | None) -> None:
    """A logged decision, re-scored now with the version that made it."""
    import json

    from bankplatform.serving.trace import logged_decision, rescore_link

    inputs = _trace_inputs(env, request_id)
    record, later = logged_decision(inputs.decision_log, request_id)
    shown = {
        k: record.get(k)
        for k in (
            "request_id",
            "time",
            "client",
            "customer_token",
            "application",
            "decision",
            "score",
            "cut_off",
            "refer_up_to",
            "reason_codes",
            "model",
            "variant",
            "fallback",
            "halted",
            "latency_ms",
        )
    }
    click.echo(json.dumps(shown, indent=2))
    for entry in later:
        click.echo(
            f"then: {entry['type']} by {entry.get('reviewer') or entry.get('filed_by')}: {entry.get('decision')} ({entry.get('reason')})"
        )
    link = rescore_link(record, inputs)
    click.echo(f"re-score: {link.detail}")
    if record.get("model") and not link.ok:
        raise click.ClickException(
            "the logged version no longer gives the logged score"
        )


@decision.command("trace")
@click.argument("request_id")
@_ENV
def trace_command(request_id: str, env: str | None) -> None:
    """The whole chain of a decision, every hash re-checked; non-zero if a link breaks."""
    from bankplatform.serving.trace import logged_decision, trace

    inputs = _trace_inputs(env, request_id)
    record, _ = logged_decision(inputs.decision_log, request_id)
    links = trace(record, inputs)
    for link in links:
        click.echo(f"{'ok    ' if link.ok else 'BROKEN'} {link.name:<16} {link.detail}")
    broken = [link.name for link in links if not link.ok]
    if broken:
        raise click.ClickException(f"the chain breaks at: {broken[0]}")
    click.echo(
        f"chain intact: {len(links)} links from decision {request_id} to the raw extract"
    )


def _trace_inputs(env: str | None, request_id: str) -> TraceInputs:
    """The acting reader (``read_reports``, audited) and what a trace reads."""
    import re

    import mlflow
    from mlflow.tracking import MlflowClient

    from bankplatform.context import workspace_context
    from bankplatform.errors import BankplatformError
    from bankplatform.security.policy import Action
    from bankplatform.security.runtime import activate
    from bankplatform.serving.schemas import REQUEST_ID
    from bankplatform.serving.service import request_resource
    from bankplatform.serving.trace import TraceInputs

    if not re.match(REQUEST_ID, request_id):
        msg = (
            f"{request_id[:60]!r} is not a request id (req_ and 32 hexadecimal digits)"
        )
        raise BankplatformError(msg)
    ctx = workspace_context(env)
    security = ctx.security
    activate(security)
    security.enforce(Action.READ_REPORTS, f"decision:{request_id}")
    mlflow.set_tracking_uri(ctx.tracking_uri)
    return TraceInputs(
        root=ctx.root,
        decision_log=ctx.serving.decision_log,
        registry=MlflowClient(tracking_uri=ctx.tracking_uri),
        model_name=ctx.model_name,
        # The model's records (registration, approval, evaluation) and the request's.
        audit_records=[
            *security.audit_log().records(resource=f"model:{ctx.model_name}/"),
            *security.audit_log().records(resource=request_resource(request_id)),
        ],
        bundles=security.bundles(),
    )


def _admin(env: str | None, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """Call the running service's admin API with ``$BANKPLATFORM_TOKEN`` (or, in a
    developer workspace, a 5-minute token the key service issues to you)."""
    from bankplatform.serving.remote import ScoringClient

    client = ScoringClient.for_workspace(env)
    return client.get(path) if body is None else client.post(path, body)


def _show(content: dict[str, Any]) -> None:
    import json

    click.echo(json.dumps(content, indent=2))
