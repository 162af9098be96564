"""Where files live, as resources: the lake (Parquet partitions, build and smoke-test folders),
the reports, and the scoring service's logs. Assets ask these, never ``settings`` directly,
so a test or a production deployment binds other locations without touching code.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from upath import UPath

from fraud_assets import settings


class LakeStorage(dg.ConfigurableResource):
    """The data lake's root (any UPath URL: a folder, s3://...) and the reports' root.

    The lake IO manager (resource ``lake``) writes asset partitions under the same root, as
    ``<root>/<asset>/<partition>.parquet``; this resource gives assets the rest of it.
    """

    data_root: str
    reports_root: str

    @classmethod
    def from_settings(cls) -> LakeStorage:
        return cls(data_root=settings.DATA_ROOT, reports_root=settings.REPORTS_ROOT)

    def lake_path(self, *parts: str) -> UPath:
        return UPath(self.data_root).joinpath(*parts)

    def work_dir(self, *parts: str) -> Path:
        """A local working folder under the lake (Bento build contexts, smoke-test state):
        tools such as ``bentoml build`` need a real directory."""
        return Path(self.data_root).joinpath(*parts)

    def report_path(self, *parts: str) -> Path:
        return Path(self.reports_root).joinpath(*parts)


class ServingLogs(dg.ConfigurableResource):
    """The scoring service's state root: prediction, error and feedback logs (layout in
    ``lib/contracts.py``). The service is started with the same location
    (``FRAUD_SERVING_STATE``), so monitoring reads what it wrote."""

    state_root: str

    @classmethod
    def from_settings(cls) -> ServingLogs:
        return cls(state_root=settings.SERVING_STATE)
