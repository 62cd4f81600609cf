// vouch scan (issue 7 item 2): static keys still in use, in process environments and in
// files. A process started as another uid with ANTHROPIC_API_KEY=sk-ant-api03-<fake> in its
// environment and a directory holding a .env and a YAML config: the scan names the process
// (pid, exe, uid; the workload when vouchd is reachable) and each file:line with a
// fingerprint, prints no secret, ends with the trust-debt total and exits 1; a clean
// directory exits 0. Root only (another uid's environment is readable to root alone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { freePort, haveVouchd, isRoot, makeTempDir, onCleanup, request, runVouch, spiffeId, startVouchd, waitFor, workloadResource, yamlDocs } from './lib.mjs';

const skip = !isRoot ? 'needs root (another uid\'s environment)' : !haveVouchd() ? 'build first' : false;
const NOBODY = 65534;
const SLEEP = realpathSync('/bin/sleep');

/** n random base62 characters. */
function b62(n) {
	let s = '';
	while (s.length < n) s += randomBytes(n).toString('base64').replace(/[^A-Za-z0-9]/g, '');
	return s.slice(0, n);
}

const ANT = `sk-ant-api03-FAKEtestonly${b62(82)}AA`; // random, so it scans as a key; marked fake
const OAI = `sk-proj-${b62(120)}`;
const GEN = b62(40);
const GHP = `ghp_${b62(36)}`;
const fp = (s) => `sha256:${createHash('sha256').update(s).digest('hex').slice(0, 12)}`;

/** Every 8-character window of secret past its public prefix: none may appear in output. */
function assertNoSecret(out, secret, publicLen, what) {
	for (let i = publicLen; i + 8 <= secret.length; i++)
		assert.ok(!out.includes(secret.slice(i, i + 8)), `${what}: output holds secret characters at offset ${i}`);
}

function checkNoSecrets(out, what) {
	assertNoSecret(out, ANT, 'sk-ant-api03-'.length, `${what} (anthropic)`);
	assertNoSecret(out, OAI, 'sk-proj-'.length, `${what} (openai)`);
	assertNoSecret(out, GEN, 0, `${what} (generic)`);
	assertNoSecret(out, GHP, 'ghp_'.length, `${what} (github)`);
}

/** A long-running process as nobody with the key in its environment. */
function startHolder(t) {
	const child = spawn(SLEEP, ['600'], { uid: NOBODY, gid: NOBODY, stdio: 'ignore', env: { PATH: '/usr/bin:/bin', ANTHROPIC_API_KEY: ANT, HOME: '/' } });
	onCleanup(t, () => child.kill('SIGKILL'));
	return child;
}

/** A directory with .env (key on line 3) and config/app.yaml (keys on lines 4 and 6). */
function makeRepo(t) {
	const dir = makeTempDir(t, 'vouch-scan-');
	mkdirSync(join(dir, 'config'));
	mkdirSync(join(dir, 'node_modules'));
	writeFileSync(join(dir, '.env'), `# local settings\nDEBUG=1\nOPENAI_API_KEY=${OAI}\n`);
	writeFileSync(join(dir, 'config', 'app.yaml'), `app:\n  name: demo\n  upstream:\n    api_token: "${GEN}"\n  ci:\n    github: ${GHP}\n`);
	writeFileSync(join(dir, 'node_modules', '.env'), `OPENAI_API_KEY=${OAI}\n`); // skipped by default
	return dir;
}

async function waitEnviron(pid) {
	// the child's environment is in place once it has exec'd sleep
	await waitFor(() => realpathSync(`/proc/${pid}/exe`) === SLEEP, { timeoutMs: 10000, what: 'the holder exec' }).catch(() => {});
}

