// Secrets stay out of a core image (issue 6.4). While vouchd holds cached access tokens and
// requests have flowed through it (plain and SSE through the SDK, a refresh, an upstream 401,
// Workload API JWT-SVID and X.509-SVID fetches, a ValidateJWTSVID, curl through the HTTPS
// proxy with TLS termination), a core image of the
// running process (gdb's gcore, which honours MADV_DONTDUMP like the kernel) holds none of:
// the access tokens the stand-in minted, the assertions vouchd sent, the JWT-SVIDs and the
// X.509-SVID private key handed to the workload, the workloads' own API keys (stripped by
// vouchd), and the private keys under the state dir
// (as DER, as the raw scalar, and as OpenSSL keeps it: the scalar's little-endian words).
// A positive control proves the search works: non-secret strings that are in vouchd's heap
// (the SPIFFE ID, the stand-in's rule id) are found in the same core.
//
// Also: vouchd is not dumpable, so a process of vouchd's own uid cannot attach to it (a
// second vouchd runs as uid 65534 for that; a control shows that uid can attach to an
// ordinary process of its own).
//
// Root only (gcore attaches to a non-dumpable root process; a second uid is needed); a skip
// names the reason (a failure under VOUCH_REQUIRE_PRIV=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
	HERE, NODE, RULE_ID, VOUCHD, isRoot, startStack, startVouchd, request, runSdkClient, runProcess, filesUnder,
	makeTempDir, MESSAGE_BODY, spiffeId, waitFor, onCleanup, runCurl, CURL, yamlDocs, workloadResource, bindingResource,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };
const WLCLIENT = join(HERE, 'clients', 'wl', 'wlclient.mjs');
const NOBODY = 65534;

function have(cmd) {
	try {
		execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
		return true;
	} catch {
		return false;
	}
}

// A sanitizer build (make check) is another program for this purpose: ASan replaces the
// allocator (freed blocks sit in its quarantine), turns mlock into a no-op, and reserves
// terabytes that gcore writes out. The core test is about the binary that ships; under a
// sanitizer it is not registered (the ptrace test still runs).
const SANITIZED = existsSync(VOUCHD) && readFileSync(VOUCHD).includes('__asan_init');
if (SANITIZED) console.log('# coredump: the core-image test does not apply to a sanitizer build (ASan allocator); not run');

const skipReason = !isRoot ? 'needs root: gcore attaches to vouchd, and a second uid runs the ptrace check'
	: !have('gcore') || !have('gdb') ? 'needs gdb (gcore): scripts/install-deps.sh installs it' : null;

/** A secret and its distinctive parts (as in secrets.test.mjs), as Buffers. */
function tokenNeedles(secrets) {
	const out = new Map();
	for (const s of secrets) {
		out.set(s, `token ${s.slice(0, 12)}…`);
		if (s.startsWith('sk-ant-')) out.set(s.slice(-24), `token tail …${s.slice(-6)}`);
		const parts = s.split('.');
		if (parts.length === 3) {
			out.set(parts[1], `JWT payload ${parts[1].slice(0, 8)}…`);
			out.set(parts[2], `JWT signature ${parts[2].slice(0, 8)}…`);
			// What rebuilds the token: the signature's r and s (raw, as in a DER ECDSA-Sig-Value)
			// and the claims JSON the payload encodes.
			const sig = Buffer.from(parts[2], 'base64url');
			out.set(sig, `raw JWT signature ${parts[2].slice(0, 8)}…`);
			out.set(sig.subarray(0, 32), `JWT signature r ${parts[2].slice(0, 8)}…`);
			out.set(sig.subarray(32), `JWT signature s ${parts[2].slice(0, 8)}…`);
			out.set(Buffer.from(parts[1], 'base64url'), `JWT claims JSON ${parts[1].slice(0, 8)}…`);
		}
	}
	return [...out].filter(([n]) => n.length >= 16).map(([n, what]) => [Buffer.isBuffer(n) ? n : Buffer.from(n, 'latin1'), what]);
}

/** Private-key needles for an EC key: PKCS#8 DER, the scalar big-endian, and reversed (how a
 * BIGNUM holds it in memory on a little-endian machine: least significant word first). */
function keyNeedles(key, what) {
	const der = key.export({ type: 'pkcs8', format: 'der' });
	const d = Buffer.from(key.export({ format: 'jwk' }).d, 'base64url');
	return [
		[der, `${what} (PKCS#8 DER)`],
		[d, `${what} (private scalar)`],
		[Buffer.from(d).reverse(), `${what} (private scalar, BIGNUM words)`],
	];
}

/** Every private key in PEM files under dir: [[Buffer, what], ...]. */
function stateKeyNeedles(dir) {
	const out = [];
	for (const [p, buf] of filesUnder(dir)) {
		const text = buf.toString('latin1');
		const m = text.match(/-----BEGIN (EC |)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----/g) ?? [];
		for (const pem of m) {
			const key = createPrivateKey(pem);
			if (key.asymmetricKeyType !== 'ec') continue;
			out.push(...keyNeedles(key, `key in ${p}`));
			// the PEM body itself (a copy of the file read into memory)
			for (const line of pem.split('\n').filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l))) out.push([Buffer.from(line), `PEM line of ${p}`]);
		}
	}
	return out;
}

