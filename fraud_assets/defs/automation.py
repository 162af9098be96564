"""Schedules that span domains: daily ingestion + features + monitoring, daily retraining."""

import dagster as dg

from fraud_assets.defs import jobs

daily_pipeline_schedule = dg.build_schedule_from_partitioned_job(
    jobs.daily_monitoring_job,
    hour_of_day=1,
    name="daily_ingest_features_monitoring",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
daily_retraining_schedule = dg.build_schedule_from_partitioned_job(
    jobs.training_job,
    hour_of_day=3,
    name="daily_retraining",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
