// vouch inventory and persistent revocations (issue 7.1, 7.3):
//  - traffic from two workloads (demo/node bound, demo/curl without a binding) shows up as
//    access paths with counts, first/last use and the token TTL; a configured binding that
//    was never used is listed as such; the table is aligned and `-o json` parses;
//  - the counts survive a restart of vouchd (inventory.json in the state dir);
//  - `vouch revoke node` (a binding) → the next request on an already-open connection is
//    403 naming the revocation, audited with the admin peer; a restart keeps it (403 again);
//    `vouch unrevoke node` lifts it;
//  - a corrupt inventory.json is moved aside and vouchd starts empty; a corrupt
//    revocations.json stops the start (fail closed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
	startStack, startVouchd, runSdkClient, runCurl, runVouch, spawnLines, waitFor, yamlDocs, workloadResource,
	bindingResource, spiffeId, MESSAGE_BODY, CURL, NODE, REPO, HERE, VOUCHD, runProcess,
} from './lib.mjs';

const KEEPALIVE = join(HERE, 'clients', 'keepalive-client.mjs');
const NODE_ID = spiffeId('demo/node');
const CURL_ID = spiffeId('demo/curl');
const IDLE_ID = spiffeId('demo/idle');

function curlMessages(plainUrl) {
	return runCurl([`${plainUrl}/v1/messages`, '-H', 'x-api-key: vouch-managed', '-H', 'anthropic-version: 2023-06-01',
		'-H', 'content-type: application/json', '--data-binary', JSON.stringify(MESSAGE_BODY), '-w', '\n%{http_code}'],
	{ env: { PATH: process.env.PATH } });
}

async function inventoryJson(vouchd) {
	const r = await runVouch(['inventory', '-o', 'json'], { adminSocket: vouchd.adminSocket });
	assert.equal(r.code, 0, `vouch inventory -o json: ${r.stdout} ${r.stderr}`);
	return JSON.parse(r.stdout);
}

const row = (inv, pred) => inv.paths.find(pred);
const nodeRow = (inv) => row(inv, (p) => p.workload === NODE_ID && p.binding === 'node' && p.service === 'anthropic-api');
const curlRow = (inv) => row(inv, (p) => p.workload === CURL_ID && p.binding === null && p.service === 'anthropic-api');

/** Stop vouchd and start it again on the same directory (state, resources, audit log) and ports. */
async function restart(t, st, vouchd) {
	const ex = await vouchd.stop();
	assert.equal(ex.code, 0, `clean stop: ${JSON.stringify(ex)}\n${vouchd.stderr().slice(-2000)}`);
	return startVouchd(t, { dir: st.dir, upstreamCAFile: st.certs.caFile, oidcPort: vouchd.oidcPort,
		plainPort: vouchd.plainPort, proxyPort: vouchd.proxyPort });
}

