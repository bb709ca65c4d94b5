"""gunicorn configuration: bind, workers, timeouts and the lifecycle hooks.

Run: `gunicorn -c gunicorn.conf.py wsgi:app`. Settings come from mlflow_app.config; the
self-check runs once in the master before any worker forks.
"""

import logging

from mlflow_app.access_log import ACCESS_LOG_FORMAT
from mlflow_app.buffered_worker import BufferedThreadWorker, exit_without_teardown
from mlflow_app.config import ConfigError, load_settings
from mlflow_app.selfcheck import ensure_port_bindable, startup_selfcheck
from mlflow_app.store_environment import apply_metrics_environment

try:
    _settings = load_settings()
except ConfigError as error:
    raise SystemExit(f"mlflow-app: {error}") from None
# Before the app is preloaded: prometheus_client chooses multiprocess mode at import.
apply_metrics_environment(_settings)

wsgi_app = "wsgi:app"
bind = [_settings.bind]
workers = _settings.workers
# gthread, except that a request is read whole before a thread serves it: slow or idle
# clients hold a socket, never a thread (see mlflow_app/buffered_worker.py).
worker_class = "mlflow_app.buffered_worker.BufferedThreadWorker"
BufferedThreadWorker.client_timeout = _settings.client_timeout
threads = _settings.threads
# The worker bounds the whole request head (64 KiB); MLflow's own maximum of 100 run ids in
# get-history-bulk-interval needs ~4.2 KB of request line, over gunicorn's default of 4094.
limit_request_line = 0
limit_request_field_size = 16384
# front_door.ForwardedHeaders alone decides whose X-Forwarded-* count (MLFLOW_APP_TRUSTED_PROXIES);
# gunicorn would otherwise apply X-Forwarded-Proto from 127.0.0.1 on its own.
forwarded_allow_ips = ""
# Import MLflow once in the master: workers share its memory and start in milliseconds, and
# the self-check (with any schema migration it triggers) runs once, not once per worker.
preload_app = True
timeout = 120
# Databricks Apps sends SIGKILL 15 s after SIGTERM; finish in-flight requests before that.
graceful_timeout = _settings.graceful_timeout
keepalive = 5
loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"
access_log_format = ACCESS_LOG_FORMAT
logger_class = "mlflow_app.access_log.AccessLogger"
proc_name = "mlflow-app"
# gunicorn 26 opens a control socket at a fixed path; several replicas on one host would clash.
control_socket_disable = True


def on_starting(server) -> None:
    ensure_port_bindable(_settings)
    startup_selfcheck(_settings, logging.getLogger("gunicorn.error"))


def child_exit(server, worker) -> None:
    from mlflow_app.metrics import worker_exited

    worker_exited(worker.pid)


def post_fork(server, worker) -> None:
    from mlflow_app.access import reconnect_after_fork

    reconnect_after_fork()


def worker_exit(server, worker) -> None:
    exit_without_teardown()
