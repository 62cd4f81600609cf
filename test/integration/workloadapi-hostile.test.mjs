// Hostile input on the Workload API socket, end to end against one running vouchd (issue
// acceptance item 5): truncated frames, oversize messages, unknown methods, bad protobuf,
// metadata floods, stream floods and clients that never read get a gRPC error, a reset stream
// or a closed connection — for that client only. Throughout, a well-behaved @grpc/grpc-js
// client (the bystander) keeps a FetchX509SVID stream open and calls FetchJWTSVID in a loop;
// after every abuse it must get a fresh JWT-SVID and a rotated X.509-SVID on the stream it
// opened at the start (x509TTL 2 s: re-minted about every second), and at the end none of its
// calls may have failed.
//
// Abusers: a raw socket with hand-built HTTP/2 frames (clients/wl-h2.mjs RawH2), Node's
// built-in http2 client (a real client; h2Call) and @grpc/grpc-js. The unit tests of the gRPC
// core (test/unit/test_grpc.c) cover the same limits against the library alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
	HERE, NODE, haveVouchd, isRoot, onCleanup, runVouch, sleep, spiffeId, startVouchd, waitFor, workloadResource, yamlDocs,
} from './lib.mjs';
import {
	F, H2ERR, PREFACE, RawH2, T, WellBehaved, frame, grpcHeaders, grpcMessage, h2Call, headersFrames, hpack,
	jwtSvidRequest, settings,
} from './clients/wl-h2.mjs';

const UID = process.getuid();
const PATH = 'hostile/bystander';
const SVC = '/SpiffeWorkloadAPI/';
const JWT_REQ = grpcMessage(jwtSvidRequest(['spiffe://vouch.test/aud']));
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4; // the SETTINGS parameter id
const TINY_WINDOW = 4; // bytes

async function stats(v) {
	const r = await runVouch(['stats'], { adminSocket: v.adminSocket });
	assert.equal(r.code, 0, r.stderr);
	return JSON.parse(r.stdout).workload_api;
}

