// Deny by default: no identity or no binding → 403 in Anthropic's error shape naming
// `vouch explain`, nothing forwarded. Resource reloads: a removed binding takes effect, an
// invalid change is reported and the last good set stays in force.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	startStack, runCurl, request, waitFor, yamlDocs, workloadResource, bindingResource, runVouch, spiffeId,
	MESSAGE_BODY, CURL, sleep,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };

function curlMessages(plainUrl) {
	return runCurl([`${plainUrl}/v1/messages`, '-H', 'x-api-key: vouch-managed', '-H', 'anthropic-version: 2023-06-01',
		'-H', 'content-type: application/json', '--data-binary', JSON.stringify(MESSAGE_BODY), '-w', '\n%{http_code}'],
	{ env: { PATH: process.env.PATH } });
}
function parseCurl(r) {
	const lines = r.stdout.trimEnd().split('\n');
	const status = Number(lines.pop());
	let json;
	try {
		json = JSON.parse(lines.join('\n'));
	} catch {}
	return { status, json, body: lines.join('\n') };
}
function assertDenial(status, json, body) {
	assert.equal(status, 403, body);
	assert.equal(json?.type, 'error', `Anthropic error shape: ${body}`);
	assert.equal(typeof json.error?.type, 'string');
	assert.match(json.error.message, /vouch explain/, 'the denial names `vouch explain`');
}

test('deny: workloads without identity or binding get 403 and nothing is forwarded', async (t) => {
	assert.ok(CURL, 'curl is installed');
	const { standin, vouchd } = await startStack(t);

	await t.test('no WorkloadIdentity matches curl', async () => {
		const r = parseCurl(await curlMessages(vouchd.plainUrl));
		assertDenial(r.status, r.json, r.body);
	});

	await t.test('an identity without a binding', async () => {
		vouchd.writeResource('curl.yaml', yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })));
		// Wait for the reload: the denial's audit line then names the identity.
		let r;
		await waitFor(async () => {
			r = await curlMessages(vouchd.plainUrl);
			return vouchd.audit().some((a) => a.event === 'deny' && a.workload === spiffeId('demo/curl'));
		}, { timeoutMs: 5000, intervalMs: 200, what: 'a deny line for demo/curl' });
		const p = parseCurl(r);
		assertDenial(p.status, p.json, p.body);
		const deny = vouchd.audit().filter((a) => a.event === 'deny');
		assert.ok(deny.every((a) => a.reason), 'deny lines carry a reason');
	});

	await t.test('nothing reached the stand-in', () => {
		assert.equal(standin.records.messages.length, 0);
		assert.equal(standin.records.exchanges.length, 0);
	});
});

test('deny: removing the binding while vouchd runs; an invalid change keeps the last good set', async (t) => {
	// This test process runs the same Node binary as the bound workload demo/node.
	const { standin, vouchd } = await startStack(t);
	const ask = () => request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });

	let r = await ask();
	assert.equal(r.status, 200, `bound workload first succeeds: ${r.body}\n${vouchd.stderr().slice(-2000)}`);

	await t.test('an invalid change is logged and the previous set stays in force', async () => {
		const mark = vouchd.stderr().length;
		const broken = yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' })).replace('credentialSource:', 'credentialSorce:');
		vouchd.writeResource('binding-node.yaml', broken);
		await waitFor(() => /binding-node\.yaml:\d+:\d+/.test(vouchd.stderr().slice(mark)),
			{ timeoutMs: 5000, intervalMs: 100, what: 'vouchd to report binding-node.yaml:LINE:COL' });
		await sleep(300);
		r = await ask();
		assert.equal(r.status, 200, `last good set still in force: ${r.body}`);
	});

	await t.test('removing the binding takes effect within the reload period', async () => {
		vouchd.removeResource('binding-node.yaml');
		await waitFor(async () => (r = await ask()).status === 403, { timeoutMs: 5000, intervalMs: 100, what: '403 after removing the binding' });
		assertDenial(r.status, r.json, r.body);
		const ok = standin.records.messages.filter((m) => m.status === 200).length;
		assert.equal(standin.records.messages.length, ok, 'the denied request was not forwarded');
	});

	await t.test('vouch explain shows the identity and no binding', async () => {
		const e = await runVouch(['explain', String(process.pid)], { adminSocket: vouchd.adminSocket });
		assert.equal(e.code, 0, e.stderr);
		assert.ok(e.stdout.includes(spiffeId('demo/node')), e.stdout);
	});
});
