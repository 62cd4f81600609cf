#!/usr/bin/env bash
# bench/proxy.sh [BUILD_DIR] — vouchd's proxy side by side with HAProxy (Debian 12: 2.6) and
# a no-proxy baseline, on one host, one upstream, one client and one CPU placement
# (issue 5). Writes PROXY_DOC (default BUILD_DIR/bench-proxy.md; `make bench` puts it into
# docs/BENCHMARKS.md): exact commands, machine, tables, goal verdicts; and prints it.
#
#   baseline  loadgen --TLS--> upstream
#   haproxy   loadgen --TLS--> haproxy (strip x-api-key, set Authorization, TLS out, reuse) --> upstream
#   vouchd    loadgen --CONNECT+TLS--> vouchd explicit proxy (interception CA, attestation,
#             header strip + Bearer from its token exchange with the Claude stand-in) --> upstream
#
# The upstream (bench/upstream.c) runs with --require-bearer: a request that still carries
# x-api-key or lacks "Authorization: Bearer" gets a 401, which loadgen counts as an error,
# so a proxy that does not do its job cannot look fast. Each case runs BENCH_REPS times,
# interleaved across targets; tables give the median and min-max.
#
# Placement: loadgen and the upstream on CPU PROXY_LOAD_CPU (default 0), the proxy under test
# on PROXY_CPU (default 1); with one CPU, everything on CPU 0. Knobs (environment):
# BENCH_REPS (3), PROXY_DURATION (4 s per fixed-rate run), PROXY_MAX_DURATION (3 s for --max
# and --new-conns), PROXY_WARMUP (1 s), PROXY_TARGETS ("baseline haproxy vouchd"),
# PROXY_NICE (-20: the nice level of every bench process; the box may be shared), PROXY_CASES
# (a subset of "r500c1 r500c16 r1000c1 r1000c16 max newconn"), PROXY_DOC (the output file).
# Needs root (apt-get for haproxy, pinning); without it, it says so and exits 0.
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
doc=${PROXY_DOC:-$build/bench-proxy.md}

if [ "$(id -u)" != 0 ]; then
	echo "bench/proxy.sh: skipped: needs root (apt-get install haproxy, CPU pinning). $doc left as is."
	exit 0
fi

reps=${BENCH_REPS:-3}
dur=${PROXY_DURATION:-4}
maxdur=${PROXY_MAX_DURATION:-3}
warm=${PROXY_WARMUP:-1}
targets=${PROXY_TARGETS:-baseline haproxy vouchd}
ncpu=$(nproc)
load_cpu=${PROXY_LOAD_CPU:-0}
proxy_cpu=${PROXY_CPU:-$([ "$ncpu" -ge 2 ] && echo 1 || echo 0)}
# every bench process runs at nice PROXY_NICE (default -20): the box is shared (CI, other
# sessions' tests) and a compiler on the same CPU otherwise dominates the tail latency
nice_n=${PROXY_NICE:--20}
# "${pin[@]}" CPU CMD...: CMD on CPU at that nice level; nice and taskset exec, so $! is CMD's pid
pin=(nice -n "$nice_n" taskset -c)
token="sk-ant-oat01-bench-fixed-token-0123456789abcdef"
api_key="sk-ant-api03-bench-placeholder"

if ! command -v haproxy >/dev/null; then
	echo "bench/proxy.sh: installing haproxy (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >/dev/null
fi
[ -x "$build/vouchd" ] || make --no-print-directory -j2 BUILD="$build"
make --no-print-directory -f Makefile -f bench/bench.mk BUILD="$build" "$build/bench/loadgen" \
	"$build/bench/upstream" >/dev/null
loadgen=$(realpath "$build/bench/loadgen")
py_exe=$(readlink -f /usr/bin/python3) # bench/idle_conns.py, a second bound workload
upstream_bin=$(realpath "$build/bench/upstream")
vouchd_bin=$(realpath "$build/vouchd")

tmp=$(mktemp -d /tmp/vouch-bench-proxy.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s)
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench/proxy.sh: nothing listens on 127.0.0.1:$1" >&2
	return 1
}

# --- certificates: one throwaway CA; one leaf (localhost, 127.0.0.1) for the upstream, the
# HAProxy frontend and the Claude stand-in. ECDSA P-256, as certs.mjs makes for the tests.
c=$tmp/certs
mkdir -p "$c"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$c/ca.key" -out "$c/ca.crt" \
	-days 2 -subj "/CN=vouch bench CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$c/server.key" \
	-out "$c/server.csr" -subj /CN=localhost 2>/dev/null
printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
	extendedKeyUsage=serverAuth subjectAltName=DNS:localhost,IP:127.0.0.1 >"$c/ext"
openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -set_serial 0x$RANDOM$RANDOM \
	-days 2 -sha256 -extfile "$c/ext" -out "$c/server.crt" 2>/dev/null
cat "$c/server.crt" "$c/server.key" >"$c/server.pem"
chmod 600 "$c"/*.key "$c/server.pem"

# --- upstream
up_port=$(free_port)
up_cmd=("${pin[@]}" "$load_cpu" "$upstream_bin" --port "$up_port" --cert "$c/server.crt" --key "$c/server.key"
	--require-bearer)
"${up_cmd[@]}" >"$tmp/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port"

# --- HAProxy
ha_port=$(free_port)
ha_pid=
if [[ " $targets " == *" haproxy "* ]]; then
	sed -e "s|@HAPROXY_PORT@|$ha_port|" -e "s|@HAPROXY_PEM@|$c/server.pem|" -e "s|@TOKEN@|$token|" \
		-e "s|@UPSTREAM_PORT@|$up_port|" -e "s|@CA_FILE@|$c/ca.crt|" bench/haproxy.cfg.in >"$tmp/haproxy.cfg"
	haproxy -c -q -f "$tmp/haproxy.cfg"
	"${pin[@]}" "$proxy_cpu" haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	ha_pid=$!
	pids+=("$ha_pid")
	wait_port "$ha_port"
fi

# --- vouchd, explicit proxy mode, with the Claude stand-in for its token exchange
# (as test/integration/lib.mjs startStack does: a Service pointing at the upstream, a
# CredentialSource pointing at the stand-in, the loadgen binary as the workload).
v_pid=
v_note=
v_proxy_port=$(free_port)
v_ca=
if [[ " $targets " == *" vouchd "* ]]; then
	v=$tmp/vouchd
	mkdir -p "$v/state" "$v/resources"
	chmod 700 "$v/state"
	oidc_port=$(free_port)
	org=5b7b9c2e-2f8a-4e36-9a43-1f2d3c4b5a69
	rule=fdrl_01StandinRuleNode
	sa=svac_01StandinServiceAcct
	cat >"$tmp/standin.json" <<-EOF
		{"certFile": "$c/server.crt", "keyFile": "$c/server.key", "issuer": "http://127.0.0.1:$oidc_port",
		 "expiresIn": 3600,
		 "rules": {"$rule": {"organizationId": "$org", "serviceAccountId": "$sa", "workspaces": ["default"],
		   "subjectPrefix": "spiffe://vouch.test/*", "audience": "https://api.anthropic.com"}}}
	EOF
	"${pin[@]}" "$load_cpu" node test/standin/standin.mjs --config "$tmp/standin.json" >"$tmp/standin.out" \
		2>"$tmp/standin.err" &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$tmp/standin.out" ] && break; sleep 0.1; done
	standin_port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$tmp/standin.out")
	cat >"$v/resources/bench.yaml" <<-EOF
		---
		apiVersion: vouch.dev/v1alpha1
		kind: Service
		metadata: {name: anthropic-api}
		spec:
		  labels: {name: anthropic-api}
		  addresses: [{address: localhost, port: $up_port}]
		  tls: true
		---
		apiVersion: vouch.dev/v1alpha1
		kind: CredentialSource
		metadata: {name: standin}
		spec:
		  anthropic: {organizationId: "$org", federationRuleId: "$rule", serviceAccountId: "$sa",
		    workspaceId: default, baseURL: "https://localhost:$standin_port"}
		---
		apiVersion: vouch.dev/v1alpha1
		kind: WorkloadIdentity
		metadata: {name: loadgen}
		spec:
		  workloadID: bench/loadgen
		  selectors: [{"process:binary:path": "$loadgen"}]
		---
		apiVersion: vouch.dev/v1alpha1
		kind: CredentialBinding
		metadata: {name: loadgen}
		spec:
		  credentialSource: standin
		  workloadID: bench/loadgen
		  propagation: {injection: {selectors: [{"svc:name": anthropic-api}]}}
		---
		apiVersion: vouch.dev/v1alpha1
		kind: WorkloadIdentity
		metadata: {name: idle-client}
		spec:
		  workloadID: bench/idle-client
		  selectors: [{"process:binary:path": "$py_exe"}]
		---
		apiVersion: vouch.dev/v1alpha1
		kind: CredentialBinding
		metadata: {name: idle-client}
		spec:
		  credentialSource: standin
		  workloadID: bench/idle-client
		  propagation: {injection: {selectors: [{"svc:name": anthropic-api}]}}
	EOF
	cat >"$v/vouchd.yaml" <<-EOF
		trustDomain: vouch.test
		issuer: "http://127.0.0.1:$oidc_port"
		stateDir: "$v/state"
		resourcesDir: "$v/resources"
		auditLog: "$v/audit.log"
		adminSocket: "$v/admin.sock"
		workloadApiSocket: "$v/workload.sock"
		oidcListen: "127.0.0.1:$oidc_port"
		proxyListen: "127.0.0.1:$v_proxy_port"
		plainListeners: []
		upstreamCAFile: "$c/ca.crt"
		jwtTTL: 300
		logLevel: warn
		maxConnections: 20000
		intercept: {enabled: false}
	EOF
	if [ -z "$standin_port" ]; then
		v_note="the Claude stand-in did not start: $(tail -c 300 "$tmp/standin.err")"
	else
		"${pin[@]}" "$proxy_cpu" "$vouchd_bin" -c "$v/vouchd.yaml" >"$tmp/vouchd.log" 2>&1 &
		v_pid=$!
		pids+=("$v_pid")
		if wait_port "$v_proxy_port" && wait_port "$oidc_port"; then
			v_ca=$v/state/intercept-ca.crt
			# one request so the token exchange and attestation cache are warm before timing
			if ! "$loadgen" --target "localhost:$up_port" --proxy-connect "127.0.0.1:$v_proxy_port" \
				--ca "$v_ca" --api-key "$api_key" --rate 10 --duration 1 --warmup 0 \
				--label vouchd-warmup >"$tmp/vouchd-warm.out" 2>&1; then
				v_note="warm-up through vouchd failed: $(tail -c 400 "$tmp/vouchd-warm.out"); vouchd: $(tail -c 600 "$tmp/vouchd.log")"
			fi
		else
			v_note="vouchd did not start: $(tail -c 600 "$tmp/vouchd.log")"
		fi
	fi
	if [ -n "$v_note" ]; then
		echo "bench/proxy.sh: vouchd skipped: $v_note" >&2
		targets=${targets//vouchd/}
	fi
fi

# set_target_args TARGET: loadgen's address arguments for that target, in targs
set_target_args() {
	case $1 in
	baseline) targs=(--target "localhost:$up_port" --ca "$c/ca.crt" --header "Authorization: Bearer $token") ;;
	haproxy) targs=(--target "localhost:$ha_port" --ca "$c/ca.crt" --api-key "$api_key") ;;
	vouchd) targs=(--target "localhost:$up_port" --proxy-connect "127.0.0.1:$v_proxy_port" --ca "$v_ca"
		--api-key "$api_key") ;;
	esac
}
target_pid() {
	case $1 in
	haproxy) echo "$ha_pid" ;;
	vouchd) echo "$v_pid" ;;
	*) echo "" ;;
	esac
}
# cpu_ns PID: CPU time used by PID so far, every thread including those that have exited
# (vouchd runs a thread per connection), in ns: utime + stime of /proc/PID/stat, in clock
# ticks (10 ms at USER_HZ 100; runs last seconds, so the error is under 1 % of a CPU)
hz=$(getconf CLK_TCK)
cpu_ns() {
	[ -n "$1" ] || { echo 0; return; }
	# the command name (field 2) may hold spaces: count fields after its closing parenthesis
	sed 's/.*) //' /proc/"$1"/stat | awk -v hz="$hz" '{printf "%.0f\n", ($12 + $13) * 1e9 / hz}'
}
# steal_ticks CPU: ticks the hypervisor ran something else while this vCPU wanted to run
steal_ticks() {
	awk -v cpu="cpu$1" '$1 == cpu {print $9}' /proc/stat
}
# up_stats: "CONNS REQUESTS" the upstream has seen so far (its GET /__stats; this query's own
# connection is counted, its request is not)
up_stats() {
	curl -s --max-time 5 --cacert "$c/ca.crt" "https://localhost:$up_port/__stats" |
		sed -n 's/.*"conns":\([0-9]*\),"requests":\([0-9]*\).*/\1 \2/p'
}
rss_kb() {
	[ -n "$1" ] || { echo 0; return; }
	awk '/^VmRSS:/ {print $2}' /proc/"$1"/status
}

