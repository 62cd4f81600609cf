// Self-tests of the Claude stand-in (test/standin/standin.mjs): the server-side checks of
// the token endpoint and the Messages endpoint, exercised with JWTs minted locally by jose.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as jose from 'jose';
import { startStandin, generateCerts, request, sleep } from './lib.mjs';
import { TOKEN_PREFIX, EXPIRED_MESSAGE } from '../standin/standin.mjs';

const ISSUER = 'https://issuer.example.test';
const RULE = 'fdrl_01SelfTestRule';
const ORG = '11111111-2222-3333-4444-555555555555';
const SA = 'svac_01SelfTest';
const AUD = 'https://api.anthropic.com';
const SUB = 'spiffe://vouch.test/demo/app';
const OPAQUE_401 = { type: 'error', error: { type: 'authentication_error', message: 'Authentication failed' } };

let dir, certs, s, key, otherKey, jwks;

before(async () => {
	dir = mkdtempSync(join(tmpdir(), 'standin-self-'));
	certs = generateCerts(join(dir, 'certs'));
	key = await jose.generateKeyPair('ES256', { extractable: true });
	otherKey = await jose.generateKeyPair('ES256', { extractable: true });
	const pub = await jose.exportJWK(key.publicKey);
	const rsa = await jose.generateKeyPair('RS256', { extractable: true });
	jwks = { keys: [{ ...pub, kid: 'k1', alg: 'ES256', use: 'sig' }, { ...(await jose.exportJWK(rsa.publicKey)), kid: 'r1', use: 'sig' }] };
	key.rsa = rsa;
	s = await startStandin({
		certFile: certs.certFile, keyFile: certs.keyFile, issuer: ISSUER, jwks,
		rules: {
			[RULE]: { organizationId: ORG, serviceAccountId: SA, workspaces: ['default'], subjectPrefix: 'spiffe://vouch.test/*', audience: AUD },
			fdrl_01TwoWorkspaces: { organizationId: ORG, workspaces: ['wrkspc_01A', 'wrkspc_01B'], subjectPrefix: SUB, audience: AUD },
		},
		streamDelayMs: 30,
	});
});
after(async () => {
	await s?.close();
	rmSync(dir, { recursive: true, force: true });
});

let jtiN = 0;
async function mint({ alg = 'ES256', kid = 'k1', iss = ISSUER, aud = AUD, sub = SUB, iat, exp, jti, signKey, extra = {}, header = {} } = {}) {
	const now = Math.floor(Date.now() / 1000);
	const claims = { ...extra };
	if (sub !== null) claims.sub = sub;
	if (aud !== null) claims.aud = aud;
	if (iss !== null) claims.iss = iss;
	claims.iat = iat ?? now;
	claims.exp = exp ?? now + 300;
	if (jti !== null) claims.jti = jti ?? `jti-${process.pid}-${++jtiN}-${Math.random()}`;
	const h = { alg, typ: 'JWT', ...header };
	if (kid !== null) h.kid = kid;
	return new jose.SignJWT(claims).setProtectedHeader(h).sign(signKey ?? key.privateKey);
}

const tokenHeaders = { 'content-type': 'application/json', 'anthropic-beta': 'oauth-2025-04-20,oidc-federation-2026-04-01' };
function exchange(assertion, { body = {}, headers = tokenHeaders } = {}) {
	return request(`${s.url}/v1/oauth/token`, {
		method: 'POST', ca: certs.caPem, headers,
		body: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion, federation_rule_id: RULE, organization_id: ORG, service_account_id: SA, workspace_id: 'default', ...body },
	});
}
const lastExchange = () => s.records.exchanges.at(-1);

async function rejected401(assertion, reason, opts) {
	const r = await exchange(assertion, opts);
	assert.equal(r.status, 401, r.body);
	assert.deepEqual(r.json, OPAQUE_401);
	assert.equal(lastExchange().reason, reason);
	assert.equal(lastExchange().result, 'rejected');
}

