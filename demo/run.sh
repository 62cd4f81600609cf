#!/usr/bin/env bash
# demo/run.sh BUILD_DIR — the end-to-end demo against the local Claude stand-in:
#   1. a throwaway CA and TLS certificate for the stand-in (test/standin/certs.mjs),
#   2. the stand-in (test/standin/standin.mjs): token endpoint + Messages API,
#   3. vouchd with demo/vouchd.yaml and demo/resources (ports and paths filled in),
#   4. demo/app.mjs — the official SDK, unmodified, with ANTHROPIC_API_KEY=vouch-managed and
#      ANTHROPIC_BASE_URL=http://127.0.0.1:7801 (vouchd's plaintext listener),
# then prints the app's SPIFFE ID (vouch explain) and the audit lines of its requests.
# Exits 0 only if both replies arrived. Everything it starts is stopped on exit.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$top/$build" ;; esac
vouchd="$build/vouchd" vouch="$build/vouch"
for b in "$vouchd" "$vouch"; do [ -x "$b" ] || { echo "demo: $b not built (run make)" >&2; exit 1; }; done
command -v node >/dev/null || { echo "demo: node not found" >&2; exit 1; }
[ -d "$top/node_modules/@anthropic-ai/sdk" ] || { echo "demo: npm dependencies missing (make deps)" >&2; exit 1; }

plain=127.0.0.1:7801 oidc=127.0.0.1:7802   # vouchd's embedded defaults
node_bin=$(readlink -f "$(command -v node)")
demo=$(mktemp -d /tmp/vouch-demo.XXXXXX)
chmod 0700 "$demo"
standin_pid= vouchd_pid= app_pid=
cleanup() {
	local rc=$?
	for p in $app_pid $vouchd_pid $standin_pid; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $app_pid $vouchd_pid $standin_pid; do wait "$p" 2>/dev/null || true; done
	if [ "${VOUCH_DEMO_KEEP:-}" = 1 ]; then echo "demo: files kept in $demo"; else rm -rf "$demo"; fi
	exit $rc
}
trap cleanup EXIT INT TERM
say() { printf '\n== %s\n' "$*"; }

say "certificates for the Claude stand-in (test CA) in $demo/certs"
node --input-type=module -e "
import { generateCerts } from '$top/test/standin/certs.mjs';
generateCerts('$demo/certs');"

say "starting the Claude stand-in"
cat >"$demo/standin.json" <<JSON
{
  "certFile": "$demo/certs/server.crt",
  "keyFile": "$demo/certs/server.key",
  "issuer": "http://$oidc",
  "rules": {
    "fdrl_01DemoRule": {
      "organizationId": "0f7c2d4e-9a1b-4c3d-8e5f-6a7b8c9d0e1f",
      "serviceAccountId": "svac_01DemoServiceAccount",
      "workspaces": ["default"],
      "subjectPrefix": "spiffe://vouch.local/demo/*",
      "audience": "https://api.anthropic.com"
    }
  },
  "expiresIn": 600,
  "streamDelayMs": 120,
  "streamChunks": 8
}
JSON
node "$top/test/standin/standin.mjs" --config "$demo/standin.json" >"$demo/standin.out" 2>"$demo/standin.err" &
standin_pid=$!
for _ in $(seq 100); do [ -s "$demo/standin.out" ] && break; sleep 0.1; done
standin_port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$demo/standin.out" | head -1)
[ -n "$standin_port" ] || { echo "demo: the stand-in did not start:" >&2; cat "$demo/standin.err" >&2; exit 1; }
echo "stand-in: https://localhost:$standin_port (token endpoint /v1/oauth/token, /v1/messages)"

say "starting vouchd ($vouchd)"
mkdir -p "$demo/resources"
sed "s|@DEMO_DIR@|$demo|g" "$top/demo/vouchd.yaml" >"$demo/vouchd.yaml"
for f in "$top"/demo/resources/*.yaml; do
	sed -e "s|@STANDIN_PORT@|$standin_port|g" -e "s|@NODE@|$node_bin|g" -e "s|@UID@|$(id -u)|g" \
		"$f" >"$demo/resources/$(basename "$f")"
done
"$vouchd" -c "$demo/vouchd.yaml" >"$demo/vouchd.log" 2>&1 &
vouchd_pid=$!
ready=
for _ in $(seq 100); do
	if curl -fsS "http://$oidc/.well-known/openid-configuration" >/dev/null 2>&1; then ready=1; break; fi
	kill -0 "$vouchd_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "demo: vouchd did not come up (ports 7800-7802 must be free); its log:" >&2
	tail -30 "$demo/vouchd.log" >&2
	exit 1
fi
echo "vouchd: OIDC issuer http://$oidc, ANTHROPIC_BASE_URL=http://$plain"

say "running demo/app.mjs (official SDK, no API key)"
ANTHROPIC_API_KEY=vouch-managed ANTHROPIC_BASE_URL="http://$plain" \
	"$node_bin" "$top/demo/app.mjs" >"$demo/app.out" 2>"$demo/app.err" &
app_pid=$!
# While the app streams, ask vouch who it is (its first request shows up in the audit log).
explained=
for _ in $(seq 100); do
	if grep -q "\"pid\":$app_pid[,}]" "$demo/audit.log" 2>/dev/null; then
		if "$vouch" --admin-socket "$demo/admin.sock" explain "$app_pid" >"$demo/explain.out" 2>&1; then explained=1; fi
		break
	fi
	kill -0 "$app_pid" 2>/dev/null || break
	sleep 0.05
done
app_rc=0
wait "$app_pid" || app_rc=$?
pid=$app_pid
app_pid=
cat "$demo/app.out"
[ -s "$demo/app.err" ] && sed 's/^/app stderr: /' "$demo/app.err"

say "who the app is (vouch explain $pid)"
if [ -n "$explained" ]; then
	cat "$demo/explain.out"
else
	echo "(the app finished before vouch explain ran; from the audit log:)"
fi
spiffe=$(grep "\"pid\":$pid[,}]" "$demo/audit.log" | grep -o '"workload":"spiffe://[^"]*"' | head -1 | cut -d'"' -f4 || true)
echo "SPIFFE ID: ${spiffe:-unknown}"

say "audit lines for the app's requests (pid $pid, plus the exchanges made on its behalf)"
grep -E "\"pid\":$pid[,}]|\"event\":\"(issue|exchange)\"" "$demo/audit.log" || true

if [ "$app_rc" = 0 ] && grep -q '^reply 1 (messages.create): .' "$demo/app.out" &&
	grep -q '^reply 2 (messages.stream): .' "$demo/app.out"; then
	say "demo OK: both replies arrived; the app never held an API key"
	exit 0
fi
say "demo FAILED (app exit status $app_rc); vouchd log tail:"
tail -30 "$demo/vouchd.log"
exit 1
