"""Database URLs as the store parses them and as messages show them.

`parse_url` is the one place a URL string becomes a SQLAlchemy URL: a malformed one raises
`DatabaseUrlError` naming the URL (secrets hidden) and what is wrong with it. `display_url` is the one
way a URL reaches a message or a log: it hides the password of `user:password@` and the value of every
query parameter that carries a secret. libpq takes its password, the TLS key's password, an OAuth
client secret and SCRAM keys as query parameters (`?password=...`, `?sslpassword=...`,
`?oauth_client_secret=...`, `?scram_client_key=...`, `?scram_server_key=...`); any other parameter whose
name speaks of a password, secret or token is hidden as well, and so is a `password=...` pair written
into the database name (libpq reads a database name holding "=" as a connection string).
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from megalodoc.storage.errors import DatabaseUrlError

HIDDEN = "***"
# libpq's parameters that it marks as passwords ("*") or as secret debug values, by name.
SECRET_PARAMETERS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)
_SECRET_WORDS = ("password", "passwd", "secret", "token")
# key=value pairs of a secret key anywhere in a text ("=" may be written %3D); the value runs to the next
# separator of a URL or connection string, or is quoted.
_SECRET_PAIR = re.compile(
    r"(?i)((?:[a-z_]*(?:password|passwd|secret|token)[a-z_]*|scram_client_key|scram_server_key)\s*(?:=|%3D)\s*)"
    r"('(?:[^'\\]|\\.)*'|[^&\s'#]*)"
)
# scheme://user:password@ with the password running to the last "@": a password written unescaped may hold
# "/", "?", "#" or "@" (hiding more than the password is the safe side)
_USERINFO = re.compile(r"^([^:/?#]*://[^:/?#@]*):.*@", re.DOTALL)


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter named `name` carries a secret that messages must not show."""
    lowered = name.lower()
    return lowered in SECRET_PARAMETERS or any(word in lowered for word in _SECRET_WORDS)


def parse_url(url: str) -> URL:
    """`url` parsed; `DatabaseUrlError` naming the URL (secrets hidden) and what is wrong when it is not
    a URL SQLAlchemy can read (no scheme, a port that is not a number, ...)."""
    try:
        return make_url(url)
    except ArgumentError as exc:
        problem = "it is not of the form dialect+driver://user@host:port/database"
        raise DatabaseUrlError(f"not a usable database URL {display_url(url)}: {problem}") from exc
    except ValueError as exc:  # the port is given but is not a number
        problem = "its port is not a number" if "int()" in str(exc) else "it cannot be parsed"
        raise DatabaseUrlError(f"not a usable database URL {display_url(url)}: {problem}") from exc


def display_url(url: str) -> str:
    """The URL with every secret it carries hidden (see the module's docstring), for messages and logs.
    A URL that cannot be parsed, or whose password holds an unescaped "@", is shown with everything from
    its password to the last "@" hidden, and its secret pairs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is None or (url.count("@") > 1 and parsed.password is not None):  # an unescaped "@" split it early
        return _hide_pairs(_USERINFO.sub(rf"\1:{HIDDEN}@", url))
    query = {key: (HIDDEN if is_secret_parameter(key) else value) for key, value in parsed.query.items()}
    database = None if parsed.database is None else _hide_pairs(parsed.database)
    hidden = parsed.set(query=query, database=database)
    return _hide_pairs(hidden.render_as_string(hide_password=True))


def _hide_pairs(text: str) -> str:
    return _SECRET_PAIR.sub(rf"\g<1>{HIDDEN}", text)
