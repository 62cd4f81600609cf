// standin — a local stand-in for the Claude API's workload-identity-federation token
// endpoint (POST /v1/oauth/token) and Messages API (POST /v1/messages). Test fixture only.
//
// It enforces the server-side checks documented in /work/shared/reference/anthropic-wif.md
// and token-exchange-protocols.md §1.7-1.9: JSON body, required fields, asymmetric JWT
// signatures verified against the issuer's JWKS (discovery or inline), kid required and
// known, iss byte-for-byte, aud contains the rule audience, sub/iat/exp present,
// exp - iat <= max lifetime, 30 s leeway, single-use jti. Every assertion denial is the
// same opaque 401; the real reason is kept in `records` for assertions.
//
// Use as a module: `const s = await startStandin({certFile, keyFile, issuer, rules})`, or
// from the command line: `node test/standin/standin.mjs --config FILE` (JSON; prints one
// JSON line {"url","port","controlUrl","controlPort"} on stdout when ready). The control
// server (plain HTTP on 127.0.0.1) offers GET /__standin/records, POST /__standin/fault
// {endpoint, mode, delayMs}, POST /__standin/config {...}, POST /__standin/clear,
// POST /__standin/release (held streams go on).
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createHttpServer } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as jose from 'jose';

export const TOKEN_PREFIX = 'sk-ant-oat01-standin-';
export const FEDERATION_BETA = 'oidc-federation-2026-04-01';
export const OAUTH_BETA = 'oauth-2025-04-20';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const EXPIRED_MESSAGE =
	'OAuth token has expired. Please obtain a new token or refresh your existing token.';

