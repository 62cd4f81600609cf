// Workload API SVIDs in use (issue 4 item 3): two workloads (uids 65534 and 65533) fetch
// their X.509-SVIDs over the Workload API with a real gRPC client (@grpc/grpc-js, via
// clients/wl/wlclient.mjs), then complete a mutual-TLS handshake with `openssl s_server` and
// `openssl s_client` (OpenSSL's own verification against the SPIFFE bundle, -verify_return_error),
// and each side's peer certificate, as printed by OpenSSL, carries exactly the other's SPIFFE ID.
// A certificate from outside the trust domain is refused; a process with no identity gets no SVID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import {
	HERE, NODE, freePort, haveVouchd, isRoot, makeTempDir, runProcess, spiffeId, splitDer, startVouchd, waitFor,
	workloadResource, yamlDocs,
} from './lib.mjs';

const WLCLIENT = join(HERE, 'clients', 'wl', 'wlclient.mjs');
const A = { uid: 65534, gid: 65534, path: 'mtls/server' };
const B = { uid: 65533, gid: 65533, path: 'mtls/client' };

const pem = (label, der) => `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;

const uris = (cert) => (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));

/** Fetch w's X.509-SVID as w's uid and write cert/key/bundle PEM files only w can read. */
async function fetchSvid(dir, sock, w) {
	const r = await runProcess(NODE, [WLCLIENT, `unix://${sock}`, 'x509svid', '1'], { uid: w.uid, gid: w.gid, timeoutMs: 20000 });
	assert.equal(r.code, 0, `wlclient as uid ${w.uid}: ${r.stdout} ${r.stderr}`);
	const resp = JSON.parse(r.stdout.trim().split('\n')[0]);
	assert.equal(resp.svids.length, 1);
	const s = resp.svids[0];
	assert.equal(s.spiffe_id, spiffeId(w.path));
	const chain = splitDer(Buffer.from(s.x509_svid, 'base64'));
	const key = Buffer.from(s.x509_svid_key, 'base64');
	const bundle = splitDer(Buffer.from(s.bundle, 'base64'));
	// PKCS#8, and the key belongs to the leaf
	const leaf = new X509Certificate(chain[0]);
	assert.ok(leaf.checkPrivateKey(createPrivateKey({ key, format: 'der', type: 'pkcs8' })), 'key matches the leaf');
	assert.deepEqual(uris(leaf), [spiffeId(w.path)]);
	const d = join(dir, w.path.replace('/', '-'));
	mkdirSync(d, { mode: 0o700 });
	const files = { cert: join(d, 'svid.pem'), key: join(d, 'svid.key'), bundle: join(d, 'bundle.pem') };
	writeFileSync(files.cert, chain.map((c) => pem('CERTIFICATE', c)).join(''), { mode: 0o600 });
	writeFileSync(files.key, pem('PRIVATE KEY', key), { mode: 0o600 });
	writeFileSync(files.bundle, bundle.map((c) => pem('CERTIFICATE', c)).join(''), { mode: 0o600 });
	for (const f of [d, ...Object.values(files)]) chownSync(f, w.uid, w.gid);
	return { ...files, id: s.spiffe_id, leaf };
}

/** Certificates in OpenSSL's printout after a marker line ("Server certificate" / "Client certificate"). */
function printedCert(text, marker) {
	const i = text.indexOf(marker);
	if (i < 0) return null;
	const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text.slice(i));
	return m ? new X509Certificate(m[0]) : null;
}

/** openssl s_server (as a) and s_client (as b) once; resolves both outputs and exit codes. */
async function handshake(port, a, b) {
	const server = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-naccept', '1',
		'-cert', a.cert, '-key', a.key, '-CAfile', a.bundle, '-Verify', '1', '-verify_return_error', '-tls1_3'],
	{ uid: A.uid, gid: A.gid, stdio: ['pipe', 'pipe', 'pipe'] });
	let sout = '';
	server.stdout.on('data', (c) => { sout += c; });
	server.stderr.on('data', (c) => { sout += c; });
	const serverExit = new Promise((r) => server.on('exit', (code) => r(code)));
	await waitFor(() => /ACCEPT/.test(sout), { timeoutMs: 10000, what: 's_server listening' });
	const client = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', b.cert, '-key', b.key,
		'-CAfile', b.bundle, '-verify_return_error', '-showcerts', '-tls1_3'],
	{ uid: b.uid ?? B.uid, gid: b.gid ?? B.gid, input: 'hello from the client\n', timeoutMs: 15000 });
	const timer = setTimeout(() => server.kill('SIGKILL'), 10000);
	const serverCode = await serverExit;
	clearTimeout(timer);
	return { server: sout, serverCode, client: client.stdout + client.stderr, clientCode: client.code };
}