test('vouch scan without vouchd: the process (pid, exe, uid) and each file:line, no secret, exit 1', { skip }, async (t) => {
	const child = startHolder(t);
	const dir = makeRepo(t);
	await waitEnviron(child.pid);
	const noAgent = join(dir, 'no-agent.sock');

	const r = await runVouch(['scan', dir], { adminSocket: noAgent, timeoutMs: 120000 });
	const out = r.stdout + r.stderr;
	assert.equal(r.code, 1, `exit 1 when keys are found\n${out}`);
	const lines = r.stdout.trimEnd().split('\n');
	assert.match(lines.at(-1), /^\d+ static keys? found \(trust debt\)$/, 'the last line is the total');
	assert.ok(Number(lines.at(-1).split(' ')[0]) >= 4, 'at least our four keys');
	const procLine = lines.find((l) => l.includes(`pid ${child.pid} `));
	assert.ok(procLine, `the holder's pid is named\n${r.stdout}`);
	assert.match(procLine, /^anthropic-api-key\s/, 'kind');
	assert.ok(procLine.includes(fp(ANT)) && procLine.includes('sk-ant-api03-…'), `fingerprint and public prefix: ${procLine}`);
	assert.ok(procLine.includes('env ANTHROPIC_API_KEY') && procLine.includes(SLEEP) && procLine.includes(`uid ${NOBODY}`), `variable, exe and uid: ${procLine}`);
	const fileLine = (suffix) => lines.find((l) => l.endsWith(suffix));
	assert.match(fileLine(`${dir}/.env:3`) ?? '', new RegExp(`^openai-project-key\\s+${fp(OAI)}\\s+sk-proj-…`), '.env:3');
	assert.match(fileLine(`${dir}/config/app.yaml:4`) ?? '', new RegExp(`^generic-secret\\s+${fp(GEN)}\\s+-\\s`), 'app.yaml:4');
	assert.match(fileLine(`${dir}/config/app.yaml:6`) ?? '', new RegExp(`^github-pat\\s+${fp(GHP)}\\s+ghp_…`), 'app.yaml:6');
	assert.ok(!lines.some((l) => l.includes('/node_modules/')), 'node_modules is skipped by default');
	assert.match(r.stderr, /vouchd is not reachable/, 'says that processes are described from /proc only');
	checkNoSecrets(out, 'table');

	const j = await runVouch(['scan', '-o', 'json', dir], { adminSocket: noAgent, timeoutMs: 120000 });
	assert.equal(j.code, 1, j.stderr);
	const doc = JSON.parse(j.stdout);
	const hit = doc.findings.find((f) => f.pid === child.pid);
	assert.ok(hit, 'the process finding in JSON');
	assert.deepEqual({ kind: hit.kind, prefix: hit.prefix, fingerprint: hit.fingerprint, source: hit.source, env: hit.env, uid: hit.uid, exe: hit.exe, workload: hit.workload },
		{ kind: 'anthropic-api-key', prefix: 'sk-ant-api03-', fingerprint: fp(ANT), source: 'process', env: 'ANTHROPIC_API_KEY', uid: NOBODY, exe: SLEEP, workload: null });
	assert.equal(typeof hit.cgroup, 'string', 'the cgroup is reported');
	const files = doc.findings.filter((f) => f.source === 'file').map((f) => `${f.path}:${f.line} ${f.kind}`).sort();
	assert.deepEqual(files, [`${dir}/.env:3 openai-project-key`, `${dir}/config/app.yaml:4 generic-secret`, `${dir}/config/app.yaml:6 github-pat`]);
	assert.equal(doc.total, new Set(doc.findings.map((f) => f.fingerprint)).size, 'total counts distinct keys');
	for (const f of doc.findings) assert.equal(typeof f.where, 'string', 'each finding has where (the status schema)');
	checkNoSecrets(j.stdout + j.stderr, 'json');
});

test('vouch scan with vouchd: the process is mapped to its workload by the agent', { skip }, async (t) => {
	const child = startHolder(t);
	const dir = makeRepo(t);
	const vouchd = await startVouchd(t, {
		resources: { 'wl.yaml': yamlDocs(workloadResource({ name: 'legacy', workloadID: 'scan/legacy', selectors: [{ 'process:binary:path': SLEEP, 'process:uid': String(NOBODY) }] })) },
	});
	await waitEnviron(child.pid);
	const r = await runVouch(['scan', '--no-proc', dir], { adminSocket: vouchd.adminSocket, timeoutMs: 120000 });
	assert.equal(r.code, 1, r.stdout + r.stderr);
	assert.ok(!r.stdout.includes(`pid ${child.pid} `), '--no-proc: no process findings');
	const j = await runVouch(['scan', '-o', 'json', dir], { adminSocket: vouchd.adminSocket, timeoutMs: 120000 });
	assert.equal(j.code, 1, j.stderr);
	const hit = JSON.parse(j.stdout).findings.find((f) => f.pid === child.pid);
	assert.ok(hit, `the process finding\n${j.stdout.slice(0, 3000)}`);
	assert.equal(hit.workload, spiffeId('scan/legacy'), 'the SPIFFE ID from vouchd\'s attestation');
	assert.ok(hit.where.includes(`workload ${spiffeId('scan/legacy')}`), hit.where);
	assert.ok(!/not reachable/.test(j.stderr), j.stderr);
	checkNoSecrets(j.stdout + j.stderr + vouchd.stderr(), 'json with vouchd, and vouchd\'s log');
});