const NT_X86_XSTATE = 0x202;

/** The types of every note in an ELF64 little-endian core's PT_NOTE segments. */
function noteTypes(core) {
	const types = [];
	const phoff = Number(core.readBigUInt64LE(0x20)), phentsize = core.readUInt16LE(0x36), phnum = core.readUInt16LE(0x38);
	for (let i = 0; i < phnum; i++) {
		const ph = phoff + i * phentsize;
		if (core.readUInt32LE(ph) !== 4) continue; // PT_NOTE
		const off = Number(core.readBigUInt64LE(ph + 8)), size = Number(core.readBigUInt64LE(ph + 32));
		for (let p = off; p + 12 <= off + size;) {
			const namesz = core.readUInt32LE(p), descsz = core.readUInt32LE(p + 4);
			types.push(core.readUInt32LE(p + 8));
			p += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
		}
	}
	return types;
}

async function wl(sock, args) {
	const r = await runProcess(NODE, [WLCLIENT, `unix://${sock}`, ...args], { timeoutMs: 30000 });
	const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
	return { ...r, lines };
}

async function takeCore(pid, dir) {
	const prefix = join(dir, 'core');
	const r = await runProcess('gcore', ['-o', prefix, String(pid)], { timeoutMs: 120000 });
	const file = `${prefix}.${pid}`;
	assert.ok(existsSync(file), `gcore wrote no core (code ${r.code}): ${r.stdout}\n${r.stderr}`);
	const core = readFileSync(file);
	rmSync(file, { force: true });
	return core;
}

if (!SANITIZED) test('coredump: a core of a running vouchd holds no token, assertion or private key', { skip: skipReason ?? false, timeout: 240000 }, async (t) => {
	// expiresIn 5 s: tokens are refreshed in the background while requests flow.
	const { standin, vouchd } = await startStack(t, {
		standin: { expiresIn: 5 },
		resources: CURL ? {
			'curl.yaml': yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })),
			'binding-curl.yaml': yamlDocs(bindingResource({ name: 'curl', workloadID: 'demo/curl' })),
		} : {},
	});
	// Credentials of the workloads' own, which vouchd strips: they must not stay behind either.
	const ownKeys = ['sk-ant-api03-FAKE-test-only-sdk-workload-own-key-not-real', 'sk-ant-api03-FAKE-test-only-curl-workload-own-key-not-real'];

	// Plain and SSE requests through the SDK, long enough for a background refresh.
	const sdk = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }],
		{ repeat: 3, intervalMs: 700, maxRetries: 0, env: { ANTHROPIC_API_KEY: ownKeys[0] } });
	assert.equal(sdk.code, 0, `${sdk.stdout}\n${sdk.stderr}`);

	// Through the HTTPS proxy: CONNECT, TLS terminated with an interception-CA leaf.
	if (CURL) {
		const body = JSON.stringify({ model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: 'via connect' }] });
		const c = await runCurl(['-sS', '-x', vouchd.proxyUrl, '--cacert', join(vouchd.stateDir, 'intercept-ca.crt'),
			`https://localhost:${standin.port}/v1/messages`, '-H', `x-api-key: ${ownKeys[1]}`, '-H', 'anthropic-version: 2023-06-01',
			'-H', 'content-type: application/json', '--data-binary', body, '-w', '\n%{http_code}'], { env: { PATH: process.env.PATH } });
		assert.equal(c.stdout.trim().split('\n').pop(), '200', `curl through CONNECT: ${c.stdout}${c.stderr}`);
	}

	// An upstream 401: the token is dropped and re-exchanged.
	standin.setFault('messages', '401');
	await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
	standin.clearFaults();

	// The Workload API: a JWT-SVID (a bearer token of the workload's), validated once, and an
	// X.509-SVID with its private key. This Node is the workload (demo/node).
	await waitFor(() => existsSync(vouchd.workloadApiSocket), { what: 'the workload socket' });
	const j = await wl(vouchd.workloadApiSocket, ['jwtsvid', 'https://api.anthropic.com']);
	assert.equal(j.code, 0, j.stdout + j.stderr);
	const jwtSvid = j.lines[0].svids[0].svid;
	assert.equal(j.lines[0].svids[0].spiffe_id, spiffeId('demo/node'));
	const v = await wl(vouchd.workloadApiSocket, ['validate', 'https://api.anthropic.com', jwtSvid]);
	assert.equal(v.code, 0, v.stdout + v.stderr);
	const x = await wl(vouchd.workloadApiSocket, ['x509svid', '1']);
	assert.equal(x.code, 0, x.stdout + x.stderr);
	const svidKey = createPrivateKey({ key: Buffer.from(x.lines[0].svids[0].x509_svid_key, 'base64'), format: 'der', type: 'pkcs8' });

	// More requests after the fetches, so the proxy's tokens are cached at the time of the core.
	const sdk2 = await runSdkClient(vouchd.plainUrl, [{ op: 'stream' }, { op: 'create' }], { maxRetries: 0 });
	assert.equal(sdk2.code, 0, `${sdk2.stdout}\n${sdk2.stderr}`);
	const disc = JSON.parse((await request(`http://127.0.0.1:${vouchd.oidcPort}/.well-known/openid-configuration`)).body);
	assert.ok(disc.issuer, 'vouchd still answers');

	const secrets = [...standin.secrets(), jwtSvid, ...ownKeys];
	assert.ok(standin.records.tokens.length >= 2, 'several access tokens were minted (a refresh happened)');
	assert.ok(standin.records.exchanges.filter((e) => e.assertion).length >= 2, 'several assertions were sent');
	const needles = [
		...tokenNeedles(secrets),
		...keyNeedles(svidKey, 'the X.509-SVID private key'),
		...stateKeyNeedles(vouchd.stateDir),
	];
	assert.ok(needles.some(([, w]) => w.startsWith('key in ')), 'the state dir holds private keys to look for');

	const core = await takeCore(vouchd.pid, makeTempDir(t, 'vouch-core-'));
	assert.equal(vouchd.exited, null, 'vouchd survived gcore');

	// Positive controls: what is in vouchd's ordinary heap is found in the core, and the core
	// carries every thread's saved registers (x86-64: the xstate notes with the vector
	// registers), so those are searched too.
	for (const known of [spiffeId('demo/node'), RULE_ID])
		assert.ok(core.includes(Buffer.from(known)), `positive control: "${known}" is in the core (${core.length} bytes)`);
	if (process.arch === 'x64') {
		const xstate = noteTypes(core).filter((n) => n === NT_X86_XSTATE).length;
		assert.ok(xstate >= 2, `positive control: the core has the threads' NT_X86_XSTATE notes (${xstate})`);
	}

	if (process.env.VOUCH_CORE_DEBUG) { // keep what a person needs to locate a finding
		const d = process.env.VOUCH_CORE_DEBUG;
		mkdirSync(d, { recursive: true });
		writeFileSync(join(d, 'core'), core);
		writeFileSync(join(d, 'maps'), readFileSync(`/proc/${vouchd.pid}/maps`));
		writeFileSync(join(d, 'needles.json'), JSON.stringify(needles.map(([n, w]) => [n.toString('hex'), w])));
	}
	const found = needles.filter(([n]) => core.includes(n)).map(([, what]) => what);
	assert.deepEqual(found, [], `secrets found in the core of vouchd: ${found.join('; ')}`);
	await vouchd.stop();
});

