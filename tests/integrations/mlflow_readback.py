"""Run by the MLflow server's own python: read one mirrored run back with ``MlflowClient``, print JSON.

    python mlflow_readback.py URI PROJECT EPOCHAL_RUN_ID [1|0: artifacts too]
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient


def main(uri: str, project: str, epochal_id: str, artifacts: bool) -> dict:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(project)
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`epochal.run_id` = '{epochal_id}'")
    if not runs:
        return {}
    run = runs[0]
    metrics = {}
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        metrics[key] = sorted([m.step, m.timestamp, m.value] for m in history)
    files = {}
    if artifacts:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(client.download_artifacts(run.info.run_id, "", folder))
            for path in sorted(local.rglob("*")):
                if path.is_file():
                    files[path.relative_to(local).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "info": {"run_id": run.info.run_id, "status": run.info.status, "run_name": run.info.run_name,
                 "start_time": run.info.start_time, "end_time": run.info.end_time,
                 "experiment_id": run.info.experiment_id, "artifact_uri": run.info.artifact_uri},
        "runs_found": len(runs),
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": metrics,
        "artifacts": files,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"), allow_nan=True))
