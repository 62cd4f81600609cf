// Request smuggling and confusion: hostile HTTP/1 sent as raw bytes to the plaintext
// listener and, through CONNECT + the interception CA, over TLS. The Service's upstream is a
// recording TLS server (trusted by vouchd through the same test CA as the stand-in, which
// still runs the token exchange) that keeps the raw bytes of everything it receives and
// parses them with its own strict HTTP/1.1 reader. After every vector the test asserts what
// the workload got back, whether vouchd closed the connection, and exactly what reached the
// upstream: nothing for a rejected vector (nor for a valid request pipelined behind it);
// for an accepted one, exactly the expected well-formed requests, each with one
// Authorization: Bearer <token the stand-in minted>, no x-api-key, no hop-by-hop field,
// and consistent framing. The outcomes are listed in docs/SECURITY.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { once } from 'node:events';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import {
	startStandin, generateCerts, startVouchd, makeTempDir, freePort, haveVouchd, onCleanup, sleep, waitFor,
	yamlDocs, serviceResource, sourceResource, workloadResource, bindingResource, standinRule, NODE, RULE_ID,
	VOUCHD,
} from './lib.mjs';

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'proxy-authorization', 'expect'];
const LEAK = 'sk-ant-api03-LEAKED-workload-key';

// --- the recording upstream ------------------------------------------------------------

/**
 * A strict HTTP/1.1 request reader over one connection's bytes. Returns
 * {req, used} for a complete request, null when more bytes are needed, or throws with the
 * reason the bytes are not a well-formed request (a smuggling symptom when they came from
 * vouchd).
 */
