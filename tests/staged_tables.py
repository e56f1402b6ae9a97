"""What a staged table holds against what its base view parses from raw now (typed staging)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from assets.depersonalisation import staged_tables


def staged_versus_base(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """Per staged table: (rows it holds that its base view does not parse, and the reverse)."""
    found = {}
    for base, staged in sorted(staged_tables().values()):
        columns = [
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns where table_schema = "
                "'staging' and table_name = %s "
                "order by ordinal_position",
                (base,),
            )
        ]
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))

        def only_in(first: str, second: str, listed: sql.Composable = listed) -> int:
            return conn.execute(
                sql.SQL(
                    "select count(*) from (select {c} from staging.{a} "
                    "except all select {c} from staging.{b}) d"
                ).format(c=listed, a=sql.Identifier(first), b=sql.Identifier(second))
            ).fetchone()[0]

        found[staged] = (only_in(staged, base), only_in(base, staged))
    return found
