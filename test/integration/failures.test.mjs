// Failure handling: token-endpoint faults give the workload a 502/503 in Anthropic's error
// shape naming the cause (never the assertion or a token), and recovery after the fault
// clears; malformed HTTP is a 400 with the connection closed and nothing forwarded; a
// workload bound to a broken source does not disturb another workload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	startStack, request, rawExchange, waitFor, runCurl, runSdkClient, yamlDocs, sourceResource, workloadResource,
	bindingResource, MESSAGE_BODY, CURL, spiffeId, NODE, isRoot,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };

function assertNoSecrets(text, secrets, where) {
	for (const sec of secrets) {
		assert.ok(!text.includes(sec), `${where} contains a token or assertion`);
		const sig = sec.split('.')[2];
		if (sig) assert.ok(!text.includes(sig), `${where} contains an assertion signature`);
	}
}

for (const mode of ['down', '500', '401', 'garbage', 'oversize']) {
	test(`failures: token endpoint fault "${mode}" → 502/503 naming the cause, then recovery`, async (t) => {
		const { standin, vouchd } = await startStack(t);
		standin.setFault('token', mode);
		const ask = () => request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY, timeoutMs: 40000 });
		const r = await ask();
		assert.ok([502, 503].includes(r.status), `status ${r.status}: ${r.body}`);
		assert.equal(r.json?.type, 'error', `Anthropic error shape: ${r.body}`);
		assert.equal(typeof r.json.error?.type, 'string');
		assert.match(r.json.error.message, /exchange|token endpoint|credential/i, 'the message names the cause');
		assert.ok(standin.records.exchanges.length >= 1, 'an exchange was attempted');
		assert.equal(standin.records.messages.length, 0, 'nothing was forwarded without a credential');
		assertNoSecrets(r.body, standin.secrets(), 'the error body');
		assertNoSecrets(JSON.stringify(vouchd.audit()), standin.secrets(), 'the audit log');
		assert.ok(vouchd.audit().some((a) => (a.event === 'error' || a.event === 'deny' || a.event === 'exchange') && a.reason),
			'the failure is audited with a reason');

		standin.clearFaults();
		let last;
		await waitFor(async () => (last = await ask()).status === 200,
			{ timeoutMs: 20000, intervalMs: 250, what: `recovery after clearing "${mode}" (last: ${last?.status} ${last?.body})` });
		const m = standin.records.messages.at(-1);
		assert.equal(m.sub, spiffeId('demo/node'));
	});
}

test('failures: malformed HTTP → 400 and the connection closed, nothing forwarded', async (t) => {
	const { standin, vouchd } = await startStack(t);
	const body = JSON.stringify(MESSAGE_BODY);
	const head = 'POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n';
	const cases = {
		'Content-Length with Transfer-Encoding': `${head}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
		'two different Content-Lengths': `${head}Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n\r\n${body}`,
		'obs-fold': `${head}X-Folded: a\r\n  b\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
		'bare LF': `POST /v1/messages HTTP/1.1\nHost: 127.0.0.1\nContent-Length: ${body.length}\n\n${body}`,
		'space before colon': `${head}Content-Length : ${body.length}\r\n\r\n${body}`,
		'non-numeric Content-Length': `${head}Content-Length: 1e3\r\n\r\n${body}`,
		'negative Content-Length': `${head}Content-Length: -1\r\n\r\n${body}`,
		'garbage request line': 'GARBAGE\r\n\r\n',
		'bad chunk size': `${head}Transfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
	};
	for (const [name, bytes] of Object.entries(cases)) {
		await t.test(name, async () => {
			const before = standin.records.messages.length;
			const r = await rawExchange(vouchd.plainPort, bytes);
			assert.match(r.text, /^HTTP\/1\.1 400 /, `response: ${JSON.stringify(r.text.slice(0, 200))}`);
			assert.ok(r.closedByPeer, 'vouchd closed the connection');
			// bad chunk framing that arrives with the head is refused before the head is sent
			assert.equal(standin.records.messages.length, before, 'nothing reached the upstream');
		});
	}
	await t.test('an oversized header block is refused', async () => {
		const r = await rawExchange(vouchd.plainPort, `${head}X-Big: ${'a'.repeat(256 * 1024)}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
		assert.match(r.text, /^HTTP\/1\.1 (400|431) /, JSON.stringify(r.text.slice(0, 200)));
		assert.ok(r.closedByPeer);
	});
	await t.test('a well-formed request still works afterwards', async () => {
		const r = await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		assert.equal(r.status, 200, r.body);
	});
});

