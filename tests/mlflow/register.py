"""Registers two models in a running MLflow tracking server for tests/mlflow.rs.

Usage: python register.py TRACKING_URI BENIGN_DIR EVIL_DIR
Logs each folder as the artifacts of a run (artifact path "model"), registers
a model version from that artifact path (MLflow 3: create_model_version with
the run's artifact URI as source), sets the alias "champion", and prints one
JSON line: {"benign": {"run_id", "version"}, "evil": {...}}.
"""
import json
import sys

import mlflow
from mlflow import MlflowClient

uri, benign, evil = sys.argv[1:4]
mlflow.set_tracking_uri(uri)
client = MlflowClient()
out = {}
for name, folder in (("benign", benign), ("evil", evil)):
    with mlflow.start_run() as run:
        mlflow.log_artifacts(folder, artifact_path="model")
        run_id, art = run.info.run_id, run.info.artifact_uri
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"{art}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", mv.version)
    out[name] = {"run_id": run_id, "version": str(mv.version)}
print(json.dumps(out))
