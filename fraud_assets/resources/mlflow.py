"""MLflow through dagster-mlflow, complemented where it falls short.

dagster-mlflow starts (or resumes) one MLflow run per Dagster run, tagged with the Dagster
run id. It creates the experiment with MLflow's default artifact location (./mlruns of the
current folder), so we create the experiment first with the configured artifact root.
"""

from typing import Any

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from fraud_assets import settings
from fraud_assets.lib.registry import configure_mlflow


@dg.resource(config_schema={**CONFIG_SCHEMA, "artifact_root": dg.Field(str, is_required=False)})
def mlflow_tracking(context: Any) -> MlFlow:
    config = context.resource_config
    configure_mlflow(
        config.get("mlflow_tracking_uri") or settings.MLFLOW_TRACKING_URI,
        config["experiment_name"],
        config.get("artifact_root") or settings.MLFLOW_ARTIFACT_ROOT,
    )
    return MlFlow(context)


def mlflow_resource(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    artifact_root: str | None = None,
) -> dg.ResourceDefinition:
    return mlflow_tracking.configured(
        {
            "experiment_name": experiment or settings.MLFLOW_EXPERIMENT,
            "mlflow_tracking_uri": tracking_uri or settings.MLFLOW_TRACKING_URI,
            "artifact_root": artifact_root or settings.MLFLOW_ARTIFACT_ROOT,
        }
    )