test('Workload API: hostile clients cost only themselves', { skip: !haveVouchd() && 'no vouchd (run make)', timeout: 180000 }, async (t) => {
	const v = await startVouchd(t, {
		config: { x509TTL: 2 },
		resources: { 'wl.yaml': yamlDocs(workloadResource({ name: 'bystander', workloadID: PATH, selectors: [{ 'process:uid': String(UID) }] })) },
	});
	const sock = v.workloadApiSocket;
	await waitFor(() => existsSync(sock), { what: 'the workload socket' });

	const good = new WellBehaved(sock);
	onCleanup(t, () => good.close());
	good.openX509Stream();
	await waitFor(() => good.x509Messages >= 1, { timeoutMs: 15000, what: 'the bystander\'s first X.509-SVID' });
	assert.equal(good.lastSvid.spiffe_id, spiffeId(PATH));
	good.startLoop(100);
	await waitFor(async () => (await stats(v)).open_streams === 1, { timeoutMs: 10000, what: 'one open stream (the bystander\'s)' });

	/** The bystander is served: vouchd alive, a fresh JWT-SVID, a new X.509-SVID on its stream. */
	async function served(what) {
		assert.equal(v.exited, null, `vouchd exited after ${what}: ${v.stderr().slice(-2000)}`);
		const msgs = good.x509Messages, ok = good.jwtOk;
		const r = await good.jwt();
		assert.equal(r.svids.length, 1);
		assert.equal(r.svids[0].spiffe_id, spiffeId(PATH));
		await waitFor(() => good.x509Messages > msgs, { timeoutMs: 15000, what: `a rotated X.509-SVID on the bystander's stream (${what})` });
		await waitFor(() => good.jwtOk > ok + 1, { timeoutMs: 15000, what: `the bystander's FetchJWTSVID loop (${what})` });
		assert.equal(good.streamError, null, `the bystander's stream failed (${what})`);
		assert.deepEqual(good.jwtErrors, [], `the bystander's FetchJWTSVID failed (${what})`);
	}
	await served('start');

	/** Wait until the server closed the raw connection (without us closing our side first). */
	const closedByServer = (raw, what) => waitFor(() => raw.eof, { timeoutMs: 15000, what: `vouchd to close the connection (${what})` });

	// --- raw sockets: broken HTTP/2 framing closes that connection -------------------------

	await t.test('raw: garbage instead of the connection preface → connection closed', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		await raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' + 'x'.repeat(100)));
		await closedByServer(raw, 'bad preface');
		await served('bad preface');
	});

	await t.test('raw: preface + SETTINGS, then a truncated frame header and EOF → connection closed', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		await raw.write(Buffer.concat([PREFACE, settings()]));
		await waitFor(() => raw.frames.some((f) => f.type === T.SETTINGS && !(f.flags & F.ACK)), { what: 'the server\'s SETTINGS' });
		await raw.write(frame(T.HEADERS, F.END_HEADERS, 1, hpack(grpcHeaders(`${SVC}FetchJWTSVID`))).subarray(0, 5));
		await served('truncated frame header pending'); // vouchd waits on that connection only
		raw.end();
		await closedByServer(raw, 'truncated frame header, then EOF');
		assert.equal(raw.goaway()?.code ?? 0, H2ERR.NO_ERROR);
		await served('truncated frame header');
	});

	await t.test('raw: a frame whose length claims more than was sent, then EOF → connection closed', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		const hdrs = headersFrames(1, hpack([...grpcHeaders(`${SVC}FetchJWTSVID`), ['workload.spiffe.io', 'true']]));
		const data = frame(T.DATA, F.END_STREAM, 1, JWT_REQ);
		data.writeUIntBE(16000, 0, 3); // claims 16000 payload bytes; we send JWT_REQ.length
		await raw.write(Buffer.concat([PREFACE, settings(), hdrs, data]));
		await served('short frame pending');
		assert.equal(raw.eof, false, 'vouchd waits for the rest of the frame');
		raw.end();
		await closedByServer(raw, 'short frame, then EOF');
		// The call never completed: no grpc answer on stream 1 (only the server's SETTINGS etc.).
		assert.equal(raw.headersOn(1).length, 0, 'the truncated request must not reach the handler');
		await served('short frame');
	});

	await t.test('raw: a frame length over SETTINGS_MAX_FRAME_SIZE → GOAWAY FRAME_SIZE_ERROR, closed', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		const data = frame(T.DATA, 0, 1, Buffer.alloc(64));
		data.writeUIntBE(0xffffff, 0, 3); // 16 MiB - 1 claimed
		await raw.write(Buffer.concat([PREFACE, settings(), data]));
		await closedByServer(raw, 'oversize frame length');
		assert.equal(raw.goaway()?.code, 6 /* FRAME_SIZE_ERROR */, JSON.stringify(raw.goaway()));
		await served('oversize frame length');
	});

	await t.test('raw: HEADERS with a bogus HPACK block → GOAWAY COMPRESSION_ERROR, closed', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		// 0xff 0xff 0xff 0x7f: an indexed header field with index ~2 million (none such);
		// then a literal whose string length runs past the end of the block.
		const bogus = Buffer.from([0xff, 0xff, 0xff, 0x7f, 0x00, 0x7f, 0xff, 0x0f, 0x61]);
		await raw.write(Buffer.concat([PREFACE, settings(), frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, bogus)]));
		await closedByServer(raw, 'bogus HPACK');
		assert.equal(raw.goaway()?.code, H2ERR.COMPRESSION_ERROR, JSON.stringify(raw.goaway()));
		await served('bogus HPACK');
	});

	// --- node:http2, a real client: errors are per call --------------------------------------

	await t.test('http2: unknown methods → UNIMPLEMENTED (12)', async () => {
		for (const path of [`${SVC}NoSuchMethod`, '/some.Other/Service', `${SVC}FetchWITSVID`]) {
			const r = await h2Call(sock, path, { body: grpcMessage(Buffer.alloc(0)) });
			assert.equal(r.httpStatus, 200, `${path}: ${JSON.stringify(r)}`);
			assert.equal(r.grpcStatus, 12, `${path}: ${JSON.stringify(r)}`);
		}
		const long = await h2Call(sock, `${SVC}${'A'.repeat(400)}`, { body: grpcMessage(Buffer.alloc(0)) });
		// A :path over GRPC_MAX_METHOD is reset without reaching the handler.
		assert.equal(long.grpcStatus, null, `a :path over 256 bytes: ${JSON.stringify(long)}`);
		assert.ok((long.rstCode ?? 0) !== 0, `a :path over 256 bytes is reset: ${JSON.stringify(long)}`);
		t.diagnostic(`400-byte :path: grpc-status ${long.grpcStatus} rst ${long.rstCode}`);
		await served('unknown methods');
	});

	await t.test('http2: no security header → INVALID_ARGUMENT (3); a wrong value too', async () => {
		for (const hv of [undefined, 'false', 'TRUE', '']) {
			const r = await h2Call(sock, `${SVC}FetchJWTSVID`, { headers: { 'workload.spiffe.io': hv }, body: JWT_REQ });
			assert.equal(r.grpcStatus, 3, `header ${JSON.stringify(hv)}: ${JSON.stringify(r)}`);
			assert.match(r.grpcMessage ?? '', /security header/);
		}
		// Sanity: the same request with the header is answered (so the above tested the header).
		const ok = await h2Call(sock, `${SVC}FetchJWTSVID`, { body: JWT_REQ });
		assert.equal(ok.grpcStatus, 0, JSON.stringify(ok));
		assert.ok(ok.data.length > 5, 'a JWTSVIDResponse');
		await served('missing security header');
	});

	await t.test('http2: a body that is not protobuf → INVALID_ARGUMENT (3)', async () => {
		const bodies = [
			Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]), // an unterminated varint tag
			Buffer.from([0x0a, 0x7f, 0x61]), // audience claims 127 bytes, 1 present
			Buffer.from([0x0f]), // wire type 7 (invalid)
		];
		for (const b of bodies) {
			const r = await h2Call(sock, `${SVC}FetchJWTSVID`, { body: grpcMessage(b) });
			assert.equal(r.grpcStatus, 3, `${b.toString('hex')}: ${JSON.stringify(r)}`);
		}
		// A gRPC prefix declaring more bytes than the stream carries: the message is truncated.
		const trunc = await h2Call(sock, `${SVC}FetchJWTSVID`, { body: grpcMessage(Buffer.from([0x0a]), { declaredLen: 50 }) });
		assert.ok(trunc.grpcStatus !== null && trunc.grpcStatus !== 0, `truncated message: ${JSON.stringify(trunc)}`);
		await served('bad protobuf');
	});

	await t.test('http2: oversize request messages → RESOURCE_EXHAUSTED (8) or a reset stream', async () => {
		// Just over the 64 KiB cap, sent whole.
		const big = await h2Call(sock, `${SVC}FetchJWTSVID`, { body: grpcMessage(Buffer.alloc(64 * 1024 + 1, 0x61)) });
		assert.equal(big.grpcStatus, 8, JSON.stringify({ ...big, data: undefined }));
		// A prefix declaring 10 MiB, then streaming 1 MiB of body (well past the cap).
		async function* chunks() {
			const p = Buffer.alloc(5);
			p.writeUInt32BE(10 * 1024 * 1024, 1);
			yield p;
			for (let i = 0; i < 64; i++) yield Buffer.alloc(16384, 0x62);
		}
		const huge = await h2Call(sock, `${SVC}FetchJWTSVID`, { bodyChunks: chunks() });
		assert.equal(huge.grpcStatus, 8, `10 MiB declared: ${JSON.stringify({ ...huge, data: undefined })}`);
		assert.notEqual(huge.error, 'timeout');
		t.diagnostic(`64 KiB + 1: grpc-status ${big.grpcStatus} rst ${big.rstCode}; 10 MiB declared: grpc-status ${huge.grpcStatus} rst ${huge.rstCode} ${huge.grpcMessage ?? ''}`);
		await served('oversize messages');
	});

	await t.test('http2: a compressed message (flag 1) → INTERNAL (13), nothing decoded', async () => {
		const r = await h2Call(sock, `${SVC}FetchJWTSVID`, { body: grpcMessage(jwtSvidRequest(['a']), { compressed: true }) });
		assert.equal(r.grpcStatus, 13, JSON.stringify(r));
		assert.equal(r.data.length, 0, 'no response message');
		await served('compressed flag');
	});

	await t.test('http2: not application/grpc → HTTP 415; not POST → HTTP 405', async () => {
		for (const ct of ['text/plain', 'application/json', 'application/grpcx']) {
			const r = await h2Call(sock, `${SVC}FetchJWTSVID`, { headers: { 'content-type': ct }, body: JWT_REQ });
			assert.equal(r.httpStatus, 415, `${ct}: ${JSON.stringify(r)}`);
		}
		const get = await h2Call(sock, `${SVC}FetchJWTSVID`, { headers: { ':method': 'GET' } });
		assert.equal(get.httpStatus, 405, JSON.stringify(get));
		await served('wrong content-type / method');
	});

	await t.test('http2: too many metadata fields / too large metadata → that stream reset, the connection lives', async () => {
		const session = http2.connect('http://localhost', { createConnection: () => net.connect(sock) });
		session.on('error', () => {});
		onCleanup(t, () => session.destroy());
		const many = {};
		for (let i = 0; i < 40; i++) many[`x-md-${i}`] = 'v';
		const r1 = await h2Call(sock, `${SVC}FetchJWTSVID`, { session, headers: many, body: JWT_REQ });
		assert.equal(r1.grpcStatus, null, `40 metadata fields: no gRPC answer, ${JSON.stringify(r1)}`);
		assert.ok((r1.rstCode ?? 0) !== 0, `40 metadata fields: the stream is reset, ${JSON.stringify(r1)}`);
		// 12 KiB in one value: over GRPC_MAX_METADATA_BYTES and the advertised header list size.
		const r2 = await h2Call(sock, `${SVC}FetchJWTSVID`, { session, headers: { 'x-big': 'b'.repeat(12 * 1024) }, body: JWT_REQ });
		assert.equal(r2.grpcStatus, null, `12 KiB metadata: no gRPC answer, ${JSON.stringify(r2)}`);
		assert.ok((r2.rstCode ?? 0) !== 0, `12 KiB metadata: the stream is reset, ${JSON.stringify(r2)}`);
		t.diagnostic(`40 fields: grpc-status ${r1.grpcStatus} rst ${r1.rstCode} ${r1.error}; 12 KiB value: grpc-status ${r2.grpcStatus} rst ${r2.rstCode} ${r2.error}`);
		// The same connection is still served: only those streams were refused.
		assert.equal(session.destroyed, false);
		const ok = await h2Call(sock, `${SVC}FetchJWTSVID`, { session, body: JWT_REQ });
		assert.equal(ok.grpcStatus, 0, `after the refused streams, same connection: ${JSON.stringify(ok)}`);
		session.destroy();
		await served('metadata floods');
	});

	await t.test('raw: a 10 MiB metadata value (HEADERS + CONTINUATION) → error for that client only', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		const block = hpack([...grpcHeaders(`${SVC}FetchJWTSVID`), ['workload.spiffe.io', 'true'], ['x-huge', Buffer.alloc(10 * 1024 * 1024, 0x68)]]);
		await raw.write(Buffer.concat([PREFACE, settings()]));
		// Written in 256 KiB slices with a pause after each, so that vouchd's GOAWAY is read
		// before a write to the closed socket fails (Node drops unread input on EPIPE).
		const seq = headersFrames(1, block);
		for (let off = 0; off < seq.length && !raw.eof; off += 256 * 1024) {
			if (!await raw.write(seq.subarray(off, off + 256 * 1024))) break;
			await sleep(20);
		}
		// nghttp2 refuses a header field over 64 KiB as a compression error: the connection goes.
		await closedByServer(raw, 'a 10 MiB header field');
		// The GOAWAY is best effort: if our write hit the closed socket first, it is lost.
		assert.ok(raw.goaway()?.code === H2ERR.COMPRESSION_ERROR || /EPIPE|ECONNRESET/.test(raw.closeReason),
			`GOAWAY COMPRESSION_ERROR or a connection closed under our writes: ${JSON.stringify(raw.goaway())} ${raw.closeReason}`);
		assert.equal(raw.headersOn(1).length, 0, 'no answer from the handler on that stream');
		t.diagnostic(`10 MiB header: goaway ${JSON.stringify(raw.goaway())} rst ${raw.resets().get(1)} closed: ${raw.closeReason}`);
		raw.destroy();
		await served('10 MiB metadata');
	});

	// --- stream floods and clients that never read -----------------------------------------

	await t.test('raw: more concurrent streams than SETTINGS_MAX_CONCURRENT_STREAMS → those refused', async () => {
		// Without acknowledging the server's SETTINGS, streams past the advertised 100 get
		// RST_STREAM REFUSED_STREAM; the first 100 stay open (HEADERS without END_STREAM).
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		const block = hpack([...grpcHeaders(`${SVC}FetchX509SVID`), ['workload.spiffe.io', 'true']]);
		const frames = [PREFACE, settings()];
		const N = 140;
		for (let i = 0; i < N; i++) frames.push(frame(T.HEADERS, F.END_HEADERS, 1 + 2 * i, block));
		await raw.write(Buffer.concat(frames));
		await waitFor(() => raw.resets().size >= N - 100 || raw.eof, { timeoutMs: 15000, what: 'refused streams' });
		const refused = [...raw.resets()].filter(([, code]) => code === H2ERR.REFUSED_STREAM).map(([id]) => id);
		assert.equal(raw.eof, false, 'the connection itself stays up');
		assert.equal(refused.length, N - 100, JSON.stringify([...raw.resets()]));
		assert.ok(refused.every((id) => id > 2 * 100 - 1), 'only the streams past the 100th');
		await served('stream flood, refused streams');
		// Acknowledging SETTINGS makes the limit binding: one more stream is a protocol error.
		await raw.write(Buffer.concat([settings([], F.ACK), frame(T.HEADERS, F.END_HEADERS, 1 + 2 * N, block)]));
		await closedByServer(raw, 'stream over the acknowledged limit');
		assert.equal(raw.goaway()?.code, H2ERR.PROTOCOL_ERROR, JSON.stringify(raw.goaway()));
		await served('stream flood, connection error');
	});

	await t.test('a client that never reads (tiny windows, paused streams) starves nobody; its streams are freed on close', async () => {
		const session = http2.connect('http://localhost', {
			createConnection: () => net.connect(sock),
			settings: { initialWindowSize: TINY_WINDOW },
		});
		session.on('error', () => {});
		onCleanup(t, () => session.destroy());
		const N = 40;
		const streams = [];
		for (let i = 0; i < N; i++) {
			const method = i % 2 ? 'FetchJWTBundles' : 'FetchX509SVID';
			const req = session.request({ ':method': 'POST', ':path': `${SVC}${method}`, 'content-type': 'application/grpc', te: 'trailers', 'workload.spiffe.io': 'true' });
			req.on('error', () => {});
			req.end(grpcMessage(Buffer.alloc(0)));
			req.pause(); // never consume: no WINDOW_UPDATE for the stream
			streams.push(req);
		}
		await waitFor(async () => (await stats(v)).open_streams >= 1 + N, { timeoutMs: 15000, what: `${1 + N} open streams` });
		// During: the X.509 streams keep rotating into windows of 4 bytes; vouchd queues them.
		await served('a non-reading client holding streams');
		await sleep(2500);
		await served('a non-reading client holding streams, later');
		assert.equal((await stats(v)).open_streams, 1 + N, 'the non-reading client\'s streams are still open');
		session.destroy();
		await waitFor(async () => (await stats(v)).open_streams === 1, { timeoutMs: 15000, what: 'open_streams back to the bystander\'s 1' });
		await served('non-reading client closed');
	});

	await t.test('a client that never reads its socket at all (huge windows, reading paused) starves nobody', async () => {
		const raw = new RawH2(sock);
		onCleanup(t, () => raw.destroy());
		raw.pauseReading();
		const block = hpack([...grpcHeaders(`${SVC}FetchX509SVID`), ['workload.spiffe.io', 'true']]);
		const frames = [PREFACE, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff]]),
			frame(T.WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0x00, 0x00]))];
		const N = 90;
		for (let i = 0; i < N; i++) {
			frames.push(frame(T.HEADERS, F.END_HEADERS, 1 + 2 * i, block));
			frames.push(frame(T.DATA, F.END_STREAM, 1 + 2 * i, grpcMessage(Buffer.alloc(0))));
		}
		await raw.write(Buffer.concat(frames));
		await waitFor(async () => (await stats(v)).open_streams >= 1 + N, { timeoutMs: 15000, what: `${1 + N} open streams` });
		// Rotations keep pushing ~N SVIDs a second at a socket nobody reads: its buffers fill.
		await served('a client not reading its socket');
		await sleep(3000);
		await served('a client not reading its socket, later');
		raw.destroy();
		await waitFor(async () => (await stats(v)).open_streams === 1, { timeoutMs: 15000, what: 'open_streams back to the bystander\'s 1' });
		await served('socket-ignoring client closed');
	});

	await t.test('raw: PING and SETTINGS floods, rapid reset → that connection only', async () => {
		// 5000 PINGs on a socket we do not read: the ACKs pile up; nghttp2's outbound-ACK cap
		// ends the connection, or vouchd answers them all — either way the bystander is served.
		const ping = new RawH2(sock);
		onCleanup(t, () => ping.destroy());
		ping.pauseReading();
		const pings = [PREFACE, settings()];
		for (let i = 0; i < 5000; i++) pings.push(frame(T.PING, 0, 0, Buffer.alloc(8, i & 0xff)));
		await ping.write(Buffer.concat(pings));
		await served('PING flood');
		ping.destroy();

		// SETTINGS frames of 40 entries each (CVE-2020-11080): vouchd accepts at most 32
		// entries per frame (nghttp2 max_settings) — connection error, closed.
		const st = new RawH2(sock);
		onCleanup(t, () => st.destroy());
		const sts = [PREFACE];
		for (let i = 0; i < 100; i++) sts.push(settings(Array.from({ length: 40 }, (_, j) => [0x3, 100 + j])));
		await st.write(Buffer.concat(sts));
		await closedByServer(st, 'SETTINGS frames with 40 entries each');
		await served('SETTINGS flood');

		// Rapid reset (CVE-2023-44487): complete requests cancelled at once, 3000 times.
		// nghttp2's reset rate limit ends the connection; a call already cancelled when it
		// reaches the service mints nothing; the bystander must not be starved meanwhile.
		const minted0 = (await stats(v)).jwt_minted;
		const rr = new RawH2(sock);
		onCleanup(t, () => rr.destroy());
		const block = hpack([...grpcHeaders(`${SVC}FetchJWTSVID`), ['workload.spiffe.io', 'true']]);
		const rst = Buffer.alloc(4);
		rst.writeUInt32BE(H2ERR.CANCEL);
		const out = [PREFACE, settings(), settings([], F.ACK)];
		for (let i = 0; i < 3000; i++) {
			const id = 1 + 2 * i;
			out.push(frame(T.HEADERS, F.END_HEADERS, id, block), frame(T.DATA, F.END_STREAM, id, JWT_REQ), frame(T.RST_STREAM, 0, id, rst));
		}
		await rr.write(Buffer.concat(out));
		await served('rapid reset');
		await closedByServer(rr, 'rapid reset');
		t.diagnostic(`rapid reset: goaway ${JSON.stringify(rr.goaway())} closed: ${rr.closeReason ?? 'no'}; PING flood: goaway ${JSON.stringify(ping.goaway())}`);
		rr.destroy();
		await served('rapid reset, closed');
		// The bystander asks for one JWT-SVID every 100 ms; the 2000 cancelled calls that
		// reached vouchd before the GOAWAY must not have been minted (they used to be).
		const minted = (await stats(v)).jwt_minted - minted0;
		assert.ok(minted < 500, `${minted} JWT-SVIDs minted during the rapid reset (cancelled calls must mint nothing)`);
	});

	await t.test('the bystander was served throughout', async () => {
		await good.stopLoop();
		assert.equal(good.streamError, null);
		assert.deepEqual(good.jwtErrors, []);
		assert.ok(good.jwtOk > 20, `FetchJWTSVID round trips: ${good.jwtOk}`);
		assert.equal(good.lastSvid.spiffe_id, spiffeId(PATH));
		const s = await stats(v);
		assert.equal(s.open_streams, 1);
		assert.equal(v.exited, null);
		const log = v.stderr();
		t.diagnostic(`vouchd wrote ${log.split('\n').length} log lines; workload_api stats ${JSON.stringify(s)}`);
		assert.doesNotMatch(log, /eyJ[\w-]+\.eyJ/, 'no JWT in vouchd\'s output');
		assert.doesNotMatch(log, /PRIVATE KEY/, 'no key in vouchd\'s output');
		// A clean shutdown after all that (under `make check` also: no sanitizer report).
		good.close();
		const ex = await v.stop();
		const tail = v.stderr().slice(-3000);
		assert.deepEqual(ex, { code: 0, signal: null }, tail);
		assert.doesNotMatch(tail, /Sanitizer|runtime error/, tail);
	});
});

