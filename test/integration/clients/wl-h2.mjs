// wl-h2.mjs — clients for hostile-input tests of the Workload API socket (h2c on a Unix socket):
//   RawH2        a raw socket speaking hand-built HTTP/2 frames (RFC 9113) with a minimal HPACK
//                encoder (literals only, RFC 7541 §6.2.2), to send what no real client sends;
//   h2Call       one call through Node's built-in http2 client (a real client) with any
//                headers/body, reporting HTTP status, grpc-status and RST_STREAM codes;
//   WellBehaved  an @grpc/grpc-js client holding a FetchX509SVID stream open and calling
//                FetchJWTSVID on demand: the bystander that must keep being served.
import http2 from 'node:http2';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const PROTO = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src/workload/workload.proto');

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 };
export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 };
export const H2ERR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11 };

/** One frame: 9-byte header (24-bit length, type, flags, 31-bit stream id) + payload. */
export function frame(type, flags, streamId, payload = Buffer.alloc(0)) {
	const h = Buffer.alloc(9);
	h.writeUIntBE(payload.length, 0, 3);
	h[3] = type;
	h[4] = flags;
	h.writeUInt32BE(streamId & 0x7fffffff, 5);
	return Buffer.concat([h, payload]);
}

/** SETTINGS payload from [[id, value], ...]. */
export function settings(pairs = [], flags = 0) {
	const p = Buffer.alloc(6 * pairs.length);
	pairs.forEach(([id, v], i) => {
		p.writeUInt16BE(id, 6 * i);
		p.writeUInt32BE(v, 6 * i + 2);
	});
	return frame(T.SETTINGS, flags, 0, p);
}

function hpackInt(value, prefixBits, firstByte) {
	const max = (1 << prefixBits) - 1;
	if (value < max) return Buffer.from([firstByte | value]);
	const out = [firstByte | max];
	value -= max;
	while (value >= 128) {
		out.push((value % 128) + 128);
		value = Math.floor(value / 128);
	}
	out.push(value);
	return Buffer.from(out);
}
const hpackStr = (s) => {
	const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1');
	return Buffer.concat([hpackInt(b.length, 7, 0x00), b]); // no Huffman
};

/** An HPACK block of "literal header field without indexing — new name" entries. */
export function hpack(headers) {
	return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0x00]), hpackStr(n), hpackStr(v)]));
}

/** gRPC request headers for method (a full :path). */
export function grpcHeaders(path, extra = []) {
	return [[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'localhost'],
		['content-type', 'application/grpc'], ['te', 'trailers'], ...extra];
}

/** HEADERS (+ CONTINUATION frames) carrying block, split at maxFrame. */
export function headersFrames(streamId, block, { endStream = false, maxFrame = 16384 } = {}) {
	const out = [];
	for (let off = 0, first = true; first || off < block.length; first = false) {
		const chunk = block.subarray(off, off + maxFrame);
		off += chunk.length;
		const last = off >= block.length;
		const flags = (last ? F.END_HEADERS : 0) | (first && endStream ? F.END_STREAM : 0);
		out.push(frame(first ? T.HEADERS : T.CONTINUATION, flags, streamId, chunk));
	}
	return Buffer.concat(out);
}

/** The 5-byte gRPC message prefix + payload. */
export function grpcMessage(payload, { compressed = false, declaredLen } = {}) {
	const p = Buffer.alloc(5);
	p[0] = compressed ? 1 : 0;
	p.writeUInt32BE(declaredLen ?? payload.length, 1);
	return Buffer.concat([p, payload]);
}

/** JWTSVIDRequest{audience: [aud...]} in protobuf wire format (field 1, length-delimited). */
export function jwtSvidRequest(auds) {
	return Buffer.concat(auds.map((a) => {
		const b = Buffer.from(a, 'utf8');
		if (b.length > 127) throw new Error('audience too long for this encoder');
		return Buffer.concat([Buffer.from([0x0a, b.length]), b]);
	}));
}

/**
 * A raw connection to a Unix socket. Collects every byte the server sends and parses it into
 * frames (after the connection preface the server's first bytes are its SETTINGS frame).
 * Properties: frames [{type, flags, streamId, payload}], eof (true once the server closed),
 * closed (a promise resolved at EOF or error), bytes (total received).
 */
export class RawH2 {
	constructor(path) {
		this.frames = [];
		this.bytes = 0;
		this.eof = false;
		this.buf = Buffer.alloc(0);
		this.sock = net.connect(path);
		this.connected = new Promise((res, rej) => {
			this.sock.once('connect', res);
			this.sock.once('error', rej);
		});
		this.closed = new Promise((res) => {
			const done = (why) => {
				this.eof = true;
				this.closeReason = this.closeReason ?? why;
				res(why);
			};
			this.sock.on('end', () => done('eof'));
			this.sock.on('error', (e) => done(`error ${e.code ?? e.message}`));
			this.sock.on('close', () => done('close'));
		});
		this.sock.on('data', (d) => this._onData(d));
	}

