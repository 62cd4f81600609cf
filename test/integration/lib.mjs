// lib — the integration-test harness: temp dirs, ports, certificates, the Claude stand-in,
// vouchd as a child process with a generated config and resource directory, the vouch CLI,
// and real clients (the official SDK in a separate Node process, curl).
//
// Every start* helper registers its cleanup with the node:test context it is given
// (t.after), so processes are stopped even when a test fails.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { chmodSync, existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStandin } from '../standin/standin.mjs';
import { generateCerts } from '../standin/certs.mjs';

export { startStandin, generateCerts };

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '../..');
export const BUILD = resolve(REPO, process.env.VOUCH_BUILD ?? 'build');
export const VOUCHD = join(BUILD, 'vouchd');
export const VOUCH = join(BUILD, 'vouch');
export const NODE = realpathSync(process.execPath);
export const SDK_CLIENT = join(HERE, 'clients', 'sdk-client.mjs');
export const TRUST_DOMAIN = 'vouch.test';
export const ORG_ID = '5b7b9c2e-2f8a-4e36-9a43-1f2d3c4b5a69';
export const RULE_ID = 'fdrl_01StandinRuleNode';
export const SA_ID = 'svac_01StandinServiceAcct';
export const AUDIENCE = 'https://api.anthropic.com';
export const isRoot = process.getuid?.() === 0;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll fn() until it returns a truthy value (returned) or timeoutMs passes (throws). what
 * names the condition in the error: a string, or a function called at the timeout. */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
	const end = Date.now() + timeoutMs;
	let last;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v;
		} catch (e) {
			last = e;
		}
		if (Date.now() > end) {
			const w = typeof what === 'function' ? what() : what; // a function: described as it is at the timeout
			throw new Error(`timed out after ${timeoutMs} ms waiting for ${w}${last ? `: ${last.message}` : ''}`);
		}
		await sleep(intervalMs);
	}
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
// Ports this process has handed out: the kernel may give a just-closed port again on the
// next bind(0), and a test asking for three ports must get three (seen in CI: two vouchd
// listeners on one port).
const portsGiven = new Set();
export async function freePort() {
	for (let i = 0; i < 50; i++) {
		const s = createServer();
		s.listen(0, '127.0.0.1');
		await once(s, 'listening');
		const { port } = s.address();
		await new Promise((r) => s.close(r));
		if (!portsGiven.has(port)) {
			portsGiven.add(port);
			return port;
		}
	}
	throw new Error('freePort: no port that was not handed out before in 50 tries');
}

/**
 * Register fn to run after test t, last registered first (node:test runs its own after
 * hooks in registration order, which would remove a temp dir before the process using it
 * is stopped). Errors are collected and rethrown after every cleanup ran.
 */
const cleanupStacks = new WeakMap();
export function onCleanup(t, fn) {
	let stack = cleanupStacks.get(t);
	if (!stack) {
		stack = [];
		cleanupStacks.set(t, stack);
		t.after(async () => {
			const errors = [];
			while (stack.length) {
				try {
					await stack.pop()();
				} catch (e) {
					errors.push(e);
				}
			}
			if (errors.length) throw errors[0];
		});
	}
	stack.push(fn);
}

/** A fresh 0755 temp dir, removed after the test unless VOUCH_KEEP_TMP=1. */
export function makeTempDir(t, prefix = 'vouch-it-') {
	const d = mkdtempSync(join(tmpdir(), prefix));
	chmodSync(d, 0o755); // other uids (workloads run as nobody) may need to traverse it
	if (t && process.env.VOUCH_KEEP_TMP !== '1') onCleanup(t, () => rmSync(d, { recursive: true, force: true }));
	return d;
}

// --- HTTP client ---------------------------------------------------------------------

/**
 * One HTTP(S) request. headers: object (an array value sends the header several times).
 * Returns {status, headers, rawHeaders, body (string), json (parsed or undefined), t0, tEnd}.
 */