test('failures: a workload bound to a broken source does not disturb another', async (t) => {
	assert.ok(CURL, 'curl is installed');
	const { standin, vouchd } = await startStack(t, {
		resources: (standin) => ({
			// Points at the stand-in too, with a rule id it does not know.
			'source-broken.yaml': yamlDocs(sourceResource({ name: 'broken', standinPort: standin.port, ruleId: 'fdrl_01UnknownRule' })),
			'curl.yaml': yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })),
			'binding-curl.yaml': yamlDocs(bindingResource({ name: 'curl', workloadID: 'demo/curl', source: 'broken' })),
		}),
	});

	const curlOnce = () => runCurl([`${vouchd.plainUrl}/v1/messages`, '-H', 'anthropic-version: 2023-06-01', '-H', 'content-type: application/json',
		'--data-binary', JSON.stringify(MESSAGE_BODY), '-w', '\n%{http_code}'], { env: { PATH: process.env.PATH } });
	const curlLoop = (async () => {
		const out = [];
		for (let i = 0; i < 5; i++) out.push(await curlOnce());
		return out;
	})();
	const [curls, sdk] = await Promise.all([curlLoop, runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }], { repeat: 3, maxRetries: 0 })]);

	assert.equal(sdk.code, 0, `the healthy workload kept working: ${sdk.stdout}\n${sdk.stderr}`);
	assert.equal(sdk.results.length, 6);
	for (const c of curls) {
		const status = Number(c.stdout.trimEnd().split('\n').pop());
		assert.ok([502, 503].includes(status), `broken workload gets 502/503, got ${status}: ${c.stdout}`);
	}
	const brokenEx = standin.records.exchanges.filter((e) => e.rule === 'fdrl_01UnknownRule');
	assert.ok(brokenEx.length >= 1 && brokenEx.every((e) => e.reason === 'unknown_rule'));
	const nodeMsgs = standin.records.messages.filter((m) => m.sub === spiffeId('demo/node'));
	assert.equal(nodeMsgs.length, 6);
	assert.ok(nodeMsgs.every((m) => m.status === 200));
	assert.ok(standin.records.messages.every((m) => m.sub !== spiffeId('demo/curl')), 'the broken workload reached nothing');
});

test('failures: two Node workloads told apart by uid; the one on a broken source does not disturb the other', async (t) => {
	if (!isRoot) {
		t.skip('needs root: runs a workload as uid 65534');
		return;
	}
	const { standin, vouchd } = await startStack(t, {
		nodeSelectors: [{ 'process:binary:path': NODE, 'process:uid': 0 }],
		resources: (standin) => ({
			'source-broken.yaml': yamlDocs(sourceResource({ name: 'broken', standinPort: standin.port, ruleId: 'fdrl_01UnknownRule' })),
			'nobody.yaml': yamlDocs(workloadResource({ name: 'nobody', workloadID: 'demo/nobody', selectors: [{ 'process:binary:path': NODE, 'process:uid': 65534 }] })),
			'binding-nobody.yaml': yamlDocs(bindingResource({ name: 'nobody', workloadID: 'demo/nobody', source: 'broken' })),
		}),
	});
	const [bad, good] = await Promise.all([
		runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { uid: 65534, gid: 65534, repeat: 3, maxRetries: 0 }),
		runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }], { repeat: 3, maxRetries: 0 }),
	]);
	assert.equal(good.code, 0, `the healthy workload kept working: ${good.stdout}\n${good.stderr}`);
	assert.equal(good.results.length, 6);
	assert.equal(bad.results.length, 3, `${bad.stdout}\n${bad.stderr}`);
	for (const x of bad.results) {
		assert.equal(x.ok, false);
		assert.ok([502, 503].includes(x.status), `uid 65534 gets 502/503: ${JSON.stringify(x)}`);
		assert.match(x.error?.error?.message ?? '', /exchange/i);
	}
	const brokenEx = standin.records.exchanges.filter((e) => e.rule === 'fdrl_01UnknownRule');
	assert.ok(brokenEx.length >= 1 && brokenEx.every((e) => e.reason === 'unknown_rule'));
	assert.ok(brokenEx.every((e) => e.sub === undefined || e.sub === spiffeId('demo/nobody')));
	assert.equal(standin.records.messages.length, 6);
	assert.ok(standin.records.messages.every((m) => m.sub === spiffeId('demo/node') && m.status === 200));
	const denied = await vouchd.auditUntil((a) => a.workload === spiffeId('demo/nobody') && a.pid === bad.pid);
	assert.ok(denied.length >= 1, 'the failures are audited under the uid-65534 identity and its pid');
});
