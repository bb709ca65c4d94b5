"""mlflow-app: MLflow's tracking server packaged as a production service.

Request path: gunicorn -> `app.build_app` chain (request id, health) -> MLflow's Flask app.
"""

__version__ = "0.1.0"