const ASSERTION_MAX = 16 * 1024;
const TOKEN_BODY_MAX = 64 * 1024;
const MESSAGES_BODY_MAX = 4 * 1024 * 1024;
const LEEWAY_S = 30;
const ALLOWED_ALGS = new Set(['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
// streamreset (messages only): a streamed response is cut (TCP reset) after its first
// events; a non-streamed request is answered normally.
export const FAULT_MODES = ['none', 'down', '500', '401', 'garbage', 'oversize', 'slow', 'reset', 'redirect', 'streamreset'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowS = () => Math.floor(Date.now() / 1000);

function apiError(type, message) {
	return JSON.stringify({ type: 'error', error: { type, message } });
}

// Headers as received, duplicates kept: [[name-lowercased, value], ...].
function headerPairs(req) {
	const out = [];
	for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
		out.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
	return out;
}
function headerAll(pairs, name) {
	return pairs.filter(([k]) => k === name).map(([, v]) => v);
}
function betaList(pairs) {
	return headerAll(pairs, 'anthropic-beta').flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
}

function readBody(req, cap) {
	return new Promise((resolve) => {
		const chunks = [];
		let len = 0, over = false;
		req.on('data', (c) => {
			len += c.length;
			if (len > cap) over = true;
			else chunks.push(c);
		});
		req.on('end', () => resolve({ over, buf: Buffer.concat(chunks), len }));
		req.on('error', () => resolve({ over: false, buf: null, len }));
	});
}

function subjectMatches(pattern, sub) {
	if (pattern.endsWith('*')) return sub.startsWith(pattern.slice(0, -1));
	return sub === pattern;
}

/** Default configuration; every key may be overridden by startStandin(opts) or configure(). */
function defaults() {
	return {
		host: '127.0.0.1',
		port: 0,
		controlPort: null, // null = no control server; 0 = ephemeral
		issuer: null, // default issuer URL for rules without their own
		jwks: null, // inline JWKS ({keys:[...]}) for the default issuer; null = discovery
		rules: {}, // {fdrl_x: {organizationId, serviceAccountId?, workspaces:[..], subjectPrefix, audience, issuer?, jwks?}}
		expiresIn: 600,
		maxJwtLifetime: 3600,
		checkJti: true,
		strictHeaders: true, // require content-type json and the federation beta on exchanges
		streamDelayMs: 100,
		streamChunks: 5,
		model: 'claude-standin-1',
		// usage reported with every message (Messages API "usage": cache counts always present)
		cacheCreationInputTokens: 0,
		cacheReadInputTokens: 0,
		// streamed responses: hold the stream open after message_start until releaseStreams()
		// (or POST /__standin/release), at most 30 s; non-streamed: 'length' sends
		// Content-Length, 'chunked' (default) chunked framing
		holdAfterStart: false,
		jsonFraming: 'chunked',
		extraHosts: [], // more listen addresses on the same port (e.g. ['::1'])
	};
}

/**
 * Start the stand-in. opts: certFile/keyFile (or cert/key PEM), plus any key of defaults().
 * Returns {port, url, controlPort, controlUrl, records, setFault(endpoint, mode, opts),
 * clearFaults(), configure(partial), clearRecords(), close()}.
 */
export async function startStandin(opts = {}) {
	const cfg = { ...defaults(), ...opts };
	const cert = cfg.cert ?? readFileSync(cfg.certFile);
	const key = cfg.key ?? readFileSync(cfg.keyFile);

	// requests: every request on the API port (method and target), whatever its path
	const records = { exchanges: [], tokens: [], messages: [], jwksFetches: [], requests: [] };
	const faults = { token: { mode: 'none' }, messages: { mode: 'none' } };
	const usedJti = new Set(); // `${iss}\n${jti}`
	const liveTokens = new Map(); // token -> {sub, workspace, rule, expiresAt}
	const jwksCache = new Map(); // issuer -> {jwks, fetchedAt}
	let held = []; // resolvers of streams held after message_start (holdAfterStart)
	function releaseStreams() {
		const h = held;
		held = [];
		for (const r of h) r();
	}

	function configure(partial) {
		for (const [k, v] of Object.entries(partial)) if (k in cfg || k in defaults()) cfg[k] = v;
		jwksCache.clear();
	}

	function setFault(endpoint, mode, o = {}) {
		if (!(endpoint in faults)) throw new Error(`unknown endpoint ${endpoint}`);
		if (!FAULT_MODES.includes(mode)) throw new Error(`unknown fault ${mode}`);
		faults[endpoint] = { mode, delayMs: o.delayMs ?? 2000, location: o.location, status: o.status };
	}
	function clearFaults() {
		faults.token = { mode: 'none' };
		faults.messages = { mode: 'none' };
	}
	function clearRecords() {
		records.exchanges.length = 0;
		records.tokens.length = 0;
		records.messages.length = 0;
		records.jwksFetches.length = 0;
		records.requests.length = 0;
	}

	// --- JWKS ------------------------------------------------------------------------
	async function fetchJson(url) {
		const u = new URL(url);
		const loopback = ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(u.hostname);
		if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
			throw new Error(`refusing non-https url ${url}`);
		const ctl = AbortSignal.timeout(5000);
		const r = await fetch(url, { redirect: 'manual', signal: ctl });
		if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`);
		const text = await r.text();
		if (text.length > 256 * 1024) throw new Error(`GET ${url}: too large`);
		return JSON.parse(text);
	}
	async function issuerJwks(issuer, inline, kid) {
		if (inline) return inline;
		const c = jwksCache.get(issuer);
		const known = c && c.jwks.keys?.some((k) => k.kid === kid);
		// Refetch on an unknown kid, at most once a second (the real service caches ~1 min).
		if (c && (known || Date.now() - c.fetchedAt < 1000)) return c.jwks;
		const disc = await fetchJson(`${issuer}/.well-known/openid-configuration`);
		if (typeof disc.jwks_uri !== 'string') throw new Error('discovery without jwks_uri');
		const jwks = await fetchJson(disc.jwks_uri);
		if (!Array.isArray(jwks.keys)) throw new Error('JWKS without keys');
		records.jwksFetches.push({ time: Date.now(), issuer, jwksUri: disc.jwks_uri, kids: jwks.keys.map((k) => k.kid) });
		jwksCache.set(issuer, { jwks, fetchedAt: Date.now() });
		return jwks;
	}

	// --- token endpoint ----------------------------------------------------------------
	class Deny extends Error {
		constructor(reason, status = 401, message = 'Authentication failed') {
			super(reason);
			this.reason = reason;
			this.status = status;
			this.publicMessage = message;
		}
	}
	const bad = (reason, message) => new Deny(reason, 400, message);

	async function verifyExchange(pairs, body, rec) {
		const ct = headerAll(pairs, 'content-type');
		if (cfg.strictHeaders && (ct.length !== 1 || !/^application\/json\s*(;|$)/i.test(ct[0])))
			throw bad('content_type', 'Content-Type must be application/json');
		if (cfg.strictHeaders && !betaList(pairs).includes(FEDERATION_BETA))
			throw bad('missing_federation_beta', `anthropic-beta must include ${FEDERATION_BETA}`);
		let j;
		try {
			j = JSON.parse(body.toString('utf8'));
		} catch {
			throw bad('body_not_json', 'Request body must be JSON');
		}
		if (!j || typeof j !== 'object' || Array.isArray(j)) throw bad('body_not_object', 'Request body must be a JSON object');
		for (const k of ['grant_type', 'assertion', 'federation_rule_id', 'organization_id'])
			if (typeof j[k] !== 'string' || j[k] === '') throw bad(`missing_${k}`, `${k}: Field required`);
		for (const k of ['service_account_id', 'workspace_id'])
			if (k in j && (typeof j[k] !== 'string' || j[k] === '')) throw bad(`invalid_${k}`, `${k}: invalid value`);
		rec.rule = j.federation_rule_id;
		rec.organizationId = j.organization_id;
		rec.serviceAccountId = j.service_account_id;
		rec.workspaceId = j.workspace_id;
		rec.assertion = j.assertion;
		if (j.grant_type !== JWT_BEARER) throw bad('unsupported_grant_type', 'grant_type: unsupported grant type');
		if (!/^fdrl_[A-Za-z0-9]+$/.test(j.federation_rule_id))
			throw bad('malformed_rule_id', 'federation_rule_id is not a well-formed fdrl_ tagged ID');
		if ('workspace_id' in j && j.workspace_id !== 'default' && !/^wrkspc_[A-Za-z0-9]+$/.test(j.workspace_id))
			throw bad('malformed_workspace_id', 'workspace_id is not a well-formed wrkspc_ tagged ID');
		if (Buffer.byteLength(j.assertion) > ASSERTION_MAX) throw bad('assertion_too_large', 'assertion: exceeds 16384 bytes');

		const rule = cfg.rules[j.federation_rule_id];
		if (!rule) throw new Deny('unknown_rule');
		if (rule.organizationId !== j.organization_id) throw new Deny('organization_mismatch');
		if (rule.serviceAccountId && j.service_account_id && rule.serviceAccountId !== j.service_account_id)
			throw new Deny('service_account_mismatch');

		// --- the JWT
		const parts = j.assertion.split('.');
		if (parts.length !== 3) throw new Deny('malformed_jwt');
		let header, claims;
		try {
			header = jose.decodeProtectedHeader(j.assertion);
			claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
		} catch {
			throw new Deny('malformed_jwt');
		}
		if (!claims || typeof claims !== 'object') throw new Deny('malformed_jwt');
		rec.alg = header.alg;
		rec.kid = header.kid;
		rec.sub = claims.sub;
		rec.jti = claims.jti;
		rec.iss = claims.iss;
		rec.aud = claims.aud;
		rec.iat = claims.iat;
		rec.exp = claims.exp;
		if (!ALLOWED_ALGS.has(header.alg)) throw new Deny('alg_not_allowed');
		if (header.crit) throw new Deny('crit_header');
		if (typeof header.kid !== 'string' || header.kid === '') throw new Deny('missing_kid');
		const issuer = rule.issuer ?? cfg.issuer;
		if (claims.iss !== issuer) throw new Deny('issuer_mismatch');
		let jwks;
		try {
			jwks = await issuerJwks(issuer, rule.jwks ?? cfg.jwks, header.kid);
		} catch (e) {
			rec.jwksError = String(e.message ?? e);
			throw new Deny('jwks_fetch_failed');
		}
		const jwk = jwks.keys.find((k) => k.kid === header.kid);
		if (!jwk) throw new Deny('unknown_kid');
		if (jwk.alg && jwk.alg !== header.alg) throw new Deny('alg_key_mismatch');
		if (jwk.use && jwk.use !== 'sig') throw new Deny('key_not_for_signing');
		let keyObj;
		try {
			keyObj = await jose.importJWK(jwk, header.alg);
		} catch {
			throw new Deny('bad_jwk');
		}
		try {
			await jose.compactVerify(j.assertion, keyObj, { algorithms: [header.alg] });
		} catch {
			throw new Deny('bad_signature');
		}
		const now = nowS();
		if (typeof claims.sub !== 'string' || claims.sub === '') throw new Deny('missing_sub');
		if (typeof claims.iat !== 'number') throw new Deny('missing_iat');
		if (typeof claims.exp !== 'number') throw new Deny('missing_exp');
		if (claims.iat > now + LEEWAY_S) throw new Deny('iat_in_future');
		if (claims.exp <= now - LEEWAY_S) throw new Deny('expired');
		if ('nbf' in claims && (typeof claims.nbf !== 'number' || claims.nbf > now + LEEWAY_S)) throw new Deny('not_yet_valid');
		if (claims.exp - claims.iat > (rule.maxJwtLifetime ?? cfg.maxJwtLifetime)) throw new Deny('lifetime_too_long');
		const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
		if (!aud.includes(rule.audience ?? 'https://api.anthropic.com')) throw new Deny('audience_mismatch');
		if (rule.subjectPrefix && !subjectMatches(rule.subjectPrefix, claims.sub)) throw new Deny('subject_mismatch');
		if (rule.claims) for (const [k, v] of Object.entries(rule.claims)) if (claims[k] !== v) throw new Deny('claims_mismatch');
		if ('jti' in claims && (rule.checkJti ?? cfg.checkJti)) {
			const k = `${issuer}\n${claims.jti}`;
			if (usedJti.has(k)) throw new Deny('jti_reused');
			usedJti.add(k);
		}
		// --- workspace
		const ws = rule.workspaces ?? ['default'];
		let workspace = j.workspace_id;
		if (!workspace) {
			if (ws.length !== 1) throw new Deny('workspace_id_required');
			workspace = ws[0];
		} else if (!ws.includes(workspace)) throw new Deny('workspace_not_enabled');
		return { rule: j.federation_rule_id, sub: claims.sub, workspace, scope: rule.scope ?? 'workspace:inference' };
	}

	async function handleToken(req, res, pairs) {
		const rec = {
			time: Date.now(), path: req.url, method: req.method, headers: pairs, localAddress: req.socket.localAddress,
			contentType: headerAll(pairs, 'content-type'), beta: betaList(pairs),
			userAgent: headerAll(pairs, 'user-agent')[0],
		};
		records.exchanges.push(rec);
		const { over, buf } = await readBody(req, TOKEN_BODY_MAX);
		try { // keep the assertion even when a fault answers (for leak checks)
			const a = buf && JSON.parse(buf.toString('utf8')).assertion;
			if (typeof a === 'string') rec.assertion = a;
		} catch {}
		const f = faults.token;
		if (await applyFault(f, req, res, rec)) return;
		const send = (status, body) => {
			rec.status = status;
			res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_standin_${randomBytes(8).toString('hex')}` });
			res.end(body);
		};
		if (req.method !== 'POST') {
			rec.result = 'rejected'; rec.reason = 'method';
			return send(405, apiError('invalid_request_error', 'Method not allowed'));
		}
		if (over || !buf) {
			rec.result = 'rejected'; rec.reason = over ? 'body_too_large' : 'body_read_error';
			return send(over ? 413 : 400, apiError(over ? 'request_too_large' : 'invalid_request_error', 'Request body too large'));
		}
		try {
			const ok = await verifyExchange(pairs, buf, rec);
			const token = TOKEN_PREFIX + randomBytes(24).toString('base64url');
			const expiresIn = cfg.expiresIn;
			const t = { token, sub: ok.sub, workspace: ok.workspace, rule: ok.rule, jti: rec.jti, mintedAt: Date.now(), expiresAt: Date.now() + expiresIn * 1000 };
			liveTokens.set(token, t);
			records.tokens.push(t);
			rec.result = 'ok';
			rec.token = token;
			rec.workspace = ok.workspace;
			send(200, JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope: ok.scope }));
		} catch (e) {
			if (!(e instanceof Deny)) throw e;
			rec.result = 'rejected';
			rec.reason = e.reason;
			send(e.status, apiError(e.status === 401 ? 'authentication_error' : 'invalid_request_error', e.publicMessage));
		}
	}

	// Returns true when the fault produced the whole response.
	async function applyFault(f, req, res, rec) {
		if (f.mode === 'none') return false;
		rec.fault = f.mode;
		rec.result = 'fault';
		switch (f.mode) {
		case 'down':
			req.socket.destroy();
			return true;
		case 'slow':
			await sleep(f.delayMs);
			rec.result = undefined;
			return false;
		case '500':
			rec.status = 500;
			res.writeHead(500, { 'content-type': 'application/json' });
			res.end(apiError('api_error', 'Internal server error'));
			return true;
		case '401':
			rec.status = 401;
			res.writeHead(401, { 'content-type': 'application/json' });
			res.end(apiError('authentication_error', 'Authentication failed'));
			return true;
		case 'garbage':
			rec.status = 200;
			res.writeHead(200, { 'content-type': 'text/html' });
			res.end('<html><body>this is not JSON</body></html>\n');
			return true;
		case 'oversize': {
			rec.status = 200;
			const size = 2 * 1024 * 1024;
			res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(size) });
			const pad = '{"access_token":"' + 'x'.repeat(size - 20) + '"}';
			res.end(pad.padEnd(size, ' ').slice(0, size));
			return true;
		}
		case 'reset':
			res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
			res.write('{"access_token":"');
			setTimeout(() => req.socket.destroy(), 20);
			return true;
		case 'streamreset':
			rec.result = undefined;
			return false;
		case 'redirect': // a 3xx elsewhere (opts.location, opts.status): a proxy must not follow it
			rec.status = f.status ?? 307;
			res.writeHead(rec.status, { location: f.location ?? 'http://127.0.0.1:9/', 'content-type': 'application/json' });
			res.end(apiError('redirect', 'moved'));
			return true;
		default:
			return false;
		}
	}

	// --- messages --------------------------------------------------------------------
	async function handleMessages(req, res, pairs) {
		const auth = headerAll(pairs, 'authorization');
		const rec = {
			time: Date.now(), path: req.url, method: req.method, headers: pairs, localAddress: req.socket.localAddress,
			authorization: auth, apiKey: headerAll(pairs, 'x-api-key'), beta: betaList(pairs),
			version: headerAll(pairs, 'anthropic-version'), host: headerAll(pairs, 'host'),
		};
		records.messages.push(rec);
		const { over, buf } = await readBody(req, MESSAGES_BODY_MAX);
		rec.bodyLength = buf ? buf.length : 0;
		if (await applyFault(faults.messages, req, res, rec)) return;
		const reqId = `req_standin_${randomBytes(8).toString('hex')}`;
		const fail = (status, type, message, reason) => {
			rec.status = status;
			rec.result = 'rejected';
			rec.reason = reason;
			res.writeHead(status, { 'content-type': 'application/json', 'request-id': reqId });
			res.end(apiError(type, message));
		};
		if (req.method !== 'POST') return fail(405, 'invalid_request_error', 'Method not allowed', 'method');
		// An API key alone is checked like the real API checks an unknown key (401); a key
		// next to a bearer token means the proxy failed to strip it (400, stand-in check).
		if (rec.apiKey.length && auth.length === 0) return fail(401, 'authentication_error', 'invalid x-api-key', 'api_key_rejected');
		if (rec.apiKey.length) return fail(400, 'invalid_request_error', 'x-api-key must not be sent together with an OAuth bearer token (stand-in check)', 'x_api_key_present');
		if (auth.length === 0) return fail(401, 'authentication_error', 'x-api-key header is required', 'missing_authorization');
		if (auth.length > 1) return fail(400, 'invalid_request_error', 'Multiple Authorization headers', 'duplicate_authorization');
		const m = /^Bearer ([!-~]+)$/.exec(auth[0]);
		if (!m) return fail(401, 'authentication_error', 'Invalid bearer token', 'malformed_authorization');
		const t = liveTokens.get(m[1]);
		rec.token = m[1];
		if (!t) return fail(401, 'authentication_error', 'Invalid bearer token', 'unknown_token');
		rec.sub = t.sub;
		rec.workspace = t.workspace;
		if (Date.now() >= t.expiresAt) return fail(401, 'authentication_error', EXPIRED_MESSAGE, 'token_expired');
		if (!rec.beta.includes(OAUTH_BETA)) return fail(401, 'authentication_error', 'OAuth authentication is currently not supported.', 'missing_oauth_beta');
		if (headerAll(pairs, 'anthropic-workspace-id').length) return fail(400, 'invalid_request_error', 'anthropic-workspace-id is not supported with federation tokens', 'workspace_header');
		if (rec.version.length !== 1) return fail(400, 'invalid_request_error', 'anthropic-version: header is required', 'missing_version');
		if (over) return fail(413, 'request_too_large', 'Request exceeds the maximum allowed number of bytes.', 'body_too_large');
		let body;
		try {
			body = JSON.parse(buf.toString('utf8'));
		} catch {
			return fail(400, 'invalid_request_error', 'Request body is not valid JSON', 'body_not_json');
		}
		if (!body || typeof body !== 'object') return fail(400, 'invalid_request_error', 'Request body must be an object', 'body_not_object');
		if (typeof body.model !== 'string') return fail(400, 'invalid_request_error', 'model: Field required', 'missing_model');
		if (!Array.isArray(body.messages) || body.messages.length === 0) return fail(400, 'invalid_request_error', 'messages: Field required', 'missing_messages');
		if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return fail(400, 'invalid_request_error', 'max_tokens: Field required', 'missing_max_tokens');
		rec.model = body.model;
		rec.stream = body.stream === true;
		const last = body.messages[body.messages.length - 1];
		const prompt = typeof last?.content === 'string' ? last.content
			: Array.isArray(last?.content) ? last.content.filter((b) => b?.type === 'text').map((b) => b.text).join(' ') : '';
		const text = `Hello ${t.sub}! The stand-in received: ${prompt.slice(0, 200)}`;
		const id = `msg_standin_${randomBytes(12).toString('hex')}`;
		// Messages API usage; in a stream, message_start carries the input and cache counts
		// (output_tokens there is an interim count) and message_delta the cumulative
		// output_tokens ("Messages streaming", event types)
		const usage = {
			input_tokens: Math.max(1, Math.ceil(prompt.length / 4)),
			cache_creation_input_tokens: cfg.cacheCreationInputTokens,
			cache_read_input_tokens: cfg.cacheReadInputTokens,
			output_tokens: Math.max(1, Math.ceil(text.length / 4)),
		};
		rec.usage = usage;
		rec.status = 200;
		rec.result = 'ok';
		rec.reply = text;
		if (!rec.stream) {
			const json = JSON.stringify({
				id, type: 'message', role: 'assistant', model: body.model,
				content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage,
			});
			res.writeHead(200, {
				'content-type': 'application/json', 'request-id': reqId,
				...(cfg.jsonFraming === 'length' ? { 'content-length': String(Buffer.byteLength(json)) } : {}),
			});
			res.end(json);
			return;
		}
		res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': reqId });
		res.flushHeaders();
		rec.events = [];
		const n = Math.max(1, cfg.streamChunks);
		const step = Math.ceil(text.length / n);
		const pieces = [];
		for (let i = 0; i < text.length; i += step) pieces.push(text.slice(i, i + step));
		const events = [
			['message_start', { type: 'message_start', message: { id, type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }],
			['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
			['ping', { type: 'ping' }],
			...pieces.map((p) => ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } }]),
			['content_block_stop', { type: 'content_block_stop', index: 0 }],
			['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }],
			['message_stop', { type: 'message_stop' }],
		];
		let closed = false;
		res.on('close', () => { closed = true; });
		for (let i = 0; i < events.length; i++) {
			if (i === 1 && cfg.holdAfterStart) {
				rec.held = true;
				await new Promise((r) => {
					const timer = setTimeout(r, 30000);
					held.push(() => { clearTimeout(timer); r(); });
					res.on('close', r);
				});
				rec.released = Date.now();
			}
			if (i > 0 && cfg.streamDelayMs > 0) await sleep(cfg.streamDelayMs);
			if (closed) {
				rec.aborted = true;
				break;
			}
			if (i === 3 && rec.fault === 'streamreset') {
				rec.reset = true;
				try {
					req.socket.resetAndDestroy();
				} catch {
					req.socket.destroy();
				}
				return;
			}
			const [name, data] = events[i];
			res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
			rec.events.push({ name, t: Date.now() });
		}
		res.end();
		rec.streamEnd = Date.now();
	}

	// --- server ----------------------------------------------------------------------
	const sockets = new Set();
	function handler(req, res) {
		const pairs = headerPairs(req);
		const path = req.url.split('?')[0];
		records.requests.push({ time: Date.now(), method: req.method, target: req.url });
		const p = path === '/v1/oauth/token' ? handleToken(req, res, pairs)
			: path === '/v1/messages' ? handleMessages(req, res, pairs)
				: (async () => {
					res.writeHead(404, { 'content-type': 'application/json' });
					res.end(apiError('not_found_error', `Not found: ${path}`));
				})();
		p.catch((e) => {
			try {
				res.writeHead(500, { 'content-type': 'application/json' });
				res.end(apiError('api_error', `stand-in bug: ${e.message}`));
			} catch {
				req.socket.destroy();
			}
		});
	}
	function makeServer() {
		const srv = createHttpsServer({ cert, key, minVersion: 'TLSv1.2' }, handler);
		srv.on('secureConnection', (s) => {
			sockets.add(s);
			s.on('close', () => sockets.delete(s));
		});
		// While both endpoints are "down", accepted connections are dropped before TLS.
		srv.on('connection', (s) => {
			if (faults.token.mode === 'down' && faults.messages.mode === 'down') s.destroy();
		});
		srv.on('tlsClientError', () => {});
		srv.headersTimeout = 10000;
		srv.requestTimeout = 30000;
		return srv;
	}
	const listenOn = (srv, port, host) => new Promise((resolve, reject) => {
		srv.once('error', reject);
		srv.listen(port, host, () => {
			srv.off('error', reject);
			resolve();
		});
	});
	const servers = [];
	const closeAll = () => Promise.all(servers.map((srv) => new Promise((r) => srv.close(() => r()))));
	const server = makeServer();
	await listenOn(server, cfg.port, cfg.host);
	servers.push(server);
	const port = server.address().port;
	// More addresses on the same port (e.g. 127.1.2.3 and ::1 for a name mapped to both):
	// extraHosts: ['::1', ...]. A failure to bind one of them fails the start.
	for (const h of cfg.extraHosts ?? []) {
		const s = makeServer();
		try {
			await listenOn(s, port, h);
		} catch (e) {
			await closeAll();
			throw new Error(`stand-in: cannot listen on [${h}]:${port}: ${e.message}`);
		}
		servers.push(s);
	}
	// "localhost" may resolve to ::1 first: serve the same port there too when possible.
	if (cfg.host === '127.0.0.1' && cfg.alsoIPv6 !== false && !(cfg.extraHosts ?? []).length) {
		const s6 = makeServer();
		const ok = await new Promise((resolve) => {
			s6.once('error', () => resolve(false));
			s6.listen(port, '::1', () => resolve(true));
		});
		if (ok) servers.push(s6);
	}

	let control = null, controlPort = null;
	if (cfg.controlPort !== null && cfg.controlPort !== undefined) {
		control = createHttpServer(async (req, res) => {
			const { buf } = await readBody(req, TOKEN_BODY_MAX);
			const reply = (status, obj) => {
				res.writeHead(status, { 'content-type': 'application/json' });
				res.end(JSON.stringify(obj));
			};
			try {
				const body = buf && buf.length ? JSON.parse(buf.toString()) : {};
				if (req.method === 'GET' && req.url === '/__standin/records') return reply(200, records);
				if (req.method === 'POST' && req.url === '/__standin/fault') {
					setFault(body.endpoint, body.mode, body);
					return reply(200, faults);
				}
				if (req.method === 'POST' && req.url === '/__standin/config') {
					configure(body);
					return reply(200, { ok: true });
				}
				if (req.method === 'POST' && req.url === '/__standin/release') {
					releaseStreams();
					return reply(200, { ok: true });
				}
				if (req.method === 'POST' && req.url === '/__standin/clear') {
					clearRecords();
					return reply(200, { ok: true });
				}
				reply(404, { error: 'unknown control path' });
			} catch (e) {
				reply(400, { error: String(e.message ?? e) });
			}
		});
		await new Promise((resolve) => control.listen(cfg.controlPort, '127.0.0.1', resolve));
		controlPort = control.address().port;
	}

	async function close() {
		for (const s of sockets) s.destroy();
		await closeAll();
		if (control) await new Promise((r) => control.close(() => r()));
		liveTokens.clear();
		releaseStreams();
	}

	return {
		port,
		url: `https://localhost:${port}`,
		controlPort,
		controlUrl: controlPort ? `http://127.0.0.1:${controlPort}` : null,
		records,
		faults,
		setFault,
		clearFaults,
		configure,
		clearRecords,
		releaseStreams,
		/** Every access token minted and every assertion received (for leak checks). */
		secrets() {
			const s = new Set();
			for (const t of records.tokens) s.add(t.token);
			for (const e of records.exchanges) if (e.assertion) s.add(e.assertion);
			return [...s];
		},
		close,
	};
}

// --- command line ----------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
	const i = process.argv.indexOf('--config');
	if (i < 0 || !process.argv[i + 1]) {
		process.stderr.write('usage: node standin.mjs --config FILE.json\n');
		process.exit(2);
	}
	const conf = JSON.parse(readFileSync(process.argv[i + 1], 'utf8'));
	if (conf.controlPort === undefined) conf.controlPort = 0;
	const s = await startStandin(conf);
	process.stdout.write(JSON.stringify({ url: s.url, port: s.port, controlUrl: s.controlUrl, controlPort: s.controlPort }) + '\n');
	const stop = () => s.close().then(() => process.exit(0));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}
