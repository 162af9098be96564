"""Schedules that span domains: daily ingestion + features + monitoring, daily retraining.

Each tick targets the day before its scheduled time (the last complete day) and skips a day
this schedule already launched (Dagster's run keys only dedupe within one schedule tick), so
a tick that fires again (a cron tightened for a test, a manual tick) never runs a day twice. Crons come from settings; both start stopped, so a fresh
clone never launches work on its own (`dagster schedule start ...` or the UI turns them on).
"""

from datetime import timedelta

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs import jobs


def previous_day(context: dg.ScheduleEvaluationContext) -> str:
    return (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()


def _once_per_day(
    context: dg.ScheduleEvaluationContext, name: str, prefix: str, tags: dict | None = None
) -> dg.RunRequest | dg.SkipReason:
    day = previous_day(context)
    if context.instance is not None:
        launched = context.instance.get_runs(
            dg.RunsFilter(tags={"dagster/schedule_name": name, "dagster/partition": day}), limit=1
        )
        if launched:
            return dg.SkipReason(f"{day} already launched (run {launched[0].run_id})")
    return dg.RunRequest(run_key=f"{prefix}-{day}", partition_key=day, tags=tags or {})


@dg.schedule(
    job=jobs.daily_monitoring_job,
    cron_schedule=settings.DAILY_PIPELINE_CRON,
    name="daily_ingest_features_monitoring",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Ingest yesterday, gate it, compute its features and its drift.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext):
    return _once_per_day(context, "daily_ingest_features_monitoring", "daily")


@dg.schedule(
    job=jobs.training_job,
    cron_schedule=settings.RETRAINING_CRON,
    name="daily_retraining",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrain as of yesterday (its labels included), evaluate, gate, package.",
)
def daily_retraining_schedule(context: dg.ScheduleEvaluationContext):
    return _once_per_day(context, "daily_retraining", "retrain", {"trigger": "schedule"})
