"""WSGI entry point: settings -> MLflow store environment -> MLflow's Flask app -> our chain.

gunicorn loads `wsgi:app` (see gunicorn.conf.py). The store environment must be in place
before `mlflow.server` is imported, because MLflow reads it at import time.
"""

from mlflow_app.config import ConfigError, load_settings
from mlflow_app.store_environment import apply_store_environment

try:
    settings = load_settings()
except ConfigError as error:
    raise SystemExit(f"mlflow-app: {error}") from None
apply_store_environment(settings)

from mlflow.server import app as mlflow_flask_app  # noqa: E402  (needs the environment above)

from mlflow_app.app import build_app  # noqa: E402

app = build_app(settings, mlflow_flask_app)
