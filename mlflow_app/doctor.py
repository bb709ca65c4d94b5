"""`mlflow-app doctor`: what is wrong with this setup, and the exact fix for each problem.

Locally it runs the self-check's checks; with `--app` it inspects the deployed app: its
compute and deployment state, the volume binding, the grants its service principal holds,
and the app's own `/readyz`.
"""

from __future__ import annotations

from typing import Any, TextIO

from mlflow_app.deploy import READY_PATH, DeployFailed, oauth_token, readiness
from mlflow_app.findings import Finding, render_table
from mlflow_app.setup_databricks import VOLUME_RESOURCE_KEY
from mlflow_app.uc_grants import grant_statement, missing_privileges, needed


def diagnose_app(client: Any, app_name: str) -> list[Finding]:
    from databricks.sdk.errors import NotFound

    try:
        app = client.apps.get(app_name)
    except NotFound:
        return [Finding("app", "failed", f"no app named {app_name}", "mlflow-app setup databricks")]
    findings = [_compute(app), _deployment(app), *_volume_and_grants(client, app)]
    if app.url and findings[1].ok:
        findings.append(_ready(client, app.url))
    return findings


def _compute(app: Any) -> Finding:
    state = (
        app.compute_status.state.value if app.compute_status and app.compute_status.state else "?"
    )
    return _finding(
        "compute",
        state == "ACTIVE",
        state,
        f"mlflow-app deploy (starts it), or databricks apps start {app.name}",
    )


def _deployment(app: Any) -> Finding:
    status = app.app_status
    state = status.state.value if status and status.state else "UNKNOWN"
    return _finding(
        "deployment",
        state == "RUNNING",
        f"{state}: {status.message if status else ''}".strip(),
        "mlflow-app deploy",
    )


def _volume_and_grants(client: Any, app: Any) -> list[Finding]:
    bound = next((r for r in app.resources or [] if r.name == VOLUME_RESOURCE_KEY), None)
    securable = bound.uc_securable if bound else None
    if securable is None:
        return [
            Finding(
                "volume",
                "failed",
                f"no UC volume bound as `{VOLUME_RESOURCE_KEY}`",
                "mlflow-app setup databricks (binds it), or add it in the app's resources",
            )
        ]
    volume = securable.securable_full_name
    principal = app.service_principal_client_id
    findings = []
    for (kind, name), privileges in needed(volume).items():
        missing = missing_privileges(client, kind, name, principal, privileges)
        findings.append(
            _finding(
                f"grants on {kind}",
                not missing,
                f"{principal} {'lacks ' + ', '.join(missing) if missing else 'has what it needs'}"
                f" on {name}",
                grant_statement((kind, name), missing, principal) if missing else "",
            )
        )
    return findings


def _ready(client: Any, url: str) -> Finding:
    try:
        status, report = readiness(url, oauth_token(client))
    except DeployFailed as refused:
        return Finding("readyz", "failed", "cannot call the app through its proxy", str(refused))
    except Exception as error:  # unreachable app: reported, not raised
        return Finding("readyz", "failed", f"{url} did not answer: {error}", "check the app's logs")
    failed = [c for c in report.get("checks", []) if c.get("status") == "failed"]
    if status == 200 and "error" not in report:
        return Finding("readyz", "ok", f"{url}{READY_PATH}: every check passed")
    detail = "; ".join(f"{c['name']}: {c.get('reason', '')}" for c in failed) or (
        f"HTTP {status} {report.get('error', '')}".strip()
    )
    fix = "; ".join(c.get("fix", "") for c in failed) or "databricks apps logs <app>"
    return Finding("readyz", "failed", detail, fix)


def print_findings(findings: list[Finding], out: TextIO) -> int:
    print(render_table(findings), end="", file=out)
    return 0 if all(f.ok for f in findings) else 1


def _finding(name: str, ok: bool, reason: str, fix: str) -> Finding:
    """The fix is shown only when something is wrong."""
    return Finding(name, "ok" if ok else "failed", reason, "" if ok else fix)