// A connection flood: vouchd serves at most 256 connections (grpc_limits.max_conns). One local
// process (any uid: the socket is 0777) that opens as many connections as it can and keeps
// them — idle (an idle one lasts 60 s, and any byte resets that clock) or each with a request
// it never finishes (not idle, cannot be displaced) — must not lock out a workload that
// connects afterwards. As root the flooder runs as uid 65534 and the victim is a new root
// workload.
for (const busy of [false, true]) {
	// A uid's busy connections count against its own cap: the busy flooder must be another uid.
	const skip = (!haveVouchd() && 'no vouchd (run make)') || (busy && !isRoot && 'needs root: the busy flooder runs as another uid (65534)');
	test(`Workload API: a flood of ${busy ? 'busy' : 'idle'} connections from one client does not lock out new workloads`, { skip, timeout: 60000 }, async (t) => {
		const v = await startVouchd(t, {
			resources: { 'wl.yaml': yamlDocs(workloadResource({ name: 'victim', workloadID: PATH, selectors: [{ 'process:uid': String(UID) }] })) },
		});
		const sock = v.workloadApiSocket;
		await waitFor(() => existsSync(sock), { what: 'the workload socket' });
		chmodSync(v.dir, 0o755); // the flooder's uid must reach the socket
		{ // control: before the flood, a new workload is served
			const c = new WellBehaved(sock);
			const r0 = await c.jwt('spiffe://vouch.test/aud', 10000).finally(() => c.close());
			assert.equal(r0.svids[0].spiffe_id, spiffeId(PATH));
		}
		const flooderUid = isRoot ? 65534 : UID;
		const lib = join(HERE, 'clients', 'wl-h2.mjs');
		const code = `import { connectionFlood } from ${JSON.stringify(lib)};
			const f = await connectionFlood(${JSON.stringify(sock)}, 300, { busy: ${busy} });
			process.stdout.write('open ' + f.open + (f.saturated ? ' (the server takes no more)' : '') + '\\n');
			setInterval(() => {}, 1000);`;
		const flooder = spawn(NODE, ['--input-type=module', '-e', code], { uid: flooderUid, gid: isRoot ? 65534 : process.getgid(), stdio: ['ignore', 'pipe', 'pipe'] });
		onCleanup(t, () => flooder.kill('SIGKILL'));
		let out = '', err = '';
		flooder.stdout.on('data', (d) => (out += d));
		flooder.stderr.on('data', (d) => (err += d));
		await waitFor(() => /open \d+/.test(out), { timeoutMs: 30000, what: `the flooder (uid ${flooderUid}) to connect: ${err}` });
		t.diagnostic(`flooder uid ${flooderUid} holds ${out.trim()} ${busy ? 'busy' : 'idle'} connections`);

		// A workload that starts now (a new channel) must still get its JWT-SVID.
		const victim = new WellBehaved(sock);
		onCleanup(t, () => victim.close());
		let r, e;
		try {
			r = await victim.jwt('spiffe://vouch.test/aud', 10000);
		} catch (x) {
			e = x;
		}
		assert.equal(e, undefined, `a new workload is locked out while uid ${flooderUid} holds its connections: ${e?.code} ${e?.details}`);
		assert.equal(r.svids[0].spiffe_id, spiffeId(PATH));
		flooder.kill('SIGKILL');
	});
}
