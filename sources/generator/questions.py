"""The expected-status sample: questions about real people with unambiguous answers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from . import truth
from .histories import Person

ASKED_PURPOSES = ("marketing", "processing")
HEADER = (
    "person_id",
    "source",
    "source_record_id",
    "purpose",
    "channel",
    "partner_code",
    "at",
    "allowed",
    "status",
)


def ask(
    p: Person, cat: truth.Catalog, rnd: random.Random, n: int, t0: datetime, t_end: datetime
) -> list[tuple[str, ...]]:
    """Up to n questions about one person, each with an answer that no semantic choice changes."""
    if not p.records or p.tainted or p.excluded:
        return []
    ev = truth.derive(cat, p.facts)
    pairs = sorted(
        {(g.purpose, g.channel) for g in ev.grants}
        | {pc for r in ev.revokes for pc in r.pairs if pc[0] in ASKED_PURPOSES}
    )
    revokes = sorted(
        (r.at, tuple(sorted(pc for pc in r.pairs if pc[0] in ASKED_PURPOSES))) for r in ev.revokes
    )
    revokes = [r for r in revokes if r[1]]
    restrictions = sorted((x.start, x.end, x.channel) for x in ev.restrictions)
    moments = sorted(g.start for g in ev.grants)
    ends = sorted(g.end for g in ev.grants if g.end is not None)
    span = (t_end - t0).total_seconds()
    out: list[tuple[str, ...]] = []
    for _ in range(n * 3):
        if len(out) >= n:
            break
        u = rnd.random()
        if restrictions and u < 0.3:
            start, end, channel = rnd.choice(restrictions)
            purpose = "marketing"
            hi = (end or t_end) - start
            t = start + timedelta(seconds=rnd.random() * hi.total_seconds())
        elif revokes and u < 0.55:
            at, scope = rnd.choice(revokes)
            purpose, channel = rnd.choice(scope)
            t = at + timedelta(seconds=rnd.randint(3600, 400 * 86400))
        else:
            purpose = "marketing" if rnd.random() < 0.65 else "processing"
            mine = [c for pu, c in pairs if pu == purpose]
            channel = (
                rnd.choice(mine) if mine and rnd.random() < 0.85 else rnd.choice(truth.CHANNELS)
            )
            u = rnd.random()
            if moments and u < 0.4:
                t = rnd.choice(moments) + timedelta(seconds=rnd.randint(3600, 60 * 86400))
            elif ends and u < 0.6:
                t = rnd.choice(ends) + timedelta(seconds=rnd.randint(-30 * 86400, 90 * 86400))
            elif u < 0.88:
                t = t0 + timedelta(seconds=rnd.random() * span)
            else:
                t = t_end + timedelta(seconds=rnd.randint(86400, 365 * 86400))
        t = t.replace(second=0, microsecond=0)
        st = truth.unambiguous(ev, purpose, channel, t)
        if st is None:
            continue
        source, rid = rnd.choice(p.records)
        out.append(
            (
                p.person_id,
                source,
                rid,
                purpose,
                channel,
                "",
                t.isoformat(timespec="seconds") + "+03:00",
                "true" if st == truth.GRANTED else "false",
                st,
            )
        )
    return out