test('coredump: vouchd is not dumpable, so its own uid cannot ptrace it', { skip: skipReason ?? false, timeout: 120000 }, async (t) => {
	// A vouchd of uid 65534 (no stack needed: it only has to run).
	const dir = makeTempDir(t, 'vouchd-nobody-');
	execFileSync('chmod', ['755', dir]);
	chownSync(dir, NOBODY, NOBODY);
	for (const d of ['state', 'resources']) {
		mkdirSync(join(dir, d), { mode: 0o700 });
		chownSync(join(dir, d), NOBODY, NOBODY);
	}
	const v = await startVouchd(t, { dir, uid: NOBODY, gid: NOBODY });
	const status = readFileSync(`/proc/${v.pid}/status`, 'utf8');
	assert.match(status, new RegExp(`^Uid:\\s+${NOBODY}\\s`, 'm'), 'vouchd runs as uid 65534');
	// A non-dumpable process's /proc/PID entries belong to root (proc(5), PR_SET_DUMPABLE).
	assert.equal(statSync(`/proc/${v.pid}/environ`).uid, 0, '/proc/PID of a non-dumpable process is root-owned');

	const attach = (pid) => runProcess('gdb', ['-nx', '-batch', '-p', String(pid), '-ex', 'info inferiors'],
		{ uid: NOBODY, gid: NOBODY, timeoutMs: 60000, env: { PATH: process.env.PATH, HOME: '/tmp' } });

	// Control: uid 65534 can attach to an ordinary process of its own.
	const sleeper = spawn('sleep', ['60'], { uid: NOBODY, gid: NOBODY, stdio: 'ignore' });
	onCleanup(t, () => sleeper.kill('SIGKILL'));
	const ok = await attach(sleeper.pid);
	assert.doesNotMatch(ok.stdout + ok.stderr, /ptrace: Operation not permitted/,
		`control: uid ${NOBODY} attaches to its own dumpable process (ptrace_scope?): ${ok.stderr}`);
	assert.match(ok.stdout + ok.stderr, new RegExp(`process ${sleeper.pid}`), `control attach worked: ${ok.stdout}${ok.stderr}`);

	const denied = await attach(v.pid);
	assert.match(denied.stdout + denied.stderr, /ptrace: Operation not permitted/, `attach to vouchd refused: ${denied.stdout}${denied.stderr}`);
	assert.equal(v.exited, null, 'vouchd still runs');
	await v.stop();
});