test('a good assertion is exchanged for a bearer token', async () => {
	const a = await mint();
	const r = await exchange(a);
	assert.equal(r.status, 200, r.body);
	assert.ok(r.json.access_token.startsWith(TOKEN_PREFIX));
	assert.equal(r.json.token_type, 'Bearer');
	assert.equal(r.json.expires_in, 600);
	assert.equal(r.json.scope, 'workspace:inference');
	const rec = lastExchange();
	assert.equal(rec.result, 'ok');
	assert.equal(rec.sub, SUB);
	assert.equal(rec.assertion, a);
	assert.deepEqual(rec.contentType, ['application/json']);
	assert.ok(rec.beta.includes('oidc-federation-2026-04-01'));
	assert.equal(s.records.tokens.at(-1).token, r.json.access_token);
	assert.equal(s.records.tokens.at(-1).workspace, 'default');
	assert.ok(s.secrets().includes(a) && s.secrets().includes(r.json.access_token));
});

test('an RS256 assertion and an aud array are accepted', async () => {
	const a = await mint({ alg: 'RS256', kid: 'r1', signKey: key.rsa.privateKey, aud: ['https://other.example', AUD] });
	const r = await exchange(a);
	assert.equal(r.status, 200, r.body);
});

test('alg none is rejected', async () => {
	const now = Math.floor(Date.now() / 1000);
	const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
	const a = `${enc({ alg: 'none', kid: 'k1' })}.${enc({ iss: ISSUER, aud: AUD, sub: SUB, iat: now, exp: now + 60, jti: 'none-1' })}.`;
	await rejected401(a, 'alg_not_allowed');
});

test('HS256 is rejected', async () => {
	const a = await mint({ alg: 'HS256', signKey: new TextEncoder().encode('0123456789abcdef0123456789abcdef') });
	await rejected401(a, 'alg_not_allowed');
});

test('iss must match byte for byte (trailing slash)', async () => {
	await rejected401(await mint({ iss: ISSUER + '/' }), 'issuer_mismatch');
	await rejected401(await mint({ iss: null }), 'issuer_mismatch');
});

test('aud must contain the rule audience', async () => {
	await rejected401(await mint({ aud: 'https://api.anthropic.com/' }), 'audience_mismatch');
	await rejected401(await mint({ aud: null }), 'audience_mismatch');
});

test('kid is required and must be in the JWKS', async () => {
	await rejected401(await mint({ kid: null }), 'missing_kid');
	await rejected401(await mint({ kid: 'k-unknown' }), 'unknown_kid');
});

test('a signature by another key under a known kid is rejected', async () => {
	await rejected401(await mint({ signKey: otherKey.privateKey }), 'bad_signature');
	const a = await mint();
	const [h, p] = a.split('.');
	const forged = JSON.parse(Buffer.from(p, 'base64url'));
	forged.sub = 'spiffe://vouch.test/other';
	await rejected401(`${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${a.split('.')[2]}`, 'bad_signature');
});

