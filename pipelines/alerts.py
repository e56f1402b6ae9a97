"""Run-failure alerts: every failed run is logged by the sensor and, with SMTP set, e-mailed.

Failed runs already show in the Dagster UI; this sensor turns them into alerts. It sends only
the run id, the job, the failed steps and the first line of the error: never data.
"""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from pipelines.notifications import failure_alert, send_email, smtp_settings_from_env

ERROR_LIMIT = 500


def _first_line(message: str | None) -> str:
    """The first non-empty line, capped: further lines (a DETAIL, a traceback) may quote data."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    text = lines[0] if lines else "(no message)"
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


def _root_cause(error):
    """Dagster wraps the op's exception in its own; the innermost cause says what went wrong."""
    while error.cause is not None:
        error = error.cause
    return error


def _failure_details(context: RunFailureSensorContext) -> tuple[list[str], str]:
    """The failed step keys and the error that explains the failure best."""
    steps: list[str] = []
    error = None
    for event in context.get_step_failure_events():
        if event.step_key and event.step_key not in steps:
            steps.append(event.step_key)
        failure = event.step_failure_data
        if error is None and failure is not None and failure.error is not None:
            error = _root_cause(failure.error).message
    if error is None:
        run_error = getattr(context.failure_event.event_specific_data, "error", None)
        error = (
            _root_cause(run_error).message
            if run_error is not None
            else context.failure_event.message
        )
    return steps, _first_line(error)


@run_failure_sensor(
    name="run_failure_alert",
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs every failed run; e-mails CONSENT_DIGEST_TO when CONSENT_SMTP_HOST is set.",
)
def run_failure_alert(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    steps, error = _failure_details(context)
    context.log.error(
        f"run {run.run_id} of job {run.job_name} failed"
        f" (steps: {', '.join(steps) or 'none recorded'}): {error}"
    )
    settings = smtp_settings_from_env()
    if settings is None:
        return
    send_email(settings, failure_alert(run.job_name, run.run_id, error, steps))
    context.log.info(
        f"failure alert for run {run.run_id} sent to {len(settings.recipients)} recipient(s)"
    )