	_onData(d) {
		this.bytes += d.length;
		this.buf = Buffer.concat([this.buf, d]);
		while (this.buf.length >= 9) {
			const len = this.buf.readUIntBE(0, 3);
			if (this.buf.length < 9 + len) break;
			this.frames.push({ type: this.buf[3], flags: this.buf[4], streamId: this.buf.readUInt32BE(5) & 0x7fffffff,
				payload: this.buf.subarray(9, 9 + len) });
			this.buf = this.buf.subarray(9 + len);
		}
	}

	async write(bytes) {
		await this.connected;
		if (this.sock.destroyed || this.sock.writableEnded) return false;
		return new Promise((res) => this.sock.write(bytes, (e) => res(!e)));
	}

	/** Half-close our side (the server sees EOF after what was sent). */
	end() {
		this.sock.end();
	}

	destroy() {
		this.sock.destroy();
	}

	/** Stop reading from the socket (the kernel buffers fill, the server's writes block). */
	pauseReading() {
		this.sock.pause();
	}

	goaway() {
		const f = this.frames.find((x) => x.type === T.GOAWAY);
		return f && { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4),
			debug: f.payload.subarray(8).toString('latin1') };
	}

	/** {streamId: errorCode} of every RST_STREAM received. */
	resets() {
		const m = new Map();
		for (const f of this.frames) if (f.type === T.RST_STREAM) m.set(f.streamId, f.payload.readUInt32BE(0));
		return m;
	}

	/** Header block fragments the server sent on streamId (HPACK-encoded; we do not decode). */
	headersOn(streamId) {
		return this.frames.filter((x) => x.streamId === streamId && (x.type === T.HEADERS || x.type === T.CONTINUATION));
	}
}

/**
 * One request through node:http2 over the Unix socket. opts: headers (extra request headers,
 * overriding the defaults; a key set to undefined is dropped), body (Buffer, written then the
 * stream ended), bodyChunks (async generator of Buffers, written with backpressure), settings,
 * sessionOptions, timeoutMs. Resolves {httpStatus, grpcStatus, grpcMessage, rstCode, data,
 * error, session} — never rejects for protocol-level outcomes.
 */
export function h2Call(sockPath, path, { headers = {}, body, bodyChunks, settings: st, sessionOptions = {}, timeoutMs = 20000, session } = {}) {
	return new Promise((resolveP) => {
		const own = !session;
		const s = session ?? http2.connect('http://localhost', { createConnection: () => net.connect(sockPath), settings: st, ...sessionOptions });
		s.on('error', () => {}); // reported through the stream
		const hdrs = { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers',
			'workload.spiffe.io': 'true', ...headers };
		for (const k of Object.keys(hdrs)) if (hdrs[k] === undefined) delete hdrs[k];
		const r = { httpStatus: null, grpcStatus: null, grpcMessage: null, rstCode: null, data: Buffer.alloc(0), error: null };
		let done = false;
		const finish = () => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			if (own) s.destroy();
			resolveP(r);
		};
		const timer = setTimeout(() => {
			r.error = r.error ?? 'timeout';
			finish();
		}, timeoutMs);
		let req;
		try {
			req = s.request(hdrs, { endStream: false });
		} catch (e) {
			r.error = e.code ?? e.message;
			finish();
			return;
		}
		const take = (h) => {
			if (h[':status'] !== undefined) r.httpStatus = Number(h[':status']);
			if (h['grpc-status'] !== undefined) r.grpcStatus = Number(h['grpc-status']);
			if (h['grpc-message'] !== undefined) r.grpcMessage = decodeURIComponent(h['grpc-message']);
		};
		req.on('response', take);
		req.on('trailers', take);
		req.on('data', (d) => {
			r.data = Buffer.concat([r.data, d]);
		});
		req.on('error', (e) => {
			r.error = r.error ?? (e.code ?? e.message);
		});
		req.on('frameError', (type, code) => {
			r.error = r.error ?? `frameError type ${type} code ${code}`;
		});
		req.on('close', () => {
			r.rstCode = req.rstCode;
			finish();
		});
		(async () => {
			try {
				if (bodyChunks) {
					for await (const c of bodyChunks) {
						if (req.destroyed || req.closed) return;
						if (!req.write(c)) await new Promise((res) => {
							const go = () => {
								req.off('drain', go);
								req.off('close', go);
								res();
							};
							req.on('drain', go);
							req.on('close', go);
						});
					}
					if (!req.destroyed && !req.closed) req.end();
				} else {
					req.end(body ?? Buffer.alloc(0));
				}
			} catch (e) {
				r.error = r.error ?? (e.code ?? e.message);
			}
		})();
		req.resume();
	});
}

