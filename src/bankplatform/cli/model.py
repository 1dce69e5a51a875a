"""``bankplatform model``: the inventory, model cards, the Annex IV pack, alias
history, the package stage and the governed lifecycle (approve, reject, promote,
rollback, decommission)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bankplatform.context import WorkspaceContext
    from bankplatform.governance.documents import CardFacts
    from bankplatform.governance.history import AliasTenure
    from bankplatform.governance.lifecycle import Governed
    from bankplatform.security.policy import Action

_ENV = click.option(
    "--env",
    help="Kedro env whose security.yml and tracking store apply [manifest default].",
)
_VERSION = click.argument("version", type=click.IntRange(min=1, max=1_000_000_000))


@click.group()
def model() -> None:
    """Registered model versions and their governed lifecycle."""


@model.command("list")
@_ENV
def list_versions(env: str | None) -> None:
    """The model inventory: versions, status, owner, gates, aliases, review dates."""
    from datetime import UTC, datetime

    from bankplatform.governance.inventory import model_inventory
    from bankplatform.security.policy import Action

    ctx = _context(env)
    g = _governed_in(ctx, Action.READ_REPORTS, "model_inventory")
    entries = model_inventory(
        g.client,
        ctx.manifest,
        g.security.audit_log().records(resource="model:"),
        ctx.governance.review_months[ctx.manifest.model_risk_tier],
        datetime.now(UTC).date(),
    )
    if not entries:
        click.echo(f"{g.model}: no version registered yet")
        return
    click.echo(
        f"{'version':>7}  {'status':<26}{'gates':<8}{'aliases':<20}{'trainer':<18}"
        f"{'tier':<8}{'last review':<13}next review"
    )
    for e in entries:
        flag = "  OVERDUE" if e.overdue else ""
        click.echo(
            f"{e.version:>7}  {e.status:<26}{e.gate_status:<8}{','.join(e.aliases) or '-':<20}"
            f"{e.trainer:<18}{e.tier:<8}{e.last_review or '-':<13}{e.next_review or '-'}{flag}"
        )
    click.echo(f"model {g.model}, owner {entries[0].owner}")
    for e in entries:  # the registry's tags are a copy for MLflow's UI
        for line in e.tag_disagreements:
            click.echo(f"version {e.version}: {line}; the audit log's is shown")


@model.command("card")
@click.argument("name")
@_VERSION
@click.option("--html", "as_html", is_flag=True, help="Print HTML instead of Markdown.")
@_ENV
def card(name: str, version: int, as_html: bool, env: str | None) -> None:
    """Print the model card of NAME VERSION, from tracked metadata only."""
    import mistune

    from bankplatform.governance.documents import card_html, model_card
    from bankplatform.security.policy import Action

    ctx = _context(env)
    g = _governed_in(ctx, Action.READ_REPORTS, f"model:{name}/{version}", name)
    facts = _facts(ctx, g, version)
    text = model_card(facts)
    click.echo(card_html(text, mistune.html) if as_html else text)


@model.command("docs")
@click.argument("name")
@_VERSION
@_ENV
def docs(name: str, version: int, env: str | None) -> None:
    """Write the EU AI Act Annex IV pack of NAME VERSION (with a sha256 manifest)."""
    from bankplatform.governance.documents import write_pack
    from bankplatform.governance.history import alias_history
    from bankplatform.security.policy import Action

    ctx = _context(env)
    g = _governed_in(ctx, Action.READ_REPORTS, f"model:{name}/{version}", name)
    facts = _facts(ctx, g, version)
    history = [
        _tenure_line(t)
        for t in alias_history(
            g.security.audit_log().records(resource=f"model:{g.model}"), g.model
        )
    ]
    pack = write_pack(facts, history, g.root)
    g.security.audit_log().append(
        action="model.docs",
        resource=f"model:{g.model}/{version}",
        outcome="allowed",
        details={"pack": str(pack.relative_to(g.root))},
    )
    click.echo(f"wrote the Annex IV pack of {g.model} version {version}: {pack}")


@model.command("history")
@click.argument("name")
@_ENV
def history(name: str, env: str | None) -> None:
    """Which version held which alias, from when to when (from the audit log)."""
    from bankplatform.governance.history import alias_history
    from bankplatform.security.policy import Action

    g = _governed(env, Action.READ_REPORTS, f"model:{name}", name)
    tenures = alias_history(
        g.security.audit_log().records(resource=f"model:{g.model}"), g.model
    )
    if not tenures:
        click.echo(f"{g.model}: no alias has been held yet")
    for tenure in tenures:
        click.echo(_tenure_line(tenure))


@model.command("approve")
@click.argument("name")
@_VERSION
@_ENV
def approve(name: str, version: int, env: str | None) -> None:
    """Approve NAME VERSION as challenger (model_validator; not its trainer)."""
    from bankplatform.governance import lifecycle

    click.echo(lifecycle.approve(_governed(env, None, "", name), version))


@model.command("package")
@click.argument("name")
@_VERSION
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also export the signed bundle and the public key here, to verify offline.",
)
@_ENV
def package(name: str, version: int, out: Path | None, env: str | None) -> None:
    """Package NAME VERSION as a bundle the key service signs (model_validator).

    The bundle: model files, pinned requirements, feature service, gate report and
    evidence hashes, CycloneDX SBOM, provenance; one digest over all of it. `model
    approve` packages too and records the digest; the scoring service runs nothing else.
    """
    from bankplatform.governance import lifecycle
    from bankplatform.governance.lifecycle import version_facts

    g = _governed(env, None, "", name)
    packaged = lifecycle.package(g, version)
    digest = packaged["digest"]
    click.echo(f"packaged {g.model} version {version}: bundle sha256:{digest}")
    click.echo(
        f"  {packaged['files']} files, {packaged['bytes']:,} bytes, signed by the key service "
        "(OpenSSF model-signing: DSSE envelope over an in-toto statement, ECDSA P-256)"
    )
    approved = version_facts(g.security, g.model, version).approved_bundle
    click.echo(
        "  the approval names this bundle"
        if approved == digest
        else f"  the approval names another bundle ({approved[:12]}...): this one is not served unless approved"
        if approved
        else "  not approved yet: `bankplatform model approve` records this digest"
    )
    if out is not None:
        _export(g, digest, out)


def _export(g: Governed, digest: str, out: Path) -> None:
    from bankplatform.security.bundles import PUBLIC_KEY, unpack, verify_bundle

    bundles = g.security.bundles()
    target = out / digest
    if target.exists():
        raise click.ClickException(f"{target} exists already")
    target.mkdir(parents=True)
    unpack(bundles.archive(digest), target)
    key = out / PUBLIC_KEY
    key.write_bytes(bundles.public_key())
    verified = verify_bundle(target, key.read_bytes())
    click.echo(
        f"  exported to {target} (verified: {len(verified.files)} files); offline, with OpenSSF's tool:\n"
        f"    python -m model_signing verify key --signature {target}/model.sig "
        f"--public_key {key} {verified.folder}"
    )


@model.command("reject")
@click.argument("name")
@_VERSION
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@_ENV
def reject(name: str, version: int, reason: str, env: str | None) -> None:
    """Reject NAME VERSION with a reason (model_validator; not its trainer)."""
    from bankplatform.governance import lifecycle

    click.echo(lifecycle.reject(_governed(env, None, "", name), version, reason))


@model.command("promote")
@click.argument("name")
@_VERSION
@_ENV
def promote(name: str, version: int, env: str | None) -> None:
    """Promote the approved challenger NAME VERSION to champion (model_risk_officer)."""
    from bankplatform.governance import lifecycle

    click.echo(lifecycle.promote(_governed(env, None, "", name), version))


@model.command("rollback")
@click.argument("name")
@_ENV
def rollback(name: str, env: str | None) -> None:
    """Put the previous champion of NAME back (model_risk_officer)."""
    from bankplatform.governance import lifecycle

    click.echo(lifecycle.rollback(_governed(env, None, "", name)))


@model.command("decommission")
@click.argument("name")
@_VERSION
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@_ENV
def decommission(name: str, version: int, reason: str, env: str | None) -> None:
    """Retire NAME VERSION for good: no alias, never served again (model_risk_officer)."""
    from bankplatform.governance import lifecycle

    click.echo(lifecycle.decommission(_governed(env, None, "", name), version, reason))


def _context(env: str | None) -> WorkspaceContext:
    """The command's workspace context, read and validated once."""
    from bankplatform.context import workspace_context

    return workspace_context(env)


