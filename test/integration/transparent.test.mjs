// Transparent interception end to end (issue 3 items 3, 4 and the real-hook half of 8):
// workloads started with `vouch run` talk to https://api.anthropic.com exactly as they
// would in production — the official SDK with its default base URL, curl — and their
// requests arrive at the Claude stand-in with the injected bearer token. The name
// api.anthropic.com resolves to 127.1.2.3 (or ::1) only inside private mount namespaces
// (netns.mjs); the stand-in listens there on port 443 with a certificate for that name, and
// vouchd (in the same kind of namespace) resolves the built-in anthropic-api Service into
// the capture map and dials the upstream by name. Each stack has its own scratch cgroup.
// Root only (eBPF); elsewhere the tests skip with the reason (a failure under
// VOUCH_REQUIRE_PRIV=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HERE, NODE, CURL, REPO, spiffeId, waitFor } from './lib.mjs';
import {
	interceptSkipReason, startTransparentStack, bpftoolCgroupShow, bpftoolCgroupProgs, cgroupProcs, baseEnv, API_HOST,
} from './netns.mjs';

const SDK_DEFAULT = join(HERE, 'clients', 'sdk-default.mjs');
const OAUTH_BETA = 'oauth-2025-04-20';
const CA_VARS = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'];
const skip = interceptSkipReason();
const BODY = JSON.stringify({ model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: 'curl transparent' }] });

/**
 * The environment of a workload NOT started by vouch run: the placeholder key, and trust in
 * the stand-in's own test CA only (so a direct connection verifies, while one terminated by
 * vouchd with an interception-CA leaf would not).
 */
const directEnv = (st) => baseEnv({ ANTHROPIC_API_KEY: 'vouch-managed', NODE_EXTRA_CA_CERTS: st.certs.caFile });

/**
 * A stand-in record of a request that did NOT go through vouchd: the SDK's own placeholder
 * credential arrived (the SDK sends it as x-api-key or as "Authorization: Bearer
 * vouch-managed", depending on its version) and was rejected with 401.
 */
function assertPlaceholderArrived(m) {
	assert.ok(m, 'the request reached the stand-in');
	const creds = [...m.apiKey, ...m.authorization];
	assert.ok(creds.length === 1 && /^(Bearer )?vouch-managed$/.test(creds[0]), `only the placeholder arrived, unstripped: ${JSON.stringify(creds)}`);
	assert.equal(m.status, 401);
	assert.ok(['api_key_rejected', 'unknown_token'].includes(m.reason), `rejected as an unknown credential: ${m.reason}`);
}

/** Parse sdk-default.mjs output: {hello, ops}. */
function sdkLines(r) {
	const lines = r.stdout.split('\n').filter(Boolean).map((l) => {
		try {
			return JSON.parse(l);
		} catch {
			return { raw: l };
		}
	});
	return { hello: lines.find((l) => l.hello !== undefined), ops: lines.filter((l) => l.op) };
}
const diag = (st, r) => `exit ${r.code}/${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- vouchd ---\n${st.vouchd.stderr().slice(-3000)}`;

/** Every stand-in Messages record since index `from`: one bearer token of `sub`, no key, the beta. */
function assertInjected(st, from, sub, n) {
	const msgs = st.standin.records.messages.slice(from);
	assert.equal(msgs.length, n, `${n} requests reached the stand-in`);
	for (const m of msgs) {
		assert.equal(m.status, 200, `stand-in answered ${m.status} (${m.reason})`);
		assert.equal(m.authorization.length, 1, 'exactly one Authorization header');
		const tok = st.standin.records.tokens.find((x) => `Bearer ${x.token}` === m.authorization[0]);
		assert.ok(tok, 'the bearer token is one the stand-in minted');
		assert.equal(tok.sub, sub);
		assert.deepEqual(m.apiKey, [], 'no x-api-key reached the upstream');
		assert.ok(m.beta.includes(OAUTH_BETA), 'oauth beta merged');
		assert.deepEqual(m.host, [API_HOST], 'Host names the Service');
	}
	return msgs;
}