/** gRPC-framed messages in a response body. */
export function grpcMessages(data) {
	const out = [];
	for (let off = 0; off + 5 <= data.length;) {
		const len = data.readUInt32BE(off + 1);
		out.push(data.subarray(off + 5, off + 5 + len));
		off += 5 + len;
	}
	return out;
}

let pkgCache;
export function workloadPackage() {
	if (!pkgCache) {
		const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });
		pkgCache = grpc.loadPackageDefinition(def);
	}
	return pkgCache;
}

/**
 * The well-behaved bystander: one @grpc/grpc-js channel, a FetchX509SVID stream held open
 * (x509Messages counts what it received; streamError is set if it ever fails), and jwt() for
 * a FetchJWTSVID round trip.
 */
export class WellBehaved {
	constructor(sockPath) {
		const pkg = workloadPackage();
		this.client = new pkg.SpiffeWorkloadAPI(`unix://${sockPath}`, grpc.credentials.createInsecure());
		this.md = new grpc.Metadata();
		this.md.set('workload.spiffe.io', 'true');
		this.x509Messages = 0;
		this.lastSerial = null;
		this.streamError = null;
		this.jwtOk = 0;
		this.jwtErrors = [];
	}

	openX509Stream() {
		this.x509 = this.client.FetchX509SVID({}, this.md);
		this.x509.on('data', (m) => {
			this.x509Messages++;
			this.lastSvid = m.svids?.[0];
		});
		this.x509.on('error', (e) => {
			if (!this.closing) this.streamError = this.streamError ?? `${e.code} ${e.details}`;
		});
		this.x509.on('end', () => {
			if (!this.closing) this.streamError = this.streamError ?? 'stream ended';
		});
	}

	/** One FetchJWTSVID; resolves the response, rejects with the gRPC error. */
	jwt(aud = 'spiffe://vouch.test/hostile-bystander', timeoutMs = 20000) {
		return new Promise((res, rej) => this.client.FetchJWTSVID({ audience: [aud] }, this.md,
			{ deadline: new Date(Date.now() + timeoutMs) }, (e, r) => {
				if (e) {
					this.jwtErrors.push(`${e.code} ${e.details}`);
					rej(e);
				} else {
					this.jwtOk++;
					res(r);
				}
			}));
	}

	/** Call FetchJWTSVID back to back (one at a time, pausing gapMs) until stopLoop(). */
	startLoop(gapMs = 100) {
		this.looping = true;
		this.loop = (async () => {
			while (this.looping) {
				try {
					await this.jwt();
				} catch {} // recorded in jwtErrors
				await new Promise((r) => setTimeout(r, gapMs));
			}
		})();
	}

	async stopLoop() {
		this.looping = false;
		await this.loop;
	}

	close() {
		this.closing = true;
		this.looping = false;
		this.x509?.cancel();
		this.client.close();
	}
}

// busy: also open stream 1 with a request that never ends (HEADERS without END_STREAM), so
// the connection has a call in progress.
const BUSY_REQ = () => frame(T.HEADERS, F.END_HEADERS, 1, hpack([...grpcHeaders('/SpiffeWorkloadAPI/FetchJWTBundles'), ['workload.spiffe.io', 'true']]));

function openIdle(path, busy) {
	return new Promise((res) => {
		const s = net.connect(path);
		s.on('data', () => {});
		s.on('close', () => {
			s.gone = true;
		});
		s.once('connect', () => {
			s.write(Buffer.concat([PREFACE, settings(), ...(busy ? [BUSY_REQ()] : [])]));
			res(s);
		});
		s.once('error', () => {
			s.gone = true;
			res(s);
		});
	});
}

/**
 * Hold up to n connections to the socket, each a valid HTTP/2 client that sent the preface
 * and an empty SETTINGS and then does nothing (busy: except open a request it never ends). Opened in batches (the listen backlog is
 * finite) until n are open or a batch gains nothing (the server refused the new connections
 * or closed as many old ones: it is full).
 * Resolves {sockets, open (how many the server has not closed), saturated}.
 */
export async function connectionFlood(path, n, { batch = 32, settleMs = 300, rounds = 60, busy = false } = {}) {
	const sockets = [];
	const live = () => sockets.filter((s) => !s.gone).length;
	let saturated = false;
	for (let r = 0; r < rounds && live() < n; r++) {
		const before = live();
		const fresh = await Promise.all(Array.from({ length: Math.min(batch, n - before) }, () => openIdle(path, busy)));
		sockets.push(...fresh);
		await new Promise((res) => setTimeout(res, settleMs));
		if (live() <= before) { // refused, or each new one displaced an old one
			saturated = true;
			break;
		}
	}
	return { sockets, open: live(), saturated };
}
