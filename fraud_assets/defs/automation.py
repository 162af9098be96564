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
from fraud_assets.defs.monitoring.live import LABEL_HORIZON_DAYS


def previous_day(context: dg.ScheduleEvaluationContext) -> str:
    return (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()


def _once_per_day(
    context: dg.ScheduleEvaluationContext,
    name: str,
    prefix: str,
    tags: dict | None = None,
    day: str | None = None,
) -> dg.RunRequest | dg.SkipReason:
    day = day or previous_day(context)
    filters = {"dagster/schedule_name": name, "dagster/partition": day, **(tags or {})}
    if context.instance is not None:
        launched = context.instance.get_runs(dg.RunsFilter(tags=filters), limit=1)
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


@dg.schedule(
    job=jobs.store_refresh_job,
    cron_schedule=settings.DAILY_PIPELINE_CRON,
    name="daily_store_refresh",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Publish yesterday's terminal snapshots to the running services (runs after "
    "yesterday's ingestion: the run queue orders them by their partitions' data).",
)
def store_refresh_schedule(context: dg.ScheduleEvaluationContext):
    return _once_per_day(context, "daily_store_refresh", "store")


# Live performance is measured again when a day's labels have matured: most frauds are
# confirmed within a week, all within the label horizon.
LABEL_MATURITIES_DAYS = (7, LABEL_HORIZON_DAYS)


@dg.schedule(
    job=jobs.live_monitoring_job,
    cron_schedule=settings.DAILY_PIPELINE_CRON,
    name="live_performance_refresh",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Recompute live performance and business metrics of the days whose labels "
    f"are {' and '.join(map(str, LABEL_MATURITIES_DAYS))} days old.",
)
def live_refresh_schedule(context: dg.ScheduleEvaluationContext):
    today = context.scheduled_execution_time.date()
    for age in LABEL_MATURITIES_DAYS:
        day = (today - timedelta(days=age)).isoformat()
        request = _once_per_day(
            context, "live_performance_refresh", f"live-{age}d", {"label_age": str(age)}, day
        )
        if isinstance(request, dg.RunRequest):
            yield request
