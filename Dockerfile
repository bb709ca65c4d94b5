# mlflow-app for Cloud Run / Kubernetes, at the root where `gcloud run deploy --source .` and
# cloudbuild.yaml find it. Build:
#   docker build -t mlflow-app .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PORT=8080

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY wsgi.py gunicorn.conf.py ./
COPY mlflow_app ./mlflow_app

# No root: Cloud Run sets PORT (8080), which needs no privilege.
RUN useradd --uid 10001 --no-create-home mlflow && mkdir -p /tmp/mlflow && chown mlflow /tmp/mlflow
USER mlflow
ENV MLFLOW_APP_DATA_DIR=/tmp/mlflow

# The same command as app.yaml and the README.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