function readRequest(buf) {
	const end = buf.indexOf('\r\n\r\n');
	if (end < 0) {
		if (buf.length > 65536) throw new Error('head over 64 KiB');
		return null;
	}
	const head = buf.subarray(0, end).toString('latin1');
	const lines = head.split('\r\n');
	for (const l of lines) {
		if (/[\r\n]/.test(l)) throw new Error(`bare CR or LF in ${JSON.stringify(l)}`);
		if (/[\x00-\x08\x0a-\x1f\x7f]/.test(l)) throw new Error(`control byte in ${JSON.stringify(l)}`);
	}
	const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\/[!-~]*) HTTP\/1\.([01])$/.exec(lines[0]);
	if (!m) throw new Error(`bad request line ${JSON.stringify(lines[0])}`);
	const headers = [];
	for (const l of lines.slice(1)) {
		if (/^[ \t]/.test(l)) throw new Error(`obs-fold ${JSON.stringify(l)}`);
		const i = l.indexOf(':');
		if (i <= 0 || !TCHAR.test(l.slice(0, i))) throw new Error(`bad field line ${JSON.stringify(l)}`);
		headers.push([l.slice(0, i), l.slice(i + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
	}
	const all = (n) => headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
	const cl = all('content-length'), te = all('transfer-encoding');
	let pos = end + 4, body = Buffer.alloc(0), chunked = false;
	const trailers = [];
	if (cl.length && te.length) throw new Error('both Content-Length and Transfer-Encoding');
	if (cl.length) {
		if (cl.length !== 1 || !/^\d+$/.test(cl[0])) throw new Error(`Content-Length ${JSON.stringify(cl)}`);
		const n = Number(cl[0]);
		if (buf.length < pos + n) return null;
		body = buf.subarray(pos, pos + n);
		pos += n;
	} else if (te.length) {
		if (te.length !== 1 || te[0].toLowerCase() !== 'chunked') throw new Error(`Transfer-Encoding ${JSON.stringify(te)}`);
		if (m[3] !== '1') throw new Error('Transfer-Encoding in HTTP/1.0');
		chunked = true;
		const parts = [];
		for (;;) {
			const e = buf.indexOf('\r\n', pos);
			if (e < 0) return null;
			const line = buf.subarray(pos, e).toString('latin1');
			const sm = /^([0-9a-fA-F]{1,12})(;[\t -~]*)?$/.exec(line);
			if (!sm) throw new Error(`chunk size line ${JSON.stringify(line)}`);
			const n = parseInt(sm[1], 16);
			pos = e + 2;
			if (n === 0) break;
			if (buf.length < pos + n + 2) return null;
			parts.push(buf.subarray(pos, pos + n));
			if (buf[pos + n] !== 0x0d || buf[pos + n + 1] !== 0x0a) throw new Error('chunk data not followed by CRLF');
			pos += n + 2;
		}
		for (;;) {
			const e = buf.indexOf('\r\n', pos);
			if (e < 0) return null;
			const line = buf.subarray(pos, e).toString('latin1');
			pos = e + 2;
			if (line === '') break;
			const i = line.indexOf(':');
			if (i <= 0 || !TCHAR.test(line.slice(0, i)) || /[\x00-\x08\x0a-\x1f\x7f]/.test(line))
				throw new Error(`bad trailer ${JSON.stringify(line)}`);
			trailers.push([line.slice(0, i), line.slice(i + 1).trim()]);
		}
		body = Buffer.concat(parts);
	}
	return {
		used: pos,
		req: {
			method: m[1], target: m[2], minor: Number(m[3]), headers, trailers, body: body.toString('latin1'), chunked,
			raw: buf.subarray(0, pos).toString('latin1'), all,
		},
	};
}

async function startRecorder(certs) {
	const rec = { bytes: 0, requests: [], errors: [], conns: 0, cut: [] };
	const server = tlsCreateServer({ cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) }, (s) => {
		const id = ++rec.conns;
		let buf = Buffer.alloc(0);
		s.on('error', () => {});
		// a connection that ends in the middle of a request: what it had
		s.on('close', () => buf.length && rec.cut.push({ conn: id, text: buf.toString('latin1') }));
		s.on('data', (d) => {
			rec.bytes += d.length;
			buf = Buffer.concat([buf, d]);
			for (;;) {
				let r;
				try {
					r = readRequest(buf);
				} catch (e) {
					rec.errors.push(`connection ${id}: ${e.message}: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
					s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
					buf = Buffer.alloc(0);
					return;
				}
				if (!r) return;
				buf = buf.subarray(r.used);
				const seq = rec.requests.push({ conn: id, ...r.req });
				const conn = r.req.all('connection').join(',').toLowerCase();
				const close = conn.includes('close') || (r.req.minor === 0 && !conn.includes('keep-alive'));
				const body = JSON.stringify({ seq, path: r.req.target });
				s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${close ? 'connection: close\r\n' : ''}\r\n${body}`);
				if (close) {
					s.end();
					return;
				}
			}
		});
	});
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	return {
		rec,
		port: server.address().port,
		close: () => new Promise((r) => {
			server.close(() => r());
			// pooled connections from vouchd would keep close() waiting
			setTimeout(r, 500);
		}),
	};
}

// --- the workload side: raw bytes in, responses and the close observed -----------------

/** Parse complete responses (interim 1xx included) from buf: {list, rest}. */
function readResponses(buf) {
	const list = [];
	let pos = 0;
	for (;;) {
		const end = buf.indexOf('\r\n\r\n', pos);
		if (end < 0) break;
		const lines = buf.subarray(pos, end).toString('latin1').split('\r\n');
		const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
		if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
		const headers = {};
		for (const l of lines.slice(1)) {
			const i = l.indexOf(':');
			const k = l.slice(0, i).toLowerCase();
			(headers[k] ??= []).push(l.slice(i + 1).trim());
		}
		const status = Number(m[2]);
		let p = end + 4, body = '';
		if (status >= 100 && status < 200) {
			list.push({ status, headers, body });
			pos = p;
			continue;
		}
		if (headers['content-length']) {
			const n = Number(headers['content-length'][0]);
			if (buf.length < p + n) break;
			body = buf.subarray(p, p + n).toString('utf8');
			p += n;
		} else if (headers['transfer-encoding']) {
			throw new Error('vouchd answered with a chunked response (the recorder never sends one)');
		}
		list.push({ status, headers, body });
		pos = p;
	}
	return list;
}

/** A raw client connection: bytes written as given; everything read kept. */
class Raw {
	constructor(sock) {
		this.sock = sock;
		this.chunks = [];
		this.ended = false;
		this.waiters = new Set();
		sock.on('data', (d) => {
			this.chunks.push(d);
			this.kick();
		});
		sock.on('error', () => {});
		sock.on('end', () => {
			this.ended = true;
			this.kick();
		});
		sock.on('close', () => {
			this.ended = true;
			this.kick();
		});
	}
	kick() {
		for (const w of this.waiters) w();
	}
	get buf() {
		return Buffer.concat(this.chunks);
	}
	get text() {
		return this.buf.toString('latin1');
	}
	get responses() {
		return readResponses(this.buf);
	}
	get finals() {
		return this.responses.filter((r) => r.status >= 200);
	}
	write(bytes) {
		this.sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
	}
	/** Resolve true once pred() holds, false after timeoutMs. */
	until(pred, timeoutMs) {
		return new Promise((resolve) => {
			const check = () => {
				if (pred()) done(true);
			};
			const timer = setTimeout(() => done(false), timeoutMs);
			const done = (v) => {
				clearTimeout(timer);
				this.waiters.delete(check);
				resolve(v);
			};
			this.waiters.add(check);
			check();
		});
	}
	waitEnd(timeoutMs = 6000) {
		return this.until(() => this.ended, timeoutMs);
	}
	waitFinals(n, timeoutMs = 10000) {
		return this.until(() => this.ended || this.finals.length >= n, timeoutMs);
	}
	destroy() {
		this.sock.destroy();
	}
}

function openPlain(port) {
	const s = netConnect(port, '127.0.0.1');
	return once(s, 'connect').then(() => new Raw(s));
}

/** CONNECT host:port through the HTTPS proxy listener, then TLS with servername sni. */
async function openTunnel(proxyPort, { target, sni, ca, checkName = true }) {
	const s = netConnect(proxyPort, '127.0.0.1');
	await once(s, 'connect');
	s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
	let head = '';
	await new Promise((resolve, reject) => {
		const onData = (d) => {
			head += d.toString('latin1');
			if (head.includes('\r\n\r\n')) {
				s.off('data', onData);
				resolve();
			}
		};
		s.on('data', onData);
		s.on('error', reject);
		s.on('end', () => reject(new Error(`proxy closed during CONNECT: ${JSON.stringify(head)}`)));
	});
	assert.match(head, /^HTTP\/1\.1 200 /, `CONNECT answer ${JSON.stringify(head)}`);
	const t = tlsConnect({ socket: s, servername: sni, ca, ...(checkName ? {} : { checkServerIdentity: () => undefined }) });
	const ok = await new Promise((resolve) => {
		t.once('secureConnect', () => resolve(true));
		t.once('error', () => resolve(false));
		t.once('close', () => resolve(false));
	});
	const raw = new Raw(t);
	raw.handshake = ok;
	return raw;
}

// --- the vectors -------------------------------------------------------------------------

const BODY = '{"model":"claude-standin-1","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}';
const chunk = (s) => `${Buffer.byteLength(s, 'latin1').toString(16)}\r\n${s}\r\n`;
const CHUNKED_BODY = `${chunk(BODY.slice(0, 20))}${chunk(BODY.slice(20))}0\r\n\r\n`;

/**
 * Each vector: name, the RFC section its outcome follows, an outcome for docs/SECURITY.md,
 * and either
 *   reject: {status, bytes(h)}: the status (regexp or number), the connection closed, nothing
 *           upstream (status null: no response at all, only the close);
 *   accept: {bytes(h), n, close, check(reqs, res)}: n final 200 responses relayed, exactly n
 *           requests upstream, each well-formed and injected; close: vouchd must close after.
 * h = {host (the listener's authority), post(extra headers, body framing...)}.
 */
function vectors() {
	const V = [];
	const reject = (name, rfc, status, bytes) => V.push({ name, rfc, kind: 'reject', status, bytes });
	const accept = (name, rfc, bytes, o = {}) => V.push({ name, rfc, kind: 'accept', bytes, n: 1, ...o });
	const post = (h, fields, body = BODY) =>
		`POST /v1/messages HTTP/1.1\r\nHost: ${h.host}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n${fields}\r\n${body}`;
	const cl = `Content-Length: ${BODY.length}\r\n`;
	const get = (h, path = '/v1/models') => `GET ${path} HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`;
	const smuggled = (h) => `GET /smuggled HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`;

	// Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §6.3 rule 3)
	reject('CL then TE: chunked', '9112 §6.1', 400, (h) => post(h, `${cl}Transfer-Encoding: chunked\r\n`, CHUNKED_BODY) + smuggled(h));
	reject('TE: chunked then CL: 0 (TE.CL)', '9112 §6.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\nContent-Length: 0\r\n', CHUNKED_BODY));
	// Content-Length repeated or listed (§6.3 rule 5, RFC 9110 §8.6)
	reject('two Content-Length fields, different values', '9112 §6.3', 400, (h) => post(h, `${cl}Content-Length: 3\r\n`));
	reject('Content-Length list with different values', '9112 §6.3', 400, (h) => post(h, `Content-Length: ${BODY.length}, 3\r\n`));
	reject('two Content-Length fields, same value', '9110 §8.6 (MAY reject)', 400, (h) => post(h, `${cl}${cl}`));
	reject('Content-Length list with the same value', '9110 §8.6 (MAY reject)', 400, (h) => post(h, `Content-Length: ${BODY.length}, ${BODY.length}\r\n`));
	reject('Content-Length with a trailing comma', '9110 §8.6', 400, (h) => post(h, `Content-Length: ${BODY.length},\r\n`));
	reject('Content-Length with a sign', '9110 §8.6', 400, (h) => post(h, `Content-Length: +${BODY.length}\r\n`));
	reject('Content_Length (underscore) beside a body', '9110 §5.1 (confusable name)', 400, (h) => post(h, `Content_Length: ${BODY.length}\r\n`));
	// Transfer-Encoding variants and obfuscations (§6.1, §7)
	reject('TE: gzip (chunked not final)', '9112 §6.1 (MUST 400)', 400, (h) => post(h, 'Transfer-Encoding: gzip\r\n', CHUNKED_BODY));
	reject('TE: chunked, chunked', '9112 §7', 400, (h) => post(h, 'Transfer-Encoding: chunked, chunked\r\n', CHUNKED_BODY));
	reject('TE in two fields', '9112 §6.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', CHUNKED_BODY));
	reject('TE: xchunked', '9112 §6.1', 400, (h) => post(h, 'Transfer-Encoding: xchunked\r\n', CHUNKED_BODY));
	reject('TE: "chunked" (quoted)', '9112 §6.1', 400, (h) => post(h, 'Transfer-Encoding: "chunked"\r\n', CHUNKED_BODY));
	reject('TE with SP before the colon', '9112 §5.1', 400, (h) => post(h, 'Transfer-Encoding : chunked\r\n', CHUNKED_BODY));
	reject('TE with VT before the value', '9110 §5.5', 400, (h) => post(h, 'Transfer-Encoding:\x0bchunked\r\n', CHUNKED_BODY));
	reject('Transfer_Encoding (underscore)', '9110 §5.1 (confusable name)', 400, (h) => post(h, 'Transfer_Encoding: chunked\r\n', CHUNKED_BODY));
	reject('TE in HTTP/1.0', '9112 §6.1', 400, (h) => `POST /v1/messages HTTP/1.0\r\nHost: ${h.host}\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`);
	accept('TE: ChUnKeD (case-insensitive) is chunked', '9112 §7', (h) => post(h, 'Transfer-Encoding: ChUnKeD\r\n', CHUNKED_BODY), {
		check: ([r]) => {
			assert.ok(r.chunked, 'forwarded chunked');
			assert.equal(r.body, BODY);
		},
	});
	// obs-fold (§5.2)
	reject('obs-fold hiding Transfer-Encoding', '9112 §5.2', 400, (h) => post(h, `X-Pad: a\r\n Transfer-Encoding: chunked\r\n${cl}`));
	reject('obs-fold continuing a value', '9112 §5.2', 400, (h) => post(h, `X-Pad: a\r\n\tb\r\n${cl}`));
	// bare CR / LF, NUL and control bytes (§2.2, RFC 9110 §5.5)
	reject('bare LF line endings', '9112 §2.2', 400, (h) => `POST /v1/messages HTTP/1.1\nHost: ${h.host}\n${cl.trim()}\n\n${BODY}`);
	reject('bare LF inside the head', '9112 §2.2', 400, (h) => post(h, `X-A: 1\nTransfer-Encoding: chunked\r\n${cl}`));
	reject('bare CR inside a value', '9112 §2.2', 400, (h) => post(h, `X-A: 1\rContent-Length: 0\r\n${cl}`));
	reject('NUL inside a value', '9110 §5.5', 400, (h) => post(h, `X-A: a\x00b\r\n${cl}`));
	reject('NUL inside the target', '9112 §3.2', 400, (h) => `GET /v1/models\x00/x HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`);
	reject('control byte (ESC) inside a field name', '9110 §5.1', 400, (h) => post(h, `X-\x1bA: 1\r\n${cl}`));
	reject('empty line before the request line', '9112 §2.2 (strict)', 400, (h) => `\r\n${get(h)}`);
	reject('HTTP/1.2', '9112 §2.3', 400, (h) => `GET /v1/models HTTP/1.2\r\nHost: ${h.host}\r\n\r\n`);
	// oversize (§3, §5, RFC 6585)
	reject('request line over 16 KiB', '9112 §3 (MUST 414)', 414, (h) => `GET /${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`);
	reject('one header line over 16 KiB', 'RFC 6585 §5', 431, (h) => post(h, `X-Big: ${'b'.repeat(17 * 1024)}\r\n${cl}`));
	reject('101 header fields', 'RFC 6585 §5', 431, (h) => post(h, `${'X-N: 1\r\n'.repeat(101)}${cl}`));
	reject('head over 64 KiB', 'RFC 6585 §5', 431, (h) => post(h, `${`X-M: ${'m'.repeat(8000)}\r\n`.repeat(9)}${cl}`));
	// chunk sizes and extensions (§7.1)
	reject('chunk size not hex', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `zz\r\n${BODY}\r\n0\r\n\r\n`));
	reject('chunk size with 0x prefix', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `0x5\r\nhello\r\n0\r\n\r\n`));
	reject('negative chunk size', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `-5\r\nhello\r\n0\r\n\r\n`));
	reject('chunk size overflowing 64 bits', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `1${'0'.repeat(16)}5\r\nhello\r\n0\r\n\r\n`));
	reject('chunk size with SP and no extension', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `5 \r\nhello\r\n0\r\n\r\n`));
	reject('chunk data longer than its size', '9112 §7.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `3\r\nhello\r\n0\r\n\r\n`) + smuggled(h));
	reject('bare LF in a chunk extension', '9112 §7.1.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `5;a=b\nc\r\nhello\r\n0\r\n\r\n`));
	reject('control byte in a chunk extension', '9112 §7.1.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `5;a=\x01\r\nhello\r\n0\r\n\r\n`));
	reject('trailer field x-api-key', '9110 §6.5.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `${chunk(BODY)}0\r\nx-api-key: ${LEAK}\r\n\r\n`));
	reject('trailer field Content-Length', '9110 §6.5.1', 400, (h) => post(h, 'Transfer-Encoding: chunked\r\n', `${chunk(BODY)}0\r\nContent-Length: 5\r\n\r\n`));
	accept('chunk extensions and a harmless trailer', '9112 §7.1.1, §7.1.2', (h) => post(h, 'Transfer-Encoding: chunked\r\n',
		`${BODY.length.toString(16)};name=value;q="a b"\r\n${BODY}\r\n0\r\nX-Checksum: 1\r\n\r\n`), {
		check: ([r]) => {
			assert.ok(r.chunked);
			assert.equal(r.body, BODY);
		},
	});
	// pipelining after a rejected request, and across requests (§9.3, §9.6)
	reject('valid request pipelined after a rejected one', '9112 §9.3', 400,
		(h) => `GET /v1/models HTTP/1.1\r\nHost: ${h.host}\r\nHost: ${h.host}\r\n\r\n${get(h, '/smuggled')}`);
	accept('pipelined valid requests are each injected', '9112 §9.3', (h) => `${get(h, '/v1/one')}${post(h, `X-API-KEY: ${LEAK}\r\n${cl}`)}`, {
		n: 2,
		check: (reqs) => {
			assert.deepEqual(reqs.map((r) => r.target), ['/v1/one', '/v1/messages']);
			assert.equal(reqs[1].body, BODY);
		},
	});
	accept('CL body that looks like a request is body', '9112 §6.3', (h) => post(h, `Content-Length: ${smuggled(h).length}\r\n`, smuggled(h)), {
		check: ([r], h) => assert.equal(r.body, smuggled(h)),
	});
	accept('a rejected request after an accepted one ends the connection', '9112 §9.3',
		(h) => `${get(h)}GET /smuggled HTTP/1.1\r\n\r\n${get(h, '/after')}`, {
			close: true, tailStatus: 400,
			check: ([r]) => assert.equal(r.target, '/v1/models'),
		});
	accept('Connection: close stops a pipeline', '9112 §9.6',
		(h) => `GET /v1/models HTTP/1.1\r\nHost: ${h.host}\r\nConnection: close\r\n\r\n${get(h, '/smuggled')}`, {
			close: true,
			check: ([r]) => assert.equal(r.target, '/v1/models'),
		});
	// HTTP/1.0 (§9.3)
	accept('HTTP/1.0 keep-alive: two requests on one connection', '9112 §9.3',
		(h) => `GET /v1/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v1/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`, {
			n: 2,
			check: (reqs, h, res) => {
				assert.deepEqual(reqs.map((r) => r.target), ['/v1/a', '/v1/b']);
				for (const r of res) assert.deepEqual(r.headers.connection, ['keep-alive']);
			},
		});
	accept('HTTP/1.0 without keep-alive closes', '9112 §9.3', () => `GET /v1/models HTTP/1.0\r\n\r\n`, {
		close: true,
		check: (reqs, h, res) => assert.deepEqual(res[0].headers.connection, ['close']),
	});
	// Expect (RFC 9110 §10.1.1)
	V.push({
		name: 'Expect: 100-continue is answered by vouchd, not forwarded', rfc: '9110 §10.1.1', kind: 'expect',
	});
	accept('Expect with an unknown expectation is not forwarded', '9110 §10.1.1', (h) => post(h, `Expect: 200-ok\r\n${cl}`), {
		check: ([r]) => assert.equal(r.body, BODY),
	});
	// targets and Host (§3.2)
	reject('absolute-form to another host', '9112 §3.2.2', 403, (h) => `GET http://evil.example/v1/models HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`);
	reject('absolute-form with userinfo', '9110 §4.2.4', 400, (h) => `GET http://${h.host}@evil.example/v1/models HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`);
	reject('absolute-form to the listener, Host another host', '9112 §3.2.2 (strict)', 403,
		(h) => `GET http://${h.host}/v1/models HTTP/1.1\r\nHost: evil.example\r\n\r\n`);
	accept('absolute-form naming the listener', '9112 §3.2.2', (h) => `GET http://${h.host}/v1/abs?x=1 HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`, {
		check: ([r]) => assert.equal(r.target, '/v1/abs?x=1'),
	});
	reject('asterisk-form', '9112 §3.2.4', 400, (h) => `OPTIONS * HTTP/1.1\r\nHost: ${h.host}\r\n\r\n`);
	reject('two Host fields', '9112 §3.2 (MUST 400)', 400, (h) => `GET /v1/models HTTP/1.1\r\nHost: ${h.host}\r\nhost: evil.example\r\n\r\n`);
	reject('no Host in HTTP/1.1', '9112 §3.2 (MUST 400)', 400, () => `GET /v1/models HTTP/1.1\r\n\r\n`);
	reject('Host as a list', '9112 §3.2 (MUST 400: invalid value)', 400, (h) => `GET /v1/models HTTP/1.1\r\nHost: ${h.host}, evil.example\r\n\r\n`);
	reject('Host with userinfo', '9112 §3.2 (MUST 400: invalid value)', 400, (h) => `GET /v1/models HTTP/1.1\r\nHost: u@${h.host}\r\n\r\n`);
	reject('Host naming another host', 'DESIGN §4', 403, () => `GET /v1/models HTTP/1.1\r\nHost: evil.example\r\n\r\n`);
	// credentials (DESIGN §2 proxy, §4)
	accept('credential headers in odd case and repeated are all replaced', 'DESIGN §4', (h) => post(h,
		`X-API-KEY: ${LEAK}\r\nx-Api-Key: ${LEAK}2\r\naUtHoRiZaTiOn: Bearer ${LEAK}3\r\nAuthorization: Basic ${LEAK}4\r\nProxy-Authorization: Basic ${LEAK}5\r\n${cl}`), {
		check: ([r]) => assert.equal(r.body, BODY),
	});
	reject('X_Api_Key (underscore)', '9110 §5.1 (confusable name)', 400, (h) => post(h, `X_Api_Key: ${LEAK}\r\n${cl}`));
	reject('Proxy_Authorization (underscore)', '9110 §5.1 (confusable name)', 400, (h) => post(h, `Proxy_Authorization: Basic ${LEAK}\r\n${cl}`));
	accept('hop-by-hop fields and the ones Connection names are dropped', '9110 §7.6.1', (h) => post(h,
		`Connection: keep-alive, X-Hop, Upgrade\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nTrailer: X-Checksum\r\n${cl}`), {
		check: ([r]) => {
			assert.deepEqual(r.all('x-hop'), []);
			assert.equal(r.body, BODY);
		},
	});
	return V;
}

// --- the suite ---------------------------------------------------------------------------

test('smuggling: hostile HTTP/1 never reaches the upstream', async (t) => {
	if (!haveVouchd()) throw new Error(`no vouchd at ${VOUCHD} (run make)`);
	const dir = makeTempDir(t, 'vouch-smuggle-');
	const certs = generateCerts(join(dir, 'certs'));
	const oidcPort = await freePort();
	const issuer = `http://127.0.0.1:${oidcPort}`;
	const standin = await startStandin({ certFile: certs.certFile, keyFile: certs.keyFile, issuer, rules: { [RULE_ID]: standinRule() } });
	onCleanup(t, () => standin.close());
	const up = await startRecorder(certs);
	onCleanup(t, () => up.close());
	const vouchd = await startVouchd(t, {
		dir, oidcPort, upstreamCAFile: certs.caFile,
		resources: {
			'service.yaml': yamlDocs(serviceResource(up.port)),
			'source.yaml': yamlDocs(sourceResource({ standinPort: standin.port })),
			'node.yaml': yamlDocs(workloadResource({ name: 'node', workloadID: 'demo/node', selectors: [{ 'process:binary:path': NODE }] })),
			// any path: this suite is about framing; the default Anthropic routes are
			// limits.test.mjs's subject (an ambiguous path is still 400 under '/**')
			'binding-node.yaml': yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node', limits: { paths: ['/', '/**'] } })),
		},
	});
	const interceptCA = readFileSync(join(vouchd.stateDir, 'intercept-ca.crt'));
	const { rec } = up;

	/** Assert each upstream request is well-formed and carries only the injected credential. */
	const checkInjected = (r, h) => {
		const auth = r.headers.filter(([k]) => k.toLowerCase() === 'authorization');
		assert.equal(auth.length, 1, `exactly one Authorization: ${JSON.stringify(r.headers)}`);
		const m = /^Bearer (\S+)$/.exec(auth[0][1]);
		assert.ok(m, 'a bearer token');
		assert.ok(standin.records.tokens.some((x) => x.token === m[1]), 'the token is one the stand-in minted for vouchd');
		assert.deepEqual(r.all('x-api-key'), [], 'no x-api-key');
		for (const hop of HOP) assert.deepEqual(r.all(hop), [], `no ${hop} field`);
		assert.ok(!r.raw.includes(LEAK), 'no workload-supplied credential anywhere in the forwarded bytes');
		assert.ok(!r.headers.some(([k]) => k.includes('_')), 'no underscore field names');
		assert.deepEqual(r.all('host'), [`localhost:${up.port}`], 'Host is the Service upstream');
		assert.ok(!r.target.includes('smuggled'), 'not the smuggled request');
		assert.equal(r.trailers.filter(([k]) => /^(authorization|x-api-key|content-length|transfer-encoding|host)$/i.test(k)).length, 0);
		void h;
	};

	/**
	 * Run one vector over a fresh connection made by open(); h = {host}.
	 */
	const run = async (v, open, h) => {
		const bytesBefore = rec.bytes, reqsBefore = rec.requests.length, errsBefore = rec.errors.length;
		const c = await open();
		try {
			if (v.kind === 'reject') {
				c.write(v.bytes(h));
				const ended = await c.waitEnd();
				const res = c.responses;
				if (v.status === null) {
					assert.equal(res.length, 0, `no response: ${JSON.stringify(c.text.slice(0, 300))}`);
				} else {
					assert.equal(res.length, 1, `one response: ${JSON.stringify(c.text.slice(0, 300))}`);
					assert.equal(res[0].status, v.status, `status: ${JSON.stringify(c.text.slice(0, 300))}`);
					assert.deepEqual(res[0].headers.connection, ['close'], 'the error says Connection: close');
					const j = JSON.parse(res[0].body);
					assert.equal(j.type, 'error', 'Anthropic error shape');
				}
				assert.ok(ended, 'vouchd closed the connection');
				await sleep(150); // anything vouchd had sent upstream would have arrived by now
				assert.equal(rec.bytes, bytesBefore, `nothing reached the upstream: ${JSON.stringify(rec.requests.slice(reqsBefore).map((r) => r.raw.slice(0, 200)))}`);
			} else if (v.kind === 'accept') {
				c.write(v.bytes(h));
				const want = v.n + (v.tailStatus ? 1 : 0);
				await c.waitFinals(want);
				const res = c.finals;
				assert.equal(res.length, want, `responses: ${JSON.stringify(c.text.slice(0, 600))}\n--- vouchd ---\n${vouchd.stderr().slice(-2000)}`);
				for (const r of res.slice(0, v.n)) assert.equal(r.status, 200, `relayed: ${JSON.stringify(r)}`);
				if (v.tailStatus) assert.equal(res[v.n].status, v.tailStatus);
				if (v.close) assert.ok(await c.waitEnd(), 'vouchd closed the connection');
				else assert.equal(await c.waitEnd(300), false, 'the connection stays open');
				await sleep(100);
				const got = rec.requests.slice(reqsBefore);
				assert.equal(got.length, v.n, `exactly ${v.n} request(s) upstream: ${JSON.stringify(got.map((r) => r.raw.slice(0, 300)))}`);
				for (const r of got) checkInjected(r, h);
				v.check?.(got, h, res);
			} else if (v.kind === 'expect') {
				const head = `POST /v1/messages HTTP/1.1\r\nHost: ${h.host}\r\nExpect: 100-continue\r\nContent-Length: ${BODY.length}\r\n\r\n`;
				c.write(head);
				assert.ok(await c.until(() => c.responses.length >= 1, 5000), `an interim response: ${JSON.stringify(c.text)}`);
				assert.equal(c.responses[0].status, 100, '100 Continue before the body');
				assert.equal(rec.requests.length, reqsBefore, 'nothing forwarded before the body');
				c.write(BODY);
				await c.waitFinals(1);
				assert.equal(c.finals[0]?.status, 200, c.text);
				await sleep(100);
				const got = rec.requests.slice(reqsBefore);
				assert.equal(got.length, 1);
				checkInjected(got[0], h);
				assert.equal(got[0].body, BODY);
			}
			assert.equal(rec.errors.length, errsBefore, `the upstream parsed everything it got: ${rec.errors.slice(errsBefore).join('\n')}`);
		} finally {
			c.destroy();
		}
	};

	const plainHost = `127.0.0.1:${vouchd.plainPort}`;
	const tunnelHost = `localhost:${up.port}`;
	const tunnel = (o = {}) => () => openTunnel(vouchd.proxyPort, { target: tunnelHost, sni: 'localhost', ca: interceptCA, ...o });

	await t.test('plaintext listener', async (tt) => {
		for (const v of vectors()) await tt.test(`${v.name} [${v.rfc}]`, () => run(v, () => openPlain(vouchd.plainPort), { host: plainHost }));
	});

	await t.test('TLS through CONNECT', async (tt) => {
		// The same vectors inside the tunnel: framing is checked after TLS termination too.
		for (const v of vectors()) await tt.test(`${v.name} [${v.rfc}]`, () => run(v, tunnel(), { host: tunnelHost }));

		await tt.test('SNI names another host than CONNECT: closed, no response', async () => {
			const bytesBefore = rec.bytes;
			const c = await openTunnel(vouchd.proxyPort, { target: tunnelHost, sni: 'api.anthropic.com', ca: interceptCA, checkName: false });
			try {
				if (c.handshake) c.write(`GET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n`);
				assert.ok(await c.waitEnd(), 'vouchd closed the connection');
				assert.equal(c.responses.length, 0, `no HTTP answer: ${JSON.stringify(c.text)}`);
				await sleep(150);
				assert.equal(rec.bytes, bytesBefore, 'nothing reached the upstream');
			} finally {
				c.destroy();
			}
		});
		await tt.test('SNI agrees with CONNECT, Host names another host: 403', () => run(
			{ kind: 'reject', status: 403, bytes: () => `GET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n` }, tunnel(), { host: tunnelHost }));
		await tt.test('SNI agrees, Host without the port names the default 443: 403', () => run(
			{ kind: 'reject', status: 403, bytes: () => `GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n` }, tunnel(), { host: tunnelHost }));
		await tt.test('CONNECT with bytes pipelined before the 200: 400, nothing upstream', async () => {
			const bytesBefore = rec.bytes;
			const c = await openPlain(vouchd.proxyPort);
			try {
				c.write(`CONNECT ${tunnelHost} HTTP/1.1\r\nHost: ${tunnelHost}\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: ${tunnelHost}\r\n\r\n`);
				assert.ok(await c.waitEnd(), 'closed');
				assert.equal(c.responses[0]?.status, 400, c.text);
				await sleep(150);
				assert.equal(rec.bytes, bytesBefore);
			} finally {
				c.destroy();
			}
		});
		await tt.test('CONNECT with Content-Length: 400', () => run(
			{ kind: 'reject', status: 400, bytes: () => `CONNECT ${tunnelHost} HTTP/1.1\r\nHost: ${tunnelHost}\r\nContent-Length: 5\r\n\r\nhello` },
			() => openPlain(vouchd.proxyPort), {}));
		await tt.test('CONNECT to a host that is no Service: 403', () => run(
			{ kind: 'reject', status: 403, bytes: () => `CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n` },
			() => openPlain(vouchd.proxyPort), {}));
	});

	await t.test('bad chunk framing after the head went upstream: 400, the upstream request is cut off unfinished', async () => {
		// A chunked body streams (only the bytes that came with the head are checked before
		// the head is sent): a framing error later cannot unsend the head, so vouchd closes
		// the upstream connection with the request incomplete, and the upstream never sees
		// a complete request nor the bytes after the error.
		const reqsBefore = rec.requests.length, cutBefore = rec.cut.length, bytesBefore = rec.bytes;
		const c = await openPlain(vouchd.plainPort);
		try {
			c.write(`POST /v1/messages HTTP/1.1\r\nHost: ${plainHost}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(BODY.slice(0, 20))}`);
			await waitFor(() => rec.bytes > bytesBefore, { what: 'the head and the first chunk upstream' });
			c.write(`zz\r\n${BODY.slice(20)}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: ${plainHost}\r\n\r\n`);
			assert.ok(await c.waitEnd(), 'vouchd closed the connection');
			assert.equal(c.finals.length, 1, c.text);
			assert.equal(c.finals[0].status, 400);
			await waitFor(() => rec.cut.length > cutBefore, { what: 'the upstream connection cut' });
			assert.equal(rec.requests.length, reqsBefore, 'no complete request upstream');
			const cut = rec.cut.at(-1).text;
			assert.ok(cut.endsWith(chunk(BODY.slice(0, 20))), `the upstream got the head and the valid chunk only: ${JSON.stringify(cut)}`);
			assert.ok(!cut.includes('zz') && !cut.includes('smuggled'));
		} finally {
			c.destroy();
		}
	});

	await t.test('a truncated Content-Length body is never forwarded', async () => {
		const bytesBefore = rec.bytes;
		const c = await openPlain(vouchd.plainPort);
		try {
			c.write(`POST /v1/messages HTTP/1.1\r\nHost: ${plainHost}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY.slice(0, 10)}`);
			await sleep(200);
			c.sock.end();
			assert.ok(await c.waitEnd(), 'closed');
			assert.equal(c.finals.length, 0, c.text);
			await sleep(150);
			assert.equal(rec.bytes, bytesBefore);
		} finally {
			c.destroy();
		}
	});

	await t.test('after all of it: the upstream parsed every byte it got, and a plain request still works', async () => {
		const c = await openPlain(vouchd.plainPort);
		try {
			c.write(`GET /v1/final HTTP/1.1\r\nHost: ${plainHost}\r\n\r\n`);
			await c.waitFinals(1);
			assert.equal(c.finals[0]?.status, 200, c.text);
		} finally {
			c.destroy();
		}
		assert.deepEqual(rec.errors, []);
		await waitFor(() => rec.requests.at(-1)?.target === '/v1/final', { what: 'the last request upstream' });
	});
});
