#!/usr/bin/env bash
# bench/proxy.sh [BUILD_DIR] — vouchd's proxy side by side with HAProxy (Debian 12: 2.6) and
# a no-proxy baseline, on one host, one upstream, one client and one CPU placement
# (issue 5). Writes PROXY_DOC (default BUILD_DIR/bench-proxy.md; `make bench` puts it into
# docs/BENCHMARKS.md as its proxy section): exact commands, machine, tables, goal verdicts;
# and prints it.
#
#   baseline  loadgen --TLS--> upstream
#   haproxy   loadgen --TLS--> haproxy (strip x-api-key, set Authorization, TLS out, reuse) --> upstream
#   vouchd    loadgen --CONNECT+TLS--> vouchd explicit proxy (interception CA, attestation,
#             header strip + Bearer from its token exchange with the Claude stand-in) --> upstream
#   vouchd-tp loadgen, in a scratch cgroup, connects to the upstream itself; vouchd's eBPF
#             connect4 hook redirects it to the transparent listener (same job) --> upstream
#   relay     loadgen --TLS, end to end--> bench/relay.c (one epoll thread copying bytes, no
#             TLS termination, no parsing) --> upstream: the floor for any user-space hop on
#             this machine; loadgen sends the Bearer token itself, as for the baseline
#   tlsrelay  loadgen --TLS--> bench/tlsrelay.c (terminates TLS, re-encrypts record by record
#             to its own TLS connection to the upstream; no HTTP, no policy): the floor for a
#             TLS-terminating hop, the work no proxy doing vouchd's job can skip
#
# One vouchd serves both of its rows: interception on, attached to a scratch cgroup v2
# directory (PROXY_CGROUP, default <cgroup2 mount>/vouch-bench-PID, removed at the end) that
# only the vouchd-tp loadgen runs in (sh writes its pid to cgroup.procs, then execs it).
#
# The upstream (bench/upstream.c) runs with --require-bearer: a request that still carries
# x-api-key or lacks "Authorization: Bearer" gets a 401, which loadgen counts as an error,
# so a proxy that does not do its job cannot look fast. Each case runs BENCH_REPS times,
# interleaved across targets; tables give the median and min-max.
#
# Placement: loadgen and the upstream on CPU PROXY_LOAD_CPU (default 0), the proxy under test
# on PROXY_CPU (default 1); with one CPU, everything on CPU 0. Knobs (environment):
# BENCH_REPS (3), PROXY_DURATION (2 s per fixed-rate run), PROXY_MAX_DURATION (2 s for --max
# and --new-conns), PROXY_WARMUP (0.5 s), PROXY_TARGETS ("baseline relay tlsrelay haproxy vouchd vouchd-tp"),
# PROXY_NICE (-20: the nice level of every bench process; the box may be shared), PROXY_CASES
# (a subset of "r500c1 r500c16 r1000c1 r1000c16 s1000c1 s1000c16 sse max newconn"),
# PROXY_SSE_RATE (200), PROXY_IDLE_CONNS ("1000 10000": open idle keep-alive connections,
# cumulative), PROXY_DOC (the output file), PROXY_SMAPS_DIR (a directory: each target's
# /proc/PID/smaps at the idle RSS reading, for a breakdown), PROXY_IDLE_HOOK (a command run
# then as: CMD TARGET PID); BENCH_MINT_OUT, BENCH_CONNECT_OUT (bench/run.sh:
# mint_bench's and connect_bench's output, for their rows in the goal table).
# Needs root (apt-get for haproxy, pinning, eBPF); without it, it says so and exits 0.
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
doc=${PROXY_DOC:-$build/bench-proxy.md}

if [ "$(id -u)" != 0 ]; then
	echo "bench/proxy.sh: skipped: needs root (apt-get install haproxy, CPU pinning). $doc left as is."
	exit 0
fi

# The processes under test get the environment of a stock Debian host or a systemd unit:
# no SSL_CERT_FILE / SSL_CERT_DIR (some shells and CI images export them). With
# SSL_CERT_FILE set, OpenSSL — and vouchd, which honours it — parses that whole bundle into
# every TLS context (+0.7 MB resident per context here) instead of looking the system CAs
# up lazily in the hashed directory. Every target here is given its CA files explicitly.
bench_env_note=
if [ -n "${SSL_CERT_FILE:-}${SSL_CERT_DIR:-}" ]; then
	bench_env_note="SSL_CERT_FILE/SSL_CERT_DIR were set in the calling environment and removed for the run"
	unset SSL_CERT_FILE SSL_CERT_DIR
