// netns — helpers for the transparent-interception tests (issue 3): a private view of
// /etc/hosts per process, scratch cgroup v2 scopes, what bpftool sees attached, and one
// whole "transparent stack" (stand-in on 127.1.2.3:443 and/or [::1]:443, vouchd with the
// eBPF hooks attached to a scratch cgroup, `vouch run` to start workloads inside it).
//
// The name api.anthropic.com is mapped to a loopback address ONLY inside private mount
// namespaces: each wrapped process runs as
//   unshare --mount --propagation private -- /bin/sh -c 'mount --bind HOSTS /etc/hosts && exec CMD...'
// so the machine's own /etc/hosts is never touched, and nothing outside the test ever
// resolves the name to anything but the real address. unshare and sh both exec, so the
// pid of the spawned child is the pid of CMD.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
	isRoot, NODE, VOUCH, VOUCHD, CURL, RULE_ID, ORG_ID, SA_ID, haveVouchd, makeTempDir, onCleanup,
	generateCerts, startStandin, startVouchd, standinRule, yamlDocs, workloadResource, bindingResource,
	runProcess, runVouch, sleep, waitFor,
} from './lib.mjs';

export const API_HOST = 'api.anthropic.com';
export const API_V4 = '127.1.2.3';
export const API_V6 = '::1';

function which(cmd) {
	try {
		return execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || null;
	} catch {
		return null;
	}
}
export const UNSHARE = which('unshare');
export const BPFTOOL = which('bpftool') ?? (existsSync('/usr/sbin/bpftool') ? '/usr/sbin/bpftool' : null);

// --- hosts files and private mount namespaces -------------------------------------------

/**
 * Write a hosts file into dir: localhost lines plus `map` ({name: address | [addresses]}).
 * Returns its path.
 */
export function writeHostsFile(dir, map, name = 'hosts') {
	const lines = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback'];
	for (const [host, addrs] of Object.entries(map)) for (const a of [].concat(addrs)) lines.push(`${a} ${host}`);
	const p = join(dir, name);
	writeFileSync(p, lines.join('\n') + '\n', { mode: 0o644 });
	return p;
}

/** [cmd, args] that run cmd args with hostsFile bind-mounted on /etc/hosts in a private mount namespace. */
export function inHosts(hostsFile, cmd, args = []) {
	if (!UNSHARE) throw new Error('unshare(1) not found');
	return [UNSHARE, ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
		'mount --bind "$0" /etc/hosts || exit 125; exec "$@"', hostsFile, cmd, ...args]];
}

// --- cgroup v2 ------------------------------------------------------------------------

/** The cgroup v2 mount point (from /proc/self/mountinfo), or null. */
export function cgroup2Root() {
	let text;
	try {
		text = readFileSync('/proc/self/mountinfo', 'utf8');
	} catch {
		return null;
	}
	let first = null;
	for (const line of text.split('\n')) {
		const sep = line.indexOf(' - ');
		if (sep < 0) continue;
		const left = line.slice(0, sep).split(' '), right = line.slice(sep + 3).split(' ');
		if (right[0] !== 'cgroup2') continue;
		const mnt = left[4]?.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
		if (left[3] === '/') return mnt;
		first ??= mnt;
	}
	return first;
}

/** Pids in one cgroup directory (not below). */
export function cgroupProcs(dir) {
	try {
		return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
	} catch {
		return [];
	}
}

/**
 * Remove a scratch cgroup directory and everything below it: processes still in it (only
 * ones a test started there) are SIGKILLed first. Missing directory: no-op.
 */
export async function removeCgroup(dir) {
	if (!existsSync(dir)) return;
	for (const e of readdirSync(dir, { withFileTypes: true }))
		if (e.isDirectory()) await removeCgroup(join(dir, e.name));
	for (let i = 0; i < 100; i++) {
		const pids = cgroupProcs(dir);
		if (pids.length === 0) break;
		for (const p of pids) {
			try {
				process.kill(p, 'SIGKILL');
			} catch {}
		}
		await sleep(50);
	}
	let last;
	for (let i = 0; i < 50; i++) {
		try {
			rmdirSync(dir);
			return;
		} catch (e) {
			if (e.code === 'ENOENT') return;
			last = e;
			await sleep(100); // the kernel releases a cgroup a moment after its last task exits
		}
	}
	throw new Error(`cannot remove scratch cgroup ${dir}: ${last?.message}`);
}

/**
 * A fresh scratch cgroup path "<cgroup2 root>/vouch-it-<random>" (not created: vouchd's
 * intercept_open creates it), removed after the test.
 */
export function scratchCgroup(t) {
	const root = cgroup2Root();
	if (!root) throw new Error('no cgroup2 mount');
	const p = join(root, `vouch-it-${randomBytes(4).toString('hex')}`);
	onCleanup(t, () => removeCgroup(p));
	return p;
}

