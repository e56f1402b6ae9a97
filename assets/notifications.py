"""The morning e-mail digest: late and near-deadline revocations, expiring consents.

Built on every transform run after the reports; e-mailed at most once a (Moscow) day and only
when CONSENT_SMTP_HOST is set. The counts are always in the materialisation's metadata.
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from pipelines.notifications import (
    build_digest,
    digest_subject,
    near_days_from_env,
    render_digest,
    send_email,
    smtp_settings_from_env,
)
from pipelines.resources import ConsentCenterResource

DIGEST_KEY = AssetKey(["reports", "email_digest"])


@asset(
    key=DIGEST_KEY,
    deps=[
        # the published reports (the publication is the change feed asset)
        AssetKey(["consent", "consent_change"]),
        AssetKey(["consent", "report_expiring"]),
        AssetKey(["consent", "report_revocation_deadlines"]),
    ],
    group_name="publish",
    kinds={"email"},
    description=(
        "E-mail digest of late and near-deadline revocations and expiring consents "
        "(sent once a day when CONSENT_SMTP_HOST is set)."
    ),
)
def email_digest(
    context: AssetExecutionContext, consent_center: ConsentCenterResource
) -> MaterializeResult:
    settings = smtp_settings_from_env()
    near_days = settings.near_days if settings is not None else near_days_from_env()
    with consent_center.connect() as conn:
        digest = build_digest(conn, near_days, as_of=consent_center.as_of())
    day = digest.day.isoformat()
    last_sent = _last_sent_day(context)
    metadata = {
        "day": day,
        "as_of": digest.as_of.isoformat(),
        **digest.counts(),
        "subject": digest_subject(digest),
    }
    if settings is None:
        context.log.info(f"SMTP not configured (CONSENT_SMTP_HOST unset), not sent: {metadata}")
        return MaterializeResult(metadata={"sent": False, "last_sent_day": last_sent, **metadata})
    if last_sent == day:
        # the sensor and `consent-center run` start transforms during the day: one digest a day
        context.log.info(f"today's digest was already sent, not sent again: {metadata}")
        return MaterializeResult(metadata={"sent": False, "last_sent_day": last_sent, **metadata})
    send_email(settings, render_digest(digest))
    context.log.info(f"digest sent to {len(settings.recipients)} recipient(s): {metadata}")
    return MaterializeResult(
        metadata={
            "sent": True,
            "last_sent_day": day,
            "recipients": len(settings.recipients),
            **metadata,
        }
    )


def _last_sent_day(context: AssetExecutionContext) -> str:
    """The day the digest was last e-mailed, carried from one materialisation to the next."""
    entry = context.instance.get_latest_materialization_event(DIGEST_KEY)
    materialization = entry.asset_materialization if entry is not None else None
    value = materialization.metadata.get("last_sent_day") if materialization else None
    return str(value.value) if value is not None and value.value else ""