fi
reps=${BENCH_REPS:-3}
dur=${PROXY_DURATION:-2}
maxdur=${PROXY_MAX_DURATION:-2}
warm=${PROXY_WARMUP:-0.5}
sse_rate=${PROXY_SSE_RATE:-200}
targets=${PROXY_TARGETS:-baseline relay tlsrelay haproxy vouchd vouchd-tp}
# 10k idle keep-alive connections per proxy: the soft descriptor limit up to the hard one
ulimit -n "$(ulimit -Hn)"
ncpu=$(nproc)
load_cpu=${PROXY_LOAD_CPU:-0}
proxy_cpu=${PROXY_CPU:-$([ "$ncpu" -ge 2 ] && echo 1 || echo 0)}
# every bench process runs at nice PROXY_NICE (default -20): the box is shared (CI, other
# sessions' tests) and a compiler on the same CPU otherwise dominates the tail latency
nice_n=${PROXY_NICE:--20}
# "${pin[@]}" CPU CMD...: CMD on CPU at that nice level; nice and taskset exec, so $! is CMD's pid
pin=(nice -n "$nice_n" taskset -c)
token="sk-ant-oat01-fake-bench-only-not-a-real-token-0123456789abcdef"
api_key="sk-ant-api03-FAKE-bench-only-placeholder"

if ! command -v haproxy >/dev/null; then
	echo "bench/proxy.sh: installing haproxy (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy >/dev/null
fi
[ -x "$build/vouchd" ] || make --no-print-directory -j2 BUILD="$build"
make --no-print-directory -f Makefile -f bench/bench.mk BUILD="$build" "$build/bench/loadgen" \
	"$build/bench/upstream" "$build/bench/relay" "$build/bench/tlsrelay" >/dev/null
loadgen=$(realpath "$build/bench/loadgen")
py_exe=$(readlink -f /usr/bin/python3) # bench/idle_conns.py, a second bound workload
upstream_bin=$(realpath "$build/bench/upstream")
vouchd_bin=$(realpath "$build/vouchd")

