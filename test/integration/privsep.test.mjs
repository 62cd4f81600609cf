// Separated signing and confinement (issue 6.5, docs/SECURITY.md "Separated signing and
// confinement"):
//   - vouchd runs under a seccomp filter with no_new_privs and only the capabilities it keeps
//     after setup, on every thread; its signer child under its own filter with none at all;
//   - the CA private keys (identity X.509 CA, JWT signing key, interception CA) are nowhere in
//     vouchd's memory, and are in the signer's (the control that shows the search works);
//   - when the signer dies, vouchd stops (fails closed) instead of serving on.
// The memory and capability checks need root (reading another process's memory, a full
// capability set to drop from); they skip otherwise, or fail under VOUCH_REQUIRE_PRIV=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, openSync, readSync, closeSync, existsSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { startStack, isRoot, waitFor, runSdkClient } from './lib.mjs';

const requirePriv = process.env.VOUCH_REQUIRE_PRIV === '1';

function status(pid, tid = pid) {
	const text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
	return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => {
		const i = l.indexOf(':');
		return [l.slice(0, i), l.slice(i + 1).trim()];
	}));
}

function signerOf(pid) {
	const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
	return kids.map(Number).find((k) => {
		try {
			return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'vouchd-signer';
		} catch {
			return false;
		}
	});
}

// The 32-byte private scalar of a P-256 key in PEM (PKCS#8 or SEC1).
function scalarOf(pem) {
	return Buffer.from(createPrivateKey(pem).export({ format: 'jwk' }).d, 'base64url');
}

// Does needle occur in any private writable mapping of pid (heap, stacks, anonymous maps)?
function memoryHolds(pid, needles) {
	const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(Boolean);
	const fd = openSync(`/proc/${pid}/mem`, 'r');
	const found = new Set();
	const chunk = Buffer.alloc(1 << 20);
	try {
		for (const line of maps) {
			const [range, perms, , , , path = ''] = line.split(/\s+/);
			if (!perms.startsWith('rw') || path.startsWith('[v')) continue;
			const [lo, hi] = range.split('-').map((h) => parseInt(h, 16));
			let carry = Buffer.alloc(0);
			for (let at = lo; at < hi; at += chunk.length) {
				const want = Math.min(chunk.length, hi - at);
				let n;
				try {
					n = readSync(fd, chunk, 0, want, at);
				} catch {
					break; // a mapping that cannot be read (guard pages)
				}
				const buf = Buffer.concat([carry, chunk.subarray(0, n)]);
				needles.forEach((nd, i) => {
					if (buf.indexOf(nd) >= 0) found.add(i);
				});
				carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 64)));
			}
		}
	} finally {
		closeSync(fd);
	}
	return found;
}