read -ra cases <<<"${PROXY_CASES:-r500c1 r500c16 r1000c1 r1000c16 s1000c1 s1000c16 max newconn}"
case_args() {
	case $1 in
	r500c1) echo "--rate 500 --conns 1 --duration $dur --warmup $warm" ;;
	r500c16) echo "--rate 500 --conns 16 --duration $dur --warmup $warm" ;;
	r1000c1) echo "--rate 1000 --conns 1 --duration $dur --warmup $warm" ;;
	r1000c16) echo "--rate 1000 --conns 16 --duration $dur --warmup $warm" ;;
	# s*: the same, with the proxy moved onto the client's CPU for the run (no cross-CPU
	# wake-ups; the proxy then competes with loadgen and the upstream for one CPU)
	s1000c1) echo "--rate 1000 --conns 1 --duration $dur --warmup $warm" ;;
	s1000c16) echo "--rate 1000 --conns 16 --duration $dur --warmup $warm" ;;
	max) echo "--max --conns 16 --duration $maxdur --warmup 0.5" ;;
	newconn) echo "--new-conns --conns 4 --duration $maxdur --warmup 0.5" ;;
	esac
}

results=$tmp/results
: >"$results"
declare -A rss_idle
for t in $targets; do rss_idle[$t]=$(rss_kb "$(target_pid "$t")"); done
t_start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench/proxy.sh: targets: $targets; $reps repetitions; loadgen+upstream on CPU $load_cpu, proxy on CPU $proxy_cpu"
for rep in $(seq "$reps"); do
	for cs in "${cases[@]}"; do
		for t in $targets; do
			pid=$(target_pid "$t")
			set_target_args "$t"
			read -ra cargs <<<"$(case_args "$cs")"
			args=("${targs[@]}" "${cargs[@]}")
			read -r uc0 ur0 <<<"$(up_stats)"
			c0=$(cpu_ns "$pid")
			sl0=$(steal_ticks "$load_cpu")
			sp0=$(steal_ticks "$proxy_cpu")
			[[ $cs == s* && -n "$pid" ]] && taskset -apc "$load_cpu" "$pid" >/dev/null
			w0=$(date +%s%N)
			out=$("${pin[@]}" "$load_cpu" "$loadgen" "${args[@]}" --label "$t/$cs" 2>"$tmp/lg.err") || true
			w1=$(date +%s%N)
			[[ $cs == s* && -n "$pid" ]] && taskset -apc "$proxy_cpu" "$pid" >/dev/null
			c1=$(cpu_ns "$pid")
			read -r uc1 ur1 <<<"$(up_stats)"
			sl1=$(steal_ticks "$load_cpu")
			sp1=$(steal_ticks "$proxy_cpu")
			steal=$(awk -v a=$((sl1 - sl0)) -v b=$((sp1 - sp0)) -v w=$((w1 - w0)) -v hz="$hz" \
				'BEGIN {printf "%.1f/%.1f", 100 * a / hz / (w / 1e9), 100 * b / hz / (w / 1e9)}')
			err=$(tr '\n' ' ' <"$tmp/lg.err")
			[ -n "$err" ] && echo "  $t/$cs: $err" >&2
			[ -n "$out" ] || out="loadgen label=$t/$cs failed=1"
			echo "$out rep=$rep target=$t case=$cs proxy_cpu_ns=$((c1 - c0)) wall_ns=$((w1 - w0)) rss_kb=$(rss_kb "$pid") steal_pct=$steal up_conns=$((uc1 - uc0 - 1)) up_requests=$((ur1 - ur0))" >>"$results"
			echo "  $out steal%(load/proxy CPU)=$steal"
		done
	done
