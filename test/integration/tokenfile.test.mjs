// Identity token files (issue 4 item 4): a CredentialBinding with propagation.tokenFile keeps a
// JWT-SVID in a file owned by the workload's uid (0600, atomic replace, rewritten at half the JWT
// lifetime); the OFFICIAL SDK, configured only by the environment (ANTHROPIC_IDENTITY_TOKEN_FILE
// and the federation variables, no API key), performs its own exchange against the stand-in,
// directly (not through vouchd), and keeps succeeding for several JWT lifetimes.
//
// The single-use trap: the stand-in (like the real server) rejects a replayed jti. With jwtTTL
// 12 s vouchd rewrites the file every 6 s; with expires_in 130 s the SDK's token is fresh for
// 10 s (it refreshes below 120 s remaining), so it re-exchanges every ~10 s and must read a new
// jti each time. maxRetries 0: a rejected exchange fails a request instead of being retried.
//
// Also: removing the binding removes the file; `vouch token-file` keeps an ad-hoc file until
// `--remove` or vouchd stops. Root runs the SDK as uid 65534 (the file must be that uid's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
	AUDIENCE, HERE, NODE, ORG_ID, REPO, RULE_ID, SA_ID, haveVouchd, isRoot, runProcess, runVouch,
	spiffeId, startStack, waitFor, workloadResource, yamlDocs,
} from './lib.mjs';

const CLIENT = join(HERE, 'clients', 'sdk-federation.mjs');
const UID = isRoot ? 65534 : process.getuid();
const GID = isRoot ? 65534 : process.getgid();
const WL = 'demo/fed';

function tokenBinding(path, extra = {}) {
	return {
		apiVersion: 'vouch.dev/v1alpha1', kind: 'CredentialBinding', metadata: { name: 'fed' },
		spec: { credentialSource: 'standin', workloadID: WL, propagation: { tokenFile: { path, audience: AUDIENCE, ...extra } } },
	};
}

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

/** A directory the workload owns (0700) under a traversable temp dir. */
function workloadDir(st, name) {
	chmodSync(st.dir, 0o755);
	const d = join(st.dir, name);
	mkdirSync(d, { mode: 0o700 });
	if (isRoot) chownSync(d, UID, GID);
	return d;
}

async function stack(t, tokenPath) {
	return startStack(t, {
		config: { jwtTTL: 12 },
		standin: { expiresIn: 130 },
		resources: {
			'fed.yaml': yamlDocs(workloadResource({ name: 'fed', workloadID: WL, selectors: [{ 'process:uid': String(UID) }] })),
			...(tokenPath ? { 'binding-fed.yaml': yamlDocs(tokenBinding(tokenPath)) } : {}),
		},
	});
}