test('vouch scan: a clean directory exits 0; a missing PATH exits 2', { skip }, async (t) => {
	const dir = makeTempDir(t, 'vouch-scan-clean-');
	writeFileSync(join(dir, '.env'), 'ANTHROPIC_API_KEY=vouch-managed\nANTHROPIC_BASE_URL=http://127.0.0.1:7801\n');
	writeFileSync(join(dir, 'app.yaml'), 'api_key: ${API_KEY}\ntoken: <your-token-here>\nmax_tokens: 1024\n');
	const r = await runVouch(['scan', '--no-proc', dir], { adminSocket: join(dir, 'none.sock') });
	assert.equal(r.code, 0, r.stdout + r.stderr);
	assert.equal(r.stdout.trimEnd().split('\n').at(-1), '0 static keys found (trust debt)');
	const m = await runVouch(['scan', '--no-proc', join(dir, 'absent')], { adminSocket: join(dir, 'none.sock') });
	assert.equal(m.code, 2, m.stdout + m.stderr);
});

/** One admin request line, its answer parsed. */
function adminCall(sock, obj) {
	return new Promise((resolve, reject) => {
		const c = net.connect(sock);
		let buf = '';
		c.on('connect', () => c.end(JSON.stringify(obj) + '\n'));
		c.on('data', (d) => { buf += d; });
		// vouchd answers an oversize request and closes without reading the rest: the
		// tail of our write fails (EPIPE/ECONNRESET) but the answer has arrived
		c.on('error', (e) => { if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') reject(e); });
		c.on('close', () => { try { resolve(JSON.parse(buf)); } catch (e) { reject(new Error(`${e.message}: ${buf}`)); } });
	});
}

test('vouch scan --report: vouchd keeps the figure for status, dashboard data and metrics, across a restart; hostile reports refused', { skip, timeout: 240000 }, async (t) => {
	const child = startHolder(t);
	const dir = makeRepo(t);
	const port = await freePort();
	const resources = { 'wl.yaml': yamlDocs(workloadResource({ name: 'legacy', workloadID: 'scan/legacy', selectors: [{ 'process:binary:path': SLEEP, 'process:uid': String(NOBODY) }] })) };
	let vouchd = await startVouchd(t, { resources, config: { metrics: { listen: `127.0.0.1:${port}` } } });
	await waitEnviron(child.pid);

	const before = await runVouch(['status', '-o', 'json'], { adminSocket: vouchd.adminSocket });
	assert.equal(JSON.parse(before.stdout).static_keys, null, 'no report yet');
	assert.match((await runVouch(['status'], { adminSocket: vouchd.adminSocket })).stdout, /STATIC KEYS: no scan reported \(vouch scan --report\)/);

	const r = await runVouch(['scan', '--report', '-o', 'json', dir], { adminSocket: vouchd.adminSocket, timeoutMs: 120000 });
	assert.equal(r.code, 1, `keys found: exit 1 also with --report\n${r.stderr}`);
	assert.match(r.stderr, /reported to vouchd \(\d+ static keys?\)/);
	const doc = JSON.parse(r.stdout);

	const check = async (v, what) => {
		const st = JSON.parse((await runVouch(['status', '-o', 'json'], { adminSocket: v.adminSocket })).stdout);
		const sk = st.static_keys;
		assert.ok(sk, `${what}: static_keys in the status`);
		assert.equal(sk.total, doc.total, `${what}: the trust-debt figure`);
		assert.equal(sk.places, doc.findings.length);
		assert.equal(sk.truncated, false);
		assert.match(sk.scanned, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
		assert.match(sk.by, /^uid 0 pid \d+$/);
		assert.deepEqual(sk.findings.map((f) => `${f.fingerprint} ${f.where}`).sort(), doc.findings.map((f) => `${f.fingerprint} ${f.where}`).sort());
		const hit = sk.findings.find((f) => f.where.startsWith(`pid ${child.pid} `));
		assert.equal(hit?.workload, spiffeId('scan/legacy'), `${what}: the process finding names its workload`);
		assert.equal(hit.fingerprint, fp(ANT));
		const table = (await runVouch(['status'], { adminSocket: v.adminSocket })).stdout;
		assert.match(table, new RegExp(`STATIC KEYS \\(trust debt\\): ${doc.total} in ${doc.findings.length} place\\(s\\), last scan`));
		assert.ok(table.includes(fp(OAI)) && table.includes(`${dir}/.env:3`), table);
		const api = await request(`http://127.0.0.1:${port}/api/status`);
		assert.equal(JSON.parse(api.body).static_keys.total, doc.total, `${what}: the dashboard's data`);
		const m = await request(`http://127.0.0.1:${port}/metrics`);
		assert.match(m.body, new RegExp(`^vouch_static_keys ${doc.total}$`, 'm'), `${what}: the gauge`);
		assert.match(m.body, /^vouch_static_keys_scan_timestamp_seconds \d{10}$/m);
		checkNoSecrets(JSON.stringify(st) + table + m.body, `${what}: status, table and metrics`);
	};
	await check(vouchd, 'after the report');
	const file = join(vouchd.stateDir, 'static-keys.json');
	assert.equal(statSync(file).mode & 0o777, 0o600, 'saved 0600');
	checkNoSecrets(readFileSync(file, 'utf8'), 'the saved report');
	const audited = vouchd.audit().find((a) => a.event === 'scan-report');
	assert.ok(audited, 'the report is audited');
	assert.match(audited.actor, /^uid 0 pid \d+$/);
	assert.match(audited.reason, new RegExp(`^${doc.total} static key\\(s\\) in ${doc.findings.length} place\\(s\\)$`));
	checkNoSecrets(readFileSync(join(dirOf(vouchd), 'audit.log'), 'utf8') + vouchd.stderr(), 'audit log and vouchd log');

	await t.test('hostile reports are refused and change nothing', async () => {
		const good = { cmd: 'scan-report', total: 1, places: 1, processes: 0, files: 1, findings: [{ kind: 'generic-secret', prefix: '', fingerprint: 'sha256:0123456789ab', source: 'file', where: 'x:1', workload: null }] };
		const variants = [
			[{ ...good, total: 2 }, /inconsistent|untruncated/],
			[{ ...good, findings: [{ ...good.findings[0], where: 'x\u001b]0;owned\u0007:1' }] }, /where/],
			[{ ...good, findings: [{ ...good.findings[0], fingerprint: ANT }] }, /fingerprint/],
			[{ ...good, findings: [{ ...good.findings[0], kind: '<script>' }] }, /kind/],
			[{ ...good, total: -1 }, /integers/],
		];
		for (const [req, want] of variants) {
			const a = await adminCall(vouchd.adminSocket, req);
			assert.match(a.error ?? '', want, JSON.stringify(a));
			assert.ok(!JSON.stringify(a).includes(ANT.slice(20)), 'the refusal does not echo a pasted key');
		}
		const big = await adminCall(vouchd.adminSocket, { ...good, pad: 'x'.repeat(1100000) });
		assert.match(big.error ?? '', /too large/, 'a request over 1 MiB');
		const st = JSON.parse((await runVouch(['status', '-o', 'json'], { adminSocket: vouchd.adminSocket })).stdout);
		assert.equal(st.static_keys.total, doc.total, 'the last good report stands');
	});

	await t.test('restart: the report is read back; a corrupt file is moved aside', async () => {
		const ex = await vouchd.stop();
		assert.equal(ex.code, 0);
		vouchd = await startVouchd(t, { dir: dirOf(vouchd), resources, oidcPort: vouchd.oidcPort, plainPort: vouchd.plainPort, proxyPort: vouchd.proxyPort, config: { metrics: { listen: `127.0.0.1:${port}` } } });
		await check(vouchd, 'after a restart');
		await vouchd.stop();
		writeFileSync(file, JSON.stringify({ version: 1, scanned: 5, by: 'uid 0 pid 1', total: 1, places: 1, processes: 0, files: 0, findings: [{ kind: 'k', prefix: '', fingerprint: 'sha256:0123456789ab', source: 'file', where: '\u001b[2J', workload: null }] }));
		vouchd = await startVouchd(t, { dir: dirOf(vouchd), resources, oidcPort: vouchd.oidcPort, plainPort: vouchd.plainPort, proxyPort: vouchd.proxyPort });
		const st = JSON.parse((await runVouch(['status', '-o', 'json'], { adminSocket: vouchd.adminSocket })).stdout);
		assert.equal(st.static_keys, null, 'a corrupt report is not shown');
		assert.ok(readdirSync(vouchd.stateDir).some((f) => /^static-keys\.json\.corrupt-\d+$/.test(f)), 'moved aside');
		assert.match(vouchd.stderr(), /static-keys\.json cannot be read .*moved aside/);
		assert.ok(!existsSync(file));
	});

	await t.test('--report without a reachable vouchd: exit 3, said on stderr', async () => {
		const x = await runVouch(['scan', '--report', '--no-proc', dir], { adminSocket: join(dir, 'none.sock'), timeoutMs: 60000 });
		assert.equal(x.code, 3, x.stdout + x.stderr);
		assert.match(x.stderr, /the report to vouchd failed/);
		assert.match(x.stdout.trimEnd().split('\n').at(-1), /static keys? found \(trust debt\)$/, 'the table still ends with the total');
	});
});

/** The directory startVouchd made (state dir's parent). */
function dirOf(v) {
	return join(v.stateDir, '..');
}