export function request(url, { method = 'GET', headers = {}, body, ca, timeoutMs = 15000, agent = false } = {}) {
	const u = new URL(url);
	const fn = u.protocol === 'https:' ? httpsRequest : httpRequest;
	return new Promise((resolvePromise, reject) => {
		const req = fn(u, { method, ca, agent, timeout: timeoutMs }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const text = Buffer.concat(chunks).toString('utf8');
				let json;
				try {
					json = JSON.parse(text);
				} catch {}
				resolvePromise({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: text, json });
			});
			res.on('error', reject);
		});
		for (const [k, v] of Object.entries(headers)) req.setHeader(k, v);
		req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
		req.on('error', reject);
		if (body !== undefined) req.end(typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
		else req.end();
	});
}

/** Send raw bytes over TCP; resolve with everything received until the peer closes. */
export function rawExchange(port, bytes, { host = '127.0.0.1', timeoutMs = 5000 } = {}) {
	return new Promise((resolvePromise, reject) => {
		const s = netConnect(port, host);
		const chunks = [];
		let timedOut = false;
		const timer = setTimeout(() => {
			timedOut = true;
			s.destroy();
		}, timeoutMs);
		s.on('connect', () => s.write(bytes));
		s.on('data', (c) => chunks.push(c));
		s.on('error', () => {});
		s.on('close', () => {
			clearTimeout(timer);
			resolvePromise({ text: Buffer.concat(chunks).toString('latin1'), closedByPeer: !timedOut });
		});
		s.on('timeout', () => reject(new Error('raw socket timeout')));
	});
}

export const MESSAGE_BODY = { model: 'claude-standin-1', max_tokens: 64, messages: [{ role: 'user', content: 'ping' }] };

// --- YAML (small emitter: block maps/lists, scalars as JSON strings) ----------------------

function yamlScalar(v) {
	if (v === null) return 'null';
	if (typeof v === 'number' || typeof v === 'boolean') return String(v);
	return JSON.stringify(String(v));
}
export function toYaml(v, indent = '') {
	if (Array.isArray(v)) {
		if (v.length === 0) return '[]';
		return v.map((e) => {
			if (e && typeof e === 'object' && !Array.isArray(e) && Object.keys(e).length) {
				const inner = toYaml(e, indent + '  ');
				return `${indent}- ${inner.slice(indent.length + 2)}`;
			}
			return `${indent}- ${e && typeof e === 'object' ? toYaml(e, indent + '  ').trimStart() : yamlScalar(e)}`;
		}).join('\n');
	}
	if (v && typeof v === 'object') {
		const keys = Object.keys(v);
		if (keys.length === 0) return '{}';
		return keys.map((k) => {
			const e = v[k];
			const key = /^[A-Za-z_][A-Za-z0-9_.:/-]*$/.test(k) ? k : JSON.stringify(k);
			if (e && typeof e === 'object' && (Array.isArray(e) ? e.length : Object.keys(e).length))
				return `${indent}${key}:\n${toYaml(e, indent + '  ')}`;
			return `${indent}${key}: ${e && typeof e === 'object' ? toYaml(e) : yamlScalar(e)}`;
		}).join('\n');
	}
	return yamlScalar(v);
}
export function yamlDocs(...objs) {
	return objs.map((o) => `---\n${toYaml(o)}\n`).join('');
}

// --- resources -------------------------------------------------------------------------

const API_VERSION = 'vouch.dev/v1alpha1';
export function serviceResource(standinPort, name = 'anthropic-api') {
	return { apiVersion: API_VERSION, kind: 'Service', metadata: { name },
		spec: { labels: { name }, addresses: [{ address: 'localhost', port: standinPort }], tls: true } };
}
export function sourceResource({ name = 'standin', standinPort, ruleId = RULE_ID, organizationId = ORG_ID, serviceAccountId = SA_ID, workspaceId = 'default' }) {
	return { apiVersion: API_VERSION, kind: 'CredentialSource', metadata: { name },
		spec: { anthropic: { organizationId, federationRuleId: ruleId, serviceAccountId, workspaceId, baseURL: `https://localhost:${standinPort}` } } };
}
export function workloadResource({ name, workloadID, selectors }) {
	return { apiVersion: API_VERSION, kind: 'WorkloadIdentity', metadata: { name }, spec: { workloadID, selectors } };
}
export function bindingResource({ name, source = 'standin', workloadID, service = 'anthropic-api', limits }) {
	return { apiVersion: API_VERSION, kind: 'CredentialBinding', metadata: { name },
		spec: { credentialSource: source, workloadID, propagation: { injection: { selectors: [{ 'svc:name': service }] } },
			...(limits ? { limits } : {}) } };
}
export function standinRule({ subjectPrefix = `spiffe://${TRUST_DOMAIN}/*`, ...rest } = {}) {
	return { organizationId: ORG_ID, serviceAccountId: SA_ID, workspaces: ['default'], subjectPrefix, audience: AUDIENCE, ...rest };
}
export const spiffeId = (path) => `spiffe://${TRUST_DOMAIN}/${path}`;

