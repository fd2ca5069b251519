"""Database URLs in messages: every secret a URL can carry is hidden wherever the store shows its URL, and
a malformed URL fails at opening with the store's own error naming the URL (secrets hidden) and the fault."""

from __future__ import annotations

import pytest
from storage_testkit import postgres_base_url

from megalodoc.storage import DatabaseUrlError, StorageError, database_status, display_url, open_store, upgrade_database

SECRETS = ("Pw0rd", "InUserinfo", "Pw0rdInUserinfo", "S3cretQuery", "KeyPassS3cret", "OauthS3cret", "ScramS3cret",
           "DbnameS3cret")


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://reader@db.example/lib?password=S3cretQuery",
    "postgresql+psycopg://reader:Pw0rdInUserinfo@db.example/lib?sslmode=require&sslpassword=KeyPassS3cret",
    "postgresql+psycopg://reader@db.example/lib?oauth_client_secret=OauthS3cret&scram_client_key=ScramS3cret",
    "postgresql+psycopg://reader@db.example/lib?password=S3cretQuery&password=S3cretQuery",
    "postgresql+psycopg://reader@db.example/host%3Dx%20password%3DDbnameS3cret",
    "postgresql+psycopg://reader:Pw0rdInUserinfo@db.example:notaport/lib?password=S3cretQuery",
    "nonsense-without-scheme password=S3cretQuery",
    # passwords with the characters that end a URL's parts, written unescaped: parsed or not
    "postgresql+psycopg://reader:Pw0rd/InUserinfo@db.example:notaport/lib",
    "postgresql+psycopg://reader:Pw0rd#InUserinfo@db.example:notaport/lib",
    "postgresql+psycopg://reader:Pw0rd?InUserinfo@db.example:notaport/lib",
    "postgresql+psycopg://reader:Pw0rd@InUserinfo@db.example/lib",
    "postgresql+psycopg://reader:Pw0rd@InUserinfo@db.example:notaport/lib",
])
def test_display_url_hides_every_secret(url: str) -> None:
    shown = display_url(url)
    assert not any(secret in shown for secret in SECRETS), shown
    assert "db.example" in shown or "nonsense" in shown  # still says which database


def test_display_url_keeps_what_is_not_secret() -> None:
    url = "postgresql+psycopg://reader@db.example:5433/lib?application_name=megalodoc&sslmode=require"
    assert display_url(url) == url


@pytest.mark.parametrize(("url", "fault"), [
    ("postgresql+psycopg://reader:Pw0rdInUserinfo@db.example:notaport/lib?password=S3cretQuery",
     "its port is not a number"),
    ("sqlite://host:notaport/lib.db", "its port is not a number"),
    ("postgresql+psycopg://reader@[::1:5/lib?sslpassword=KeyPassS3cret", "its port is not a number"),
    ("not a url://?password=S3cretQuery", "not of the form dialect+driver://user@host:port/database"),
])
def test_a_malformed_url_fails_at_opening_naming_it(url: str, fault: str) -> None:
    for opening in (open_store, database_status, upgrade_database):
        with pytest.raises(DatabaseUrlError) as caught:
            opening(url)
        message = str(caught.value)
        assert message.startswith("not a usable database URL ") and message.endswith(fault), message
        assert display_url(url) in message and not any(secret in message for secret in SECRETS), message


@pytest.mark.postgres
def test_a_password_in_the_query_is_never_shown_by_the_store() -> None:
    base = postgres_base_url()  # the test server trusts loopback: the password is taken and not needed
    with open_store(f"{base}?password=S3cretQuery&connect_timeout=5") as store:
        assert "S3cretQuery" not in store.url and "S3cretQuery" not in repr(store)
        assert store.url.endswith("?connect_timeout=5&password=***")
    missing = base.rsplit("/", 1)[0] + "/no_such_database?password=S3cretQuery"
    for opening in (open_store, database_status, upgrade_database):
        with pytest.raises(StorageError) as caught:
            opening(missing)
        assert "no_such_database" in str(caught.value) and "S3cretQuery" not in str(caught.value)