test('privsep: confinement of vouchd and its signer, keys only in the signer', async (t) => {
	const { vouchd } = await startStack(t);
	// something was signed through the signer: a JWT-SVID for the exchange, a request served
	const res = await runSdkClient(vouchd.plainUrl, [{ op: 'create', content: 'privsep' }]);
	assert.equal(res.code, 0, res.stderr);

	const signer = signerOf(vouchd.pid);
	assert.ok(signer, 'vouchd has a vouchd-signer child');
	const tasks = readdirSync(`/proc/${vouchd.pid}/task`);
	assert.ok(tasks.length > 1, 'vouchd is multi-threaded');
	for (const tid of tasks) {
		const s = status(vouchd.pid, tid);
		assert.equal(s.Seccomp, '2', `vouchd thread ${tid} is under a seccomp filter`);
		assert.equal(s.NoNewPrivs, '1', `vouchd thread ${tid} has no_new_privs`);
	}
	const ss = status(signer);
	assert.equal(ss.Seccomp, '2', 'the signer is under a seccomp filter');
	assert.equal(ss.NoNewPrivs, '1');
	assert.match(vouchd.stderr(), /confined: capabilities 0x[0-9a-f]+, seccomp allowlist/);

	if (!isRoot) {
		if (requirePriv) assert.fail('not root under VOUCH_REQUIRE_PRIV=1');
		t.skip('capabilities and memory: not root');
		return;
	}
	// CAP_CHOWN(0) CAP_DAC_OVERRIDE(1) CAP_DAC_READ_SEARCH(2) CAP_SYS_PTRACE(19)
	const kept = (1n << 0n) | (1n << 1n) | (1n << 2n) | (1n << 19n);
	for (const tid of tasks) {
		const s = status(vouchd.pid, tid);
		for (const set of ['CapEff', 'CapPrm', 'CapBnd']) {
			assert.equal(BigInt(`0x${s[set]}`), kept, `vouchd thread ${tid} (${s.Name}) ${set} ${s[set]}; all: ${tasks.map((x) => status(vouchd.pid, x).Name + '=' + status(vouchd.pid, x).CapEff).join(' ')}`);
		}
		assert.equal(BigInt(`0x${s.CapInh}`), 0n);
		assert.equal(BigInt(`0x${s.CapAmb}`), 0n);
	}
	for (const set of ['CapEff', 'CapPrm', 'CapBnd', 'CapInh', 'CapAmb']) {
		assert.equal(BigInt(`0x${ss[set]}`), 0n, `signer ${set} ${ss[set]}`);
	}

	// A sanitizer build reserves terabytes of shadow and allocator memory: scanning it would
	// take hours, and the heap lives in it. The scan is for the production build.
	const huge = (pid) => readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(Boolean)
		.some((l) => {
			const [lo, hi] = l.split(' ')[0].split('-').map((h) => parseInt(h, 16));
			return hi - lo >= 2 ** 40;
		});
	await t.test('no CA private key in vouchd memory; all of them in the signer', {
		skip: huge(vouchd.pid) && 'sanitizer build (terabyte shadow mappings): memory scan skipped',
	}, () => scanKeys(vouchd, signer));
});

function scanKeys(vouchd, signer) {
	// The private keys: the PEM files' scalars, and the PEM text itself.
	const caKey = readFileSync(join(vouchd.stateDir, 'ca.key'), 'utf8');
	const tlsKey = readFileSync(join(vouchd.stateDir, 'intercept-ca.key'), 'utf8');
	const jwtKeys = readFileSync(join(vouchd.stateDir, 'jwt-keys'), 'utf8');
	const jwtPem = /-----BEGIN PRIVATE KEY-----[^]*?-----END PRIVATE KEY-----\n/.exec(jwtKeys)[0];
	const pemBody = (pem) => Buffer.from(pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('\n').slice(0, 40));
	// A scalar is searched for big-endian (as encoded) and little-endian (as OpenSSL's BIGNUM
	// limbs hold it on this machine).
	const scalars = [scalarOf(caKey), scalarOf(tlsKey), scalarOf(jwtPem)];
	const needles = [...scalars, ...scalars.map((b) => Buffer.from(b).reverse()), pemBody(caKey), pemBody(tlsKey), pemBody(jwtPem)];
	const names = ['identity CA scalar', 'interception CA scalar', 'JWT key scalar',
		'identity CA scalar (LE)', 'interception CA scalar (LE)', 'JWT key scalar (LE)',
		'identity CA PEM', 'interception CA PEM', 'JWT key PEM'];
	const inSigner = memoryHolds(signer, needles);
	for (const i of [0, 1, 2]) assert.ok(inSigner.has(i) || inSigner.has(i + 3), `control: the signer's memory holds the ${names[i]}`);
	const inVouchd = memoryHolds(vouchd.pid, needles);
	assert.deepEqual([...inVouchd].map((i) => names[i]), [], 'no private key material in vouchd');
}

test('privsep: vouchd exits when its signer dies (fails closed)', async (t) => {
	const { vouchd } = await startStack(t);
	const signer = signerOf(vouchd.pid);
	assert.ok(signer);
	process.kill(signer, 'SIGKILL');
	await waitFor(() => vouchd.exited, { timeoutMs: 15000, what: 'vouchd to exit after its signer died' });
	assert.notEqual(vouchd.exited.code, 0, 'a non-zero exit');
	assert.match(vouchd.stderr(), /signer process is gone/);
	assert.ok(!existsSync(`/proc/${signer}`) || readFileSync(`/proc/${signer}/stat`, 'utf8').includes(') Z'), 'the signer is gone');
});