tmp=$(mktemp -d /tmp/vouch-bench-proxy.XXXXXX)
chmod 755 "$tmp"
pids=()
cg=
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# the scratch cgroup: empty once the loadgen runs in it are over; the kernel releases it
	# a moment after its last task exits
	if [ -n "$cg" ] && [ -d "$cg" ]; then
		for _ in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
		[ -d "$cg" ] && echo "bench/proxy.sh: could not remove $cg" >&2
	fi
	[ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT
# drop_target NAME: take NAME out of the targets (vouchd takes vouchd-tp with it)
drop_target() {
	local t out=
	for t in $targets; do
		[ "$t" = "$1" ] || { [ "$1" = vouchd ] && [ "$t" = vouchd-tp ]; } || out="$out $t"
	done
	targets=${out# }
}

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

# in_scope CMD...: CMD inside the scratch cgroup (sh moves itself there, then execs CMD);
scope_sh='echo $$ >"$0/cgroup.procs" || exit 125; exec "$@"'
in_scope() {
	/bin/sh -c "$scope_sh" "$cg" "$@"
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

# --- the floor: a byte relay on the proxy's CPU
relay_port=$(free_port)
relay_pid=
if [[ " $targets " == *" relay "* ]]; then
	"${pin[@]}" "$proxy_cpu" "$(realpath "$build/bench/relay")" --listen "$relay_port" --to "$up_port" \
		>"$tmp/relay.log" 2>&1 &
	relay_pid=$!
	pids+=("$relay_pid")
	wait_port "$relay_port" || drop_target relay
fi
tlsrelay_port=$(free_port)
tlsrelay_pid=
if [[ " $targets " == *" tlsrelay "* ]]; then
	"${pin[@]}" "$proxy_cpu" "$(realpath "$build/bench/tlsrelay")" --listen "$tlsrelay_port" \
		--to "$up_port" --cert "$c/server.crt" --key "$c/server.key" --ca "$c/ca.crt" \
		>"$tmp/tlsrelay.log" 2>&1 &
	tlsrelay_pid=$!
	pids+=("$tlsrelay_pid")
	wait_port "$tlsrelay_port" || drop_target tlsrelay
fi

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
tp_note=
v_proxy_port=$(free_port)
v_tp_port=$(free_port)
v_ca=
if [[ " $targets " == *" vouchd-tp "* ]]; then
	cg2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
	if [ -z "$cg2" ]; then
		tp_note="no cgroup v2 mount on this machine (the eBPF hooks attach to a cgroup v2 directory)"
	elif [ ! -r /sys/kernel/btf/vmlinux ]; then
		tp_note="no kernel BTF (/sys/kernel/btf/vmlinux): the eBPF hooks cannot be loaded"
	else
		cg=${PROXY_CGROUP:-$cg2/vouch-bench-$$}
	fi
	if [ -n "$tp_note" ]; then
		echo "bench/proxy.sh: vouchd transparent mode skipped: $tp_note" >&2
		drop_target vouchd-tp
	fi
fi
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
	EOF
	if [ -n "$cg" ]; then
		echo "intercept: {enabled: true, cgroup: \"$cg\", listen4: \"127.0.0.1:$v_tp_port\", listen6: \"\"}" >>"$v/vouchd.yaml"
	else
		echo "intercept: {enabled: false}" >>"$v/vouchd.yaml"
	fi
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
			elif [ -n "$cg" ]; then
				# transparent: loadgen in the scope, straight at the upstream; only a
				# redirect to vouchd makes this succeed (the upstream's certificate is not
				# from vouchd's interception CA, and the upstream wants a Bearer token)
				for _ in $(seq 50); do [ -d "$cg" ] && break; sleep 0.1; done
				if ! in_scope "$loadgen" --target "localhost:$up_port" --ca "$v_ca" --api-key "$api_key" \
					--rate 10 --duration 1 --warmup 0 --label vouchd-tp-warmup >"$tmp/tp-warm.out" 2>&1; then
					tp_note="warm-up through vouchd's transparent listener failed: $(tail -c 300 "$tmp/tp-warm.out" | tr '\n' ' '); vouchd: $(grep -i 'intercept\|bpf\|hook' "$tmp/vouchd.log" | tail -c 600 | tr '\n' ' ')"
				fi
			fi
		else
			v_note="vouchd did not start: $(tail -c 600 "$tmp/vouchd.log")"
		fi
	fi
	if [ -n "$v_note" ]; then
		echo "bench/proxy.sh: vouchd skipped: $v_note" >&2
		drop_target vouchd
	elif [ -n "$tp_note" ]; then
		echo "bench/proxy.sh: vouchd transparent mode skipped: $tp_note" >&2
		drop_target vouchd-tp
	fi
fi

# set_target_args TARGET: loadgen's address arguments for that target, in targs
set_target_args() {
	case $1 in
	baseline) targs=(--target "localhost:$up_port" --ca "$c/ca.crt" --header "Authorization: Bearer $token") ;;
	relay) targs=(--target "localhost:$relay_port" --ca "$c/ca.crt" --header "Authorization: Bearer $token") ;;
	tlsrelay) targs=(--target "localhost:$tlsrelay_port" --ca "$c/ca.crt" --header "Authorization: Bearer $token") ;;
	haproxy) targs=(--target "localhost:$ha_port" --ca "$c/ca.crt" --api-key "$api_key") ;;
	vouchd) targs=(--target "localhost:$up_port" --proxy-connect "127.0.0.1:$v_proxy_port" --ca "$v_ca"
		--api-key "$api_key") ;;
	vouchd-tp) targs=(--target "localhost:$up_port" --ca "$v_ca" --api-key "$api_key") ;;
	esac
}
target_pid() {
	case $1 in
	haproxy) echo "$ha_pid" ;;
	relay) echo "$relay_pid" ;;
	tlsrelay) echo "$tlsrelay_pid" ;;
	vouchd | vouchd-tp) echo "$v_pid" ;;
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

read -ra cases <<<"${PROXY_CASES:-r500c1 r500c16 r1000c1 r1000c16 s1000c1 s1000c16 sse max newconn}"
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
	# SSE: the upstream's chunked event stream (first event at once, the rest 20 ms later),
	# timed to the first event's first byte
	sse) echo "--rate $sse_rate --conns 16 --duration $dur --warmup $warm --first-byte --header accept:text/event-stream" ;;
	max) echo "--max --conns 16 --duration $maxdur --warmup 0.5" ;;
	newconn) echo "--new-conns --conns 4 --duration $maxdur --warmup 0.5" ;;
	esac
}