done
# --- memory per idle keep-alive connection (one request each, then idle), per proxy
idle_ns=${PROXY_IDLE_CONNS:-1000 10000}
for t in $targets; do
	[ "$t" = baseline ] && continue
	pid=$(target_pid "$t")
	for n in $idle_ns; do
		n_t=$n
		case $t in
		haproxy) # its maxconn (bench/haproxy.cfg.in) is bounded by the fd hard limit
			[ "$n_t" -gt 9000 ] && n_t=9000
			iargs=(--target "localhost:$ha_port" --ca "$c/ca.crt") ;;
		vouchd) iargs=(--target "localhost:$up_port" --proxy-connect "127.0.0.1:$v_proxy_port" --ca "$v_ca") ;;
		esac
		line=$("${pin[@]}" "$load_cpu" /usr/bin/python3 bench/idle_conns.py --pid "$pid" -n "$n_t" "${iargs[@]}" \
			2>"$tmp/idle.err") || true
		[ -s "$tmp/idle.err" ] && echo "  $t idle $n: $(head -c 300 "$tmp/idle.err")" >&2
		[ -n "$line" ] || line="idle n=$n_t ok=0 failed=1"
		echo "$line target=$t" >>"$results"
		echo "  $t: $line"
		sleep 2
	done
done
t_total=$(($(date +%s) - t_start))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the document
cpu_model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
virt="bare metal or unknown"
grep -qw hypervisor /proc/cpuinfo && virt="virtual machine"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- src bench 2>/dev/null | head -1)
[ -n "$dirty" ] && commit="$commit (+ uncommitted changes under src/ or bench/)"
ha_ver=$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')
ssl_ver=$(openssl version | awk '{print $2}')
for t in $targets; do echo "rss_idle target=$t kb=${rss_idle[$t]}" >>"$results"; done