// --- vouchd ----------------------------------------------------------------------------

export function haveVouchd() {
	return existsSync(VOUCHD) && existsSync(VOUCH);
}

/**
 * Spawn vouchd with a generated config. opts:
 *   dir: work dir (default: a new temp dir), resources: {filename: yamlText},
 *   config: overrides of the generated config keys, upstreamCAFile, oidcPort/plainPort/proxyPort,
 *   hostsFile: run vouchd with that file as its /etc/hosts (private mount namespace),
 *   uid/gid: run vouchd as that user (root only; dir must be writable by it).
 * Returns {proc, pid, dir, configFile, stateDir, resourcesDir, auditLog, adminSocket, stderrFile,
 *   oidcPort, plainPort, proxyPort, issuer, plainUrl, stderr(), audit(), writeResource(), removeResource(), stop()}.
 */
export async function startVouchd(t, opts = {}) {
	const dir = opts.dir ?? makeTempDir(t, 'vouchd-');
	const stateDir = join(dir, 'state'), resourcesDir = join(dir, 'resources');
	mkdirSync(stateDir, { recursive: true, mode: 0o700 });
	mkdirSync(resourcesDir, { recursive: true });
	const oidcPort = opts.oidcPort ?? await freePort();
	const plainPort = opts.plainPort ?? await freePort();
	const proxyPort = opts.proxyPort ?? await freePort();
	const issuer = `http://127.0.0.1:${oidcPort}`;
	for (const [f, text] of Object.entries(opts.resources ?? {})) writeFileSync(join(resourcesDir, f), text);
	const config = {
		trustDomain: TRUST_DOMAIN,
		issuer,
		stateDir,
		resourcesDir,
		auditLog: join(dir, 'audit.log'),
		adminSocket: join(dir, 'admin.sock'),
		workloadApiSocket: join(dir, 'workload.sock'),
		oidcListen: `127.0.0.1:${oidcPort}`,
		proxyListen: `127.0.0.1:${proxyPort}`,
		plainListeners: [{ service: 'anthropic-api', listen: `127.0.0.1:${plainPort}` }],
		...(opts.upstreamCAFile ? { upstreamCAFile: opts.upstreamCAFile } : {}),
		jwtTTL: 300,
		logLevel: 'debug',
		// Transparent interception (eBPF, root) is off unless a test asks for it with its own
		// scratch cgroup (netns.mjs startTransparentStack): the default scope would be shared.
		intercept: { enabled: false },
		...(opts.config ?? {}),
	};
	const configFile = join(dir, 'vouchd.yaml');
	writeFileSync(configFile, toYaml(config) + '\n');
	const stderrFile = join(dir, 'vouchd.stderr');
	const out = [];
	// opts.hostsFile: run vouchd in a private mount namespace whose /etc/hosts is that file
	// (netns.mjs); unshare and sh exec, so proc.pid is vouchd's pid.
	const [cmd, args] = opts.hostsFile
		? ['unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c',
			'mount --bind "$0" /etc/hosts || exit 125; exec "$@"', opts.hostsFile, VOUCHD, '-c', configFile]]
		: [VOUCHD, ['-c', configFile]];
	const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) },
		...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}) });
	let exited = null;
	const exitP = new Promise((r) => proc.on('exit', (code, signal) => {
		exited = { code, signal };
		r(exited);
	}));
	proc.stdout.on('data', (c) => out.push(c));
	proc.stderr.on('data', (c) => out.push(c));
	const flush = () => {
		try {
			writeFileSync(stderrFile, Buffer.concat(out));
		} catch {} // the directory may be gone already
	};
	const v = {
		proc, pid: proc.pid, dir, configFile, config, stateDir, resourcesDir, auditLog: config.auditLog,
		adminSocket: config.adminSocket, workloadApiSocket: config.workloadApiSocket, stderrFile, oidcPort, plainPort, proxyPort, issuer,
		plainUrl: `http://127.0.0.1:${plainPort}`, proxyUrl: `http://127.0.0.1:${proxyPort}`,
		get exited() { return exited; },
		/** stdout+stderr of vouchd so far (also written to stderrFile). */
		stderr() {
			flush();
			return Buffer.concat(out).toString('utf8');
		},
		/** Parsed audit lines (a line that is not JSON is an error: the log must be JSON lines). */
		audit() {
			if (!existsSync(config.auditLog)) return [];
			return readFileSync(config.auditLog, 'utf8').split('\n').filter(Boolean).map((l) => {
				try {
					return JSON.parse(l);
				} catch {
					throw new Error(`audit line is not JSON: ${l.slice(0, 200)}`);
				}
			});
		},
		/**
		 * Audit lines matching pred, once there are at least n of them (waits up to timeoutMs).
		 * A request's line is written after its response has left (the event loop writes a
		 * pass's lines together), so a client can finish a moment before its line is there.
		 */
		async auditUntil(pred, n = 1, timeoutMs = 5000) {
			let got = [];
			await waitFor(() => (got = this.audit().filter(pred)).length >= n, { timeoutMs, what: `${n} matching audit line(s)` })
				.catch(() => {});
			return got;
		},
		writeResource(name, text) {
			const tmp = join(resourcesDir, `.${name}.tmp`);
			writeFileSync(tmp, text);
			execFileSync('mv', ['-f', tmp, join(resourcesDir, name)]);
		},
		removeResource(name) {
			rmSync(join(resourcesDir, name), { force: true });
		},
		async stop() {
			if (!exited) {
				proc.kill('SIGTERM');
				const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
				await exitP;
				clearTimeout(timer);
			}
			flush();
			return exited;
		},
	};
	if (t) onCleanup(t, () => v.stop());
	try {
		await waitFor(async () => {
			if (exited) throw new Error(`vouchd exited early (${JSON.stringify(exited)})`);
			const r = await request(`${issuer}/.well-known/openid-configuration`, { timeoutMs: 1000 });
			return r.status === 200;
		}, { timeoutMs: 10000, intervalMs: 100, what: 'vouchd OIDC discovery' });
		await waitFor(() => tcpOpen(plainPort), { timeoutMs: 5000, what: 'vouchd plain listener' });
	} catch (e) {
		await v.stop();
		throw new Error(`${e.message}\n--- vouchd output ---\n${v.stderr().slice(-4000)}`);
	}
	return v;
}

