// Fault matrix (issue 6.3), request-level faults: every fault gives the workload a clear
// error that names its cause (Anthropic's error shape, "vouch: ..."), leaks no
// credential, and the next request after the fault clears succeeds.
//   token endpoint: slow past exchangeTimeoutMs, reset mid-response (down/500/401/
//     garbage/oversize are in failures.test.mjs);
//   upstream (the Service): closed before a response, reset mid-response and mid-SSE-
//     stream, slow past upstreamTimeoutMs and slow within it, a certificate that does not
//     verify (502, never a downgrade: no byte in clear, nothing to the unverified peer);
//   the workload disconnecting mid-stream (the upstream side is closed, descriptors freed).
// Load, reload, restart and descriptor exhaustion are in faults-load.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, connect as netConnect } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Agent } from 'node:http';
import { join } from 'node:path';
import {
	startStack, startStandin, startVouchd, generateCerts, makeTempDir, freePort, waitFor, yamlDocs, sourceResource,
	workloadResource, bindingResource, standinRule, RULE_ID, NODE, sleep,
} from './lib.mjs';
import { writeFileSync } from 'node:fs';
import { STREAM_BODY, fdCount, oneRequest, openStream, errorMessage } from './faultlib.mjs';

function assertNoSecrets(text, secrets, where) {
	for (const sec of secrets) {
		assert.ok(!text.includes(sec), `${where} contains a token or assertion`);
		const sig = sec.split('.')[2];
		if (sig) assert.ok(!text.includes(sig), `${where} contains an assertion signature`);
	}
}

async function recovers(vouchd, what) {
	let last;
	await waitFor(async () => (last = await oneRequest(vouchd.plainUrl)).ok,
		{ timeoutMs: 20000, intervalMs: 250, what: `recovery after ${what} (last: ${last?.status} ${last?.error ?? ''} ${last?.body?.slice(0, 300)})` });
}

// --- token endpoint ----------------------------------------------------------------------

test('faults: token endpoint slower than exchangeTimeoutMs → 503 naming the timeout, then recovery', async (t) => {
	const { standin, vouchd } = await startStack(t, { config: { exchangeTimeoutMs: 1500 } });
	standin.setFault('token', 'slow', { delayMs: 5000 });
	const r = await oneRequest(vouchd.plainUrl, { timeoutMs: 30000 });
	assert.equal(r.status, 503, `${r.status} ${r.error ?? ''} ${r.body}`);
	assert.match(errorMessage(r) ?? '', /credential exchange .*timed out/i, r.body);
	assert.ok(standin.records.exchanges.length >= 1, 'an exchange was attempted');
	assert.equal(standin.records.messages.length, 0, 'nothing forwarded without a credential');
	standin.clearFaults();
	await recovers(vouchd, 'a slow token endpoint');
	assertNoSecrets(JSON.stringify(vouchd.audit()) + vouchd.stderr(), standin.secrets(), 'the audit log and vouchd output');
});

test('faults: token endpoint reset mid-response → 502/503 naming the exchange, then recovery', async (t) => {
	const { standin, vouchd } = await startStack(t);
	standin.setFault('token', 'reset');
	const r = await oneRequest(vouchd.plainUrl, { timeoutMs: 30000 });
	assert.ok([502, 503].includes(r.status), `${r.status} ${r.error ?? ''} ${r.body}`);
	assert.match(errorMessage(r) ?? '', /credential exchange .*failed: token endpoint/i, r.body);
	assert.equal(standin.records.messages.length, 0);
	standin.clearFaults();
	await recovers(vouchd, 'a reset token endpoint');
});

// --- upstream ------------------------------------------------------------------------

test('faults: upstream closes before answering → 502 naming it; reset mid-response → the workload sees the cut; recovery', async (t) => {
	const { standin, vouchd } = await startStack(t);
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');

	standin.setFault('messages', 'down');
	const r = await oneRequest(vouchd.plainUrl);
	assert.equal(r.status, 502, `${r.status} ${r.error ?? ''} ${r.body}`);
	assert.match(errorMessage(r) ?? '', /upstream .* failed: connection closed before a response/, r.body);
	assertNoSecrets(r.body, standin.secrets(), 'the error body');

	// A response whose head was relayed cannot become an error any more: the workload
	// must see it cut (a short Content-Length body, the connection closed), never a
	// complete-looking answer.
	standin.setFault('messages', 'reset');
	const cut = await oneRequest(vouchd.plainUrl);
	assert.equal(cut.ok, false, JSON.stringify(cut));
	assert.ok(cut.error, `a transport error, not a clean end: ${JSON.stringify(cut)}`);

	standin.clearFaults();
	await recovers(vouchd, 'upstream resets');
	const audit = await vouchd.auditUntil((a) => a.event === 'error' && /connection closed before a response/.test(a.reason ?? ''));
	assert.ok(audit.length >= 1, 'the upstream failure is audited with its cause');
});

