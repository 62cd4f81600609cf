// Confinement (issue 6.6): what a workload can reach through vouchd is exactly what its own
// binding allows, and nothing vouchd sends back carries a credential.
//   - an unbound workload (no WorkloadIdentity, or an identity without a binding) gets 403;
//   - workload A cannot use workload B's binding: not by naming B in headers, not through
//     CONNECT, not by running B's binary under its own uid; each gets only its own token;
//   - CONNECT (and absolute-form requests) to a host that is no Service are refused;
//   - an upstream redirect is handed back to the workload, never followed by vouchd, and a
//     workload following it on its own carries no credential to the other host;
//   - no error body vouchd produces echoes a token, an assertion, or a secret the workload sent.
// Two curl workloads are told apart by uid: uid 65534 is A, root is B.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { copyFileSync, chmodSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import {
	startStack, runCurl, CURL, isRoot, spiffeId, yamlDocs, workloadResource, bindingResource, sourceResource,
	standinRule, rawExchange, runVouch, waitFor, TRUST_DOMAIN,
} from './lib.mjs';

const BODY = JSON.stringify({ model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: 'confined' }] });
const RULE_A = 'fdrl_01StandinRuleA';
const RULE_B = 'fdrl_01StandinRuleB';
const NOBODY = { uid: 65534, gid: 65534 };
const ENV = { PATH: process.env.PATH }; // no proxy variables from the outside

// Secrets a workload itself might send: they must never come back in a body vouchd writes.
const WL_KEY = `sk-ant-api03-FAKE-test-only-${randomBytes(30).toString('base64url')}`;
const WL_BEARER = randomBytes(32).toString('hex');
const WL_COOKIE = randomBytes(24).toString('hex');

// curl -i output split into status, headers and body (the last response when curl followed).
function parseCurlI(r) {
	const text = r.stdout;
	const blocks = text.split(/\r?\n\r?\n/);
	let i = 0;
	// -i prints every response of a redirect chain or a CONNECT; the final head is the last
	// block that starts with a status line and is followed by a body block.
	for (let k = 0; k < blocks.length; k++) if (/^HTTP\/\S+ \d{3}/.test(blocks[k])) i = k;
	const head = blocks[i] ?? '';
	const status = Number(/^HTTP\/\S+ (\d{3})/.exec(head)?.[1] ?? 0);
	const body = blocks.slice(i + 1).join('\n\n');
	let json;
	try {
		json = JSON.parse(body);
	} catch {}
	return { status, head, body, json, all: text };
}

async function recorder(t) {
	const seen = [];
	const srv = createServer((req, res) => {
		seen.push({ method: req.method, url: req.url, headers: req.headers });
		res.writeHead(200, { 'content-type': 'text/plain' });
		res.end('recorder\n');
	});
	srv.listen(0, '127.0.0.1');
	await once(srv, 'listening');
	t.after(() => srv.close());
	return { port: srv.address().port, seen };
}