test('sub, iat and exp are required', async () => {
	await rejected401(await mint({ sub: null }), 'missing_sub');
	const now = Math.floor(Date.now() / 1000);
	const noIat = await new jose.SignJWT({ iss: ISSUER, aud: AUD, sub: SUB, exp: now + 60, jti: 'noiat' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.privateKey);
	await rejected401(noIat, 'missing_iat');
	const noExp = await new jose.SignJWT({ iss: ISSUER, aud: AUD, sub: SUB, iat: now, jti: 'noexp' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.privateKey);
	await rejected401(noExp, 'missing_exp');
});

test('exp - iat above one hour is rejected; exactly one hour is accepted', async () => {
	const now = Math.floor(Date.now() / 1000);
	await rejected401(await mint({ iat: now, exp: now + 3601 }), 'lifetime_too_long');
	assert.equal((await exchange(await mint({ iat: now, exp: now + 3600 }))).status, 200);
});

test('clock leeway is 30 s', async () => {
	const now = Math.floor(Date.now() / 1000);
	await rejected401(await mint({ iat: now - 200, exp: now - 40 }), 'expired');
	assert.equal((await exchange(await mint({ iat: now - 200, exp: now - 10 }))).status, 200, 'expired within leeway');
	await rejected401(await mint({ iat: now + 60, exp: now + 120 }), 'iat_in_future');
	await rejected401(await mint({ extra: { nbf: now + 60 } }), 'not_yet_valid');
});

test('a jti can be exchanged once', async () => {
	const a = await mint();
	assert.equal((await exchange(a)).status, 200);
	await rejected401(a, 'jti_reused');
	// A different JWT with the same jti is a replay too.
	const jti = 'fixed-jti-' + Math.random();
	assert.equal((await exchange(await mint({ jti }))).status, 200);
	await rejected401(await mint({ jti }), 'jti_reused');
});

test('an assertion above 16 KiB is a 400', async () => {
	const a = await mint({ extra: { pad: 'x'.repeat(17 * 1024) } });
	assert.ok(a.length > 16 * 1024);
	const r = await exchange(a);
	assert.equal(r.status, 400);
	assert.equal(r.json.error.type, 'invalid_request_error');
	assert.equal(lastExchange().reason, 'assertion_too_large');
});

test('a body above 64 KiB is refused', async () => {
	const r = await exchange(await mint(), { body: { junk: 'x'.repeat(70 * 1024) } });
	assert.equal(r.status, 413);
});

test('rule, organization, service account and subject must match', async () => {
	await rejected401(await mint(), 'unknown_rule', { body: { federation_rule_id: 'fdrl_01Nope' } });
	await rejected401(await mint(), 'organization_mismatch', { body: { organization_id: '99999999-2222-3333-4444-555555555555' } });
	await rejected401(await mint(), 'service_account_mismatch', { body: { service_account_id: 'svac_01Other' } });
	await rejected401(await mint({ sub: 'spiffe://other.test/x' }), 'subject_mismatch');
	await rejected401(await mint(), 'workspace_not_enabled', { body: { workspace_id: 'wrkspc_01Zzz' } });
});

test('a rule spanning two workspaces needs workspace_id', async () => {
	const body = { federation_rule_id: 'fdrl_01TwoWorkspaces', workspace_id: undefined, service_account_id: undefined };
	await rejected401(await mint(), 'workspace_id_required', { body });
	const r = await exchange(await mint(), { body: { ...body, workspace_id: 'wrkspc_01B' } });
	assert.equal(r.status, 200, r.body);
	assert.equal(s.records.tokens.at(-1).workspace, 'wrkspc_01B');
});

test('malformed requests are 400 invalid_request_error', async () => {
	const a = await mint();
	const cases = [
		[{ grant_type: 'client_credentials' }, 'unsupported_grant_type'],
		[{ federation_rule_id: undefined }, 'missing_federation_rule_id'],
		[{ organization_id: undefined }, 'missing_organization_id'],
		[{ assertion: undefined }, 'missing_assertion'],
		[{ federation_rule_id: 'rule-1' }, 'malformed_rule_id'],
		[{ workspace_id: '' }, 'invalid_workspace_id'],
		[{ workspace_id: 'ws_1' }, 'malformed_workspace_id'],
	];
	for (const [body, reason] of cases) {
		const r = await exchange(a, { body });
		assert.equal(r.status, 400, `${reason}: ${r.body}`);
		assert.equal(r.json.error.type, 'invalid_request_error');
		assert.equal(lastExchange().reason, reason);
	}
	let r = await request(`${s.url}/v1/oauth/token`, { method: 'POST', ca: certs.caPem, headers: tokenHeaders, body: 'grant_type=x' });
	assert.equal(r.status, 400);
	r = await exchange(a, { headers: { 'content-type': 'application/x-www-form-urlencoded', 'anthropic-beta': tokenHeaders['anthropic-beta'] } });
	assert.equal(r.status, 400);
	assert.equal(lastExchange().reason, 'content_type');
	r = await exchange(a, { headers: { 'content-type': 'application/json', 'anthropic-beta': 'oauth-2025-04-20' } });
	assert.equal(r.status, 400);
	assert.equal(lastExchange().reason, 'missing_federation_beta');
});

test('keys are found by OIDC discovery when no inline JWKS is configured', async (t) => {
	const srv = createServer((req, res) => {
		const base = `http://127.0.0.1:${srv.address().port}`;
		res.setHeader('content-type', 'application/json');
		if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/keys` }));
		else if (req.url === '/keys') res.end(JSON.stringify(jwks));
		else {
			res.statusCode = 404;
			res.end('{}');
		}
	});
	srv.listen(0, '127.0.0.1');
	await once(srv, 'listening');
	t.after(() => srv.close());
	const iss = `http://127.0.0.1:${srv.address().port}`;
	const s2 = await startStandin({ certFile: certs.certFile, keyFile: certs.keyFile, issuer: iss, rules: { [RULE]: { organizationId: ORG, workspaces: ['default'], subjectPrefix: SUB, audience: AUD } } });
	t.after(() => s2.close());
	const r = await request(`${s2.url}/v1/oauth/token`, { method: 'POST', ca: certs.caPem, headers: tokenHeaders,
		body: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await mint({ iss }), federation_rule_id: RULE, organization_id: ORG } });
	assert.equal(r.status, 200, r.body);
	assert.equal(s2.records.jwksFetches.length, 1);
	assert.equal(s2.records.jwksFetches[0].jwksUri, `${iss}/keys`);
});

// --- messages --------------------------------------------------------------------------

async function freshToken() {
	const r = await exchange(await mint());
	assert.equal(r.status, 200);
	return r.json.access_token;
}
const msgBody = { model: 'claude-standin-1', max_tokens: 32, messages: [{ role: 'user', content: 'hi there' }] };
function messages(headers, body = msgBody) {
	return request(`${s.url}/v1/messages`, { method: 'POST', ca: certs.caPem, headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers }, body });
}

test('messages: a live bearer token gets a Messages API reply', async () => {
	const tok = await freshToken();
	const r = await messages({ authorization: `Bearer ${tok}`, 'anthropic-beta': 'oauth-2025-04-20' });
	assert.equal(r.status, 200, r.body);
	assert.match(r.json.id, /^msg_/);
	assert.equal(r.json.type, 'message');
	assert.equal(r.json.role, 'assistant');
	assert.equal(r.json.content[0].type, 'text');
	assert.match(r.json.content[0].text, /hi there/);
	assert.equal(r.json.stop_reason, 'end_turn');
	assert.ok(r.json.usage.input_tokens > 0 && r.json.usage.output_tokens > 0);
	const rec = s.records.messages.at(-1);
	assert.equal(rec.sub, SUB);
	assert.deepEqual(rec.authorization, [`Bearer ${tok}`]);
	assert.deepEqual(rec.apiKey, []);
});

test('messages: stream=true is server-sent events with the real event sequence', async () => {
	const tok = await freshToken();
	const r = await messages({ authorization: `Bearer ${tok}`, 'anthropic-beta': 'oauth-2025-04-20' }, { ...msgBody, stream: true });
	assert.equal(r.status, 200);
	assert.match(r.headers['content-type'], /^text\/event-stream/);
	const names = [...r.body.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
	assert.equal(names[0], 'message_start');
	assert.equal(names[1], 'content_block_start');
	assert.ok(names.filter((n) => n === 'content_block_delta').length >= 2);
	assert.deepEqual(names.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
	const rec = s.records.messages.at(-1);
	assert.equal(rec.events.length, names.length);
	assert.ok(rec.streamEnd >= rec.events.at(-1).t);
	assert.ok(rec.events.at(-1).t > rec.events[0].t, 'events are written over time');
});

test('messages: authentication checks', async () => {
	const tok = await freshToken();
	const beta = { 'anthropic-beta': 'oauth-2025-04-20' };
	let r = await messages({ ...beta });
	assert.equal(r.status, 401);
	assert.equal(r.json.error.type, 'authentication_error');
	r = await messages({ ...beta, authorization: [`Bearer ${tok}`, `Bearer ${tok}`] });
	assert.equal(r.status, 400);
	assert.equal(s.records.messages.at(-1).reason, 'duplicate_authorization');
	r = await messages({ ...beta, authorization: `Bearer ${tok}`, 'x-api-key': 'sk-placeholder' });
	assert.equal(r.status, 400);
	assert.equal(s.records.messages.at(-1).reason, 'x_api_key_present');
	r = await messages({ authorization: `Bearer ${tok}` });
	assert.equal(r.status, 401);
	assert.equal(s.records.messages.at(-1).reason, 'missing_oauth_beta');
	r = await messages({ ...beta, authorization: `Bearer ${TOKEN_PREFIX}made-up` });
	assert.equal(r.status, 401);
	assert.equal(s.records.messages.at(-1).reason, 'unknown_token');
	r = await messages({ ...beta, authorization: `Bearer ${tok}` }, { model: 'm', messages: [] });
	assert.equal(r.status, 400);
	assert.equal(r.json.error.type, 'invalid_request_error');
});

test('messages: an expired token gets the expired-token 401', async () => {
	s.configure({ expiresIn: 1 });
	try {
		const tok = await freshToken();
		await sleep(1100);
		const r = await messages({ authorization: `Bearer ${tok}`, 'anthropic-beta': 'oauth-2025-04-20' });
		assert.equal(r.status, 401);
		assert.deepEqual(r.json, { type: 'error', error: { type: 'authentication_error', message: EXPIRED_MESSAGE } });
		assert.equal(s.records.messages.at(-1).reason, 'token_expired');
	} finally {
		s.configure({ expiresIn: 600 });
	}
});

test('faults are settable per endpoint and cleared', async () => {
	const a = () => mint();
	try {
		s.setFault('token', '500');
		assert.equal((await exchange(await a())).status, 500);
		s.setFault('token', '401');
		assert.deepEqual((await exchange(await a())).json, OPAQUE_401);
		s.setFault('token', 'garbage');
		let r = await exchange(await a());
		assert.equal(r.status, 200);
		assert.equal(r.json, undefined);
		s.setFault('token', 'oversize');
		r = await exchange(await a());
		assert.equal(r.body.length, 2 * 1024 * 1024);
		s.setFault('token', 'down');
		await assert.rejects(exchange(await a()));
		s.setFault('token', 'reset');
		await assert.rejects(exchange(await a()));
		s.setFault('token', 'slow', { delayMs: 300 });
		const t0 = Date.now();
		assert.equal((await exchange(await a())).status, 200);
		assert.ok(Date.now() - t0 >= 290);
		// The messages endpoint is independent of the token endpoint's fault.
		s.setFault('token', '500');
		s.clearFaults();
		s.setFault('messages', '500');
		const tok = await freshToken();
		r = await messages({ authorization: `Bearer ${tok}`, 'anthropic-beta': 'oauth-2025-04-20' });
		assert.equal(r.status, 500);
		assert.throws(() => s.setFault('token', 'bogus'));
	} finally {
		s.clearFaults();
	}
	assert.equal((await exchange(await a())).status, 200);
});

test('command-line mode: ready line, control port for faults and records', async (t) => {
	const { spawn } = await import('node:child_process');
	const { writeFileSync } = await import('node:fs');
	const conf = join(dir, 'standin-cli.json');
	writeFileSync(conf, JSON.stringify({ certFile: certs.certFile, keyFile: certs.keyFile, issuer: ISSUER, jwks,
		rules: { [RULE]: { organizationId: ORG, workspaces: ['default'], subjectPrefix: SUB, audience: AUD } } }));
	const child = spawn(process.execPath, [new URL('../standin/standin.mjs', import.meta.url).pathname, '--config', conf], { stdio: ['ignore', 'pipe', 'inherit'] });
	t.after(() => child.kill('SIGTERM'));
	const line = await new Promise((res, rej) => {
		let buf = '';
		child.stdout.on('data', (c) => {
			buf += c;
			if (buf.includes('\n')) res(buf.split('\n')[0]);
		});
		child.on('exit', (code) => rej(new Error(`stand-in exited ${code}`)));
	});
	const info = JSON.parse(line);
	assert.ok(info.port > 0 && info.controlPort > 0);
	const ex = (a) => request(`https://localhost:${info.port}/v1/oauth/token`, { method: 'POST', ca: certs.caPem, headers: tokenHeaders,
		body: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: a, federation_rule_id: RULE, organization_id: ORG } });
	assert.equal((await ex(await mint())).status, 200);
	let c = await request(`${info.controlUrl}/__standin/fault`, { method: 'POST', body: { endpoint: 'token', mode: '500' } });
	assert.equal(c.status, 200);
	assert.equal((await ex(await mint())).status, 500);
	c = await request(`${info.controlUrl}/__standin/fault`, { method: 'POST', body: { endpoint: 'token', mode: 'none' } });
	c = await request(`${info.controlUrl}/__standin/records`);
	assert.equal(c.json.exchanges.length, 2);
	assert.equal(c.json.exchanges[0].result, 'ok');
	assert.equal(c.json.exchanges[1].fault, '500');
	c = await request(`${info.controlUrl}/__standin/fault`, { method: 'POST', body: { endpoint: 'token', mode: 'bogus' } });
	assert.equal(c.status, 400);
});
