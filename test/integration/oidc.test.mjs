// `vouch oidc export DIR`: the discovery document and JWKS written for static hosting or inline
// registration are the ones vouchd serves, and an independent verifier (npm jose) accepts the
// JWT-SVIDs vouchd presented to the token endpoint against the exported file alone.
// `vouch explain` on a process no WorkloadIdentity matches says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as jose from 'jose';
import { startStack, runSdkClient, runVouch, request, makeTempDir, AUDIENCE, spiffeId } from './lib.mjs';

test('oidc export and explain', async (t) => {
	const { standin, vouchd } = await startStack(t);
	const r = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }]);
	assert.equal(r.code, 0, r.stderr);

	await t.test('vouch oidc export writes the served documents', async () => {
		const out = makeTempDir(t, 'vouch-oidc-');
		const e = await runVouch(['oidc', 'export', out], { adminSocket: vouchd.adminSocket });
		assert.equal(e.code, 0, e.stderr);
		const disc = JSON.parse(readFileSync(join(out, '.well-known', 'openid-configuration'), 'utf8'));
		const served = await request(`${vouchd.issuer}/.well-known/openid-configuration`);
		assert.deepEqual(disc, served.json, 'exported discovery == served discovery');
		assert.equal(disc.issuer, vouchd.issuer);
		const keys = JSON.parse(readFileSync(join(out, 'keys'), 'utf8'));
		const inline = JSON.parse(readFileSync(join(out, 'jwks.json'), 'utf8'));
		const servedKeys = await request(disc.jwks_uri);
		assert.deepEqual(keys, servedKeys.json, 'exported keys == served JWKS');
		assert.deepEqual(inline, keys, 'jwks.json (for inline registration) is the same JWKS');
		assert.equal(statSync(join(out, 'keys')).mode & 0o777, 0o644, 'public documents are 0644');
		for (const k of keys.keys) assert.equal(k.d, undefined, 'no private parameter exported');

		const local = jose.createLocalJWKSet(inline);
		const assertions = standin.records.exchanges.map((x) => x.assertion).filter(Boolean);
		assert.ok(assertions.length >= 1, 'an assertion was presented');
		for (const a of assertions) {
			const { payload } = await jose.jwtVerify(a, local, { issuer: vouchd.issuer, audience: AUDIENCE, algorithms: ['ES256'] });
			assert.equal(payload.sub, spiffeId('demo/node'));
		}
	});

	await t.test('vouch oidc export without a reachable agent fails clearly', async () => {
		const out = makeTempDir(t, 'vouch-oidc-');
		const e = await runVouch(['oidc', 'export', out], { adminSocket: join(out, 'nope.sock') });
		assert.equal(e.code, 1);
		assert.match(e.stderr, /not reachable/);
	});

	await t.test('vouch explain names the failing selector of an unmatched process', async () => {
		const child = spawn('sleep', ['30'], { stdio: 'ignore' });
		t.after(() => child.kill('SIGKILL'));
		const e = await runVouch(['explain', String(child.pid)], { adminSocket: vouchd.adminSocket });
		assert.equal(e.code, 0, e.stderr);
		assert.match(e.stdout, /process:binary:path\s+\/usr\/bin\/sleep/, 'facts are printed');
		assert.match(e.stdout, /node\s+does not match/);
		assert.match(e.stdout, /selector #1: process:binary:path is not /, 'the failing selector is named');
		assert.match(e.stdout, /identity: none/);
		const j = await runVouch(['explain', String(child.pid), '--json'], { adminSocket: vouchd.adminSocket });
		const ex = JSON.parse(j.stdout);
		assert.equal(ex.workload, null);
		assert.equal(ex.facts['process:name'], 'sleep');
	});

	await t.test('vouch explain of a pid that does not exist fails', async () => {
		const e = await runVouch(['explain', '4194000'], { adminSocket: vouchd.adminSocket });
		assert.equal(e.code, 1);
		assert.match(e.stderr, /cannot attest pid/);
	});
});