test('two workloads complete mTLS with their X.509-SVIDs and each checks the other\'s SPIFFE ID', {
	skip: (!haveVouchd() && 'no vouchd (run make)') || (!isRoot && 'needs root: the two workloads run as uids 65534 and 65533'),
	timeout: 90000,
}, async (t) => {
	const v = await startVouchd(t, {
		config: { x509TTL: 600 },
		resources: {
			'wl.yaml': yamlDocs(
				workloadResource({ name: 'server', workloadID: A.path, selectors: [{ 'process:uid': String(A.uid) }] }),
				workloadResource({ name: 'client', workloadID: B.path, selectors: [{ 'process:uid': String(B.uid) }] }),
			),
		},
	});
	const dir = makeTempDir(t, 'vouch-mtls-');
	chmodSync(dir, 0o755);
	await waitFor(() => { try { execFileSync('test', ['-S', v.workloadApiSocket]); return true; } catch { return false; } }, { what: 'workload socket' });
	const a = await fetchSvid(dir, v.workloadApiSocket, A);
	const b = await fetchSvid(dir, v.workloadApiSocket, B);
	assert.notEqual(a.leaf.serialNumber, b.leaf.serialNumber);

	const h = await handshake(await freePort(), a, b);
	assert.equal(h.clientCode, 0, `s_client failed:\n${h.client}`);
	assert.match(h.client, /Verify return code: 0 \(ok\)/, 'the client verified the server against its bundle');
	assert.match(h.server, /hello from the client/, `the server read the client's data:\n${h.server}`);
	// Each side checks the other's SPIFFE ID (exactly one URI SAN, the expected one).
	const serverSeen = printedCert(h.client, 'Certificate chain'); // -showcerts: the leaf first
	const clientSeen = printedCert(h.server, 'Client certificate');
	assert.ok(serverSeen && clientSeen, `peer certificates printed:\n${h.client}\n${h.server}`);
	assert.deepEqual(uris(serverSeen), [a.id], 'the client sees the server workload\'s SPIFFE ID');
	assert.deepEqual(uris(clientSeen), [b.id], 'the server sees the client workload\'s SPIFFE ID');

	// A client with a certificate from outside the trust domain is refused by the server.
	const rogueDir = join(dir, 'rogue');
	mkdirSync(rogueDir, { mode: 0o700 });
	const rogue = { cert: join(rogueDir, 'c.pem'), key: join(rogueDir, 'k.pem'), bundle: b.bundle, uid: 0, gid: 0 };
	execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
		'-subj', '/O=rogue', '-addext', `subjectAltName=URI:${b.id}`, '-keyout', rogue.key, '-out', rogue.cert], { stdio: 'ignore' });
	const bad = await handshake(await freePort(), a, rogue);
	assert.doesNotMatch(bad.server, /hello from the client/, 'the server must not accept data from the rogue client');
	assert.match(bad.server, /verify error|certificate verify failed|unknown ca|self.signed/i, `the server rejected the rogue certificate:\n${bad.server}`);

	// A process with no identity gets PERMISSION_DENIED, not an SVID.
	const none = await runProcess(NODE, [WLCLIENT, `unix://${v.workloadApiSocket}`, 'x509svid', '1'], { uid: 65532, gid: 65532, timeoutMs: 20000 });
	assert.equal(none.code, 3, none.stdout + none.stderr);
	const err = JSON.parse(none.stdout.trim().split('\n').pop()).error;
	assert.equal(err.code, 7);
	assert.match(err.message, /vouch explain \d+/);
});
