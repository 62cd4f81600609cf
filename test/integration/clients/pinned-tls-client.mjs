// pinned-tls-client — a TLS client that trusts exactly one certificate (its server's
// self-signed one: `ca` is that certificate only, and the peer's SHA-256 fingerprint must
// match), sends a random payload and expects it echoed back byte for byte. If anything in
// between terminated TLS, the handshake fails. argv[2]: JSON {host, port, servername,
// certFile, fingerprint256, size}. Prints one JSON line {ok, pid, sent, received,
// sentSha256, receivedSha256, peerFingerprint256, protocol, error?}; exit 0 iff ok.
import { connect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';

const o = JSON.parse(process.argv[2]);
const payload = randomBytes(o.size ?? 65536);
const r = { ok: false, pid: process.pid, sent: payload.length, received: 0 };
const sha = (b) => createHash('sha256').update(b).digest('hex');
r.sentSha256 = sha(payload);
const done = (err) => {
	if (err) r.error = String(err.message ?? err);
	process.stdout.write(JSON.stringify(r) + '\n');
	process.exit(r.ok ? 0 : 1);
};
let finished = false;
const timer = setTimeout(() => {
	finished = true;
	done(new Error(`timeout (${r.received} of ${payload.length} bytes back)`));
}, 15000);
const s = connect({
	host: o.host, port: o.port, servername: o.servername, ca: readFileSync(o.certFile),
	checkServerIdentity: (_name, cert) => (cert.fingerprint256 === o.fingerprint256 ? undefined
		: new Error(`certificate pin mismatch: got ${cert.fingerprint256}`)),
}, () => {
	r.peerFingerprint256 = s.getPeerCertificate().fingerprint256;
	r.protocol = s.getProtocol();
	s.write(payload); // no half-close: the echo is complete when every byte came back
});
const chunks = [];
const finish = () => {
	if (finished) return;
	finished = true;
	clearTimeout(timer);
	const got = Buffer.concat(chunks);
	r.receivedSha256 = sha(got);
	r.ok = got.equals(payload);
	s.end();
	done(r.ok ? null : new Error(`echo differs from the payload (${got.length} of ${payload.length} bytes back)`));
};
s.on('data', (c) => {
	chunks.push(c);
	r.received += c.length;
	if (r.received >= payload.length) finish();
});
s.on('error', (e) => {
	if (finished) return;
	finished = true;
	clearTimeout(timer);
	done(e);
});
s.on('end', finish); // the peer closed early: compare what arrived
