// Per-binding limits (issue 7.5): the default for an Anthropic source (the inference routes
// only), an explicit limits block (methods, paths), requestsPerMinute (429 with
// Retry-After), time windows, and ambiguous paths (400). A refused request is answered in
// Anthropic's error shape naming the limit, audited with the limit's name, and neither
// forwarded nor exchanged for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import {
	startStack, request, rawExchange, waitFor, yamlDocs, bindingResource, sourceResource, runVouch, spiffeId,
	MESSAGE_BODY,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };

/** Replace the node binding and wait until vouchd has reloaded it. */
async function rebind(vouchd, limits, source = 'standin') {
	const reloads = vouchd.audit().filter((a) => a.event === 'reload' && !a.reason).length;
	vouchd.writeResource('binding-node.yaml', yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node', source, limits })));
	await waitFor(() => vouchd.audit().filter((a) => a.event === 'reload' && !a.reason).length > reloads,
		{ timeoutMs: 15000, intervalMs: 100, what: 'vouchd to reload binding-node.yaml' });
}

function assertRefusal(r, status, type, re) {
	assert.equal(r.status, status, r.body);
	assert.equal(r.json?.type, 'error', `Anthropic error shape: ${r.body}`);
	assert.equal(r.json.error?.type, type, r.body);
	assert.match(r.json.error.message, re);
	assert.equal(r.headers['x-vouch-error'], '1', 'the refusal is the proxy\'s own');
}

test('limits: the default for an Anthropic source allows the inference routes only', async (t) => {
	const { standin, vouchd } = await startStack(t);
	const base = vouchd.plainUrl;

	await t.test('Admin API routes are 403 naming the limit; nothing forwarded, no exchange', async () => {
		for (const [method, path] of [['GET', '/v1/organizations/me'], ['GET', '/v1/organizations/api_keys'],
			['POST', '/v1/organizations/workspaces'], ['GET', '/v1/files'], ['GET', '/v1/messages']]) {
			const r = await request(`${base}${path}`, { method, headers: HDRS, body: method === 'POST' ? '{}' : undefined });
			assertRefusal(r, 403, 'permission_error',
				new RegExp(`${method} ${path} is not allowed: CredentialBinding node has no limits\\.paths, so only the inference routes`));
			assert.match(r.json.error.message, /POST \/v1\/messages, POST \/v1\/messages\/count_tokens/);
		}
		const deny = await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'limits.paths (default)', 5);
		assert.equal(deny.length, 5, JSON.stringify(vouchd.audit()));
		assert.ok(deny.some((a) => a.path === '/v1/organizations/me' && a.status === 403 && a.binding === 'node' &&
			a.workload === spiffeId('demo/node')), JSON.stringify(deny));
		assert.deepEqual(standin.records.requests, [], 'nothing reached the stand-in');
		assert.equal(standin.records.exchanges.length, 0, 'no token exchange for a refused request');
	});

	await t.test('bypass attempts are 400 (ambiguous), never matched and never forwarded', async () => {
		for (const target of ['/v1/messages/../organizations/me', '/v1/messages/%2e%2e/organizations/me',
			'//v1/organizations/me', '/v1/messages%2F..%2Forganizations%2Fme', '/v1/messages/..;/organizations/me',
			'/v1/models/%2E%2E/../organizations/me']) {
			const { text } = await rawExchange(vouchd.plainPort,
				`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${vouchd.plainPort}\r\nx-api-key: vouch-managed\r\n\r\n`);
			assert.match(text, /^HTTP\/1\.1 400 /, `${target}: ${text}`);
			assert.match(text, /"type":"invalid_request_error"/, text);
			assert.match(text, /is ambiguous/, text);
		}
		const deny = await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'path', 6);
		assert.equal(deny.length, 6);
		assert.deepEqual(standin.records.requests, [], 'nothing reached the stand-in');
		assert.equal(standin.records.exchanges.length, 0);
	});

	await t.test('the inference routes go through', async () => {
		const r = await request(`${base}/v1/messages?beta=true`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		assert.equal(r.status, 200, r.body);
		assert.deepEqual(standin.records.requests.filter((q) => q.target !== '/v1/oauth/token').map((q) => `${q.method} ${q.target}`),
			['POST /v1/messages?beta=true']);
	});

	await t.test('vouch explain shows the binding\'s limits', async () => {
		const e = await runVouch(['explain', String(process.pid)], { adminSocket: vouchd.adminSocket });
		assert.equal(e.code, 0, e.stderr);
		assert.match(e.stdout, /limits: paths \(default\): POST \/v1\/messages, /, e.stdout);
	});
});

