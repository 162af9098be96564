"""MLflow, configured once: the model registry as a resource, and dagster-mlflow's run tracking
bound to the same store.

- ``ModelRegistry`` (resource key ``model_registry``): every asset that reads or moves a
  registry version (evaluation, promotion, rollback, drift, packaging) goes through it. It
  points MLflow at the store and makes sure the experiment keeps its artifacts where
  configured, once per run (``setup_for_execution``).
- ``mlflow_tracking`` (resource key ``mlflow``, dagster-mlflow): one MLflow run per Dagster
  run for training, tagged with the Dagster run id. dagster-mlflow alone creates the
  experiment with artifacts under ./mlruns of the current folder, so this wrapper lets the
  registry create it first.

Production swaps the URIs (Postgres backend store, s3:// artifacts), not the code.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from fraud_assets import settings
from fraud_assets.lib import registry


class ModelRegistry(dg.ConfigurableResource):
    """The MLflow tracking store, experiment and registered model the pipeline works with."""

    tracking_uri: str
    experiment: str
    artifact_root: str
    model_name: str

    @classmethod
    def from_settings(cls, model_name: str | None = None) -> ModelRegistry:
        return cls(
            tracking_uri=settings.MLFLOW_TRACKING_URI,
            experiment=settings.MLFLOW_EXPERIMENT,
            artifact_root=settings.MLFLOW_ARTIFACT_ROOT,
            model_name=model_name or settings.MODEL_NAME,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.configure()

    def configure(self) -> None:
        """Point MLflow at the store and create the experiment (Dagster does this per run;
        the CLI calls it itself)."""
        registry.configure_mlflow(self.tracking_uri, self.experiment, self.artifact_root)

    def client(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def version(self, alias: str) -> Any | None:
        """The registry version behind an alias (None when the alias is not set)."""
        return registry.version_by_alias(self.client(), self.model_name, alias)

    def model_uri(self, version: str) -> str:
        return f"models:/{self.model_name}/{version}"

    def load_model(self, version: str) -> Any:
        import mlflow

        return mlflow.catboost.load_model(self.model_uri(version))

    def promote(self, version: str) -> registry.AliasChange:
        return registry.promote(self.client(), self.model_name, version)

    def rollback(self) -> registry.AliasChange:
        return registry.rollback(self.client(), self.model_name)


@dg.resource(config_schema={**CONFIG_SCHEMA, "artifact_root": dg.Field(str, is_required=False)})
def mlflow_tracking(context: Any) -> MlFlow:
    config = context.resource_config
    registry.configure_mlflow(
        config["mlflow_tracking_uri"], config["experiment_name"], config["artifact_root"]
    )
    return MlFlow(context)


def mlflow_resource(model_registry: ModelRegistry) -> dg.ResourceDefinition:
    """dagster-mlflow's resource on the registry's store and experiment."""
    return mlflow_tracking.configured(
        {
            "experiment_name": model_registry.experiment,
            "mlflow_tracking_uri": model_registry.tracking_uri,
            "artifact_root": model_registry.artifact_root,
        }
    )
