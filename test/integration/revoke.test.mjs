// Revocation that follows the workload (issue 3 item 6):
//  (a) when a workload process exits, its cached credentials are dropped (a "revoke" audit
//      line naming the exit) and the next process of the same workload causes a NEW exchange;
//  (b) deleting its binding makes the next request on an already-open connection get 403;
//  (c) `vouch revoke demo/node` does the same at once, and `vouch unrevoke demo/node` lifts it.
// The connection-level cases use a client that keeps ONE keep-alive connection
// (clients/keepalive-client.mjs) and checks the socket was reused. Root only (the stacks use
// the transparent path; (b) and (c) also run over the explicit plain listener).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HERE, NODE, REPO, VOUCH, spiffeId, runVouch, spawnLines, waitFor } from './lib.mjs';
import { interceptSkipReason, startTransparentStack, inHosts, baseEnv, API_HOST } from './netns.mjs';

const SDK_DEFAULT = join(HERE, 'clients', 'sdk-default.mjs');
const KEEPALIVE = join(HERE, 'clients', 'keepalive-client.mjs');
const skip = interceptSkipReason();
const SUB = spiffeId('demo/node');
const API_URL = `https://${API_HOST}/v1/messages`;

const okExchanges = (st) => st.standin.records.exchanges.filter((e) => e.result === 'ok').length;

/** A keep-alive client: over the plain listener (not under vouch run), or transparent (under vouch run). */
async function keepalive(t, st, mode) {
	let c;
	if (mode === 'plain') {
		c = spawnLines(t, NODE, [KEEPALIVE], { cwd: REPO, env: baseEnv() });
	} else {
		const [cmd, args] = inHosts(st.hosts, VOUCH, ['--admin-socket', st.vouchd.adminSocket, 'run', '--', NODE, KEEPALIVE]);
		c = spawnLines(t, cmd, args, { cwd: REPO, env: baseEnv() });
	}
	const hello = await c.next();
	assert.ok(hello.hello, `keepalive client (${mode}) started: ${JSON.stringify(hello)}`);
	c.url = mode === 'plain' ? `${st.vouchd.plainUrl}/v1/messages` : API_URL;
	c.clientPid = hello.pid;
	c.ask = (content) => c.send({ url: c.url, content });
	return c;
}

test('revoke (a): a workload process exits → its cached credentials are dropped; the next process exchanges anew', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 4 });
	const plan = JSON.stringify({ plan: [{ op: 'create', content: 'first process' }], maxRetries: 0 });
	const r1 = await st.run(NODE, [SDK_DEFAULT, plan], { cwd: REPO });
	assert.equal(r1.code, 0, `${r1.stdout}\n${r1.stderr}\n--- vouchd ---\n${st.vouchd.stderr().slice(-3000)}`);
	const pid1 = JSON.parse(r1.stdout.split('\n')[0]).pid;
	const exchanges1 = okExchanges(st);
	assert.ok(exchanges1 >= 1, 'the first process caused an exchange');
	const token1 = st.standin.records.messages.at(-1).authorization[0];

	await t.test('a revoke audit line for demo/node names the exit', async () => {
		const line = await waitFor(() => st.vouchd.audit().find((a) => a.event === 'revoke' && a.workload === SUB), { timeoutMs: 5000, what: 'revoke line' })
			.catch((e) => assert.fail(`${e.message}\naudit: ${JSON.stringify(st.vouchd.audit()).slice(-3000)}`));
		assert.match(line.reason ?? '', /exit/i, `reason names the exit: ${JSON.stringify(line)}`);
		if (line.pid) assert.equal(line.pid, pid1, 'the revoke line names the process that exited');
		for (const v of Object.values(line)) assert.ok(!String(v).includes('sk-ant-'), 'no token in the audit line');
	});

	await t.test('a new process of the same workload causes a NEW exchange and gets a new token', async () => {
		const r2 = await st.run(NODE, [SDK_DEFAULT, JSON.stringify({ plan: [{ op: 'create', content: 'second process' }], maxRetries: 0 })], { cwd: REPO });
		assert.equal(r2.code, 0, `${r2.stdout}\n${r2.stderr}`);
		assert.equal(okExchanges(st), exchanges1 + 1, 'exactly one more token exchange');
		const m = st.standin.records.messages.at(-1);
		assert.equal(m.status, 200);
		assert.notEqual(m.authorization[0], token1, 'a fresh access token, not the cached one');
	});
});

