// Secrets stay in memory: after a run with successes, denials, an upstream 401 and a failed
// exchange, no access token and no assertion the stand-in saw or minted appears in vouchd's
// output, the audit log, any file under vouchd's directories, the CLI's output, or any error
// body returned to a workload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
	startStack, request, rawExchange, runSdkClient, runCurl, runVouch, filesUnder, MESSAGE_BODY, CURL, waitFor,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };

// A secret and its distinctive parts (the random tail of a token; each JWT segment but the
// header, which is not secret).
function needles(secrets) {
	const out = new Set();
	for (const s of secrets) {
		out.add(s);
		if (s.startsWith('sk-ant-')) out.add(s.slice(-24));
		const parts = s.split('.');
		if (parts.length === 3) {
			out.add(parts[1]);
			out.add(parts[2]);
		}
	}
	return [...out].filter((n) => n.length >= 16);
}

test('secrets: tokens and assertions never leave vouchd memory', async (t) => {
	const { standin, vouchd, dir } = await startStack(t, { standin: { expiresIn: 5 } });
	const bodies = [];

	// Successes through the SDK (create + stream), long enough for a background refresh.
	const sdk = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }], { repeat: 3, intervalMs: 700, maxRetries: 0 });
	assert.equal(sdk.code, 0, `${sdk.stdout}\n${sdk.stderr}`);
	bodies.push(sdk.stdout, sdk.stderr);

	// An upstream 401 on the messages endpoint (vouchd should invalidate and re-exchange).
	standin.setFault('messages', '401');
	bodies.push((await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY })).body);
	standin.clearFaults();

	// A failed exchange: the token endpoint rejects, the workload gets an error.
	standin.setFault('token', '401');
	await waitFor(async () => {
		const r = await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		bodies.push(r.body);
		return standin.records.exchanges.some((e) => e.fault === '401');
	}, { timeoutMs: 15000, intervalMs: 500, what: 'an exchange during the 401 fault' });
	standin.clearFaults();

	// A denial (curl has no identity).
	if (CURL) {
		const c = await runCurl([`${vouchd.plainUrl}/v1/messages`, '-H', 'content-type: application/json', '--data-binary', JSON.stringify(MESSAGE_BODY)], { env: { PATH: process.env.PATH } });
		bodies.push(c.stdout, c.stderr);
	}

	// CLI output.
	for (const args of [['stats'], ['explain', String(process.pid)], ['explain', String(sdk.pid)]]) {
		const r = await runVouch(args, { adminSocket: vouchd.adminSocket });
		bodies.push(r.stdout, r.stderr);
	}

	await vouchd.stop();
	const secrets = standin.secrets();
	assert.ok(standin.records.tokens.length >= 2, 'several tokens were minted');
	assert.ok(secrets.length >= 4);
	const hay = [
		['vouchd stdout/stderr', vouchd.stderr()],
		['audit log', JSON.stringify(vouchd.audit())],
		['workload-visible bodies and CLI output', bodies.join('\n')],
	];
	for (const [p, buf] of filesUnder(dir)) {
		if (p.startsWith(`${dir}/certs/`)) continue; // the stand-in's own TLS material
		hay.push([p, buf.toString('latin1')]);
	}
	for (const n of needles(secrets))
		for (const [where, text] of hay) assert.ok(!text.includes(n), `a secret (${n.slice(0, 6)}…) appears in ${where}`);

	// Fingerprints are there instead.
	assert.ok(vouchd.audit().some((a) => a.token_fp), 'audit carries token fingerprints');
});

// Error bodies are fixed templates plus safe fields: a credential the workload sent (the
// x-api-key / Authorization values it must not need, a Proxy-Authorization, a Cookie) is
// stripped and never echoed — not in any error body vouchd answers (a malformed head, a bad
// Host, a denied route, a refused CONNECT, an upstream 401, a failed exchange), not in its
// debug-level log, the audit log or any file it writes, and it never reaches the upstream.
test('secrets: credentials a workload sends are never echoed, logged or forwarded', async (t) => {
	const { standin, vouchd, dir } = await startStack(t, { standin: { expiresIn: 5 } });
	const creds = {
		'x-api-key': 'sk-ant-api03-FAKE-test-only-workload-own-key-not-real',
		authorization: 'Bearer WorkloadOwnBearer0123456789abcdefXYZ',
		'proxy-authorization': 'Basic V29ya2xvYWRQcm94eUNyZWQwMTIzNDU2Nzg5',
		cookie: 'session=WorkloadOwnCookie0123456789abcdefXYZ',
	};
	const needlesOf = Object.values(creds).map((v) => v.split(/[ =]/).pop());
	const H = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...creds };
	const raw = (head) => rawExchange(vouchd.plainPort, head + Object.entries(creds).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n');
	const bodies = [];
	const hit = async (what, p, wantStatus) => {
		const r = await p;
		const text = r.text ?? `${r.status} ${JSON.stringify(r.headers)} ${r.body}`;
		if (wantStatus) assert.match(text, new RegExp(`^(HTTP/1.1 )?${wantStatus}`), `${what}: ${text.slice(0, 300)}`);
		bodies.push([what, text]);
	};

	await hit('success', request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: H, body: MESSAGE_BODY }), 200);
	await hit('malformed head', raw('POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n'), 400);
	await hit('invalid Host', raw('GET /v1/models HTTP/1.1\r\nHost: a b\r\n'), 400);
	await hit('Host of another Service', raw('GET /v1/models HTTP/1.1\r\nHost: example.com\r\n'), 403);
	await hit('denied route', request(`${vouchd.plainUrl}/v1/organizations/me`, { headers: H }), 403);
	await hit('refused CONNECT', rawExchange(vouchd.proxyPort, `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n${Object.entries(creds).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`), 403);
	standin.setFault('messages', '401');
	await hit('upstream 401', request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: H, body: MESSAGE_BODY }));
	standin.clearFaults();
	standin.setFault('token', '401');
	await waitFor(async () => {
		await hit('failed exchange', request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: H, body: MESSAGE_BODY }));
		// the cached token outlives the first refused refreshes: wait for the error answer
		return /"type":"error"/.test(bodies.at(-1)[1]);
	}, { timeoutMs: 20000, intervalMs: 500, what: 'an error answer during the token-endpoint 401 fault' });
	standin.clearFaults();
	assert.ok(bodies.some(([w, b]) => w === 'failed exchange' && /"type":"error"/.test(b)), `the failed exchange answered with an error body: ${JSON.stringify(bodies.filter(([w]) => w === 'failed exchange').slice(-2))}`);

	await vouchd.stop();
	const hay = [...bodies,
		['vouchd output (debug)', vouchd.stderr()],
		['audit log', readFileSync(vouchd.auditLog, 'latin1')]];
	for (const [p, buf] of filesUnder(dir)) if (!p.startsWith(`${dir}/certs/`)) hay.push([p, buf.toString('latin1')]);
	for (const n of needlesOf)
		for (const [where, text] of hay) assert.ok(!text.includes(n), `the workload's credential ${n.slice(0, 10)}… appears in ${where}`);
	// Upstream: the credential fields are stripped (a Cookie is an ordinary end-to-end field
	// and goes to the Service's upstream like any other).
	assert.ok(standin.records.messages.length > 0);
	const upstream = JSON.stringify(standin.records.messages.map((m) => m.headers));
	for (const k of ['x-api-key', 'authorization', 'proxy-authorization'])
		assert.ok(!upstream.includes(creds[k].split(' ').pop()), `the workload's ${k} reached the upstream`);
});