/usr/bin/python3 - "$results" >"$doc.tmp" <<PYEOF
import sys, statistics as st
rows = []
rss_idle = {}
idle = []
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    if line.startswith("rss_idle"):
        rss_idle[kv["target"]] = int(kv["kb"] or 0)
        continue
    if line.startswith("idle "):
        idle.append(kv)
        continue
    rows.append(kv)
targets = "$targets".split()
cases = [c for c in "${cases[*]}".split()]
lat_cases = [c for c in cases if c[0] in "rs"]
def vals(t, c, k):
    return [float(r[k]) for r in rows if r.get("target") == t and r.get("case") == c and k in r and "failed" not in r]
def med(v):
    return st.median(v) if v else None
def fmt(v, unit="", d=None):
    if not v:
        return "n/a"
    m = med(v)
    if d is None:
        d = 0 if m >= 100 else 1
    return f"{m:.{d}f}{unit} [{min(v):.{d}f}–{max(v):.{d}f}]"
def errs(t, c):
    return int(sum(vals(t, c, "errors")))
P = print
P("## Proxy side by side: vouchd, HAProxy 2.6 and no proxy (issue 5)")
P()
P("Written by \`bench/proxy.sh\` (run by \`make bench\`, or on its own).")
P()
P("### How it was run")
P()
P("\`\`\`")
P("sudo bench/proxy.sh $build     # BENCH_REPS=$reps PROXY_DURATION=$dur PROXY_MAX_DURATION=$maxdur PROXY_WARMUP=$warm")
P("\`\`\`")
P()
P("- Machine: $cpu_model, $ncpu CPUs, $virt; kernel $(uname -r); OpenSSL $ssl_ver; HAProxy $ha_ver; vouch $commit; $(date -u '+%Y-%m-%d %H:%M UTC'); whole run ${t_total} s; load average $load_before before, $load_after after (other work on the box shows up as tail latency).")
P("- Placement: loadgen and upstream pinned to CPU $load_cpu, the proxy under test pinned to CPU $proxy_cpu (\`taskset\`). On this VM a wake-up across CPUs costs ~25–30 µs each way (performance-anchors.md §5.1), so the added latency below includes two cross-CPU hops per direction that a same-CPU placement would not pay.")
P("- Other placements: \`PROXY_CPU=0 bench/proxy.sh\` puts the proxy on the client's CPU too (no cross-CPU wake-ups, but the proxy competes with loadgen and upstream for one CPU). Other knobs: BENCH_REPS, PROXY_DURATION, PROXY_MAX_DURATION, PROXY_WARMUP, PROXY_TARGETS, PROXY_NICE, PROXY_LOAD_CPU (see the script's header).")
P("- Upstream: \`build/bench/upstream --port P --cert server.crt --key server.key --require-bearer\` (TLS 1.3, ECDSA P-256, 1 KB body, keep-alive, one epoll thread). \`--require-bearer\` answers 401 to any request that still has \`x-api-key\` or has no \`Authorization: Bearer\`: every 200 below went through a proxy that stripped and injected.")
P("- Client: \`build/bench/loadgen\`, one thread, HTTP/1.1 over TLS, POST \`/v1/messages\` with a 64-byte body, verifying the server certificate. Fixed-rate runs are open loop with coordinated-omission correction (latency from the scheduled send time, as wrk2); \`--max\` is closed loop with 16 connections; \`--new-conns\` is a closed loop of 4 parallel whole connections, each a TCP connect (+ CONNECT for vouchd), full TLS handshake (no session cache, no tickets), one request, close.")
P("- baseline: \`loadgen --target localhost:UP --ca ca.crt --header 'Authorization: Bearer …'\`")
P("- haproxy: \`loadgen --target localhost:HA --ca ca.crt --api-key K\`; HAProxy from bench/haproxy.cfg.in (\`nbthread 1\`, TLS in, \`del-header x-api-key\`, \`set-header Authorization\`, \`ssl verify required ca-file\`, \`http-reuse always\`, no logging).")
P("- vouchd: \`loadgen --target localhost:UP --proxy-connect 127.0.0.1:VP --ca state/intercept-ca.crt --api-key K\`; vouchd in explicit mode (\`intercept.enabled: false\`, \`logLevel: warn\`, audit log on), Service = the upstream, token from the Claude stand-in (\`node test/standin/standin.mjs\`), warmed by one run before timing.")
P("- Each case ran $reps times, interleaved (case by case, target by target); cells are **median [min–max]** over the repetitions. Fixed-rate runs: ${warm} s warm-up + ${dur} s measured; \`--max\`/\`--new-conns\`: 0.5 s + ${maxdur} s. *Added* = median(proxied) − median(baseline).")
note = """$v_note"""
if note.strip():
    P(f"- **vouchd not measured**: {note.strip()}")
