#!/usr/bin/env bash
# The Debian packages as an operator meets them, on this machine: install edge-agent
# with dpkg, verify the installed unit, start the agent as systemd would (its user, its
# paths, the unit's command line) and classify a frame through it, upgrade to a
# package of a higher version (the config and the queued outbox events survive),
# remove it (both kept), purge it (both gone); cloud-relay installs and removes the
# same way. It installs into the system, so it runs only as root and only when asked:
# CI (CI=true) or EDGE_A2I_PACKAGE_TEST=1. Uses the debug build scripts/test.sh made.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ] || { [ "${CI:-}" != true ] && [ "${EDGE_A2I_PACKAGE_TEST:-}" != 1 ]; }; then
  echo "test-packages: installs into this system; runs as root with CI=true or EDGE_A2I_PACKAGE_TEST=1" >&2
  exit 0
fi
fail() { echo "test-packages: FAILED: $*" >&2; exit 1; }
step() { echo "test-packages: $*"; }
# shellcheck source=test-env.sh
source scripts/test-env.sh   # target_dir, as the test command resolves it
bin_dir="$target_dir/debug"
out=$(mktemp -d)
agent_pid=""
cleanup() {
  [ -z "$agent_pid" ] || kill -9 "$agent_pid" 2>/dev/null || true
  dpkg --purge edge-agent cloud-relay >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT
dpkg --purge edge-agent cloud-relay >/dev/null 2>&1 || true

v1=$(scripts/package-deb.sh edge-agent --bin "$bin_dir/edge-agent" --version 0.9.0 --out "$out" --fast)
v2=$(scripts/package-deb.sh edge-agent --bin "$bin_dir/edge-agent" --version 0.9.1 --out "$out" --fast)
relay=$(scripts/package-deb.sh cloud-relay --bin "$bin_dir/cloud-relay" --version 0.9.0 --out "$out" --fast)

step "install $v1"
dpkg -i "$v1" >/dev/null
getent passwd edge-agent >/dev/null || fail "no system user edge-agent"
[ "$(stat -c '%U:%G %a' /var/lib/edge-agent/inbox)" = "edge-agent:edge-agent 2770" ] \
  || fail "inbox is $(stat -c '%U:%G %a' /var/lib/edge-agent/inbox)"
[ "$(stat -c '%U:%G %a' /etc/edge-agent/config.toml)" = "root:edge-agent 640" ] \
  || fail "config is $(stat -c '%U:%G %a' /etc/edge-agent/config.toml)"
systemd-analyze verify /usr/lib/systemd/system/edge-agent.service \
  || fail "systemd-analyze verify refused the installed unit"
edge-agent classify --json models/samples/*.jpg >/dev/null || fail "classify with the installed default model"

# The operator's edit: a broker on loopback that is not running (so events stay queued),
# and every frame selected for review.
cfg=/etc/edge-agent/config.toml
sed -i -e 's/^host = .*/host = "127.0.0.1"/' -e 's/^port = 8883/port = 9/' \
  -e '/^\[mqtt.tls\]/,/^alpn_iot_core/d' -e 's/^min_confidence = .*/min_confidence = 1.0/' "$cfg"
edge-agent check-config --config "$cfg" >/dev/null || fail "check-config refused the edited config"
echo "# operator's note" >> "$cfg"
cfg_sum=$(sha256sum "$cfg")

# As systemd starts it: ExecStart of the installed unit, as User=/Group= with
# SupplementaryGroups=video, in the state directory.
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/edge-agent.service)
run_agent() {
  setpriv --reuid edge-agent --regid edge-agent --groups video \
    env -i PATH=/usr/bin:/bin RUST_LOG=info $exec_start >>"$out/agent.log" 2>&1 &
  agent_pid=$!
}
queued() {
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from entry").fetchone()[0])' \
    /var/lib/edge-agent/outbox.sqlite 2>/dev/null || echo 0
}
wait_for() { # deadline-seconds description command...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -20 "$out/agent.log" >&2; fail "$what"; }
    sleep 0.2
  done
}
run_agent
cp models/samples/$(ls models/samples | grep -m1 '\.jpg$') "$out/frame.jpg"
install -o edge-agent -g edge-agent -m 0640 "$out/frame.jpg" /var/lib/edge-agent/inbox/.frame.jpg.part
mv /var/lib/edge-agent/inbox/.frame.jpg.part /var/lib/edge-agent/inbox/frame.jpg
wait_for 60 "the installed agent to classify and queue the frame" \
  bash -c '[ ! -e /var/lib/edge-agent/inbox/frame.jpg ] && [ "$(python3 -c "import sqlite3; print(sqlite3.connect(\"/var/lib/edge-agent/outbox.sqlite\").execute(\"select count(*) from entry\").fetchone()[0])" 2>/dev/null)" -ge 1 ]'
grep -q "backend=\"litert\".*/usr/lib/edge-a2i/libLiteRt.so" "$out/agent.log" \
  || fail "the installed agent did not use the packaged LiteRT library: $(grep -m1 'inference backend' "$out/agent.log")"
kill -TERM "$agent_pid"; wait "$agent_pid" || fail "the agent did not stop cleanly on SIGTERM (exit $?)"
agent_pid=""
n=$(queued)
step "the agent classified the frame and queued $n event(s)"

step "upgrade to $v2"
dpkg -i "$v2" >/dev/null
[ "$(dpkg-query -W -f '${Version}' edge-agent)" = 0.9.1 ] || fail "not upgraded"
[ "$(sha256sum "$cfg")" = "$cfg_sum" ] || fail "the upgrade changed the operator's config"
[ "$(queued)" = "$n" ] || fail "the upgrade lost queued events ($n before, $(queued) after)"

step "remove"
dpkg --remove edge-agent >/dev/null
[ ! -e /usr/bin/edge-agent ] || fail "remove left the binary"
[ "$(sha256sum "$cfg")" = "$cfg_sum" ] || fail "remove changed the config"
[ "$(queued)" = "$n" ] || fail "remove lost queued events"

step "purge"
dpkg --purge edge-agent >/dev/null
[ ! -e /etc/edge-agent ] || fail "purge left /etc/edge-agent"
[ ! -e /var/lib/edge-agent ] || fail "purge left /var/lib/edge-agent"

step "cloud-relay: install, verify, remove, purge"
dpkg -i "$relay" >/dev/null
cloud-relay --version >/dev/null || fail "cloud-relay does not run"
cloud-relay print-default-config | cmp -s - /etc/cloud-relay/config.toml \
  || fail "the installed relay config is not the default one"
systemd-analyze verify /usr/lib/systemd/system/cloud-relay.service \
  || fail "systemd-analyze verify refused the installed relay unit"
dpkg --purge cloud-relay >/dev/null
[ ! -e /etc/cloud-relay ] || fail "purge left /etc/cloud-relay"
step "all passed"
