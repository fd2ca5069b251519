"""`db_now()`: the database server's clock in epoch seconds, so leases agree across machines."""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Double


class db_now(FunctionElement):  # noqa: N801 (reads like a SQL function)
    """Seconds since the Unix epoch by the database's clock (float, sub-second precision)."""

    type = Double()
    inherit_cache = True


@compiles(db_now, "sqlite")
def _sqlite(_element, _compiler, **_kw) -> str:  # noqa: ANN001
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "postgresql")
def _postgresql(_element, _compiler, **_kw) -> str:  # noqa: ANN001
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_now, "mysql")
@compiles(db_now, "mariadb")
def _mysql(_element, _compiler, **_kw) -> str:  # noqa: ANN001
    return "UNIX_TIMESTAMP(NOW(6))"
