# Start a throwaway PostgreSQL server on loopback for the storage tests.
#
# Usage (from CI or a shell):  source .ci/postgres.sh
#
# Installs the Debian `postgresql` package when no server binaries are present, creates a cluster in a
# temporary directory, starts it on 127.0.0.1 at a free port, creates the database `megalodoc_test`,
# and exports
#   MEGALODOC_TEST_POSTGRES_URL   postgresql+psycopg://postgres@127.0.0.1:PORT/megalodoc_test
#   MEGALODOC_TEST_POSTGRES_DIR   the temporary directory (data, socket, log)
# Sourcing it again while that server still answers does nothing. `megalodoc_postgres_stop` stops it.
# The server runs with fsync off: it holds test data only, and the tests kill clients, not the server.

megalodoc_postgres_start() {
    local bindir pgdir port user
    local -a as_user=()
    if [ -n "${MEGALODOC_TEST_POSTGRES_DIR:-}" ] && [ -n "${MEGALODOC_TEST_POSTGRES_URL:-}" ] \
        && [ -f "$MEGALODOC_TEST_POSTGRES_DIR/data/postmaster.pid" ]; then
        bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_isready 2>/dev/null | sort -V | tail -n 1)")
        port=${MEGALODOC_TEST_POSTGRES_URL##*:}
        port=${port%%/*}
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            echo "postgres: already running at $MEGALODOC_TEST_POSTGRES_URL"
            return 0
        fi
    fi

    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "postgres: installing the Debian package"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
            echo "postgres: could not install the postgresql package" >&2
            return 1
        fi
    fi
    bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")

    # initdb refuses to run as root: run the server as `postgres` when we are root, else as ourselves.
    if [ "$(id -u)" = "0" ]; then
        user=postgres
        as_user=(runuser -u postgres --)
    else
        user=$(id -un)
    fi

    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/megalodoc-pg.XXXXXX") || return 1
    chmod 755 "$pgdir"
    [ "$user" = postgres ] && chown postgres: "$pgdir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

    if ! "${as_user[@]}" "$bindir/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
        >"$pgdir/initdb.log" 2>&1; then
        echo "postgres: initdb failed; see $pgdir/initdb.log" >&2
        cat "$pgdir/initdb.log" >&2
        return 1
    fi
    if ! "${as_user[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null; then
        echo "postgres: server did not start; log follows" >&2
        cat "$pgdir/server.log" >&2
        return 1
    fi
    if ! "${as_user[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres megalodoc_test; then
        echo "postgres: createdb failed" >&2
        return 1
    fi

    export MEGALODOC_TEST_POSTGRES_DIR="$pgdir"
    export MEGALODOC_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/megalodoc_test"
    echo "postgres: running at $MEGALODOC_TEST_POSTGRES_URL (data in $pgdir)"
}

megalodoc_postgres_stop() {
    local bindir
    [ -n "${MEGALODOC_TEST_POSTGRES_DIR:-}" ] || return 0
    bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    if [ "$(id -u)" = "0" ]; then
        runuser -u postgres -- "$bindir/pg_ctl" -D "$MEGALODOC_TEST_POSTGRES_DIR/data" -m fast -w stop >/dev/null
    else
        "$bindir/pg_ctl" -D "$MEGALODOC_TEST_POSTGRES_DIR/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$MEGALODOC_TEST_POSTGRES_DIR"
    unset MEGALODOC_TEST_POSTGRES_DIR MEGALODOC_TEST_POSTGRES_URL
}

megalodoc_postgres_start