test('faults: upstream reset mid-SSE-stream → the stream is cut (no message_stop), then recovery', async (t) => {
	const { standin, vouchd } = await startStack(t, { standin: { streamDelayMs: 30 } });
	standin.setFault('messages', 'streamreset');
	const r = await oneRequest(vouchd.plainUrl, { body: STREAM_BODY });
	assert.equal(r.status, 200, 'the stream had started');
	assert.ok(r.body.includes('event: message_start'), 'the first events were relayed unbuffered');
	assert.ok(!r.body.includes('event: message_stop'), 'the stream did not look complete');
	assert.ok(r.error, `the workload saw a transport error, not a clean end: ${JSON.stringify(r)}`);
	assert.ok(standin.records.messages.at(-1).reset, 'the stand-in cut the stream');
	standin.clearFaults();
	await recovers(vouchd, 'a cut stream');
	const s = await oneRequest(vouchd.plainUrl, { body: STREAM_BODY });
	assert.ok(s.ok, `a stream after the fault: ${JSON.stringify(s).slice(0, 400)}`);
});

test('faults: upstream slower than upstreamTimeoutMs → 504 naming it; slow within it → 200; recovery', async (t) => {
	const { standin, vouchd } = await startStack(t, { config: { upstreamTimeoutMs: 1500 } });
	const agent = new Agent({ keepAlive: true, maxSockets: 1 });
	t.after(() => agent.destroy());
	assert.ok((await oneRequest(vouchd.plainUrl, { agent })).ok, 'warm-up (pooled upstream connection, parked client)');

	standin.setFault('messages', 'slow', { delayMs: 600 });
	const within = await oneRequest(vouchd.plainUrl, { agent });
	assert.ok(within.ok, `slow but within the timeout: ${JSON.stringify(within).slice(0, 300)}`);

	standin.setFault('messages', 'slow', { delayMs: 5000 });
	// on a parked keep-alive connection (the event loop serves it) and on a fresh one
	// (a connection thread serves it)
	for (const [what, a] of [['parked connection', agent], ['new connection', undefined]]) {
		const r = await oneRequest(vouchd.plainUrl, { agent: a, timeoutMs: 20000 });
		assert.equal(r.status, 504, `${what}: ${r.status} ${r.error ?? ''} ${r.body}`);
		assert.match(errorMessage(r) ?? '', /upstream .* failed: no response in time/, `${what}: ${r.body}`);
	}
	standin.clearFaults();
	await recovers(vouchd, 'a slow upstream');
	const s = await oneRequest(vouchd.plainUrl, { body: STREAM_BODY });
	assert.ok(s.ok, 'a stream whose events come faster than the timeout is not cut');
});

/**
 * A TLS server with the given certificate behind a recording TCP front: every byte a
 * client sends is kept (raw, before TLS), and any HTTP request that got through TLS is
 * recorded too (it must never happen).
 */
async function startEvilUpstream(t, { cert, key }) {
	const raw = [], requests = [];
	const tlsSrv = createTlsServer({ cert, key }, (s) => {
		s.on('data', (d) => requests.push(d.toString('latin1')));
		s.on('error', () => {});
	});
	tlsSrv.on('tlsClientError', () => {});
	await new Promise((r) => tlsSrv.listen(0, '127.0.0.1', r));
	const front = createNetServer((c) => {
		const rec = { bytes: [] };
		raw.push(rec);
		const back = netConnect(tlsSrv.address().port, '127.0.0.1');
		c.on('data', (d) => rec.bytes.push(d));
		c.pipe(back).pipe(c);
		c.on('error', () => back.destroy());
		back.on('error', () => c.destroy());
	});
	await new Promise((r) => front.listen(0, '127.0.0.1', r));
	t.after(() => {
		front.close();
		tlsSrv.close();
	});
	return { port: front.address().port, raw, requests };
}

