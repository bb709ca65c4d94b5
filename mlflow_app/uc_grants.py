"""The Unity Catalog privileges the app's service principal needs, and which it lacks.

One table, read by the readiness check (the principal asks about itself), `setup` (which
grants them) and `doctor` (which reports them with the statement to run).
"""

from __future__ import annotations

from typing import Any

Securable = tuple[str, str]  # (kind, full name), e.g. ("schema", "main.mlflow")


def registry_needs(catalog: str, schema: str) -> dict[Securable, set[str]]:
    """What registering models in `catalog.schema` needs."""
    return {
        ("catalog", catalog): {"USE_CATALOG"},
        ("schema", f"{catalog}.{schema}"): {"USE_SCHEMA", "CREATE_MODEL"},
    }


def needed(volume: str) -> dict[Securable, set[str]]:
    """For a volume `c.s.v`: artifacts in the volume, models registered in its schema."""
    catalog, schema, _ = volume.split(".")
    return {
        **registry_needs(catalog, schema),
        ("volume", volume): {"READ_VOLUME", "WRITE_VOLUME"},
    }


def missing_privileges(
    client: Any, kind: str, name: str, principal: str, wanted: set[str]
) -> list[str]:
    """Which of `wanted` (privilege names) the principal lacks on a securable, inherited
    grants included; sorted."""
    found = client.grants.get_effective(kind, name, principal=principal)
    held = {
        p.privilege.value
        for a in found.privilege_assignments or []
        for p in a.privileges or []
        if p.privilege is not None
    }
    return [] if "ALL_PRIVILEGES" in held else sorted(wanted - held)


def lacking(client: Any, principal: str, wanted: dict[Securable, set[str]]) -> dict:
    """Securable -> the privileges the principal lacks there, for those it lacks any."""
    found = {}
    for (kind, name), privileges in wanted.items():
        if missing := missing_privileges(client, kind, name, principal, privileges):
            found[kind, name] = missing
    return found


def grant_statement(securable: Securable, privileges: list[str], principal: str) -> str:
    kind, name = securable
    spoken = ", ".join(p.replace("_", " ") for p in privileges)
    return f"GRANT {spoken} ON {kind.upper()} {name} TO `{principal}`"