P()
st_l = [float(r["steal_pct"].split("/")[0]) for r in rows if "steal_pct" in r]
st_p = [float(r["steal_pct"].split("/")[1]) for r in rows if "steal_pct" in r]
if st_l:
    P(f"- **Hypervisor steal time** during the runs (share of wall time the vCPU was runnable but not running, /proc/stat): CPU $load_cpu median {st.median(st_l):.0f}% (max {max(st_l):.0f}%), CPU $proxy_cpu median {st.median(st_p):.0f}% (max {max(st_p):.0f}%). Stalls of this kind are invisible to the guest's scheduler (no nice level or real-time priority avoids them) and they set the tail: read p99/max as the host's noise, compare p50s, and rerun on a quiet host before quoting tails.")
P()
P("### Latency at fixed rates (µs, 1 KB response)")
P()
hdr = "| rate, conns | percentile | " + " | ".join(targets) + " | " + " | ".join(f"added {t}" for t in targets if t != "baseline") + " |"
P(hdr)
P("|" + "---|" * (2 + len(targets) + len([t for t in targets if t != "baseline"])))
for c in lat_cases:
    rate = c[1:].split("c")[0]; conns = c.split("c")[-1]
    if c[0] == "s":
        conns += ", proxy on the client's CPU"
    for k, name in (("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("max_us", "max")):
        cells = [fmt(vals(t, c, k)) for t in targets]
        b = med(vals("baseline", c, k))
        adds = []
        for t in targets:
            if t == "baseline":
                continue
            m = med(vals(t, c, k))
            adds.append(f"{m - b:+.0f}" if m is not None and b is not None else "n/a")
        P(f"| {rate} rps, {conns} | {name} | " + " | ".join(cells) + " | " + " | ".join(adds) + " |")
P()
P("Errors (non-200, failed or unanswered requests, summed over repetitions): " + "; ".join(
    f"{t} " + ", ".join(f"{c} {errs(t, c)}" for c in cases) for t in targets) + ".")
lag = vals("baseline", "r1000c1", "send_lag_p50_us")
if lag:
    P()
    P(f"The client's own share: at 1000 rps on 1 connection the baseline's first byte left loadgen a median {med(lag):.0f} µs after its scheduled time (\`send_lag_p50_us\` in the raw lines; timer wake-up of an idle vCPU). It is in every column alike, so it cancels in *added*; it is why the baseline p50 is well above the loopback round-trip floor.")
P()
P("### Throughput, connections and CPU")
P()
ratio_ok = "vouchd" in targets and "haproxy" in targets
X = " | " if ratio_ok else ""
def ratio(c, k):
    a, b = med(vals("vouchd", c, k)), med(vals("haproxy", c, k))
    return f"{a / b:.2f}" if a and b else "n/a"
P("| metric | " + " | ".join(targets) + (" | vouchd / haproxy" if ratio_ok else "") + " |")
P("|---|" + "---|" * (len(targets) + (1 if ratio_ok else 0)))
P("| max requests/s (16 conns, closed loop) | " + " | ".join(fmt(vals(t, "max", "rps")) for t in targets) + (f" | {ratio('max', 'rps')}" if ratio_ok else "") + " |")
def cpu_pct(t, c):
    return [100.0 * float(r["proxy_cpu_ns"]) / float(r["wall_ns"]) for r in rows if r.get("target") == t and r.get("case") == c and float(r.get("wall_ns", 0)) > 0]
P("| proxy CPU during --max (% of one CPU) | " + " | ".join("—" if t == "baseline" else fmt(cpu_pct(t, "max"), "%") for t in targets) + X + " |")
P("| p50 / p99 latency during --max (µs) | " + " | ".join(f"{fmt(vals(t, 'max', 'p50_us'))} / {fmt(vals(t, 'max', 'p99_us'))}" for t in targets) + X + " |")
def us_per_req(t, c):
    return [float(r["proxy_cpu_ns"]) / float(r["wall_ns"]) * 1e6 / float(r["rps"]) for r in rows if r.get("target") == t and r.get("case") == c and float(r.get("wall_ns", 0)) > 0 and float(r.get("rps", 0)) > 0]
P("| proxy CPU per request during --max (µs) | " + " | ".join("—" if t == "baseline" else fmt(us_per_req(t, "max")) for t in targets) + X + " |")
P("| new connections/s (4 in parallel, full handshakes) | " + " | ".join(fmt(vals(t, "newconn", "rps")) for t in targets) + (f" | {ratio('newconn', 'rps')}" if ratio_ok else "") + " |")
P("| proxy CPU during --new-conns (% of one CPU) | " + " | ".join("—" if t == "baseline" else fmt(cpu_pct(t, "newconn"), "%") for t in targets) + X + " |")
P("| p50 connect-to-answer during --new-conns (µs) | " + " | ".join(fmt(vals(t, "newconn", "p50_us")) for t in targets) + X + " |")
def cpu_per_k(t, c, rate):
    return [float(r["proxy_cpu_ns"]) / float(r["wall_ns"]) * 1000.0 / rate for r in rows if r.get("target") == t and r.get("case") == c and float(r.get("wall_ns", 0)) > 0]
P("| proxy vCPU per 1000 rps (1000 rps, 16 conns; whole loadgen run incl. connection setup) | " + " | ".join("—" if t == "baseline" else fmt(cpu_per_k(t, "r1000c16", 1000.0), d=3) for t in targets) + X + " |")
P("| proxy CPU per new connection during --new-conns (µs) | " + " | ".join("—" if t == "baseline" else fmt(us_per_req(t, "newconn")) for t in targets) + X + " |")
def reuse(t, c):
    return [100.0 * (1 - float(r["up_conns"]) / float(r["up_requests"])) for r in rows if r.get("target") == t and r.get("case") == c and float(r.get("up_requests", 0)) > 0]
P("| upstream requests on a reused connection: 1000 rps × 16 conns / --max / --new-conns (%) | " + " | ".join("—" if t == "baseline" else f"{fmt(reuse(t, 'r1000c16'), '%')} / {fmt(reuse(t, 'max'), '%')} / {fmt(reuse(t, 'newconn'), '%')}" for t in targets) + X + " |")
P("| proxy RSS idle / after the run (KB) | " + " | ".join("—" if t == "baseline" else f"{rss_idle.get(t, 0)} / {int(max(vals(t, 'newconn', 'rss_kb') or [0]))}" for t in targets) + X + " |")
P()
P("CPU per 1000 rps at a fixed 1000 rps is far above what the --max row implies (CPU per request there × 1000): at low rates every request pays the wake-up of an idle process on an idle vCPU, which on this VM (no halt-polling) costs more than the proxying itself; the --max figure is the per-request work. HAProxy pools its upstream connections (\`http-reuse always\`), so in --new-conns only the client-side handshake is new for it, and the upstream does no handshakes: that is why HAProxy's new connections/s can exceed the baseline's, where loadgen and the upstream do both ends of every handshake on one CPU.")
P()
P("The proxy CPU share is the proxy process's CPU time (utime + stime of /proc/PID/stat: all threads, also those that exited, 10 ms resolution) over the loadgen run's wall time. When it is well under 100% during --max, the proxy was not the bottleneck: loadgen and the upstream share one CPU, so --max measures the whole chain on two CPUs.")
P()
P("### Memory per idle keep-alive connection")
P()
P("\`bench/idle_conns.py --pid PID -n N\` (Debian's python3, asyncio): N TLS connections to the proxy (through CONNECT for vouchd), one request each (answered 200 through the proxy), then all held idle for 3 s; the proxy's VmRSS before and after. Runs after the timed cases, on the same processes.")
P()
P("| proxy | connections | answered | RSS before → after (KB) | per connection (KB) |")
P("|---|---|---|---|---|")
for r in idle:
    if "failed" in r and r.get("ok", "0") == "0":
        P(f"| {r.get('target')} | {r.get('n')} | failed | — | — |")
        continue
    P(f"| {r.get('target')} | {r.get('n')} | {r.get('ok')} | {r.get('rss_before_kb')} → {r.get('rss_after_kb')} | {float(r.get('per_conn_kb', 0)):.1f} |")
P()
P("### Goals (issue 5), from the medians above")
P()
def verdict(ok):
    return "met" if ok else "**not met**"
def added(c, k):
    v, b = med(vals("vouchd", c, k)), med(vals("baseline", c, k))
    return v - b if v is not None and b is not None else None
def added_h(c, k):
    v, b = med(vals("haproxy", c, k)), med(vals("baseline", c, k))
    return v - b if v is not None and b is not None else None
def num(x, d=0, unit=""):
    return "n/a" if x is None else f"{x:.{d}f}{unit}"
G = []
for c, where in (("r1000c16", "proxy on its own CPU"), ("s1000c16", "proxy on the client's CPU")):
    a50, a99 = added(c, "p50_us"), added(c, "p99_us")
    h50, h99 = added_h(c, "p50_us"), added_h(c, "p99_us")
    if a50 is not None:
        G.append((f"added latency at 1000 rps, 16 conns, {where}", "p50 ≤ 30 µs, p99 ≤ 150 µs", f"p50 {num(a50)} / p99 {num(a99)} µs", f"p50 {num(h50)} / p99 {num(h99)} µs", verdict(a50 <= 30 and a99 <= 150)))
rv, rh = med(vals("vouchd", "max", "rps")), med(vals("haproxy", "max", "rps"))
if rv and rh:
    G.append(("requests/s on one core (--max)", "≥ 1.2 × HAProxy", f"{rv:.0f} ({rv / rh:.2f} ×)", f"{rh:.0f}", verdict(rv >= 1.2 * rh)))
cv, ch = med(cpu_per_k("vouchd", "r1000c16", 1000.0)), med(cpu_per_k("haproxy", "r1000c16", 1000.0))
if cv is not None:
    G.append(("CPU per 1000 rps (1000 rps, 16 conns)", "≤ 0.02 vCPU", f"{cv:.3f} vCPU", num(ch, 3, " vCPU"), verdict(cv <= 0.02)))
nv, nh = med(vals("vouchd", "newconn", "rps")), med(vals("haproxy", "newconn", "rps"))
if nv:
    G.append(("new connections/s, full handshakes both legs", "≥ 1,000 per core", f"{nv:.0f}", num(nh), verdict(nv >= 1000)))
if "vouchd" in rss_idle:
    G.append(("RSS idle", "≤ 10 MB", f"{rss_idle['vouchd'] / 1024:.1f} MB", f"{rss_idle.get('haproxy', 0) / 1024:.1f} MB", verdict(rss_idle["vouchd"] <= 10 * 1024)))
for r in idle:
    if r.get("target") == "vouchd" and r.get("ok", "0") != "0":
        hp = [x for x in idle if x.get("target") == "haproxy" and x.get("n") == r.get("n") and x.get("ok", "0") != "0"]
        G.append((f"RSS per idle keep-alive connection, {r.get('n')} open", "≤ 40 KB", f"{float(r['per_conn_kb']):.1f} KB", f"{float(hp[0]['per_conn_kb']):.1f} KB" if hp else "n/a", verdict(float(r["per_conn_kb"]) <= 40 and r.get("ok") == r.get("n"))))
ru = med(reuse("vouchd", "r1000c16")); rm = med(reuse("vouchd", "max"))
if ru is not None and rm is not None:
    G.append(("upstream connection reuse (1000 rps / --max)", "≥ 95 %", f"{ru:.1f} % / {rm:.1f} %", "—", verdict(ru >= 95 and rm >= 95)))
P("| metric | goal | vouchd | HAProxy | verdict |")
P("|---|---|---|---|---|")
for g in G:
    P("| " + " | ".join(g) + " |")
P()
P("JWT-SVID and X.509-SVID mint costs (the last goals of issue 5) are in the SVID mint table above.")
P()
P("### Raw results")
P()
P("One loadgen line per run (\`rep\`, \`target\`, \`case\`, proxy CPU ns, wall ns, proxy RSS KB, steal % on the load/proxy CPU, and the connections and requests the upstream saw during the run, appended by the script). Reuse = 1 − upstream connections / upstream requests, over the whole run including warm-up.")
P()
P("\`\`\`")
for line in open(sys.argv[1]):
    if not line.startswith("rss_idle"):
        P(line.rstrip())
P("\`\`\`")
PYEOF
mv "$doc.tmp" "$doc"
echo
cat "$doc"