async function sdkUnderVouchRun(t, st, family) {
	const sub = spiffeId('demo/node');
	const from = st.standin.records.messages.length;
	const r = await st.run(NODE, [SDK_DEFAULT, JSON.stringify({
		plan: [{ op: 'create', content: `hello transparent v${family}` }, { op: 'stream', content: `stream transparent v${family}` }],
		maxRetries: 0,
	})], { cwd: REPO });
	const { hello, ops } = sdkLines(r);

	await t.test(`(v${family}) vouch run sets the CA variables and the placeholder key, no base URL`, () => {
		assert.ok(hello?.hello, diag(st, r));
		assert.equal(hello.baseURL, 'https://api.anthropic.com', 'the SDK uses its default base URL');
		for (const v of CA_VARS) assert.ok(hello.env[v], `${v} is set by vouch run`);
		assert.equal(hello.env.SPIFFE_ENDPOINT_SOCKET, `unix://${st.vouchd.workloadApiSocket}`, 'SPIFFE_ENDPOINT_SOCKET names vouchd\'s Workload API');
		assert.equal(hello.placeholderKey, true, 'ANTHROPIC_API_KEY=vouch-managed');
	});
	await t.test(`(v${family}) the unmodified SDK: messages.create and messages.stream succeed`, () => {
		assert.equal(r.code, 0, diag(st, r));
		const [create, stream] = ops;
		assert.equal(create.ok, true);
		assert.match(create.text, new RegExp(`hello transparent v${family}`));
		assert.ok(create.text.includes(sub), 'the stand-in saw the workload identity');
		assert.equal(stream.ok, true);
		assert.match(stream.text, new RegExp(`stream transparent v${family}`));
		assert.equal(stream.stop_reason, 'end_turn');
		assert.equal(stream.events.at(-1), 'message_stop');
	});
	await t.test(`(v${family}) the stand-in saw the injected bearer token of demo/node, no x-api-key, the oauth beta`, () => {
		const msgs = assertInjected(st, from, sub, 2);
		const local = family === 6 ? '::1' : '127.1.2.3';
		for (const m of msgs) assert.equal(m.localAddress, local, `vouchd dialed api.anthropic.com → ${local}`);
		for (const e of st.standin.records.exchanges) assert.equal(e.result, 'ok', `exchange ${e.result}: ${e.reason}`);
		assert.ok(st.standin.records.exchanges.some((e) => e.localAddress === local), `the token exchange went to https://${API_HOST} (→ ${local})`);
	});
	await t.test(`(v${family}) audit inject lines carry the SDK process's pid`, async () => {
		const inj = await waitFor(() => {
			const l = st.vouchd.audit().filter((a) => a.event === 'inject' && a.workload === sub && a.pid === hello?.pid);
			return l.length >= 2 && l;
		}, { what: `2 inject lines with pid ${hello?.pid}` }).catch((e) => assert.fail(`${e.message}\naudit: ${JSON.stringify(st.vouchd.audit(), null, 1).slice(-3000)}`));
		assert.equal(inj.length, 2);
		for (const a of inj) {
			assert.equal(a.exe, NODE);
			assert.ok(a.token_fp, 'token fingerprint present');
			assert.equal(a.path, '/v1/messages');
			assert.match(a.destination ?? '', /^(api\.anthropic\.com|127\.1\.2\.3|\[?::1\]?):443$/, `destination ${a.destination}`);
		}
	});
	return { r, hello };
}