results=$tmp/results
: >"$results"
declare -A rss_idle rss_split
# idle = 2 s after the warm-ups: what a proxy keeps once its connections have closed
# (vouchd returns freed heap to the kernel on its next housekeeping tick)
sleep 2
for t in $targets; do
	t_pid=$(target_pid "$t")
	rss_idle[$t]=$(rss_kb "$t_pid")
	rss_split[$t]=""
	[ -n "$t_pid" ] || continue # the baseline: no proxy process
	# the same split into anonymous memory (heap, stacks, the process's own) and
	# resident pages of mapped files (shared libraries, shared with other processes)
	rss_split[$t]=$(awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print "anon_kb=" a " file_kb=" f}' \
		/proc/"$t_pid"/status 2>/dev/null || true)
	[ -z "${PROXY_SMAPS_DIR:-}" ] || cp /proc/"$t_pid"/smaps "$PROXY_SMAPS_DIR/$t.smaps" 2>/dev/null || true
	[ -z "${PROXY_IDLE_HOOK:-}" ] || $PROXY_IDLE_HOOK "$t" "$t_pid" || true
done
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
			scope=()
			[ "$t" = vouchd-tp ] && scope=(/bin/sh -c "$scope_sh" "$cg")
			out=$("${pin[@]}" "$load_cpu" "${scope[@]}" "$loadgen" "${args[@]}" --label "$t/$cs" 2>"$tmp/lg.err") || true
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
# --- memory per idle keep-alive connection: one request each, then idle; the connections
# accumulate (1000 open, then 10000 open), every step against the RSS before the first.
# vouchd: the explicit listener (the transparent one holds a connection the same way).
idle_ns=${PROXY_IDLE_CONNS:-1000 10000}
idle_steps=$(echo "$idle_ns" | tr -s ' ' ',')
for t in $targets; do
	case $t in
	haproxy) iargs=(--target "localhost:$ha_port" --ca "$c/ca.crt") ;;
	vouchd) iargs=(--target "localhost:$up_port" --proxy-connect "127.0.0.1:$v_proxy_port" --ca "$v_ca") ;;
	*) continue ;;
	esac
	pid=$(target_pid "$t")
	sleep 2 # let the timed runs' connections close and park
	echo "rss_pre_idle target=$t kb=$(rss_kb "$pid")" >>"$results"
	lines=$("${pin[@]}" "$load_cpu" /usr/bin/python3 -B bench/idle_conns.py --pid "$pid" -n "$idle_steps" \
		"${iargs[@]}" 2>"$tmp/idle.err") || true
	[ -s "$tmp/idle.err" ] && echo "  $t idle: $(head -c 300 "$tmp/idle.err")" >&2
	for n in $idle_ns; do
		line=$(grep "^idle n=$n " <<<"$lines" || true)
		[ -n "$line" ] || line="idle n=$n ok=0 failed=1 why=$(head -c 200 "$tmp/idle.err" | tr ' \n' '__')"
		echo "$line target=$t" >>"$results"
		echo "  $t: $line"
	done
done
t_total=$(($(date +%s) - t_start))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the document
cpu_model=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | sed -n 1p)
virt="bare metal or unknown"
grep -qw hypervisor /proc/cpuinfo && virt="virtual machine"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- src bench 2>/dev/null | sed -n 1p) # sed reads all: no SIGPIPE under pipefail
[ -n "$dirty" ] && commit="$commit (+ uncommitted changes under src/ or bench/)"
ha_ver=$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')
ssl_ver=$(openssl version | awk '{print $2}')
for t in $targets; do echo "rss_idle target=$t kb=${rss_idle[$t]} ${rss_split[$t]}" >>"$results"; done

PD_TARGETS="$targets" PD_CASES="${cases[*]}" PD_BUILD="$build" PD_REPS="$reps" PD_DUR="$dur" \
	PD_MAXDUR="$maxdur" PD_WARM="$warm" PD_SSE_RATE="$sse_rate" PD_LOAD_CPU="$load_cpu" \
	PD_PROXY_CPU="$proxy_cpu" PD_CPU_MODEL="$cpu_model" PD_NCPU="$ncpu" PD_VIRT="$virt" \
	PD_KERNEL="$(uname -r)" PD_SSL="$ssl_ver" PD_HAPROXY="$ha_ver" PD_COMMIT="$commit" \
	PD_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" PD_TOTAL="$t_total" PD_LOAD_BEFORE="$load_before" \
	PD_LOAD_AFTER="$load_after" PD_NOFILE="$(ulimit -n)" PD_V_NOTE="$v_note" PD_TP_NOTE="$tp_note" PD_ENV_NOTE="$bench_env_note" PD_CGROUP="$cg" \
	/usr/bin/python3 -B bench/proxy_doc.py "$results" >"$doc.tmp"
mv "$doc.tmp" "$doc"
echo
cat "$doc"
