"""`mlflow-app doctor`: what is wrong with this setup, and the exact fix for each problem.

Locally it runs the self-check's checks; with `--app` it inspects the deployed app: its
compute and deployment state, the volume binding, the grants its service principal holds,
and the app's own `/readyz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from mlflow_app.deploy import READY_PATH, DeployFailed, oauth_token, readiness
from mlflow_app.setup_databricks import VOLUME_RESOURCE_KEY
from mlflow_app.uc_grants import grant_statement, missing_privileges, needed


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose_app(client: Any, app_name: str) -> list[Finding]:
    from databricks.sdk.errors import NotFound

    try:
        app = client.apps.get(app_name)
    except NotFound:
        return [Finding("app", False, f"no app named {app_name}", "mlflow-app setup databricks")]
    findings = [_compute(app), _deployment(app), *_volume_and_grants(client, app)]
    if app.url and findings[1].ok:
        findings.append(_ready(client, app.url))
    return findings


def _compute(app: Any) -> Finding:
    state = (
        app.compute_status.state.value if app.compute_status and app.compute_status.state else "?"
    )
    return Finding(
        "compute",
        state == "ACTIVE",
        state,
        f"mlflow-app deploy (starts it), or databricks apps start {app.name}",
    )


def _deployment(app: Any) -> Finding:
    status = app.app_status
    state = status.state.value if status and status.state else "UNKNOWN"
    return Finding(
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
                False,
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
            Finding(
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
        return Finding("readyz", False, "cannot call the app through its proxy", str(refused))
    except Exception as error:  # unreachable app: reported, not raised
        return Finding("readyz", False, f"{url} did not answer: {error}", "check the app's logs")
    failed = [c for c in report.get("checks", []) if c.get("status") == "failed"]
    if status == 200 and "error" not in report:
        return Finding("readyz", True, f"{url}{READY_PATH}: every check passed")
    detail = "; ".join(f"{c['name']}: {c.get('reason', '')}" for c in failed) or (
        f"HTTP {status} {report.get('error', '')}".strip()
    )
    fix = "; ".join(c.get("fix", "") for c in failed) or "databricks apps logs <app>"
    return Finding("readyz", False, detail, fix)


def print_findings(findings: list[Finding], out: TextIO) -> int:
    for finding in findings:
        mark = "ok" if finding.ok else "PROBLEM"
        print(f"{mark:8} {finding.what:18} {finding.detail}", file=out)
        if not finding.ok and finding.fix:
            print(f"{'':8} {'':18} fix: {finding.fix}", file=out)
    return 0 if all(f.ok for f in findings) else 1