test('transparent (IPv4): SDK and curl under vouch run reach https://api.anthropic.com with the injected token', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 4 });

	await t.test('vouch stats shows interception on', async () => {
		const s = await st.stats();
		assert.equal(s.intercept, 'on', `stats.intercept: ${JSON.stringify(s)}`);
		// as root, explicit-mode callers are found by the BPF socket-holder iterator
		assert.equal(s.peer_lookup, 'bpf', `stats.peer_lookup: ${JSON.stringify(s)}`);
		assert.equal(typeof s.proxy?.connections, 'number', `stats.proxy: ${JSON.stringify(s)}`);
		assert.equal(typeof s.proxy?.idle, 'number');
	});

	await t.test('the hooks are attached to the scratch cgroup', () => {
		const progs = bpftoolCgroupProgs(st.cgroup);
		const types = progs.map((p) => p.attach_type).sort();
		assert.ok(types.includes('connect4') || types.includes('cgroup_inet4_connect'), `connect4 attached: ${JSON.stringify(progs)}`);
		assert.ok(types.includes('connect6') || types.includes('cgroup_inet6_connect'), `connect6 attached: ${JSON.stringify(progs)}`);
	});

	await sdkUnderVouchRun(t, st, 4);

	await t.test('curl (CURL_CA_BUNDLE from vouch run) is injected as demo/curl', { skip: CURL ? false : 'curl not installed' }, async () => {
		const from = st.standin.records.messages.length;
		const r = await st.run(CURL, ['-sS', '--max-time', '20', `https://${API_HOST}/v1/messages`,
			'-H', 'x-api-key: vouch-managed', '-H', 'anthropic-version: 2023-06-01', '-H', 'content-type: application/json',
			'--data-binary', BODY, '-w', '\n%{http_code}']);
		const lines = r.stdout.trimEnd().split('\n');
		const status = lines.pop();
		assert.equal(r.code, 0, diag(st, r));
		assert.equal(status, '200', lines.join('\n'));
		assert.match(JSON.parse(lines.join('\n')).content[0].text, /curl transparent/);
		assertInjected(st, from, spiffeId('demo/curl'), 1);
		const inj = await waitFor(() => st.vouchd.audit().find((a) => a.event === 'inject' && a.workload === spiffeId('demo/curl')), { what: 'inject line for demo/curl' });
		assert.equal(inj.exe, CURL);
		assert.ok(inj.pid > 0);
	});

	await t.test('outside vouch run the same connect is not intercepted: the placeholder key reaches the stand-in (401)', async () => {
		const from = st.standin.records.messages.length;
		const auditBefore = st.vouchd.audit().length;
		const r = await st.runOutside(NODE, [SDK_DEFAULT, JSON.stringify({ plan: [{ op: 'create', content: 'outside' }], maxRetries: 0 })],
			{ cwd: REPO, env: directEnv(st) });
		const { hello, ops } = sdkLines(r);
		assert.equal(r.code, 1, diag(st, r));
		assert.equal(ops[0]?.ok, false);
		assert.equal(ops[0].status, 401, `the stand-in's own 401: ${JSON.stringify(ops[0])}`);
		const m = st.standin.records.messages.slice(from);
		assert.equal(m.length, 1, 'the request went straight to the stand-in');
		assertPlaceholderArrived(m[0]);
		assert.ok(!st.vouchd.audit().slice(auditBefore).some((a) => a.pid === hello?.pid), 'vouchd never saw the process');
	});

	await t.test('vouch run --workload-hint: a matching hint runs, a wrong one is refused before CMD runs', async () => {
		const plan = JSON.stringify({ plan: [{ op: 'create', content: 'hinted' }], maxRetries: 0 });
		const ok = await st.run(NODE, [SDK_DEFAULT, plan], { cwd: REPO, hint: 'demo/node' });
		assert.equal(ok.code, 0, diag(st, ok));
		const from = st.standin.records.messages.length;
		const bad = await st.run(NODE, [SDK_DEFAULT, plan], { cwd: REPO, hint: 'demo/curl' });
		assert.notEqual(bad.code, 0, 'refused');
		assert.match(bad.stderr, /demo\/curl|hint/, bad.stderr);
		assert.ok(!sdkLines(bad).hello, 'the command never started its work');
		assert.equal(st.standin.records.messages.length, from, 'nothing reached the upstream');
	});

	await t.test('vouchd stops cleanly on SIGTERM and leaves no BPF program on the cgroup', async () => {
		const ex = await st.vouchd.stop();
		assert.deepEqual(ex, { code: 0, signal: null }, st.vouchd.stderr().slice(-3000));
		assert.equal(bpftoolCgroupShow(st.cgroup), '', 'bpftool cgroup show prints nothing');
		assert.deepEqual(cgroupProcs(st.cgroup), [], 'no workload left in the scope');
	});

	await t.test('after the stop a process in the scope connects directly (no redirect to a dead listener)', async () => {
		const from = st.standin.records.messages.length;
		const r = await st.runInScope(NODE, [SDK_DEFAULT, JSON.stringify({ plan: [{ op: 'create' }], maxRetries: 0 })],
			{ cwd: REPO, env: directEnv(st) });
		const { ops } = sdkLines(r);
		assert.equal(ops[0]?.status, 401, `direct to the stand-in: ${r.stdout} ${r.stderr}`);
		assertPlaceholderArrived(st.standin.records.messages.slice(from)[0]);
	});
});

