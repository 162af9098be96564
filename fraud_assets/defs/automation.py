"""Schedules that span domains: daily ingestion + features + monitoring, daily retraining.

Each tick targets the day before its scheduled time (the last complete day) and carries a run
key per day, so a tick that fires again (a restarted daemon, a cron tightened for a test)
never runs the same day twice. Crons come from settings; both start stopped, so a fresh
clone never launches work on its own (`dagster schedule start ...` or the UI turns them on).
"""

from datetime import timedelta

import dagster as dg

from fraud_assets import settings
from fraud_assets.defs import jobs


def previous_day(context: dg.ScheduleEvaluationContext) -> str:
    return (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()


@dg.schedule(
    job=jobs.daily_monitoring_job,
    cron_schedule=settings.DAILY_PIPELINE_CRON,
    name="daily_ingest_features_monitoring",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Ingest yesterday, gate it, compute its features and its drift.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = previous_day(context)
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)


@dg.schedule(
    job=jobs.training_job,
    cron_schedule=settings.RETRAINING_CRON,
    name="daily_retraining",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrain as of yesterday (its labels included), evaluate, gate, package.",
)
def daily_retraining_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = previous_day(context)
    return dg.RunRequest(run_key=f"retrain-{day}", partition_key=day, tags={"trigger": "schedule"})
