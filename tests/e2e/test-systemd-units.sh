#!/usr/bin/env bash
# The systemd units as `cmake --install` installs them: systemd-analyze verify passes with
# no complaint (offline; ExecStart pointed at the installed binaries under DESTDIR), the
# example configuration sets exactly the variables the units use, and tmpfiles.d makes
# the runtime directories the units share.
source "$(dirname "$0")/lib.sh"

R=$T/root
DESTDIR=$R cmake --install "$FREP_BUILD" >"$T/install.log" 2>&1 || fail "cmake --install: $(tail -n 3 "$T/install.log")"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:[A-Z]*=//p' "$FREP_BUILD/CMakeCache.txt")
units=$R$prefix/lib/systemd/system
for f in "$units/frep-server.service" "$units/frep-client@.service" "$R$prefix/lib/tmpfiles.d/frep.conf" \
	"$R$prefix/share/doc/frep/server.conf.example" "$R$prefix/share/doc/frep/client.conf.example"; do
	[ -f "$f" ] || fail "cmake --install did not install $f"
done

# verify UNIT: systemd-analyze verify on a copy of the installed unit whose ExecStart
# runs the installed binary under DESTDIR; any output (an unknown key is only a
# warning) fails.
mkdir "$T/units"
for u in frep-server.service frep-client@.service; do
	grep -q "^ExecStart=$prefix/bin/frep-" "$units/$u" || fail "$u: ExecStart is not $prefix/bin/frep-*"
	sed "s|^ExecStart=$prefix/bin/|ExecStart=$R$prefix/bin/|" "$units/$u" >"$T/units/$u"
done
for u in frep-server.service frep-client@db.service; do
	out=$(systemd-analyze verify --man=no "$T/units/$u" 2>&1) || fail "systemd-analyze verify $u: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $u complains: $out"
done
# And it does complain: a unit whose binary is missing fails.
sed "s|^ExecStart=$R|ExecStart=$T/nowhere|" "$T/units/frep-server.service" >"$T/units/frep-server-broken.service"
systemd-analyze verify --man=no "$T/units/frep-server-broken.service" >/dev/null 2>&1 &&
	fail "systemd-analyze verify accepted a unit whose ExecStart does not exist"

# The variables the units read are exactly those the example files set.
vars_used() { grep '^ExecStart=' "$1" | grep -Eo '\$\{?[A-Z_]+' | tr -d '${' | sort -u; }
vars_set() { grep -Eo '^[A-Z_]+=' "$1" | tr -d = | sort -u; }
for pair in frep-server.service:server.conf.example frep-client@.service:client.conf.example; do
	u=${pair%%:*} c=${pair#*:}
	used=$(vars_used "$units/$u" | tr '\n' ' ') set=$(vars_set "$R$prefix/share/doc/frep/$c" | tr '\n' ' ')
	[ "$used" = "$set" ] || fail "$u uses { $used} but $c sets { $set}"
done

# Type=notify, one frep-client per volume with its own config, NBD sockets apart from
# the admin sockets (a glob of /run/frep/*.sock must never reach nbdkit), and no unit's
# stop removes the runtime directory the others' sockets live in.
for u in frep-server.service frep-client@.service; do
	for line in Type=notify RuntimeDirectoryPreserve=yes Restart=on-failure RestartPreventExitStatus=2; do
		grep -qx "$line" "$units/$u" || fail "$u lacks $line"
	done
done
grep -qx 'EnvironmentFile=/etc/frep/server.conf' "$units/frep-server.service" || fail "frep-server.service: EnvironmentFile"
grep -qx 'EnvironmentFile=/etc/frep/client-%i.conf' "$units/frep-client@.service" || fail "frep-client@.service: EnvironmentFile"
grep '^ExecStart=' "$units/frep-client@.service" | grep -q -- '--volume %i=${EXTENTS} .*--nbd unix:/run/frep/nbd/%i.sock' ||
	fail "frep-client@.service: the volume is not %i, or NBD is not on /run/frep/nbd/%i.sock"

# tmpfiles.d makes /run/frep and /run/frep/nbd, in a scratch root.
systemd-tmpfiles --root="$R" --create "$R$prefix/lib/tmpfiles.d/frep.conf" 2>"$T/tmpfiles.log" ||
	fail "systemd-tmpfiles: $(cat "$T/tmpfiles.log")"
[ "$(stat -c %a "$R/run/frep")" = 755 ] && [ "$(stat -c %a "$R/run/frep/nbd")" = 755 ] ||
	fail "tmpfiles.d did not make /run/frep and /run/frep/nbd (0755)"
pass "installed units verify, config examples match their variables, tmpfiles.d makes /run/frep{,/nbd}"