test('transparent (IPv6): api.anthropic.com → ::1, SDK and curl injected', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 6 });
	await sdkUnderVouchRun(t, st, 6);
	await t.test('(v6) curl is injected as demo/curl', { skip: CURL ? false : 'curl not installed' }, async () => {
		const from = st.standin.records.messages.length;
		const r = await st.run(CURL, ['-sS', '--max-time', '20', `https://${API_HOST}/v1/messages`,
			'-H', 'x-api-key: vouch-managed', '-H', 'anthropic-version: 2023-06-01', '-H', 'content-type: application/json',
			'--data-binary', BODY, '-w', '\n%{http_code}\n%{remote_ip}']);
		const lines = r.stdout.trimEnd().split('\n');
		const remote = lines.pop(), status = lines.pop();
		assert.equal(r.code, 0, diag(st, r));
		assert.equal(status, '200', lines.join('\n'));
		assert.equal(remote, '::1', 'curl connected to the IPv6 address of the name');
		assertInjected(st, from, spiffeId('demo/curl'), 1);
	});
	await t.test('(v6) SIGTERM: clean exit, nothing attached', async () => {
		assert.deepEqual(await st.vouchd.stop(), { code: 0, signal: null }, st.vouchd.stderr().slice(-3000));
		assert.equal(bpftoolCgroupShow(st.cgroup), '');
	});
});

test('transparent: kill -9 of vouchd leaves no program attached, and a restart works', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 4 });
	const plan = JSON.stringify({ plan: [{ op: 'create', content: 'before the crash' }], maxRetries: 0 });
	const r1 = await st.run(NODE, [SDK_DEFAULT, plan], { cwd: REPO });
	assert.equal(r1.code, 0, diag(st, r1));

	st.vouchd.proc.kill('SIGKILL');
	const ex = await st.vouchd.stop();
	assert.equal(ex.signal, 'SIGKILL');
	await waitFor(() => bpftoolCgroupShow(st.cgroup) === '', { what: 'links released with the killed process' })
		.catch(() => assert.fail(`still attached after SIGKILL:\n${bpftoolCgroupShow(st.cgroup)}`));

	const fromDirect = st.standin.records.messages.length;
	const r2 = await st.runInScope(NODE, [SDK_DEFAULT, JSON.stringify({ plan: [{ op: 'create' }], maxRetries: 0 })],
		{ cwd: REPO, env: directEnv(st) });
	assert.equal(sdkLines(r2).ops[0]?.status, 401, `after the crash a scope process goes direct: ${r2.stdout} ${r2.stderr}`);
	assertPlaceholderArrived(st.standin.records.messages.slice(fromDirect)[0]);

	await st.restart();
	const from = st.standin.records.messages.length;
	const r3 = await st.run(NODE, [SDK_DEFAULT, JSON.stringify({ plan: [{ op: 'create', content: 'after the restart' }], maxRetries: 0 })], { cwd: REPO });
	assert.equal(r3.code, 0, diag(st, r3));
	assertInjected(st, from, spiffeId('demo/node'), 1);
	assert.deepEqual(await st.vouchd.stop(), { code: 0, signal: null });
	assert.equal(bpftoolCgroupShow(st.cgroup), '');
});
