// Port capture (issue 3 item 5): with intercept.ports: [P], every connect to port P from
// the scope reaches vouchd's transparent listener; a TLS connection whose SNI names no
// captured Service must be spliced byte for byte to its original destination. The proof:
// a second local TLS server (127.1.2.4:P, its own self-signed certificate for a name that
// is no Service) and a client under `vouch run` that trusts ONLY that certificate (pinned
// by fingerprint) — if vouchd terminated TLS the handshake would fail — exchanging a random
// payload that must come back identical. The audit log names the splice. Root only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer as createTlsServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HERE, NODE, REPO, makeTempDir, onCleanup, waitFor } from './lib.mjs';
import { interceptSkipReason, startTransparentStack, freePortOn, baseEnv } from './netns.mjs';

const PINNED = join(HERE, 'clients', 'pinned-tls-client.mjs');
const SPLICE_ADDR = '127.1.2.4';
const SPLICE_NAME = 'splice-target.vouch.test';
const skip = interceptSkipReason();

/** A self-signed ECDSA certificate for name (openssl CLI); {certFile, keyFile, fingerprint256}. */
function selfSigned(dir, name) {
	const certFile = join(dir, 'splice.crt'), keyFile = join(dir, 'splice.key');
	execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
		'-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`,
		'-addext', `subjectAltName=DNS:${name},IP:${SPLICE_ADDR}`, '-addext', 'extendedKeyUsage=serverAuth'], { stdio: ['ignore', 'pipe', 'pipe'] });
	return { certFile, keyFile, fingerprint256: new X509Certificate(readFileSync(certFile)).fingerprint256 };
}

/** A TLS echo server on host:port; records each connection's SNI. */
async function startEchoServer(t, { certFile, keyFile }, host, port) {
	const conns = [];
	const srv = createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => {
		conns.push({ servername: s.servername, remote: s.remoteAddress });
		s.on('error', () => {});
		s.pipe(s);
	});
	srv.on('tlsClientError', () => {});
	await new Promise((resolve, reject) => {
		srv.once('error', reject);
		srv.listen(port, host, resolve);
	});
	onCleanup(t, () => new Promise((r) => srv.close(() => r())));
	return { srv, conns };
}

test('splice: a pinned TLS connection to a captured port whose SNI is no Service passes untouched', { skip: skip ?? false }, async (t) => {
	const port = await freePortOn(SPLICE_ADDR);
	const st = await startTransparentStack(t, { family: 4, ports: [port] });
	const dir = makeTempDir(t, 'vouch-splice-');
	const cert = selfSigned(dir, SPLICE_NAME);
	const echo = await startEchoServer(t, cert, SPLICE_ADDR, port);
	const args = (size) => [PINNED, JSON.stringify({ host: SPLICE_ADDR, port, servername: SPLICE_NAME, certFile: cert.certFile, fingerprint256: cert.fingerprint256, size })];

	await t.test('control: outside the scope the pinned client works (no vouchd involved)', async () => {
		const r = await st.runOutside(NODE, args(4096), { cwd: REPO, env: baseEnv() });
		assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
		assert.equal(JSON.parse(r.stdout).ok, true);
	});

	const auditBefore = st.vouchd.audit().length;
	const connsBefore = echo.conns.length;
	const r = await st.run(NODE, args(256 * 1024), { cwd: REPO });
	let out;
	try {
		out = JSON.parse(r.stdout.trim().split('\n').at(-1));
	} catch {
		out = { raw: r.stdout };
	}

	await t.test('under vouch run: handshake with the pinned certificate, 256 KiB echoed byte for byte', () => {
		assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n--- vouchd ---\n${st.vouchd.stderr().slice(-3000)}`);
		assert.equal(out.ok, true);
		assert.equal(out.peerFingerprint256, cert.fingerprint256, 'the workload saw its server\'s own certificate');
		assert.equal(out.received, out.sent);
		assert.equal(out.receivedSha256, out.sentSha256);
		assert.equal(echo.conns.length, connsBefore + 1, 'the real server got exactly one connection');
		assert.equal(echo.conns.at(-1).servername, SPLICE_NAME, 'the ClientHello (with its SNI) reached the server unchanged');
	});

	await t.test('the audit log has a splice line for the connection', async () => {
		const line = await waitFor(() => st.vouchd.audit().slice(auditBefore).find((a) => a.event === 'splice'), { what: 'a splice audit line' })
			.catch((e) => assert.fail(`${e.message}\naudit: ${JSON.stringify(st.vouchd.audit().slice(auditBefore))}`));
		if (line.destination) assert.ok(line.destination.endsWith(`:${port}`), `destination ${line.destination}`);
		if (line.pid) assert.equal(line.pid, out.pid, 'the splice line names the client pid');
		assert.ok(!st.vouchd.audit().slice(auditBefore).some((a) => a.event === 'inject'), 'nothing was injected');
	});

	await t.test('a port that is not captured is not touched either (no splice line)', async () => {
		const other = await freePortOn(SPLICE_ADDR);
		const echo2 = await startEchoServer(t, cert, SPLICE_ADDR, other);
		const before = st.vouchd.audit().length;
		const r2 = await st.run(NODE, [PINNED, JSON.stringify({ host: SPLICE_ADDR, port: other, servername: SPLICE_NAME, certFile: cert.certFile, fingerprint256: cert.fingerprint256, size: 1024 })], { cwd: REPO });
		assert.equal(r2.code, 0, `${r2.stdout} ${r2.stderr}`);
		assert.equal(echo2.conns.length, 1);
		assert.ok(!st.vouchd.audit().slice(before).some((a) => a.event === 'splice'), 'no splice line for an uncaptured port');
	});
});
