#!/bin/sh
# Installs the peer tools the bench/ comparisons run against (Debian 12
# packages, see shared/docs/ENVIRONMENT.md §B/§E). Idempotent; needs root.
set -eu
missing=""
[ -x /usr/bin/barman ] || missing="$missing barman barman-cli"
[ -x /usr/bin/pgbackrest ] || missing="$missing pgbackrest"
if [ -n "$missing" ]; then
	apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
for b in /usr/bin/barman /usr/bin/pgbackrest /usr/lib/postgresql/15/bin/pg_basebackup /usr/lib/postgresql/15/bin/pg_receivewal /usr/lib/postgresql/15/bin/pgbench; do
	[ -x "$b" ] || { echo "bench: $b missing (apt-get install -y postgresql-15 barman barman-cli pgbackrest)" >&2; exit 1; }
done