export function tcpOpen(port, host = '127.0.0.1') {
	return new Promise((r) => {
		const s = netConnect(port, host);
		s.on('connect', () => {
			s.destroy();
			r(true);
		});
		s.on('error', () => r(false));
	});
}

/** Run the vouch CLI; never throws on a non-zero exit. */
export function runVouch(args, { adminSocket, timeoutMs = 10000 } = {}) {
	const full = adminSocket ? ['--admin-socket', adminSocket, ...args] : args; // global options first
	return runProcess(VOUCH, full, { timeoutMs });
}

/**
 * Run a command; resolve {code, signal, stdout, stderr, pid}. opts: env, uid, gid, cwd,
 * timeoutMs, onSpawn(child).
 */
export function runProcess(cmd, args, { env, uid, gid, cwd, timeoutMs = 30000, onSpawn, input } = {}) {
	return new Promise((resolvePromise, reject) => {
		const child = spawn(cmd, args, { env: env ?? process.env, uid, gid, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
		const out = [], err = [];
		child.stdout.on('data', (c) => out.push(c));
		child.stderr.on('data', (c) => err.push(c));
		const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
		child.on('error', (e) => {
			clearTimeout(timer);
			reject(e);
		});
		child.on('close', (code, signal) => {
			clearTimeout(timer);
			resolvePromise({ code, signal, pid: child.pid, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
		});
		if (input !== undefined) child.stdin.end(input);
		else child.stdin.end();
		onSpawn?.(child);
	});
}

/**
 * Spawn a long-running client that reads JSON request lines on stdin and prints one JSON
 * line per answer (e.g. clients/keepalive-client.mjs). Returns {child, pid, next(timeoutMs),
 * send(obj, timeoutMs), close(), stderr()}: next() resolves with the next parsed stdout
 * line (unparsable lines as {raw}), send() writes one line and waits for the answer.
 * The child is killed after the test if still running.
 */
export function spawnLines(t, cmd, args, { env, cwd, uid, gid } = {}) {
	const child = spawn(cmd, args, { env: env ?? process.env, cwd, uid, gid, stdio: ['pipe', 'pipe', 'pipe'] });
	const queue = [], waiters = [], err = [];
	let buf = '', exited = null;
	const deliver = (v) => (waiters.length ? waiters.shift().resolve(v) : queue.push(v));
	child.stdout.on('data', (c) => {
		buf += c;
		for (let i; (i = buf.indexOf('\n')) >= 0;) {
			const l = buf.slice(0, i);
			buf = buf.slice(i + 1);
			let v;
			try {
				v = JSON.parse(l);
			} catch {
				v = { raw: l };
			}
			deliver(v);
		}
	});
	child.stderr.on('data', (c) => err.push(c));
	child.stdin.on('error', () => {});
	const exitP = new Promise((r) => child.on('exit', (code, signal) => {
		exited = { code, signal };
		while (waiters.length) waiters.shift().reject(new Error(`client exited (${JSON.stringify(exited)}): ${Buffer.concat(err).toString().slice(-2000)}`));
		r(exited);
	}));
	const c = {
		child, pid: child.pid,
		stderr: () => Buffer.concat(err).toString(),
		next(timeoutMs = 20000) {
			if (queue.length) return Promise.resolve(queue.shift());
			if (exited) return Promise.reject(new Error(`client exited (${JSON.stringify(exited)}): ${c.stderr().slice(-2000)}`));
			return new Promise((resolve, reject) => {
				const w = { resolve: (v) => { clearTimeout(timer); resolve(v); }, reject: (e) => { clearTimeout(timer); reject(e); } };
				const timer = setTimeout(() => {
					waiters.splice(waiters.indexOf(w), 1);
					reject(new Error(`no answer from the client within ${timeoutMs} ms; stderr: ${c.stderr().slice(-2000)}`));
				}, timeoutMs);
				waiters.push(w);
			});
		},
		send(obj, timeoutMs) {
			child.stdin.write((typeof obj === 'string' ? obj : JSON.stringify(obj)) + '\n');
			return c.next(timeoutMs);
		},
		async close() {
			if (!exited) {
				child.stdin.end();
				const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
				await exitP;
				clearTimeout(timer);
			}
			return exited;
		},
	};
	if (t) onCleanup(t, async () => {
		if (!exited) {
			child.kill('SIGKILL');
			await exitP;
		}
	});
	return c;
}

/**
 * Run test/integration/clients/sdk-client.mjs (the official SDK, unmodified usage) in its own
 * Node process against baseURL. plan: [{op:'create'|'stream', content?}]; options: repeat (times
 * the plan), durationMs (repeat the plan until then), intervalMs (pause after each op),
 * maxRetries (the SDK's; default is the SDK's own).
 * Returns {code, stdout, stderr, pid, results: [...JSON lines]}.
 */
export async function runSdkClient(baseURL, plan, { uid, gid, env = {}, timeoutMs = 60000, repeat, intervalMs, durationMs, maxRetries } = {}) {
	const spec = JSON.stringify({ plan, repeat, intervalMs, durationMs, maxRetries });
	const r = await runProcess(NODE, [SDK_CLIENT, spec], {
		uid, gid, timeoutMs, cwd: REPO,
		env: {
			PATH: process.env.PATH, HOME: uid ? '/tmp' : (process.env.HOME ?? '/tmp'),
			ANTHROPIC_API_KEY: 'vouch-managed', ANTHROPIC_BASE_URL: baseURL, ...env,
		},
	});
	r.results = r.stdout.split('\n').filter(Boolean).map((l) => {
		try {
			return JSON.parse(l);
		} catch {
			return { raw: l };
		}
	});
	return r;
}

/** curl as a separate workload; args after the fixed options. */
export function runCurl(args, opts = {}) {
	return runProcess('curl', ['-sS', '--max-time', '20', ...args], opts);
}
export const CURL = (() => {
	try {
		return realpathSync(execFileSync('sh', ['-c', 'command -v curl']).toString().trim());
	} catch {
		return null;
	}
})();

// --- one full stack ----------------------------------------------------------------------

/**
 * Certs + stand-in + vouchd with the standard resources:
 *   service.yaml  anthropic-api → the stand-in,  source.yaml  CredentialSource "standin",
 *   node.yaml     WorkloadIdentity demo/node (binary = this Node), binding-node.yaml its binding.
 * opts.resources adds or replaces files (a null value removes a standard one); it may be a
 * function (standin) => ({...}) when a resource needs the stand-in's port;
 * opts.rules replaces the stand-in's rules; opts.standin and opts.config are passed through.
 */
export async function startStack(t, opts = {}) {
	if (!haveVouchd()) throw new Error(`no vouchd at ${VOUCHD} (run make)`);
	const dir = makeTempDir(t, 'vouch-stack-');
	const certs = generateCerts(join(dir, 'certs'));
	const oidcPort = await freePort();
	const issuer = `http://127.0.0.1:${oidcPort}`;
	const standin = await startStandin({
		certFile: certs.certFile, keyFile: certs.keyFile, issuer,
		rules: opts.rules ?? { [RULE_ID]: standinRule() },
		...(opts.standin ?? {}),
	});
	onCleanup(t, () => standin.close());
	const nodeSelectors = opts.nodeSelectors ?? [{ 'process:binary:path': NODE }];
	const std = {
		'service.yaml': yamlDocs(serviceResource(standin.port)),
		'source.yaml': yamlDocs(sourceResource({ standinPort: standin.port })),
		'node.yaml': yamlDocs(workloadResource({ name: 'node', workloadID: 'demo/node', selectors: nodeSelectors })),
		'binding-node.yaml': yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' })),
	};
	const resources = {};
	const extra = typeof opts.resources === 'function' ? opts.resources(standin) : (opts.resources ?? {});
	for (const [k, v] of Object.entries({ ...std, ...extra })) if (v !== null) resources[k] = v;
	const vouchd = await startVouchd(t, { dir, resources, upstreamCAFile: certs.caFile, oidcPort, config: opts.config });
	return { dir, certs, standin, vouchd, issuer };
}

/** Every file under dir (recursively), as [path, Buffer]. */
export function filesUnder(dir) {
	const out = [];
	const walk = (d) => {
		for (const e of readdirSync(d, { withFileTypes: true })) {
			const p = join(d, e.name);
			if (e.isDirectory()) walk(p);
			else if (e.isFile()) out.push([p, readFileSync(p)]);
		}
	};
	if (existsSync(dir) && statSync(dir).isDirectory()) walk(dir);
	return out;
}

/** Split concatenated DER certificates (Workload API x509_svid / bundle fields) into Buffers. */
export function splitDer(buf) {
	const out = [];
	for (let off = 0; off < buf.length;) {
		if (buf[off] !== 0x30) throw new Error(`not a DER SEQUENCE at ${off}`);
		let len = buf[off + 1], hdr = 2;
		if (len & 0x80) {
			const n = len & 0x7f;
			len = 0;
			for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
			hdr = 2 + n;
		}
		out.push(buf.subarray(off, off + hdr + len));
		off += hdr + len;
	}
	return out;
}