test('confinement: workloads reach only what their own binding allows; nothing returned carries a credential', async (t) => {
	if (!isRoot) {
		t.skip('needs root: the two workloads are told apart by uid (one runs as uid 65534)');
		return;
	}
	assert.ok(CURL, 'curl is installed');
	const st = await startStack(t, {
		rules: {
			[RULE_A]: standinRule({ subjectPrefix: `spiffe://${TRUST_DOMAIN}/demo/curl-a` }),
			[RULE_B]: standinRule({ subjectPrefix: `spiffe://${TRUST_DOMAIN}/demo/curl-b` }),
		},
		resources: (standin) => ({
			'source.yaml': null,
			'binding-node.yaml': null,
			'source-a.yaml': yamlDocs(sourceResource({ name: 'source-a', standinPort: standin.port, ruleId: RULE_A })),
			'source-b.yaml': yamlDocs(sourceResource({ name: 'source-b', standinPort: standin.port, ruleId: RULE_B })),
			'curl-a.yaml': yamlDocs(workloadResource({ name: 'curl-a', workloadID: 'demo/curl-a', selectors: [{ 'process:binary:path': CURL, 'process:uid': 65534 }] })),
			'curl-b.yaml': yamlDocs(workloadResource({ name: 'curl-b', workloadID: 'demo/curl-b', selectors: [{ 'process:binary:path': CURL, 'process:uid': 0 }] })),
			'binding-b.yaml': yamlDocs(bindingResource({ name: 'curl-b', workloadID: 'demo/curl-b', source: 'source-b' })),
		}),
	});
	const { standin, vouchd } = st;
	// A copy of the interception CA the uid-65534 workload can read (the state dir is 0700).
	const ca = join(st.dir, 'intercept-ca.crt');
	copyFileSync(join(vouchd.stateDir, 'intercept-ca.crt'), ca);
	chmodSync(ca, 0o644);
	chmodSync(st.dir, 0o755);
	const svcUrl = `https://localhost:${standin.port}/v1/messages`;
	const base = ['-i', '-H', 'anthropic-version: 2023-06-01', '-H', 'content-type: application/json', '--data-binary', BODY];
	const secretHdrs = ['-H', `x-api-key: ${WL_KEY}`, '-H', `authorization: Bearer ${WL_BEARER}`, '-H', `cookie: s=${WL_COOKIE}`];
	const plain = (opts = {}, extra = []) => runCurl([...base, ...secretHdrs, ...extra, `${vouchd.plainUrl}/v1/messages`], { env: ENV, ...opts });
	const viaProxy = (opts = {}, extra = [], url = svcUrl) =>
		runCurl([...base, ...secretHdrs, ...extra, '-x', vouchd.proxyUrl, '--cacert', ca, url], { env: ENV, ...opts });
	const bodies = []; // every response vouchd or the upstream returned to a workload
	const keep = (r) => {
		bodies.push(r.all);
		return r;
	};
	const forwardedSince = (n) => standin.records.messages.slice(n);

	await t.test('B, bound, is served with a token for B only; the secrets it sent are stripped', async () => {
		for (const run of [plain, viaProxy]) {
			const r = keep(parseCurlI(await run()));
			assert.equal(r.status, 200, r.all);
			const m = standin.records.messages.at(-1);
			assert.equal(m.sub, spiffeId('demo/curl-b'));
			assert.deepEqual(m.apiKey, [], 'the workload-sent x-api-key is stripped');
			assert.equal(m.authorization.length, 1);
			assert.ok(!m.authorization[0].includes(WL_BEARER), 'the workload-sent Authorization is replaced');
		}
		const toks = standin.records.tokens;
		assert.ok(toks.length >= 1 && toks.every((x) => x.rule === RULE_B && x.sub === spiffeId('demo/curl-b')),
			JSON.stringify(toks.map((x) => [x.rule, x.sub])));
	});

	await t.test('A, identified but unbound, gets 403 on every path and nothing is forwarded', async () => {
		const before = standin.records.messages.length;
		const exBefore = standin.records.exchanges.length;
		const cases = [
			['plain', () => plain(NOBODY)],
			['CONNECT', () => viaProxy(NOBODY)],
			// Naming B, its binding or its source in any header the workload controls changes nothing.
			['headers naming B', () => plain(NOBODY, [
				'-H', `x-spiffe-id: ${spiffeId('demo/curl-b')}`, '-H', 'x-vouch-workload: demo/curl-b',
				'-H', 'x-vouch-binding: curl-b', '-H', 'x-vouch-source: source-b', '-H', `proxy-authorization: Bearer ${WL_BEARER}`,
				'-H', `forwarded: for=127.0.0.1;by=${spiffeId('demo/curl-b')}`, '-H', 'x-forwarded-for: 127.0.0.1'])],
			['CONNECT with Proxy-Authorization naming B', () => viaProxy(NOBODY, ['--proxy-header', `proxy-authorization: Basic ${Buffer.from('demo/curl-b:x').toString('base64')}`])],
		];
		for (const [what, run] of cases) {
			const r = keep(parseCurlI(await run()));
			assert.equal(r.status, 403, `${what}: ${r.all}`);
			assert.equal(r.json?.type, 'error', `${what}: Anthropic error shape`);
			assert.match(r.json?.error?.message ?? '', /demo\/curl-a|vouch explain/, `${what}: the denial names the caller's identity or how to explain it`);
		}
		assert.equal(standin.records.messages.length, before, 'nothing from A reached the upstream');
		assert.equal(standin.records.exchanges.length, exBefore, 'no exchange was made for A');
		const denied = await vouchd.auditUntil((a) => a.workload === spiffeId('demo/curl-a'), cases.length);
		assert.ok(denied.length >= cases.length, 'the denials are audited under A');
	});

	await t.test('a process that matches no WorkloadIdentity gets 403 and nothing is forwarded', async () => {
		const before = standin.records.messages.length;
		// curl as uid 1 matches neither A (65534) nor B (0).
		const r = keep(parseCurlI(await plain({ uid: 1, gid: 1 })));
		assert.equal(r.status, 403, r.all);
		assert.match(r.json?.error?.message ?? '', /vouch explain/);
		assert.equal(standin.records.messages.length, before);
	});

	await t.test('A bound to its own source gets its own token, never B\'s', async () => {
		writeFileSync(join(vouchd.resourcesDir, 'binding-a.yaml'),
			yamlDocs(bindingResource({ name: 'curl-a', workloadID: 'demo/curl-a', source: 'source-a' })));
		let last;
		await waitFor(async () => {
			last = parseCurlI(await plain(NOBODY));
			return last.status === 200;
		}, { timeoutMs: 15000, intervalMs: 300, what: `A served after its binding appears (last: ${last?.status} ${last?.body})` });
		keep(last);
		const n = standin.records.messages.length;
		keep(parseCurlI(await viaProxy(NOBODY)));
		keep(parseCurlI(await plain()));
		const [a2, b2] = forwardedSince(n);
		assert.equal(a2.sub, spiffeId('demo/curl-a'));
		assert.equal(b2.sub, spiffeId('demo/curl-b'));
		assert.notEqual(a2.token, b2.token, 'A and B carry different tokens');
		const tokA = standin.records.tokens.filter((x) => x.token === a2.token);
		assert.equal(tokA.length, 1);
		assert.equal(tokA[0].rule, RULE_A, 'A\'s token came from A\'s source');
		// The stand-in's rule for B refuses A's assertion: a confused deputy would show up here.
		assert.ok(standin.records.tokens.every((x) => (x.rule === RULE_A) === (x.sub === spiffeId('demo/curl-a'))),
			'every token for A came through A\'s rule and every one for B through B\'s');
	});

	await t.test('CONNECT or absolute-form requests to a host that is no Service are refused', async () => {
		const rec = await recorder(t);
		const before = standin.records.messages.length;
		const r1 = keep(parseCurlI(await viaProxy({}, ['-w', '\n%{http_connect}'], `https://localhost:${rec.port}/v1/messages`)));
		assert.notEqual(r1.status, 200, r1.all);
		assert.equal(r1.all.trimEnd().split('\n').pop(), '403', `CONNECT answered 403: ${r1.all}`);
		const raw = await rawExchange(vouchd.proxyPort,
			`POST http://127.0.0.1:${rec.port}/v1/messages HTTP/1.1\r\nHost: 127.0.0.1:${rec.port}\r\nx-api-key: ${WL_KEY}\r\ncontent-length: 2\r\n\r\n{}`);
		bodies.push(raw.text);
		assert.match(raw.text, /^HTTP\/1\.[01] (400|403|405) /, raw.text);
		const raw2 = await rawExchange(vouchd.plainPort,
			`POST http://127.0.0.1:${rec.port}/v1/messages HTTP/1.1\r\nHost: 127.0.0.1:${rec.port}\r\ncontent-length: 2\r\n\r\n{}`);
		bodies.push(raw2.text);
		assert.match(raw2.text, /^HTTP\/1\.[01] (400|403) /, raw2.text);
		assert.equal(rec.seen.length, 0, 'the other host received nothing');
		assert.equal(standin.records.messages.length, before);
	});

	await t.test('an upstream redirect is returned, not followed; a workload following it carries no credential', async () => {
		const rec = await recorder(t);
		const target = `http://127.0.0.1:${rec.port}/steal`;
		for (const status of [301, 302, 307, 308]) {
			standin.setFault('messages', 'redirect', { status, location: target });
			const n = standin.records.messages.length;
			const r = keep(parseCurlI(await plain()));
			assert.equal(r.status, status, r.all);
			assert.match(r.head, new RegExp(`^location: ${target.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`, 'mi'), 'the Location reaches the workload unchanged');
			assert.equal(standin.records.messages.length, n + 1, 'exactly one request reached the upstream');
			assert.equal(rec.seen.length, 0, `vouchd did not follow the ${status}`);
		}
		// The workload follows on its own (curl -L, through the plain listener and through CONNECT).
		standin.setFault('messages', 'redirect', { status: 307, location: target });
		keep(parseCurlI(await runCurl([...base, '-L', '-H', 'x-api-key: vouch-managed', `${vouchd.plainUrl}/v1/messages`], { env: ENV })));
		keep(parseCurlI(await runCurl([...base, '-L', '-H', 'x-api-key: vouch-managed', '-x', vouchd.proxyUrl, '--cacert', ca, svcUrl], { env: ENV })));
		standin.clearFaults();
		const secrets = standin.secrets();
		assert.ok(rec.seen.length >= 1, 'the workload followed the redirect itself (positive control)');
		for (const s of rec.seen) {
			const h = JSON.stringify(s.headers);
			assert.ok(!/bearer/i.test(s.headers.authorization ?? ''), `no bearer token at the other host: ${h}`);
			for (const sec of secrets) assert.ok(!h.includes(sec), 'no minted token at the other host');
		}
	});

	await t.test('vouchd\'s error bodies never echo a credential', async () => {
		// More error paths: a broken token endpoint (502), a revoked workload (403), malformed
		// requests (400), an over-long header (431), each carrying the workload's own secrets.
		standin.setFault('token', '500');
		// A fresh binding forces a new exchange for a third identity.
		await runVouch(['revoke', 'demo/curl-b'], { adminSocket: vouchd.adminSocket }).then((r) => bodies.push(r.stdout, r.stderr));
		const rv = keep(parseCurlI(await plain()));
		assert.equal(rv.status, 403, rv.all);
		await runVouch(['unrevoke', 'demo/curl-b'], { adminSocket: vouchd.adminSocket });
		writeFileSync(join(vouchd.resourcesDir, 'curl-c.yaml'), yamlDocs(
			workloadResource({ name: 'curl-c', workloadID: 'demo/curl-c', selectors: [{ 'process:binary:path': CURL, 'process:uid': 1 }] }),
			bindingResource({ name: 'curl-c', workloadID: 'demo/curl-c', source: 'source-a' })));
		let fail;
		await waitFor(async () => {
			fail = parseCurlI(await plain({ uid: 1, gid: 1 }));
			return fail.status >= 500;
		}, { timeoutMs: 15000, intervalMs: 300, what: `a 5xx for the broken exchange (last ${fail?.status})` });
		keep(fail);
		assert.match(fail.json?.error?.message ?? '', /exchange|token/i, fail.all);
		standin.clearFaults();
		const port = vouchd.plainPort;
		const raws = [
			`POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${WL_KEY}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
			`POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nauthorization: Bearer ${WL_BEARER}\r\nx-api-key: ${WL_KEY}\r\nx-api-key: ${WL_KEY}x\r\ncontent-length: 2\r\n\r\n{}`,
			`POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${WL_KEY}\r\nx-big: ${'a'.repeat(70000)}\r\n\r\n`,
			`GET /v1/messages HTTP/1.1\r\nHost: localhost\r\ncookie: s=${WL_COOKIE}\r\nx-api-key: ${WL_KEY}\r\n bad-fold\r\n\r\n`,
			// A denial names the Host it refused (bounded, printable: diagnosis, not a credential);
			// a key in the query string is never repeated.
			`POST /v1/messages?key=${WL_KEY} HTTP/1.1\r\nHost: other.example\r\nx-api-key: ${WL_KEY}\r\ncontent-length: 0\r\n\r\n`,
		];
		for (const b of raws) {
			const r = await rawExchange(port, b);
			assert.match(r.text, /^HTTP\/1\.[01] [45]\d\d /, r.text.slice(0, 200));
			bodies.push(r.text);
		}
		const secrets = [WL_KEY, WL_BEARER, WL_COOKIE, ...standin.secrets()];
		assert.ok(standin.secrets().length >= 2, 'tokens were minted (the check below is not vacuous)');
		const hay = bodies.join('\n');
		for (const s of secrets) {
			const parts = [s, ...(s.split('.').length === 3 ? s.split('.').slice(1) : []), s.slice(-24)].filter((x) => x.length >= 16);
			for (const p of parts) {
				const at = hay.indexOf(p);
				assert.ok(at < 0, `a secret (${p.slice(0, 6)}…) appears in a body returned to a workload: …${hay.slice(Math.max(0, at - 300), at).replaceAll(p, '<secret>')}<secret>…`);
			}
		}
	});
});