test('limits: an explicit block, requestsPerMinute and time windows', async (t) => {
	const { standin, vouchd } = await startStack(t);
	const base = vouchd.plainUrl;
	const forwarded = () => standin.records.requests.filter((q) => q.target !== '/v1/oauth/token').length;

	await t.test('methods and paths as listed', async () => {
		await rebind(vouchd, { methods: ['POST'], paths: ['POST /v1/messages', '/v1/messages/count_tokens'] });
		const before = forwarded();
		let r = await request(`${base}/v1/models`, { headers: HDRS });
		assertRefusal(r, 403, 'permission_error', /CredentialBinding node allows only methods POST \(limits\.methods\); GET \/v1\/models is not allowed/);
		r = await request(`${base}/v1/messages/batches`, { method: 'POST', headers: HDRS, body: '{}' });
		assertRefusal(r, 403, 'permission_error', /POST \/v1\/messages\/batches is not allowed: CredentialBinding node allows only POST \/v1\/messages, \/v1\/messages\/count_tokens/);
		assert.equal(forwarded(), before, 'refused requests were not forwarded');
		assert.equal((await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'limits.methods')).length, 1);
		assert.equal((await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'limits.paths')).length, 1);
		r = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		assert.equal(r.status, 200, r.body);
	});

	await t.test('requestsPerMinute: over the limit is 429 with Retry-After, not forwarded', async () => {
		// One keep-alive connection throughout. Once idle, its next request is decided by the
		// proxy's event loop; with no token cached for the (new) source the loop hands the
		// request to a thread, which decides again: the request must count once.
		const agent = new Agent({ keepAlive: true, maxSockets: 1 });
		t.after(() => agent.destroy());
		const first = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY, agent });
		assert.equal(first.status, 200, first.body);
		vouchd.writeResource('source2.yaml', yamlDocs(sourceResource({ name: 'standin2', standinPort: standin.port })));
		await rebind(vouchd, { requestsPerMinute: 2 }, 'standin2');
		const exchanges = standin.records.exchanges.length;
		const before = standin.records.messages.length;
		for (let i = 0; i < 2; i++) {
			const r = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY, agent });
			assert.equal(r.status, 200, `request ${i + 1} of 2: ${r.body}`);
		}
		const r = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY, agent });
		assertRefusal(r, 429, 'rate_limit_error', /rate limit 2\/min of CredentialBinding node reached/);
		const retry = Number(r.headers['retry-after']);
		assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After: ${r.headers['retry-after']}`);
		assert.equal(standin.records.messages.length, before + 2, 'the third request was not forwarded');
		assert.equal(standin.records.exchanges.length, exchanges + 1, 'the new source was exchanged for once');
		const deny = await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'limits.requestsPerMinute');
		assert.equal(deny.length, 1);
		assert.equal(deny[0].status, 429);
	});

	await t.test('a window that excludes now is 403 naming the windows', async () => {
		const days = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
		const today = (new Date().getUTCDay() + 6) % 7; // Monday 0
		const other = days[(today + 3) % 7]; // neither today nor tomorrow (UTC)
		await rebind(vouchd, { windows: [{ days: [other], start: '00:00', end: '24:00', timezone: 'UTC' }] });
		const before = forwarded();
		const r = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		assertRefusal(r, 403, 'permission_error',
			new RegExp(`CredentialBinding node allows requests only in its time windows \\(${other} 00:00-24:00 UTC\\); it is outside them now`));
		assert.equal(forwarded(), before);
		assert.equal((await vouchd.auditUntil((a) => a.event === 'deny' && a.limit === 'limits.windows')).length, 1);
	});

	await t.test('an invalid limits block is rejected with its position; the last good set stays', async () => {
		const mark = vouchd.stderr().length;
		vouchd.writeResource('binding-node.yaml', yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node',
			limits: { paths: ['/v1/messages/../organizations'] } })));
		await waitFor(() => /binding-node\.yaml:\d+:\d+: spec\.limits\.paths\[0\]: '\.' and '\.\.' segments are not allowed/.test(vouchd.stderr().slice(mark)),
			{ timeoutMs: 15000, intervalMs: 100, what: 'the diagnostic for the bad pattern' });
		const r = await request(`${base}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		assert.equal(r.status, 403, 'the window binding is still in force');
	});
});
