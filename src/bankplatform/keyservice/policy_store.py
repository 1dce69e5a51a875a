"""The policy the key service decides from: its own installed copy.

The access policy (``access:`` of ``security.yml``: roles, users, pipelines) and
the catalog's dataset types and classifications live in the workspace's ``conf/``,
which its users can edit. The service decides from a copy **installed** in its own
folder (``<key folder>/policy/<env>.json``), made when it first starts and changed
only by ``bankplatform keys policy --install``, run as the keyholder: the change is
shown line by line and audited (``policy.install``, with the differences and the
new copy's sha256). Editing ``conf/`` changes nothing until then; ``workspace
status`` says when the two differ.

Where the workspace's tier asks for it (a tier 1 model, or a production
workspace), a change takes two people: the first ``--install`` records a
``policy.propose`` of the exact document (its sha256), and only another platform
admin's ``--install`` of the same document installs it. The rule itself is part
of the installed document (the manifest's tier and ``production``), so lowering
the tier in ``.kedro.yml`` is a change that still needs two people.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bankplatform.errors import BankplatformError

POLICY_FORMAT = 1
INSTALL_RECORD = "policy.install"
PROPOSE_RECORD = "policy.propose"
TWO_PERSON_TIERS = frozenset({"tier_1"})


class PolicyStoreError(BankplatformError):
    """The installed policy cannot be read; the message says why."""


@dataclass(frozen=True)
class PolicyDocument:
    """The access policy and the catalog's types and classifications.

    Attributes:
        access: ``access:`` as ``security.yml`` resolves it for the env.
        catalog: Dataset name (or pattern) -> ``type`` and ``metadata`` (never
            credentials).
        rules: How the policy itself changes: the manifest's ``model_risk_tier``
            and ``production`` when installed (empty in a copy installed before
            the rule existed).
    """

    access: dict[str, Any]
    catalog: dict[str, Any]
    rules: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> bytes:
        """The document as the bytes its hash covers."""
        return json.dumps(
            {
                "format": POLICY_FORMAT,
                "access": self.access,
                "catalog": self.catalog,
                "rules": self.rules,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        ).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def installers(self) -> int:
        """How many people a change of this document takes (1 or 2)."""
        two = self.rules.get("production") or (
            self.rules.get("model_risk_tier") in TWO_PERSON_TIERS
        )
        return 2 if two else 1


def installers_required(installed: PolicyDocument, proposed: PolicyDocument) -> int:
    """People needed to replace ``installed`` by ``proposed``: the stricter of the
    two documents' rules (lowering the tier is itself a two-person change)."""
    return max(installed.installers, proposed.installers)


def workspace_policy(loader: Any, root: Path) -> PolicyDocument:
    """The policy the workspace's ``conf/`` states now (base and the env), with
    the manifest's tier and production flag as its change rules."""
    from bankplatform.manifest import load_manifest  # noqa: PLC0415
    from bankplatform.security.settings import security_file  # noqa: PLC0415

    access = dict(security_file(loader).get("access") or {"roles": {}})
    try:
        catalog = dict(loader["catalog"] or {})
    except Exception:  # no catalog: nothing is classified
        catalog = {}
    decided = {
        name: {k: v for k, v in entry.items() if k in ("type", "metadata")}
        for name, entry in catalog.items()
        if isinstance(entry, dict) and not name.startswith("_")
    }
    manifest = load_manifest(root)
    rules = {
        "model_risk_tier": manifest.model_risk_tier.value,
        "production": manifest.production,
    }
    return PolicyDocument(_plain(access), _plain(decided), rules)


def read_installed(path: Path) -> PolicyDocument | None:
    """The installed policy, or ``None`` before the first install.

    Raises:
        PolicyStoreError: The file is not a policy document.
    """
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        msg = f"installed policy {path} cannot be read ({type(error).__name__})"
        raise PolicyStoreError(msg) from None
    if not isinstance(content, dict) or content.get("format") != POLICY_FORMAT:
        msg = f"installed policy {path} is not a format-{POLICY_FORMAT} policy document"
        raise PolicyStoreError(msg)
    return PolicyDocument(
        dict(content["access"]),
        dict(content["catalog"]),
        dict(content.get("rules") or {}),
    )


def install(path: Path, document: PolicyDocument) -> None:
    """Write the installed copy (atomic replace, the service's OS user only)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(document.canonical())
        stream.flush()
        os.fsync(stream.fileno())
    temporary.replace(path)


def differences(installed: PolicyDocument, proposed: PolicyDocument) -> list[str]:
    """What installing ``proposed`` over ``installed`` changes, one line each
    (``access.roles.data_scientist: [...] -> [...]``)."""
    found: list[str] = []
    _compare("access", installed.access, proposed.access, found)
    _compare("catalog", installed.catalog, proposed.catalog, found)
    _compare("rules", installed.rules, proposed.rules, found)
    return found


def _compare(path: str, before: Any, after: Any, found: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            _compare(f"{path}.{key}", before.get(key), after.get(key), found)
        return
    if before == after:
        return
    if before is None:
        found.append(f"{path}: added {_short(after)}")
    elif after is None:
        found.append(f"{path}: removed (was {_short(before)})")
    else:
        found.append(f"{path}: {_short(before)} -> {_short(after)}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."  # noqa: PLR2004


def _plain(value: Any) -> Any:
    """Plain JSON types (OmegaConf containers and tuples become dicts and lists)."""
    return json.loads(json.dumps(value, default=str))
