"""Where ``make ui`` opens MLflow's UI: the model's experiment, in the
model-training view (MLflow 3 opens on its GenAI home page otherwise).

``python -m bankplatform.review.tracking_ui STORE_URI PORT`` prints the address.
"""

from __future__ import annotations

import sys

from bankplatform.manifest import load_manifest
from bankplatform.project import find_project_root


def experiment_address(store_uri: str, port: int) -> str:
    """The UI address of the workspace model's experiment (the UI's home when
    the experiment does not exist yet)."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    name = load_manifest(find_project_root()).model_name
    experiment = MlflowClient(tracking_uri=store_uri).get_experiment_by_name(name)
    base = f"http://127.0.0.1:{port}/"
    if experiment is None:
        return base
    return f"{base}#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"


if __name__ == "__main__":
    print(experiment_address(sys.argv[1], int(sys.argv[2])))