def _governed(
    env: str | None, action: Action | None, resource: str, name: str | None = None
) -> Governed:
    """What a lifecycle action works with, from the command's context."""
    return _governed_in(_context(env), action, resource, name)


def _governed_in(
    ctx: WorkspaceContext,
    action: Action | None,
    resource: str,
    name: str | None = None,
) -> Governed:
    """The acting identity, the env's security and registry, the name checked.

    With an ``action`` (a read), the name and the identity's permission are
    checked here, the permission audited; lifecycle actions (no ``action``)
    check and audit both themselves (one record per attempt, refusals too).
    """
    from mlflow.tracking import MlflowClient

    from bankplatform.governance.lifecycle import Governed
    from bankplatform.governance.registry import check_model_name
    from bankplatform.security.runtime import activate

    if name is not None and action is not None:
        check_model_name(name, ctx.model_name)
    activate(ctx.security)
    actor = ctx.security.starter()
    if action is not None:
        ctx.security.enforce(action, resource)
    return Governed(
        MlflowClient(tracking_uri=ctx.tracking_uri),
        ctx.security,
        actor,
        ctx.root,
        ctx.model_name,
        named=name if action is None else None,
    )


def _tenure_line(tenure: AliasTenure) -> str:
    until = tenure.until or "now"
    ended = f", ended by {tenure.ended_by}" if tenure.ended_by else ""
    return (
        f"{tenure.alias:<11} version {tenure.version:<4} {tenure.since[:19]} -> "
        f"{until[:19]:<19}  (by {tenure.granted_by}{ended})"
    )


def _facts(ctx: WorkspaceContext, g: Governed, version: int) -> CardFacts:
    """What the card and the pack say of ``version``, with the env's monitoring plan."""
    from bankplatform.governance.documents import gather_facts

    return gather_facts(
        g.client,
        g.security,
        ctx.manifest,
        ctx.root,
        version,
        ctx.monitoring.model_dump(mode="json"),
    )