/** `bpftool cgroup show PATH` output (trimmed); '' when nothing is attached. */
export function bpftoolCgroupShow(path) {
	const r = execFileSync(BPFTOOL, ['cgroup', 'show', path], { stdio: ['ignore', 'pipe', 'pipe'] });
	return r.toString().trim();
}
/** The program lines of `bpftool -j cgroup show PATH`: [{id, attach_type, name, ...}]. */
export function bpftoolCgroupProgs(path) {
	const out = execFileSync(BPFTOOL, ['-j', 'cgroup', 'show', path], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
	if (!out) return [];
	const j = JSON.parse(out);
	return Array.isArray(j) ? j : [];
}

/**
 * Why this machine cannot run the real-hook tests (a reason string for t.skip), or null.
 * Needs root, unshare(1), a cgroup2 mount, kernel BTF, bpftool, the built binaries.
 */
export function interceptSkipReason() {
	if (!isRoot) return 'needs root (eBPF cgroup hooks, mount namespaces, binding port 443)';
	if (!haveVouchd()) return `vouchd/vouch not built at ${VOUCHD} (run make)`;
	if (!UNSHARE) return 'unshare(1) not installed (util-linux)';
	if (!cgroup2Root()) return 'no cgroup v2 mount on this machine';
	if (!existsSync('/sys/kernel/btf/vmlinux')) return 'kernel without BTF (/sys/kernel/btf/vmlinux)';
	if (!BPFTOOL) return 'bpftool not installed';
	return null;
}

/**
 * n distinct TCP ports that were free a moment ago on host (all held open together while
 * choosing, so two picks can never collide the way consecutive freePort() calls can).
 */
export async function freePortsOn(n, host = '127.0.0.1') {
	const servers = [];
	try {
		for (let i = 0; i < n; i++) {
			const s = createServer();
			s.listen(0, host);
			await once(s, 'listening');
			servers.push(s);
		}
		return servers.map((s) => s.address().port);
	} finally {
		await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
	}
}

/** A TCP port that was free a moment ago on host (default [::1]). */
export async function freePortOn(host = '::1') {
	const s = createServer();
	s.listen(0, host);
	await once(s, 'listening');
	const { port } = s.address();
	await new Promise((r) => s.close(r));
	return port;
}

// --- one transparent stack --------------------------------------------------------------

/**
 * Stand-in + vouchd with interception on, everything name-based:
 *   family: 4 (api.anthropic.com → 127.1.2.3, stand-in on 127.1.2.3:443) | 6 (→ ::1,
 *     stand-in on [::1]:443) | 'both' (vouchd sees both; clients pick st.hosts4 or st.hosts6).
 *   ports: intercept.ports (whole ports, decided by SNI); config: more agent config keys;
 *   resources: extra/replaced resource files (null removes one; may be fn(standin)).
 * The standard resources use the built-in anthropic-api Service (api.anthropic.com:443;
 * no override) and a CredentialSource whose baseURL is https://api.anthropic.com, so
 * vouchd's token exchange goes through the same mapped name. Workloads: demo/node (this
 * Node binary) and demo/curl (curl), both bound to anthropic-api.
 * Returns {dir, certs, standin, vouchd (replaced by restart()), cgroup, hosts (the clients'
 *   default), hosts4, hosts6, hostsBoth, hostsVouchd, listen4, listen6, stats(),
 *   run(cmd, args, opts) (under vouch run), runInScope(...) (in the cgroup, no vouch run),
 *   runOutside(...) (neither), restart(), waitAttached()}.
 */
export async function startTransparentStack(t, opts = {}) {
	const family = opts.family ?? 4;
	const dir = makeTempDir(t, 'vouch-tp-');
	const certs = generateCerts(join(dir, 'certs'), { names: ['localhost', API_HOST], ips: ['127.0.0.1', API_V4, API_V6] });
	const [oidcPort, plainPort, proxyPort, listen4Port] = await freePortsOn(4, '127.0.0.1');
	const issuer = `http://127.0.0.1:${oidcPort}`;
	const hosts4 = writeHostsFile(dir, { [API_HOST]: API_V4 }, 'hosts4');
	const hosts6 = writeHostsFile(dir, { [API_HOST]: API_V6 }, 'hosts6');
	const hostsBoth = writeHostsFile(dir, { [API_HOST]: [API_V4, API_V6] }, 'hosts-both');
	const hostsVouchd = family === 6 ? hosts6 : family === 4 ? hosts4 : hostsBoth;
	const standinHosts = family === 6 ? ['::1'] : family === 4 ? [API_V4] : [API_V4, '::1'];
	// Port 443 on these addresses is the one fixed resource: another test run on the same
	// machine (or make demo) may hold it for a while, so wait for it instead of failing.
	let standin;
	for (const end = Date.now() + 120000; ;) {
		try {
			standin = await startStandin({
				certFile: certs.certFile, keyFile: certs.keyFile, issuer, host: standinHosts[0], port: 443,
				extraHosts: standinHosts.slice(1), alsoIPv6: false,
				rules: opts.rules ?? { [RULE_ID]: standinRule() },
				...(opts.standin ?? {}),
			});
			break;
		} catch (e) {
			if (!/EADDRINUSE/.test(`${e.code} ${e.message}`) || Date.now() > end) throw e;
			t.diagnostic?.(`port 443 busy (${e.message}); waiting for another run to release it`);
			await sleep(500);
		}
	}
	onCleanup(t, () => standin.close());
	const cgroup = scratchCgroup(t); // registered before vouchd: removed after it stopped
	const listen4 = `127.0.0.1:${listen4Port}`;
	const listen6 = `[::1]:${await freePortOn('::1')}`;
	const api = 'vouch.dev/v1alpha1';
	const std = {
		'source.yaml': yamlDocs({ apiVersion: api, kind: 'CredentialSource', metadata: { name: 'standin' },
			spec: { anthropic: { organizationId: ORG_ID, federationRuleId: RULE_ID, serviceAccountId: SA_ID, workspaceId: 'default', baseURL: `https://${API_HOST}` } } }),
		'node.yaml': yamlDocs(workloadResource({ name: 'node', workloadID: 'demo/node', selectors: [{ 'process:binary:path': NODE }] })),
		'binding-node.yaml': yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' })),
	};
	if (CURL) {
		std['curl.yaml'] = yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] }));
		std['binding-curl.yaml'] = yamlDocs(bindingResource({ name: 'curl', workloadID: 'demo/curl' }));
	}
	const extra = typeof opts.resources === 'function' ? opts.resources(standin) : (opts.resources ?? {});
	const resources = {};
	for (const [k, v] of Object.entries({ ...std, ...extra })) if (v !== null) resources[k] = v;
	const intercept = { enabled: true, cgroup, listen4, listen6, ...(opts.ports ? { ports: opts.ports } : {}), ...(opts.intercept ?? {}) };
	const vouchdOpts = {
		dir, resources, upstreamCAFile: certs.caFile, oidcPort, plainPort, proxyPort, hostsFile: hostsVouchd,
		config: { intercept, ...(opts.config ?? {}) },
	}; // a restart() keeps every address
	const vouchd = await startVouchd(t, vouchdOpts);
	const st = {
		dir, certs, standin, vouchd, cgroup, hosts4, hosts6, hostsBoth, hostsVouchd, listen4, listen6, issuer,
		/** The default hosts file for clients of this stack. */
		hosts: family === 6 ? hosts6 : hosts4,
		async stats() {
			const r = await runVouch(['stats'], { adminSocket: st.vouchd.adminSocket });
			if (r.code !== 0) throw new Error(`vouch stats: ${r.code} ${r.stderr}`);
			return JSON.parse(r.stdout);
		},
		/**
		 * `vouch run [--workload-hint H] -- cmd args` in a private namespace with hosts (default
		 * st.hosts); env replaces the environment (default: PATH and HOME only, so no
		 * ANTHROPIC_* or CA variables leak in from outside). Resolves like runProcess.
		 */
		run(cmd, args = [], { hosts, hint, env, ...rest } = {}) {
			const inner = [VOUCH, ['--admin-socket', st.vouchd.adminSocket, 'run', ...(hint ? ['--workload-hint', hint] : []), '--', cmd, ...args]];
			const [c, a] = inHosts(hosts ?? st.hosts, inner[0], inner[1]);
			return runProcess(c, a, { env: env ?? baseEnv(), ...rest });
		},
		/**
		 * cmd args inside the scope (the pid written to the scratch cgroup's cgroup.procs)
		 * WITHOUT vouch run: no CA variables, no placeholder key unless env has them.
		 */
		runInScope(cmd, args = [], { hosts, env, ...rest } = {}) {
			const [c, a] = inHosts(hosts ?? st.hosts, '/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" || exit 125; exec "$@"', cgroup, cmd, ...args]);
			return runProcess(c, a, { env: env ?? baseEnv(), ...rest });
		},
		/** Start vouchd again with the same directory, config and addresses (after it stopped). */
		async restart() {
			st.vouchd = await startVouchd(t, vouchdOpts);
			await st.waitAttached();
			return st.vouchd;
		},
		async waitAttached() {
			try {
				await waitFor(() => bpftoolCgroupProgs(cgroup).length >= 2, { timeoutMs: 10000, what: `eBPF programs attached to ${cgroup}` });
			} catch (e) {
				throw new Error(`${e.message}\n--- vouchd output ---\n${st.vouchd.stderr().slice(-3000)}`);
			}
		},
		/** cmd args in the same kind of namespace but NOT under vouch run (outside the scope). */
		runOutside(cmd, args = [], { hosts, env, ...rest } = {}) {
			const [c, a] = inHosts(hosts ?? st.hosts, cmd, args);
			return runProcess(c, a, { env: env ?? baseEnv(), ...rest });
		},
	};
	// Ready when the hooks are attached to the scratch cgroup (vouchd may attach them
	// before or after its listeners come up).
	await st.waitAttached();
	return st;
}

/** The minimal environment for workloads started by the tests. */
export function baseEnv(extra = {}) {
	return { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp', ...extra };
}

/** The first line of vouchd's audit log matching pred, polled (the log is written asynchronously). */
export function waitAudit(vouchd, pred, { timeoutMs = 5000, what = 'audit line' } = {}) {
	return waitFor(() => vouchd.audit().find(pred), { timeoutMs, what });
}