function keepalive(t, vouchd) {
	const c = spawnLines(t, NODE, [KEEPALIVE], { cwd: REPO, env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp' } });
	c.ask = (content) => c.send({ url: `${vouchd.plainUrl}/v1/messages`, content });
	return c;
}

test('inventory: access paths with counts, kept across restarts; binding revocation persists until lifted', { timeout: 180000 }, async (t) => {
	assert.ok(CURL, 'curl is installed');
	const st = await startStack(t, {
		resources: {
			'curl.yaml': yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })),
			'idle.yaml': yamlDocs(
				workloadResource({ name: 'idle', workloadID: 'demo/idle', selectors: [{ 'process:binary:path': '/nonexistent/idle' }] }),
				bindingResource({ name: 'idle', workloadID: 'demo/idle' })),
		},
	});
	let vouchd = st.vouchd;

	// A workload process that stays: its cached token (and so its TTL) lives as long as it
	// does (agent/tracker.c drops a workload's tokens after its last process exits).
	const live = keepalive(t, vouchd);
	assert.ok((await live.next()).hello);
	const first = await live.ask('live');
	assert.equal(first.status, 200, JSON.stringify(first));
	const sdk = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'create' }], { maxRetries: 0 });
	assert.equal(sdk.code, 0, `${sdk.stdout}\n${sdk.stderr}\n--- vouchd ---\n${vouchd.stderr().slice(-3000)}`);
	const c1 = await curlMessages(vouchd.plainUrl);
	assert.match(c1.stdout, /\n403$/, `curl without a binding is denied: ${c1.stdout}`);
	await vouchd.auditUntil((a) => a.event === 'inject' && a.workload === NODE_ID, 3);
	await vouchd.auditUntil((a) => a.event === 'deny' && a.workload === CURL_ID, 1);

	let before;
	await t.test('rows: injected and denied requests, first/last use, token TTL, a configured path never used', async () => {
		const inv = await inventoryJson(vouchd);
		assert.equal(inv.version, 1);
		assert.equal(inv.full, false);
		const n = nodeRow(inv);
		assert.ok(n, `a row for demo/node → node → anthropic-api: ${JSON.stringify(inv.paths)}`);
		assert.equal(n.requests, 3, JSON.stringify(n));
		assert.equal(n.denials, 0);
		assert.equal(n.source, 'default/standin');
		assert.equal(n.configured, true);
		assert.match(n.first_use, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
		assert.ok(n.last_use >= n.first_use);
		assert.ok(Number.isInteger(n.token_ttl_s) && n.token_ttl_s > 0, `token TTL from the broker: ${JSON.stringify(n)}`);
		assert.equal(n.revoked, null);
		// Claude usage per path: the sum of what the audit's inject records reported
		const injects = vouchd.audit().filter((a) => a.event === 'inject' && a.workload === NODE_ID);
		const sum = (k) => injects.reduce((s, a) => s + (a[k] ?? 0), 0);
		assert.ok(sum('input_tokens') > 0 && sum('output_tokens') > 0, JSON.stringify(injects));
		assert.deepEqual(n.usage, { responses: 3, input_tokens: sum('input_tokens'), output_tokens: sum('output_tokens') });
		const c = curlRow(inv);
		assert.ok(c, `a row for the denied demo/curl to (none): ${JSON.stringify(inv.paths)}`);
		assert.equal(c.requests, 0);
		assert.equal(c.denials, 1);
		assert.deepEqual(c.denials_by_reason, { no_binding: 1 });
		assert.equal(c.source, null);
		assert.equal(c.configured, false);
		assert.deepEqual(c.usage, { responses: 0, input_tokens: 0, output_tokens: 0 });
		const idle = row(inv, (p) => p.workload === IDLE_ID);
		assert.ok(idle, 'the configured but unused binding is listed');
		assert.equal(idle.configured, true);
		assert.equal(idle.binding, 'idle');
		assert.equal(idle.last_use, null);
		assert.equal(idle.first_use, null);
		assert.equal(idle.requests, 0);
		before = { node: n, curl: c };
	});

	await t.test('the table: aligned columns, "never used", TTL human-readable', async () => {
		const r = await runVouch(['inventory'], { adminSocket: vouchd.adminSocket });
		assert.equal(r.code, 0, r.stderr);
		const lines = r.stdout.split('\n').filter(Boolean);
		const head = lines.findIndex((l) => l.startsWith('WORKLOAD'));
		assert.ok(head >= 0, r.stdout);
		const col = lines[head].indexOf('BINDING');
		const rows = lines.slice(head + 1);
		assert.equal(rows.length, 3, r.stdout);
		for (const l of rows) assert.equal(l[col - 1], ' ', `aligned: ${l}`);
		const nl = rows.find((l) => l.startsWith(NODE_ID));
		assert.equal(nl.slice(col).split(/\s+/)[0], 'node', `the binding column: ${nl}`);
		assert.match(nl, /\s\d+(s|m\d\ds|h\d\dm)(\s|$)/, `TTL human-readable: ${nl}`);
		assert.match(rows.find((l) => l.startsWith(IDLE_ID)), /never used/);
		const u = before.node.usage;
		assert.ok(nl.includes(` ${u.input_tokens}/${u.output_tokens} `), `TOKENS IN/OUT column: ${nl}`);
		assert.match(rows.find((l) => l.startsWith(CURL_ID)), /\(none\).*no_binding=1/);
	});

	await t.test('restart: inventory.json written, counts and times preserved', async () => {
		vouchd = await restart(t, st, vouchd);
		assert.ok(existsSync(join(vouchd.stateDir, 'inventory.json')), 'inventory.json in the state dir');
		const inv = await inventoryJson(vouchd);
		const n = nodeRow(inv), c = curlRow(inv);
		assert.equal(n?.requests, 3, JSON.stringify(inv.paths));
		assert.equal(n.first_use, before.node.first_use);
		assert.equal(n.last_use, before.node.last_use);
		assert.deepEqual(n.usage, before.node.usage, 'usage survives the restart');
		assert.equal(c?.denials, 1);
		assert.deepEqual(c.denials_by_reason, { no_binding: 1 });
		// and counting goes on from there
		const sdk2 = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { maxRetries: 0 });
		assert.equal(sdk2.code, 0, sdk2.stderr);
		await waitFor(async () => nodeRow(await inventoryJson(vouchd))?.requests === 4, { timeoutMs: 5000, what: 'requests 4' });
	});

	await t.test('revoke the binding: the next request on an open connection is 403 naming it; audited', async () => {
		const c = keepalive(t, vouchd);
		assert.ok((await c.next()).hello);
		const a = await c.ask('before');
		assert.equal(a.status, 200, JSON.stringify(a));
		const before = st.standin.records.messages.length;
		const rv = await runVouch(['revoke', 'node', '--reason', 'ticket 42'], { adminSocket: vouchd.adminSocket });
		assert.equal(rv.code, 0, `${rv.stdout} ${rv.stderr}`);
		assert.match(rv.stdout, /binding node: revoked: ticket 42/);
		const b = await c.ask('after');
		assert.equal(b.status, 403, JSON.stringify(b));
		assert.equal(b.reused, true, 'the same connection');
		assert.match(b.json?.error?.message ?? '', /CredentialBinding node .*is revoked: ticket 42/, b.body);
		assert.match(b.json.error.message, /vouch unrevoke --binding node/);
		assert.equal(st.standin.records.messages.length, before, 'nothing reached the upstream');
		await c.close?.();
		const line = vouchd.audit().find((l) => l.event === 'revoke' && l.binding === 'node');
		assert.ok(line, 'a revoke audit line for the binding');
		assert.equal(line.reason, 'ticket 42');
		assert.match(line.actor ?? '', /^uid \d+ pid \d+$/, `the admin peer: ${JSON.stringify(line)}`);
		const saved = JSON.parse(readFileSync(join(vouchd.stateDir, 'revocations.json'), 'utf8'));
		assert.deepEqual(saved.revocations.map((r) => [r.kind, r.name, r.reason]), [['binding', 'node', 'ticket 42']]);
		const inv = await inventoryJson(vouchd);
		assert.equal(nodeRow(inv).revoked?.kind, 'binding');
		assert.equal(nodeRow(inv).denials_by_reason.revoked, 1);
		assert.equal(inv.revocations.length, 1);
		assert.equal(inv.revocations[0].name, 'node');
		assert.ok(Number.isInteger(inv.revocations[0].uid));
	});

	await t.test('restart: still revoked (403) until lifted; unrevoke → 200 again', async () => {
		vouchd = await restart(t, st, vouchd);
		const r = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { maxRetries: 0 });
		assert.notEqual(r.code, 0, 'the SDK call fails');
		assert.match(`${r.stdout}${r.stderr}`, /403|revoked/, r.stdout);
		const d = await vouchd.auditUntil((a) => a.event === 'deny' && a.workload === NODE_ID && /binding node .*revoked/i.test(a.reason ?? ''));
		assert.ok(d.length, 'the denial after the restart names the revocation');
		const un = await runVouch(['unrevoke', '--binding', 'node'], { adminSocket: vouchd.adminSocket });
		assert.equal(un.code, 0, `${un.stdout} ${un.stderr}`);
		assert.match(un.stdout, /revocation lifted/);
		const ok = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { maxRetries: 0 });
		assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
		assert.ok(vouchd.audit().some((a) => a.event === 'unrevoke' && a.binding === 'node' && /^uid \d+/.test(a.actor ?? '')));
		const saved = JSON.parse(readFileSync(join(vouchd.stateDir, 'revocations.json'), 'utf8'));
		assert.deepEqual(saved.revocations, []);
	});

	await t.test('names: ambiguous and unknown targets are refused, --workload / --binding decide', async () => {
		const none = await runVouch(['revoke', 'no-such-thing'], { adminSocket: vouchd.adminSocket });
		assert.equal(none.code, 1, none.stdout);
		assert.match(none.stderr, /names no CredentialBinding and no workload/);
		// a binding named like a single-segment workload path
		vouchd.writeResource('twin.yaml', yamlDocs(
			workloadResource({ name: 'twin', workloadID: 'twin', selectors: [{ 'process:binary:path': '/nonexistent/twin' }] }),
			bindingResource({ name: 'twin', workloadID: 'demo/idle' })));
		await waitFor(async () => (await inventoryJson(vouchd)).paths.some((p) => p.binding === 'twin'), { timeoutMs: 10000, what: 'reload with twin' });
		const amb = await runVouch(['revoke', 'twin'], { adminSocket: vouchd.adminSocket });
		assert.equal(amb.code, 1, amb.stdout);
		assert.match(amb.stderr, /names both a workload and a CredentialBinding/);
		const w = await runVouch(['revoke', '--workload', 'twin'], { adminSocket: vouchd.adminSocket });
		assert.equal(w.code, 0, w.stderr);
		assert.match(w.stdout, /^workload spiffe:\/\/vouch\.test\/twin: revoked/);
		const u = await runVouch(['unrevoke', '--workload', 'twin'], { adminSocket: vouchd.adminSocket });
		assert.equal(u.code, 0, u.stderr);
		// a path that names nothing yet is a workload revoked ahead of time
		const later = await runVouch(['revoke', 'demo/later'], { adminSocket: vouchd.adminSocket });
		assert.equal(later.code, 0, later.stderr);
		assert.match(later.stdout, /^workload spiffe:\/\/vouch\.test\/demo\/later: revoked/);
		assert.equal((await runVouch(['unrevoke', 'demo/later'], { adminSocket: vouchd.adminSocket })).code, 0);
	});

	await t.test('a corrupt inventory.json is moved aside and vouchd starts empty', async () => {
		await vouchd.stop();
		const file = join(vouchd.stateDir, 'inventory.json');
		writeFileSync(file, '{"version":1,"paths":[{"workload":');
		vouchd = await startVouchd(t, { dir: st.dir, upstreamCAFile: st.certs.caFile, oidcPort: vouchd.oidcPort,
			plainPort: vouchd.plainPort, proxyPort: vouchd.proxyPort });
		const moved = readdirSync(vouchd.stateDir).filter((f) => /^inventory\.json\.corrupt-\d+$/.test(f));
		assert.equal(moved.length, 1, readdirSync(vouchd.stateDir).join(' '));
		assert.equal(readFileSync(join(vouchd.stateDir, moved[0]), 'utf8'), '{"version":1,"paths":[{"workload":', 'the evidence is kept');
		assert.match(vouchd.stderr(), /inventory\.json cannot be read/);
		const inv = await inventoryJson(vouchd);
		assert.equal(nodeRow(inv).requests, 0, 'empty: only the configured paths');
		assert.equal(curlRow(inv), undefined);
	});

	await t.test('a corrupt revocations.json stops the start (fail closed)', async () => {
		await vouchd.stop();
		writeFileSync(join(vouchd.stateDir, 'revocations.json'), '{"version":1,"revocations":[{"kind":"binding"}]}');
		const r = await runProcess(VOUCHD, ['-c', vouchd.configFile], { timeoutMs: 20000 });
		assert.notEqual(r.code, 0, 'vouchd refuses to start');
		assert.match(r.stderr, /revocations\.json is not a valid revocations file/);
	});
});