test('the official SDK federates on its own from a vouch-maintained token file', { skip: !haveVouchd() && 'no vouchd (run make)', timeout: 120000 }, async (t) => {
	// The file's directory must exist before vouchd writes it; startStack makes the stack dir,
	// so start without the binding, then add it.
	const st = await stack(t, null);
	const dir = workloadDir(st, 'run');
	const file = join(dir, 'token');
	st.vouchd.writeResource('binding-fed.yaml', yamlDocs(tokenBinding(file)));
	await waitFor(() => existsSync(file), { timeoutMs: 10000, what: 'the token file' });

	const s0 = statSync(file);
	assert.equal(s0.mode & 0o7777, 0o600, 'mode 0600');
	assert.equal(s0.uid, UID, "owned by the workload's uid");
	const jwt0 = readFileSync(file, 'utf8');
	assert.match(jwt0, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the file is exactly one compact JWT (no newline)');
	const c0 = claims(jwt0);
	assert.equal(c0.sub, spiffeId(WL));
	assert.deepEqual([].concat(c0.aud), [AUDIENCE]);
	assert.equal(c0.iss, st.issuer);
	assert.equal(c0.exp - c0.iat, 12, 'lifetime is jwtTTL');

	// The stand-in's CA, readable by the workload (the stack's certs dir is not).
	const caFile = join(dir, 'standin-ca.crt');
	writeFileSync(caFile, readFileSync(st.certs.caFile));
	if (isRoot) chownSync(caFile, UID, GID);

	// 40 s of requests (~1/s): more than three JWT lifetimes.
	const spec = JSON.stringify({ durationMs: 40000, intervalMs: 1000, maxRetries: 0 });
	const r = await runProcess(NODE, [CLIENT, spec], {
		uid: isRoot ? UID : undefined, gid: isRoot ? GID : undefined, cwd: REPO, timeoutMs: 90000,
		env: {
			PATH: process.env.PATH, HOME: '/tmp',
			ANTHROPIC_IDENTITY_TOKEN_FILE: file,
			ANTHROPIC_FEDERATION_RULE_ID: RULE_ID,
			ANTHROPIC_ORGANIZATION_ID: ORG_ID,
			ANTHROPIC_SERVICE_ACCOUNT_ID: SA_ID,
			ANTHROPIC_WORKSPACE_ID: 'default',
			ANTHROPIC_BASE_URL: st.standin.url,
			NODE_EXTRA_CA_CERTS: caFile,
		},
	});
	const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
	const failed = lines.filter((l) => !l.ok);
	assert.equal(r.code, 0, `SDK client failed: ${JSON.stringify(failed.slice(0, 3))}\n${r.stderr.slice(-2000)}`);
	assert.ok(lines.length >= 30, `requests made: ${lines.length}`);
	assert.equal(failed.length, 0, 'zero failed requests');

	const ex = st.standin.records.exchanges;
	const okEx = ex.filter((e) => e.result === 'ok');
	const rejected = ex.filter((e) => e.result !== 'ok');
	assert.deepEqual(rejected.map((e) => e.reason), [], 'no exchange rejected (no replayed jti)');
	assert.ok(okEx.length >= 3, `several exchanges by the SDK: ${okEx.length}`);
	assert.equal(new Set(okEx.map((e) => e.jti)).size, okEx.length, 'each exchange with a distinct jti');
	for (const e of okEx) {
		assert.equal(e.iss, st.issuer, "verified against vouchd's issuer");
		assert.equal(e.sub, spiffeId(WL));
		assert.equal(e.rule, RULE_ID);
	}
	assert.ok(st.standin.records.jwksFetches.length >= 1 || okEx.length > 0, "the stand-in fetched vouchd's JWKS");
	assert.ok(st.standin.records.messages.length >= lines.length, 'every request reached the API with the exchanged token');

	// The file was rewritten (new jti) throughout, always 0600 and the workload's.
	const s1 = statSync(file);
	assert.equal(s1.mode & 0o7777, 0o600);
	assert.equal(s1.uid, UID);
	assert.notEqual(claims(readFileSync(file, 'utf8')).jti, c0.jti, 'refreshed with a new jti');
	const issues = st.vouchd.audit().filter((a) => a.event === 'issue' && a.path === file);
	assert.ok(issues.length >= 6, `issue records for the file: ${issues.length}`);
	assert.ok(issues.every((a) => a.jti && a.token_fp && a.workload === spiffeId(WL)));
	const auditText = readFileSync(st.vouchd.auditLog, 'utf8');
	const logText = st.vouchd.stderr();
	for (const e of okEx) {
		assert.ok(!auditText.includes(e.assertion), 'no JWT in the audit log');
		assert.ok(!logText.includes(e.assertion), 'no JWT in the log');
	}

	// Removing the binding removes the file.
	st.vouchd.removeResource('binding-fed.yaml');
	await waitFor(() => !existsSync(file), { timeoutMs: 10000, what: 'the token file to be removed' });
});

test('vouch token-file keeps an ad-hoc file until --remove; refusals; a clean stop removes files', { skip: !haveVouchd() && 'no vouchd (run make)', timeout: 60000 }, async (t) => {
	const st = await stack(t, null);
	const dir = workloadDir(st, 'adhoc');
	const file = join(dir, 'token');
	const sock = { adminSocket: st.vouchd.adminSocket };

	let r = await runVouch(['token-file', '--workload', spiffeId(WL), '--audience', 'https://aud.example', '--path', file], sock);
	assert.equal(r.code, 0, r.stderr);
	assert.ok(existsSync(file), 'written before the command returns');
	const s = statSync(file);
	assert.equal(s.mode & 0o7777, 0o600);
	assert.equal(s.uid, UID);
	const c = claims(readFileSync(file, 'utf8'));
	assert.deepEqual([].concat(c.aud), ['https://aud.example']);
	assert.equal(c.sub, spiffeId(WL));
	await waitFor(() => claims(readFileSync(file, 'utf8')).jti !== c.jti, { timeoutMs: 15000, what: 'an ad-hoc refresh' });

	// Refusals: unknown workload, symlinked path, world-writable parent, usage.
	r = await runVouch(['token-file', '--workload', 'demo/nobody', '--audience', AUDIENCE, '--path', join(dir, 'x')], sock);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /no WorkloadIdentity/);
	const link = join(dir, 'link');
	symlinkSync('/etc/passwd', link);
	r = await runVouch(['token-file', '--workload', WL, '--audience', AUDIENCE, '--path', link], sock);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /symbolic link/);
	assert.ok(lstatSync(link).isSymbolicLink(), 'symlink left as it was');
	const ww = join(st.dir, 'ww');
	mkdirSync(ww);
	chmodSync(ww, 0o777);
	r = await runVouch(['token-file', '--workload', WL, '--audience', AUDIENCE, '--path', join(ww, 't')], sock);
	assert.equal(r.code, 1);
	assert.match(r.stderr, /not writable by others/);
	assert.ok(!existsSync(join(ww, 't')));
	r = await runVouch(['token-file', '--path', file], sock);
	assert.equal(r.code, 2, 'usage error without --workload/--audience');

	// --remove removes; a second --remove is an error.
	r = await runVouch(['token-file', '--remove', '--path', file], sock);
	assert.equal(r.code, 0, r.stderr);
	assert.ok(!existsSync(file), 'removed');
	r = await runVouch(['token-file', '--remove', '--path', file], sock);
	assert.equal(r.code, 1);

	// A clean stop removes the files vouchd keeps.
	r = await runVouch(['token-file', '--workload', WL, '--audience', AUDIENCE, '--path', file], sock);
	assert.equal(r.code, 0, r.stderr);
	await st.vouchd.stop();
	assert.ok(!existsSync(file), 'removed on a clean stop');
});

test('a binding whose workload has no single uid gets no file (error audited)', { skip: !haveVouchd() && 'no vouchd (run make)', timeout: 30000 }, async (t) => {
	const st = await startStack(t, {
		resources: {
			'fed.yaml': yamlDocs(workloadResource({ name: 'fed', workloadID: WL, selectors: [{ 'process:uid': '1000' }, { 'process:uid': '1001' }] })),
		},
	});
	const file = join(st.dir, 'token');
	st.vouchd.writeResource('binding-fed.yaml', yamlDocs(tokenBinding(file)));
	await waitFor(() => st.vouchd.audit().some((a) => a.event === 'error' && a.path === file), { timeoutMs: 10000, what: 'the error record' });
	assert.ok(!existsSync(file), 'no file written for an unknown owner');
	assert.match(st.vouchd.stderr(), /different uids/);
	// tokenFile.uid settles it.
	st.vouchd.writeResource('binding-fed.yaml', yamlDocs(tokenBinding(file, { uid: 1001 })));
	await waitFor(() => existsSync(file), { timeoutMs: 10000, what: 'the token file with tokenFile.uid' });
	if (isRoot) assert.equal(statSync(file).uid, 1001);
});
