// End to end: the official SDK, unmodified, talks to vouchd's plaintext listener
// (ANTHROPIC_BASE_URL) with a placeholder key; vouchd attests it, exchanges a JWT-SVID at the
// stand-in's token endpoint and injects the bearer token. Also: the JWT-SVID vouchd presented
// verifies with jose against vouchd's own discovery document and JWKS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as jose from 'jose';
import { startStack, runSdkClient, spiffeId, request, AUDIENCE, NODE } from './lib.mjs';

const OAUTH_BETA = 'oauth-2025-04-20';

test('e2e: official SDK through the plain listener', async (t) => {
	const st = await startStack(t, { standin: { streamDelayMs: 100, streamChunks: 8 } });
	const { standin, vouchd } = st;
	const sub = spiffeId('demo/node');

	const r = await runSdkClient(vouchd.plainUrl, [{ op: 'create', content: 'hello from e2e' }, { op: 'stream', content: 'stream please' }]);
	const [create, stream] = r.results;

	await t.test('messages.create and messages.stream succeed', () => {
		assert.equal(r.code, 0, `client failed:\n${r.stdout}\n${r.stderr}\n--- vouchd ---\n${vouchd.stderr().slice(-3000)}`);
		assert.equal(create.ok, true);
		assert.match(create.id, /^msg_/);
		assert.match(create.text, /hello from e2e/);
		assert.ok(create.text.includes(sub), 'the stand-in saw the workload identity');
		assert.equal(stream.ok, true);
		assert.match(stream.text, /stream please/);
		assert.equal(stream.stop_reason, 'end_turn');
		assert.deepEqual(stream.events.slice(0, 2), ['message_start', 'content_block_start']);
		assert.equal(stream.events.at(-1), 'message_stop');
	});

	await t.test('the stand-in saw exactly one bearer token of the workload, no x-api-key, the oauth beta', () => {
		const msgs = standin.records.messages;
		assert.equal(msgs.length, 2);
		const ok = standin.records.exchanges.filter((e) => e.result === 'ok');
		assert.ok(ok.length >= 1, 'at least one successful exchange');
		for (const e of standin.records.exchanges) assert.equal(e.result, 'ok', `exchange rejected: ${e.reason}`);
		for (const m of msgs) {
			assert.equal(m.authorization.length, 1, 'exactly one Authorization header');
			const tok = standin.records.tokens.find((x) => `Bearer ${x.token}` === m.authorization[0]);
			assert.ok(tok, 'the bearer token is one the stand-in minted');
			assert.equal(tok.sub, sub);
			assert.equal(m.sub, sub);
			assert.deepEqual(m.apiKey, [], 'no x-api-key reached the upstream');
			assert.ok(m.beta.includes(OAUTH_BETA));
			assert.equal(m.status, 200);
			assert.equal(m.path, '/v1/messages');
		}
		for (const e of standin.records.exchanges) {
			assert.ok(e.beta.includes('oidc-federation-2026-04-01'));
			assert.deepEqual(e.contentType.map((c) => c.split(';')[0].trim().toLowerCase()), ['application/json']);
		}
	});

	await t.test('audit has issue, exchange and inject lines with the SPIFFE ID and pid', async () => {
		await vouchd.auditUntil((a) => a.event === 'inject' && a.workload === sub, 2);
		const audit = vouchd.audit();
		const ev = (name) => audit.filter((a) => a.event === name);
		assert.ok(ev('issue').some((a) => a.workload === sub), `issue line for ${sub}: ${JSON.stringify(audit)}`);
		assert.ok(ev('exchange').some((a) => a.workload === sub), 'exchange line');
		const inj = ev('inject').filter((a) => a.workload === sub);
		assert.equal(inj.length, 2, 'one inject line per request');
		for (const a of inj) {
			assert.equal(a.pid, r.pid, 'inject line names the client pid');
			assert.equal(a.exe, NODE);
			assert.ok(a.token_fp, 'token fingerprint present');
			assert.equal(a.method, 'POST');
			assert.equal(a.path, '/v1/messages');
		}
		for (const a of audit) assert.ok(typeof a.ts === 'string' || typeof a.ts === 'number', 'ts present');
		const jtis = ev('issue').map((a) => a.jti).filter(Boolean);
		assert.deepEqual(jtis, [...new Set(jtis)], 'issued jtis are unique');
	});

	await t.test('SSE: the first event reaches the client before the upstream finished', () => {
		const rec = standin.records.messages.find((m) => m.stream);
		assert.ok(rec && rec.streamEnd, 'the stand-in streamed');
		assert.ok(rec.events.length >= 8);
		assert.ok(stream.tFirstEvent < rec.streamEnd,
			`first event at ${stream.tFirstEvent}, upstream ended at ${rec.streamEnd} (${rec.events.length} events ${rec.events.at(-1).t - rec.events[0].t} ms apart end to end)`);
	});

	await t.test('jose verifies the presented JWT-SVID against vouchd discovery + JWKS', async () => {
		const disc = await request(`${vouchd.issuer}/.well-known/openid-configuration`);
		assert.equal(disc.status, 200);
		assert.equal(disc.json.issuer, vouchd.issuer);
		assert.ok(disc.json.jwks_uri);
		const jwks = jose.createRemoteJWKSet(new URL(disc.json.jwks_uri));
		const assertions = standin.records.exchanges.map((e) => e.assertion).filter(Boolean);
		assert.ok(assertions.length >= 1);
		for (const a of assertions) {
			const { payload, protectedHeader } = await jose.jwtVerify(a, jwks, { issuer: vouchd.issuer, audience: AUDIENCE, algorithms: ['ES256'] });
			assert.equal(protectedHeader.alg, 'ES256');
			assert.ok(protectedHeader.kid, 'kid present');
			assert.equal(payload.sub, sub);
			assert.ok(payload.jti, 'jti present');
			assert.ok(Number.isInteger(payload.iat) && Number.isInteger(payload.exp));
			assert.ok(payload.exp - payload.iat <= 300, `lifetime ${payload.exp - payload.iat} s`);
		}
		// The JWKS holds public keys only.
		const keys = await request(disc.json.jwks_uri);
		for (const k of keys.json.keys) {
			assert.equal(k.d, undefined, 'no private key material in the JWKS');
			assert.ok(k.kid);
		}
	});

	await t.test('vouchd exits cleanly on SIGTERM', async () => {
		const ex = await vouchd.stop();
		assert.deepEqual(ex, { code: 0, signal: null }, vouchd.stderr().slice(-3000));
	});
});
