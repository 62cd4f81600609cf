#!/usr/bin/env bash
# demo/run.sh BUILD_DIR — the end-to-end demo against the local Claude stand-in:
#   1. a throwaway CA and TLS certificate for the stand-in (test/standin/certs.mjs),
#   2. the stand-in (test/standin/standin.mjs): token endpoint + Messages API,
#   3. vouchd with demo/vouchd.yaml and demo/resources (ports and paths filled in),
#   4. demo/app.mjs — the official SDK, unmodified, with ANTHROPIC_API_KEY=vouch-managed and
#      ANTHROPIC_BASE_URL=http://127.0.0.1:7801 (vouchd's plaintext listener),
# then prints the app's SPIFFE ID (vouch explain) and the audit lines of its requests.
# Then the transparent flow (root only; otherwise it says why it is skipped):
#   5. a second stand-in on 127.1.2.3:443, and a private mount namespace per process whose
#      /etc/hosts maps api.anthropic.com to 127.1.2.3 (the machine's own /etc/hosts is
#      never touched, and nothing else ever resolves that name to a local address),
#   6. vouchd with demo/vouchd-transparent.yaml: eBPF hooks on a demo cgroup, the built-in
#      anthropic-api Service (api.anthropic.com:443, no override),
#   7. the SAME demo/app.mjs with NO base URL under `vouch run -- node demo/app.mjs`.
# Exits 0 only if every flow that ran got both replies. Everything it starts is stopped on exit.
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
standin_pid= vouchd_pid= app_pid= standin2_pid= cgroup=
cleanup() {
	local rc=$?
	for p in $app_pid $vouchd_pid $standin_pid $standin2_pid; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $app_pid $vouchd_pid $standin_pid $standin2_pid; do wait "$p" 2>/dev/null || true; done
	if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
		# only processes this demo started can be in its cgroup
		for p in $(cat "$cgroup/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		for _ in $(seq 50); do rmdir "$cgroup" 2>/dev/null && break; sleep 0.1; done
	fi
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
	say "explicit flow OK: both replies arrived; the app never held an API key"
else
	say "demo FAILED (explicit flow, app exit status $app_rc); vouchd log tail:"
	tail -30 "$demo/vouchd.log"
	exit 1
fi

# The same workload identity, over the SPIFFE Workload API (a real gRPC client: @grpc/grpc-js).
say "the workload's own SVIDs from the SPIFFE Workload API (SPIFFE_ENDPOINT_SOCKET=unix://$demo/workload.sock)"
wl="$top/test/integration/clients/wl/wlclient.mjs"
wl_ok=
if "$node_bin" "$wl" "unix://$demo/workload.sock" x509svid 1 >"$demo/x509.json" 2>"$demo/wl.err" &&
	"$node_bin" "$wl" "unix://$demo/workload.sock" jwtsvid https://api.anthropic.com >"$demo/jwt.json" 2>>"$demo/wl.err"; then
	token=$("$node_bin" -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).svids[0].svid)' "$demo/jwt.json")
	if "$node_bin" "$wl" "unix://$demo/workload.sock" validate https://api.anthropic.com "$token" >"$demo/validate.json" 2>>"$demo/wl.err"; then
		"$node_bin" -e '
			const fs = require("fs"), { X509Certificate } = require("crypto");
			const x = JSON.parse(fs.readFileSync(process.argv[1])).svids[0];
			const leaf = new X509Certificate(Buffer.from(x.x509_svid, "base64"));
			const v = JSON.parse(fs.readFileSync(process.argv[2]));
			console.log(`X.509-SVID: ${x.spiffe_id}, ${leaf.subjectAltName}, valid until ${leaf.validTo} (re-issued at half life)`);
			console.log(`private key: PKCS#8, ${Buffer.from(x.x509_svid_key, "base64").length} bytes (handed to this process only; never logged)`);
			console.log(`JWT-SVID for https://api.anthropic.com validated by vouchd: sub ${v.claims.sub}, exp in ${Math.round(v.claims.exp - Date.now() / 1000)} s`);
		' "$demo/x509.json" "$demo/validate.json" && wl_ok=1
	fi
fi
rm -f "$demo/x509.json" "$demo/jwt.json" # they hold a key and a token
if [ -z "$wl_ok" ]; then
	say "demo FAILED (Workload API); client said:"
	tail -20 "$demo/wl.err"
	tail -30 "$demo/vouchd.log"
	exit 1
fi
kill -TERM "$vouchd_pid" 2>/dev/null || true
wait "$vouchd_pid" 2>/dev/null || true
vouchd_pid=

# ---- the transparent flow: no base URL, eBPF redirection, vouch run ----------------------
say "transparent flow: the same app, no ANTHROPIC_BASE_URL, under vouch run"
why_not=
cg_root=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
if [ "$(id -u)" != 0 ]; then why_not="not root: the eBPF cgroup hooks, a private mount namespace and port 443 need root"
elif ! command -v unshare >/dev/null; then why_not="unshare(1) is not installed"
elif [ -z "$cg_root" ]; then why_not="no cgroup v2 mount on this machine"
elif [ ! -r /sys/kernel/btf/vmlinux ]; then why_not="the kernel has no BTF (/sys/kernel/btf/vmlinux)"
fi
if [ -n "$why_not" ]; then
	say "transparent flow SKIPPED: $why_not"
	say "demo OK (explicit flow only)"
	exit 0
fi

# A private view of /etc/hosts for each process of this flow: api.anthropic.com → 127.1.2.3.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n127.1.2.3 api.anthropic.com\n' >"$demo/hosts"
chmod 0644 "$demo/hosts"
# (an array, not a function: a background "${ns[@]}" CMD & leaves $! = CMD's own pid, since
# unshare and sh both exec)
ns=(unshare --mount --propagation private -- /bin/sh -c 'mount --bind "$0" /etc/hosts || exit 125; exec "$@"' "$demo/hosts")
echo "inside the demo's namespaces: $("${ns[@]}" getent hosts api.anthropic.com | tr -s ' ')"
echo "on this machine:              $(getent hosts api.anthropic.com | tr -s ' ' || echo 'api.anthropic.com (not resolvable here)')"

say "starting a Claude stand-in on 127.1.2.3:443 (certificate for api.anthropic.com)"
sed -e 's|^{|{\n  "host": "127.1.2.3", "port": 443,|' "$demo/standin.json" >"$demo/standin2.json"
node "$top/test/standin/standin.mjs" --config "$demo/standin2.json" >"$demo/standin2.out" 2>"$demo/standin2.err" &
standin2_pid=$!
for _ in $(seq 100); do [ -s "$demo/standin2.out" ] && break; kill -0 "$standin2_pid" 2>/dev/null || break; sleep 0.1; done
if [ ! -s "$demo/standin2.out" ]; then
	echo "demo: the stand-in on 127.1.2.3:443 did not start:" >&2; cat "$demo/standin2.err" >&2; exit 1
fi

say "starting vouchd with interception (demo/vouchd-transparent.yaml)"
cgroup="$cg_root/vouch-demo"
mkdir -p "$demo/resources-transparent"
# The built-in anthropic-api Service (api.anthropic.com:443) is used as is: no service.yaml.
# The credential source exchanges at https://api.anthropic.com, the same name.
for f in workload.yaml binding.yaml source.yaml; do
	sed -e "s|https://localhost:@STANDIN_PORT@|https://api.anthropic.com|g" -e "s|@NODE@|$node_bin|g" \
		-e "s|@UID@|$(id -u)|g" "$top/demo/resources/$f" >"$demo/resources-transparent/$f"
done
sed -e "s|@DEMO_DIR@|$demo|g" -e "s|@CGROUP@|$cgroup|g" "$top/demo/vouchd-transparent.yaml" >"$demo/vouchd-transparent.yaml"
"${ns[@]}" "$vouchd" -c "$demo/vouchd-transparent.yaml" >"$demo/vouchd-transparent.log" 2>&1 &
vouchd_pid=$!
ready=
for _ in $(seq 100); do
	if "$vouch" --admin-socket "$demo/admin.sock" stats >"$demo/stats.json" 2>/dev/null; then ready=1; break; fi
	kill -0 "$vouchd_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	say "demo FAILED: vouchd with interception did not come up; its log:"
	tail -30 "$demo/vouchd-transparent.log"
	exit 1
fi
node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log("vouch stats: intercept " + JSON.stringify(s.intercept) + ", resolver " + JSON.stringify(s.resolver))' "$demo/stats.json"
if ! grep -q '"intercept":"on"' "$demo/stats.json"; then
	say "demo FAILED: vouchd runs but interception is not on; its log:"
	tail -30 "$demo/vouchd-transparent.log"
	exit 1
fi
if command -v bpftool >/dev/null; then
	echo "bpftool cgroup show $cgroup:"
	bpftool cgroup show "$cgroup" | sed 's/^/  /'
fi

say "running: vouch run -- node demo/app.mjs   (ANTHROPIC_BASE_URL unset, no API key)"
"${ns[@]}" env -u ANTHROPIC_BASE_URL -u ANTHROPIC_API_KEY "$vouch" --admin-socket "$demo/admin.sock" run -- \
	"$node_bin" "$top/demo/app.mjs" >"$demo/app2.out" 2>"$demo/app2.err" &
app_pid=$!
explained= pid2=
for _ in $(seq 200); do
	pid2=$(grep -o '"event":"inject".*' "$demo/audit-transparent.log" 2>/dev/null | grep -o '"pid":[0-9]*' | head -1 | cut -d: -f2 || true)
	if [ -n "$pid2" ]; then
		if "$vouch" --admin-socket "$demo/admin.sock" explain "$pid2" >"$demo/explain2.out" 2>&1; then explained=1; fi
		break
	fi
	kill -0 "$app_pid" 2>/dev/null || break
	sleep 0.05
done
app2_rc=0
wait "$app_pid" || app2_rc=$?
app_pid=
cat "$demo/app2.out"
[ -s "$demo/app2.err" ] && sed 's/^/app stderr: /' "$demo/app2.err"
[ -z "$pid2" ] && pid2=$(grep -o '"event":"inject".*' "$demo/audit-transparent.log" 2>/dev/null | grep -o '"pid":[0-9]*' | head -1 | cut -d: -f2 || true)

say "who the app is (vouch explain ${pid2:-?})"
if [ -n "$explained" ]; then
	cat "$demo/explain2.out"
else
	echo "(the app finished before vouch explain ran; from the audit log:)"
fi
spiffe2=
[ -n "$pid2" ] && spiffe2=$(grep "\"pid\":$pid2[,}]" "$demo/audit-transparent.log" | grep -o '"workload":"spiffe://[^"]*"' | head -1 | cut -d'"' -f4 || true)
echo "SPIFFE ID: ${spiffe2:-unknown}"

say "audit lines of the transparent flow (pid ${pid2:-?}, plus the exchanges made on its behalf)"
if [ -n "$pid2" ]; then
	grep -E "\"pid\":$pid2[,}]|\"event\":\"(issue|exchange)\"" "$demo/audit-transparent.log" || true
else
	cat "$demo/audit-transparent.log" 2>/dev/null || true
fi

kill -TERM "$vouchd_pid" 2>/dev/null || true
vouchd_rc=0
wait "$vouchd_pid" || vouchd_rc=$?
vouchd_pid=
if command -v bpftool >/dev/null; then
	left=$(bpftool cgroup show "$cgroup" 2>/dev/null || true)
	echo "after vouchd stopped (exit status $vouchd_rc), programs attached to $cgroup: ${left:-none}"
fi

if [ "$app2_rc" = 0 ] && grep -q '^reply 1 (messages.create): .' "$demo/app2.out" &&
	grep -q '^reply 2 (messages.stream): .' "$demo/app2.out" && [ -n "$spiffe2" ]; then
	say "demo OK: both flows got both replies; the app never held an API key and, in the transparent flow, not even a base URL"
	exit 0
fi
say "demo FAILED (transparent flow, app exit status $app2_rc); vouchd log tail:"
tail -30 "$demo/vouchd-transparent.log"
exit 1