for (const kind of ['an untrusted CA', 'another name']) {
	test(`faults: upstream certificate from ${kind} → 502 naming TLS verification; nothing sent in clear or to the peer`, async (t) => {
		const dir = makeTempDir(t, 'vouch-badcert-');
		const good = generateCerts(join(dir, 'good'));
		const evilCerts = kind === 'an untrusted CA'
			? generateCerts(join(dir, 'evil')) // a perfect leaf for localhost, from a CA vouchd does not trust
			: generateCerts(join(dir, 'other'), { names: ['evil.example'], ips: [] });
		// "another name": a leaf for evil.example, signed by the CA vouchd trusts
		const trusted = kind === 'an untrusted CA' ? good.caFile : join(dir, 'trusted.pem');
		if (kind === 'another name') writeFileSync(trusted, good.caPem + evilCerts.caPem);
		const oidcPort = await freePort();
		const standin = await startStandin({ certFile: good.certFile, keyFile: good.keyFile, issuer: `http://127.0.0.1:${oidcPort}`, rules: { [RULE_ID]: standinRule() } });
		t.after(() => standin.close());
		const evil = await startEvilUpstream(t, { cert: evilCerts.certPem, key: evilCerts.keyPem });
		const vouchd = await startVouchd(t, {
			dir, oidcPort, upstreamCAFile: trusted,
			resources: {
				'service.yaml': yamlDocs({ apiVersion: 'vouch.dev/v1alpha1', kind: 'Service', metadata: { name: 'anthropic-api' },
					spec: { labels: { name: 'anthropic-api' }, addresses: [{ address: 'localhost', port: evil.port }], tls: true } }),
				'source.yaml': yamlDocs(sourceResource({ standinPort: standin.port })),
				'node.yaml': yamlDocs(workloadResource({ name: 'node', workloadID: 'demo/node', selectors: [{ 'process:binary:path': NODE }] })),
				'binding-node.yaml': yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' })),
			},
		});
		for (const body of [undefined, STREAM_BODY]) {
			const r = await oneRequest(vouchd.plainUrl, body ? { body } : {});
			assert.equal(r.status, 502, `${r.status} ${r.error ?? ''} ${r.body}`);
			assert.match(errorMessage(r) ?? '', /upstream localhost:\d+ for Service anthropic-api unavailable: .*certificate verification failed: /, r.body);
		}
		assert.ok(standin.records.tokens.length >= 1, 'a token was minted (the fault is on the upstream leg)');
		assert.ok(evil.raw.length >= 2, 'vouchd did try the upstream');
		for (const c of evil.raw) {
			const bytes = Buffer.concat(c.bytes);
			assert.ok(bytes.length > 0 && bytes[0] === 0x16, 'every connection starts with a TLS handshake record: no plaintext fallback');
			const text = bytes.toString('latin1');
			assert.ok(!/POST |Bearer|anthropic-version/i.test(text), 'no HTTP in clear');
			for (const s of standin.secrets()) assert.ok(!text.includes(s), 'no token on the wire');
		}
		assert.deepEqual(evil.requests, [], 'no request bytes reached the unverified peer');
		const audit = await vouchd.auditUntil((a) => a.event === 'error' && /unavailable/.test(a.reason ?? ''));
		assert.ok(audit.length >= 1, 'audited with its cause');
	});
}

// --- the workload goes away ----------------------------------------------------------------

test('faults: workload disconnects mid-SSE-stream → vouchd closes the upstream side and frees the connection', async (t) => {
	// 20 events (3 + 14 deltas + 3), 400 ms apart: the stream would last ~8 s
	const { standin, vouchd } = await startStack(t, { standin: { streamDelayMs: 400, streamChunks: 14 } });
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');
	await sleep(300);
	const before = fdCount(vouchd.pid);
	for (let i = 0; i < 3; i++) {
		const st = await openStream(vouchd.plainPort);
		assert.match(st.head, /^HTTP\/1\.1 200 /);
		const rec = standin.records.messages.at(-1);
		st.socket.destroy(); // the workload goes away after the first event
		await waitFor(() => rec.aborted === true || rec.streamEnd !== undefined, { timeoutMs: 10000, what: 'the upstream stream to end' });
		assert.equal(rec.aborted, true, 'the stand-in saw its client (vouchd) close the stream');
		assert.ok(rec.events.length < 20, `the stream was not run to its end (${rec.events.length} events)`);
	}
	await waitFor(() => fdCount(vouchd.pid) <= before, { timeoutMs: 10000, what: `vouchd's descriptors back to ${before} (now ${fdCount(vouchd.pid)})` });
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'vouchd still serves');
	assert.equal(vouchd.exited, null);
});