test('revoke (b): deleting the binding → the next request on an already-open connection gets 403', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 4 });
	const clients = [await keepalive(t, st, 'plain'), await keepalive(t, st, 'transparent')];
	for (const c of clients) {
		const a = await c.ask('before');
		assert.equal(a.status, 200, `${c.url}: ${JSON.stringify(a)}\n--- vouchd ---\n${st.vouchd.stderr().slice(-3000)}`);
		const b = await c.ask('still bound');
		assert.equal(b.status, 200);
		assert.equal(b.reused, true, `${c.url}: the second request reused the connection`);
		c.localPort = b.localPort;
	}
	const reloads = () => st.vouchd.audit().filter((a) => a.event === 'reload' && !a.reason).length;
	const reloadsBefore = reloads();
	st.vouchd.removeResource('binding-node.yaml');
	// The change is picked up within a second (housekeeping) and audited as a reload.
	await waitFor(() => reloads() > reloadsBefore, { timeoutMs: 10000, what: 'vouchd to reload without the binding' });
	for (const c of clients) {
		await t.test(`${c.url}: 403 on the same connection`, async () => {
			const r = await c.ask('after the binding is gone');
			assert.equal(r.status, 403, JSON.stringify(r));
			assert.equal(r.reused, true, 'the request went over the already-open connection');
			assert.equal(r.localPort, c.localPort, 'same client socket');
			assert.equal(r.json?.type, 'error', 'Anthropic-shaped error');
		});
	}
});

test('revoke (c): vouch revoke demo/node → 403 on open connections naming the revocation; unrevoke → works again', { skip: skip ?? false }, async (t) => {
	const st = await startTransparentStack(t, { family: 4 });
	const clients = [await keepalive(t, st, 'plain'), await keepalive(t, st, 'transparent')];
	for (const c of clients) {
		const a = await c.ask('before revoke');
		assert.equal(a.status, 200, `${c.url}: ${JSON.stringify(a)}\n--- vouchd ---\n${st.vouchd.stderr().slice(-3000)}`);
		c.localPort = a.localPort;
	}
	const before = st.standin.records.messages.length;
	const rv = await runVouch(['revoke', 'demo/node'], { adminSocket: st.vouchd.adminSocket });
	assert.equal(rv.code, 0, `vouch revoke: ${rv.stdout} ${rv.stderr}`);

	for (const c of clients) {
		await t.test(`${c.url}: the next request on the open connection is 403 naming the revocation`, async () => {
			const r = await c.ask('after revoke');
			assert.equal(r.status, 403, JSON.stringify(r));
			assert.equal(r.reused, true, 'same connection');
			assert.equal(r.localPort, c.localPort);
			assert.match(r.json?.error?.message ?? '', /revoke/i, `the error names the revocation: ${r.body}`);
		});
	}
	await t.test('nothing reached the upstream while revoked; the revocation is audited', async () => {
		assert.equal(st.standin.records.messages.length, before);
		await waitFor(() => st.vouchd.audit().some((a) => (a.event === 'revoke' || a.event === 'deny') && a.workload === SUB && /revoke/i.test(`${a.event} ${a.reason ?? ''}`)),
			{ what: 'an audit line for the operator revocation' });
	});

	const un = await runVouch(['unrevoke', 'demo/node'], { adminSocket: st.vouchd.adminSocket });
	assert.equal(un.code, 0, `vouch unrevoke: ${un.stdout} ${un.stderr}`);
	for (const c of clients) {
		await t.test(`${c.url}: after unrevoke the same connection works again`, async () => {
			const r = await c.ask('after unrevoke');
			assert.equal(r.status, 200, JSON.stringify(r)); // (the proxy may have closed the connection after the 403)
		});
	}
	await t.test('unrevoke audited; unrevoke of a workload that is not revoked is harmless', async () => {
		assert.ok(st.vouchd.audit().some((a) => a.event === 'unrevoke' && a.workload === SUB), 'unrevoke line');
		const r = await runVouch(['unrevoke', 'demo/node'], { adminSocket: st.vouchd.adminSocket });
		assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
	});
	await t.test('revoke of something that is not a workload path is refused', async () => {
		const r = await runVouch(['revoke', 'spiffe://other.domain/demo/node'], { adminSocket: st.vouchd.adminSocket });
		assert.notEqual(r.code, 0, `${r.stdout} ${r.stderr}`);
		const r2 = await runVouch(['revoke', '../x'], { adminSocket: st.vouchd.adminSocket });
		assert.notEqual(r2.code, 0, `${r2.stdout} ${r2.stderr}`);
	});
	for (const c of clients) await c.close();
});
