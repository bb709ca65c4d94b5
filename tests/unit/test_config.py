"""Settings: derived profile, aliases, precedence, and one actionable line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_app.config import (
    SETTINGS,
    ConfigError,
    Values,
    load_settings,
    mask_uri,
    settings_table,
    unrecognised_settings,
)


def test_embedded_default_is_sqlite_with_proxied_local_artifacts(tmp_path: Path) -> None:
    settings = load_settings({"MLFLOW_APP_DATA_DIR": str(tmp_path)})
    assert settings.profile == "embedded"
    assert settings.backend_store_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings.registry_store_uri == settings.backend_store_uri
    assert settings.serve_artifacts is True
    assert settings.default_artifact_root == "mlflow-artifacts:/"
    assert settings.artifacts_destination == str(tmp_path / "artifacts")


def test_without_the_proxy_artifacts_go_to_a_local_root(tmp_path: Path) -> None:
    settings = load_settings(
        {"MLFLOW_APP_DATA_DIR": str(tmp_path), "MLFLOW_SERVE_ARTIFACTS": "false"}
    )
    assert (settings.default_artifact_root, settings.artifacts_destination) == (
        str(tmp_path / "artifacts"),
        None,
    )


def test_explicit_backend_wins_over_databricks_apps() -> None:
    settings = load_settings(
        {"MLFLOW_BACKEND_STORE_URI": "postgresql://u@db/mlflow", "DATABRICKS_APP_NAME": "mlflow"}
    )
    assert settings.profile == "external"
    assert settings.backend_store_uri == "postgresql://u@db/mlflow"
    assert settings.registry_store_uri == "postgresql://u@db/mlflow"


def test_databricks_apps_derives_workspace_tracking_and_unity_catalog_registry() -> None:
    settings = load_settings({"DATABRICKS_APP_NAME": "mlflow", "DATABRICKS_APP_PORT": "8000"})
    assert (settings.profile, settings.backend_store_uri, settings.registry_store_uri) == (
        "databricks",
        "databricks",
        "databricks-uc",
    )
    assert settings.port == 8000
    assert "*.databricksapps.com" in settings.allowed_hosts


@pytest.mark.parametrize(
    ("raw", "root"),
    [
        ("/Volumes/main/ml/files/mlflow/", "dbfs:/Volumes/main/ml/files/mlflow"),
        # A volume alone (app.yaml's valueFrom gives that) means its `mlflow` directory:
        # MLflow refuses a volume's own root as an artifact location.
        ("dbfs:/Volumes/main/ml/files", "dbfs:/Volumes/main/ml/files/mlflow"),
        ("main.ml.files", "dbfs:/Volumes/main/ml/files/mlflow"),
        ("/Volumes/main/ml/files/", "dbfs:/Volumes/main/ml/files/mlflow"),
    ],
)
def test_a_volume_artifact_root_is_served_through_the_proxy(raw: str, root: str) -> None:
    settings = load_settings(
        {"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_DEFAULT_ARTIFACT_ROOT": raw}
    )
    assert settings.volume_root == root
    assert (settings.serve_artifacts, settings.artifacts_destination) == (True, root)
    assert settings.default_artifact_root == "mlflow-artifacts:/"


def test_a_volume_root_without_the_proxy_is_given_to_clients_as_is() -> None:
    settings = load_settings(
        {
            "MLFLOW_TRACKING_URI": "databricks",
            "MLFLOW_DEFAULT_ARTIFACT_ROOT": "/Volumes/main/ml/files",
            "MLFLOW_SERVE_ARTIFACTS": "false",
        }
    )
    assert settings.default_artifact_root == "dbfs:/Volumes/main/ml/files/mlflow"
    assert settings.artifacts_destination is None


@pytest.mark.parametrize("raw", ["/Volumes/main", "/Volumes/main/ml", "/Volumes/main/../x/y"])
def test_a_path_outside_any_volume_is_one_line_naming_the_form(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MLFLOW_TRACKING_URI": "databricks", "MLFLOW_DEFAULT_ARTIFACT_ROOT": raw})
    message = str(caught.value)
    assert message.startswith("MLFLOW_DEFAULT_ARTIFACT_ROOT")
    assert "/Volumes/<catalog>/<schema>/<volume>" in message and "\n" not in message


def test_tracking_and_registry_uri_aliases_are_accepted() -> None:
    settings = load_settings(
        {"MLFLOW_TRACKING_URI": "mysql://u@db/m", "MLFLOW_REGISTRY_URI": "sqlite:////tmp/r.db"}
    )
    assert settings.backend_store_uri == "mysql+pymysql://u@db/m"  # the driver we ship
    assert settings.registry_store_uri == "sqlite:////tmp/r.db"


def test_public_name_wins_over_alias() -> None:
    settings = load_settings(
        {"MLFLOW_TRACKING_URI": "mysql://u@db/a", "MLFLOW_BACKEND_STORE_URI": "postgresql://u@db/b"}
    )
    assert settings.backend_store_uri == "postgresql://u@db/b"


@pytest.mark.parametrize(
    ("environ", "port"),
    [
        ({}, 80),
        ({"PORT": "8080"}, 8080),
        ({"PORT": "8080", "DATABRICKS_APP_PORT": "8000"}, 8000),
    ],
)
def test_port_precedence(environ: dict[str, str], port: int) -> None:
    assert load_settings(environ).port == port


def test_cloud_run_adds_its_public_host_and_explicit_hosts_replace_defaults() -> None:
    assert "*.run.app" in load_settings({"K_SERVICE": "mlflow"}).allowed_hosts
    assert load_settings({"MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow.corp, x.corp"}).allowed_hosts == (
        "mlflow.corp",
        "x.corp",
    )
    assert "localhost" in load_settings({}).allowed_hosts


@pytest.mark.parametrize(
    ("environ", "setting", "hint"),
    [
        ({"MLFLOW_WORKERS": "many"}, "MLFLOW_WORKERS", "number of worker processes"),
        ({"MLFLOW_WORKERS": "0"}, "MLFLOW_WORKERS", "from 1 to 64"),
        ({"PORT": "http"}, "PORT", "set PORT to a free port"),
        ({"DATABRICKS_APP_PORT": "70000"}, "DATABRICKS_APP_PORT", "from 1 to 65535"),
        (
            {"MLFLOW_BACKEND_STORE_URI": "postgres://u:pw@db/m"},
            "MLFLOW_BACKEND_STORE_URI",
            "did you mean postgresql://u:***@db/m?",
        ),
        (
            {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
            "MLFLOW_TRACKING_URI",
            "is a server address, not a store",
        ),
        (
            {"MLFLOW_BACKEND_STORE_URI": "mongodb://x"},
            "MLFLOW_BACKEND_STORE_URI",
            "no supported scheme",
        ),
        (
            {"MLFLOW_BACKEND_STORE_URI": "sqlite:mlflow.db"},
            "MLFLOW_BACKEND_STORE_URI",
            "missing '://'",
        ),
        ({"MLFLOW_SERVE_ARTIFACTS": "maybe"}, "MLFLOW_SERVE_ARTIFACTS", "true or false"),
        (
            {
                "MLFLOW_SERVE_ARTIFACTS": "false",
                "MLFLOW_DEFAULT_ARTIFACT_ROOT": "mlflow-artifacts:/",
            },
            "MLFLOW_DEFAULT_ARTIFACT_ROOT",
            "proxy",
        ),
        ({"MLFLOW_STATIC_PREFIX": "mlflow"}, "MLFLOW_STATIC_PREFIX", "start it with '/'"),
        ({"MLFLOW_APP_READY_PATH": "ready"}, "MLFLOW_APP_READY_PATH", "not a URL path"),
        (
            {"MLFLOW_APP_READINESS_CACHE_SECONDS": "-1"},
            "MLFLOW_APP_READINESS_CACHE_SECONDS",
            "is not a number from 0",
        ),
        ({"MLFLOW_APP_LOG_LEVEL": "loud"}, "MLFLOW_APP_LOG_LEVEL", "one of debug"),
        ({"MLFLOW_SERVER_ALLOWED_HOSTS": " , "}, "MLFLOW_SERVER_ALLOWED_HOSTS", "lists no host"),
    ],
)
def test_each_bad_value_names_its_setting_and_fix(environ, setting: str, hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)
    message = str(raised.value)
    assert raised.value.setting == setting
    assert message.startswith(f"{setting}: ")
    assert hint in message
    assert "\n" not in message
    assert ":pw@" not in message


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("postgresql://user:hunter2@db:5432/mlflow", "postgresql://user:***@db:5432/mlflow"),
        ("mysql+pymysql://u:p%40ss@h/db?ssl=1", "mysql+pymysql://u:***@h/db?ssl=1"),
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("https://host/x?token=abc&a=1", "https://host/x?token=***&a=1"),
    ],
)
def test_mask_uri_hides_credentials(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


def test_describe_never_shows_a_password() -> None:
    settings = load_settings({"MLFLOW_BACKEND_STORE_URI": "postgresql://u:hunter2@db/m"})
    assert "hunter2" not in repr(settings.describe())


def test_every_variable_read_is_a_row_of_the_table() -> None:
    """Values reads only declared rows, so nothing is read that the table does not document."""
    with pytest.raises(KeyError):
        Values({}).get("MLFLOW_NOT_DECLARED")
    table = settings_table()
    assert all(f"`{row.name}`" in table for row in SETTINGS)
    assert len({row.name for row in SETTINGS}) == len(SETTINGS)


def test_each_field_row_fills_a_settings_field_and_rules_fill_the_rest() -> None:
    settings = load_settings({})
    filled_by_rows = {row.field for row in SETTINGS if row.field}
    assert filled_by_rows <= set(vars(settings))
    assert {row.name for row in SETTINGS if not row.field} >= {
        "MLFLOW_BACKEND_STORE_URI",
        "MLFLOW_APP_AUTH",
        "PORT",
    }


def test_the_documented_settings_table_is_generated_from_the_code() -> None:
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert settings_table() in page, "regenerate it: mlflow-app config --table"


def test_store_uri_can_come_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "uri"
    secret.write_text("postgresql://mlflow:hunter2@db/mlflow\n")
    settings = load_settings({"MLFLOW_BACKEND_STORE_URI_FILE": str(secret)})
    assert settings.backend_store_uri == "postgresql://mlflow:hunter2@db/mlflow"
    assert settings.profile == "external"


@pytest.mark.parametrize("content", [None, ""])
def test_unreadable_or_empty_secret_file_names_the_setting(tmp_path: Path, content) -> None:
    secret = tmp_path / "uri"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_settings({"MLFLOW_BACKEND_STORE_URI_FILE": str(secret)})
    assert str(raised.value).startswith("MLFLOW_BACKEND_STORE_URI_FILE: ")


@pytest.mark.parametrize(
    ("env", "setting", "fix"),
    [
        ({"MLFLOW_APP_AUTH": "databricks-apps"}, "MLFLOW_APP_AUTH", "use trusted-header"),
        (
            {"MLFLOW_APP_AUTH": "basic"},
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_AUTH_ADMIN_PASSWORD_FILE",
        ),
        ({"MLFLOW_APP_AUTH": "trusted-header"}, "MLFLOW_APP_AUTH_ADMINS", "e.g. ops@example.com"),
        (
            {
                "MLFLOW_APP_AUTH": "trusted-header",
                "MLFLOW_APP_AUTH_ADMINS": "a",
                "MLFLOW_APP_TRUSTED_PROXIES": "10.0.0.0/33",
            },
            "MLFLOW_APP_TRUSTED_PROXIES",
            "CIDRs",
        ),
        ({"MLFLOW_APP_AUTH": "ldap"}, "MLFLOW_APP_AUTH", "one of them"),
    ],
)
def test_bad_access_settings_are_one_line_with_the_fix(env, setting, fix) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith(setting + ":") and fix in message and "\n" not in message


def test_the_admin_password_can_come_from_a_file_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "admin-password"
    secret.write_text("file-Held-pw-123\n")
    settings = load_settings(
        {"MLFLOW_APP_AUTH": "basic", "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(secret)}
    )
    assert settings.access.admin_password == "file-Held-pw-123"
    assert "file-Held-pw-123" not in repr(settings)
    assert "file-Held-pw-123" not in str(settings.describe())


def test_databricks_apps_trusts_private_peers() -> None:
    settings = load_settings(
        {"DATABRICKS_APP_NAME": "mlflow", "MLFLOW_APP_AUTH": "DATABRICKS-APPS"}
    )
    assert settings.access.mode == "databricks-apps"
    assert settings.access.identity_header == "X-Forwarded-Email"
    assert any(n.with_prefixlen == "10.0.0.0/8" for n in settings.trusted_proxies)


def test_acting_on_behalf_of_users_is_refused_since_no_user_scope_covers_mlflow() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(
            {
                "DATABRICKS_APP_NAME": "mlflow",
                "MLFLOW_APP_AUTH": "databricks-apps",
                "MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER": "true",
            }
        )
    message = str(refused.value)
    assert message.startswith("MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER: ")
    assert "none of which covers MLflow" in message and "unset it" in message
    assert "\n" not in message
    assert load_settings({"MLFLOW_APP_DATABRICKS_ON_BEHALF_OF_USER": "false"})


def test_a_malformed_admin_identity_stops_startup() -> None:
    with pytest.raises(ConfigError, match="MLFLOW_APP_AUTH_ADMINS: 'a; b' is not"):
        load_settings({"MLFLOW_APP_AUTH": "trusted-header", "MLFLOW_APP_AUTH_ADMINS": "a; b"})


@pytest.mark.parametrize(
    ("uri", "served"),
    [
        ("mysql://u:p@db/m", "mysql+pymysql://u:p@db/m"),
        ("MySQL://u@db/m?charset=utf8mb4", "mysql+pymysql://u@db/m?charset=utf8mb4"),
        ("mysql+pymysql://u@db/m", "mysql+pymysql://u@db/m"),
        ("mysql+mysqldb://u@db/m", "mysql+mysqldb://u@db/m"),  # an explicit driver is kept
    ],
)
def test_plain_mysql_uris_use_the_shipped_driver(uri: str, served: str) -> None:
    assert load_settings({"MLFLOW_BACKEND_STORE_URI": uri}).backend_store_uri == served


def test_the_recipes_artifact_root_name_is_read() -> None:
    settings = load_settings(
        {"MLFLOW_ARTIFACT_ROOT": "gs://bucket/mlflow", "MLFLOW_SERVE_ARTIFACTS": "false"}
    )
    assert settings.default_artifact_root == "gs://bucket/mlflow"
    both = {"MLFLOW_ARTIFACT_ROOT": "gs://a/x", "MLFLOW_DEFAULT_ARTIFACT_ROOT": "gs://b/y"}
    assert load_settings(both).default_artifact_root == "gs://b/y"


def test_an_unknown_mlflow_variable_gets_a_warning_with_a_guess() -> None:
    environ = {"MLFLOW_WORKER": "3", "MLFLOW_APP_THREADS": "4", "MLFLOW_TRACKING_TOKEN": "x"}
    warnings = unrecognised_settings(environ, known_elsewhere={"MLFLOW_TRACKING_TOKEN"})
    assert warnings == [
        "MLFLOW_WORKER is not a setting of mlflow-app or MLflow and is ignored; "
        "did you mean MLFLOW_WORKERS?"
    ]


@pytest.mark.parametrize(
    ("environ", "folder"),
    [
        ({"DATABRICKS_APP_NAME": "mlflow"}, "/Shared/mlflow"),
        ({"MLFLOW_TRACKING_URI": "databricks"}, "/Shared/mlflow-app"),
        (
            {"DATABRICKS_APP_NAME": "m", "MLFLOW_APP_EXPERIMENT_FOLDER": "/Users/a@b.com/ml/"},
            "/Users/a@b.com/ml",
        ),
        ({}, None),
    ],
)
def test_the_experiment_folder_defaults_to_the_apps_shared_folder(environ, folder) -> None:
    assert load_settings(environ).experiment_folder == folder


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"DATABRICKS_APP_NAME": "m", "MLFLOW_APP_EXPERIMENT_FOLDER": "team"}, "not an absolute"),
        (
            {"DATABRICKS_APP_NAME": "m", "MLFLOW_APP_EXPERIMENT_FOLDER": "/a/../b"},
            "not an absolute",
        ),
        ({"MLFLOW_APP_EXPERIMENT_FOLDER": "/Shared/x"}, "only to a Databricks tracking store"),
    ],
)
def test_a_bad_experiment_folder_is_one_line(environ, problem) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ)
    assert str(refused.value).startswith("MLFLOW_APP_EXPERIMENT_FOLDER: ")
    assert problem in str(refused.value)
