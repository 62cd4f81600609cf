// Claude usage accounting (issue 7.6): the official SDK, non-streaming and streaming, through
// vouchd. Every injected Messages request's audit line carries the model and the exact token
// counts the stand-in reported (input, output, cache creation, cache read); vouchd keeps
// totals per workload and model (`vouch usage`, `vouch stats`, `vouch status`); and reading
// the counts does not buffer a stream: the first event reaches the client while the
// stand-in still holds the stream open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	startStack, runSdkClient, runVouch, spawnLines, spiffeId, yamlDocs, workloadResource,
	bindingResource, isRoot, NODE, SDK_CLIENT, REPO, waitFor, freePort, request,
} from './lib.mjs';

const MODEL = 'claude-standin-1';
const NODE_ID = spiffeId('demo/node');
const NOBODY_ID = spiffeId('demo/nobody');

// The stand-in's 200 Messages records of one workload, in order.
const served = (standin, sub) => standin.records.messages.filter((m) => m.sub === sub && m.status === 200);
const injects = (vouchd, sub) => vouchd.audit().filter((a) => a.event === 'inject' && a.workload === sub);

// The audit line of each of the workload's requests carries what the stand-in reported.
function assertAuditMatches(vouchd, standin, sub) {
	const recs = served(standin, sub), lines = injects(vouchd, sub);
	assert.equal(lines.length, recs.length, `one inject line per request: ${JSON.stringify(lines)}`);
	recs.forEach((m, i) => {
		const a = lines[i];
		assert.equal(a.path, '/v1/messages');
		assert.equal(a.status, 200);
		assert.equal(a.model, m.model, `line ${i}: model`);
		assert.equal(a.input_tokens, m.usage.input_tokens, `line ${i} (${m.stream ? 'stream' : 'json'}): input_tokens`);
		assert.equal(a.output_tokens, m.usage.output_tokens, `line ${i} (${m.stream ? 'stream' : 'json'}): output_tokens`);
		assert.equal(a.cache_creation_input_tokens, m.usage.cache_creation_input_tokens, `line ${i}: cache creation`);
		assert.equal(a.cache_read_input_tokens, m.usage.cache_read_input_tokens, `line ${i}: cache read`);
		assert.equal(a.usage, undefined, `line ${i}: complete (no "usage" marker)`);
	});
	return recs;
}

const sum = (recs, k) => recs.reduce((s, m) => s + m.usage[k], 0);

function assertRow(row, recs, what) {
	assert.ok(row, `${what}: a usage row`);
	assert.equal(row.model, MODEL);
	assert.equal(row.requests, recs.length, `${what}: requests`);
	for (const k of ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'])
		assert.equal(row[k], sum(recs, k), `${what}: ${k}`);
	assert.equal(row.incomplete, 0);
	assert.match(row.last_use, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
}

test('usage: exact counts in audit, totals per workload over the admin socket', async (t) => {
	const metricsPort = await freePort();
	const { standin, vouchd } = await startStack(t, {
		config: { metrics: { listen: `127.0.0.1:${metricsPort}` } },
		standin: { streamDelayMs: 10, streamChunks: 6, cacheCreationInputTokens: 7, cacheReadInputTokens: 11 },
		nodeSelectors: [{ 'process:binary:path': NODE, 'process:uid': 0 }],
		resources: isRoot ? {
			'nobody.yaml': yamlDocs(workloadResource({ name: 'nobody', workloadID: 'demo/nobody', selectors: [{ 'process:binary:path': NODE, 'process:uid': 65534 }] })),
			'binding-nobody.yaml': yamlDocs(bindingResource({ name: 'nobody', workloadID: 'demo/nobody' })),
		} : {},
	});
	const plan = [
		{ op: 'create', content: 'a short one' },
		{ op: 'stream', content: 'a streamed request with a somewhat longer prompt than the first' },
		{ op: 'create', content: 'x'.repeat(900) },
		{ op: 'stream', content: 'and one more' },
	];
	// chunked JSON and SSE (the stand-in's default framing) ...
	const r1 = await runSdkClient(vouchd.plainUrl, plan, { maxRetries: 0 });
	assert.equal(r1.code, 0, `client failed:\n${r1.stdout}\n${r1.stderr}\n--- vouchd ---\n${vouchd.stderr().slice(-3000)}`);
	// ... then Content-Length JSON on a keep-alive connection (the event loop's fast path)
	standin.configure({ jsonFraming: 'length', cacheReadInputTokens: 0 });
	const r2 = await runSdkClient(vouchd.plainUrl, [{ op: 'create', content: 'length framed' }], { repeat: 3, maxRetries: 0 });
	assert.equal(r2.code, 0, `client failed:\n${r2.stdout}\n${r2.stderr}`);
	let r3 = null;
	if (isRoot) {
		r3 = await runSdkClient(vouchd.plainUrl, [{ op: 'stream', content: 'nobody streams' }, { op: 'create', content: 'nobody asks' }], { uid: 65534, gid: 65534, maxRetries: 0 });
		assert.equal(r3.code, 0, `uid 65534 client failed:\n${r3.stdout}\n${r3.stderr}`);
	}
	const nNode = plan.length + 3;
	await vouchd.auditUntil((a) => a.event === 'inject' && a.workload === NODE_ID, nNode);

	await t.test('the SDK and the stand-in agree on usage (the stand-in speaks the documented format)', () => {
		const results = [...r1.results, ...r2.results];
		const recs = served(standin, NODE_ID);
		assert.equal(recs.length, nNode);
		results.forEach((x, i) => {
			assert.equal(x.ok, true);
			assert.equal(x.model, MODEL);
			assert.deepEqual(x.usage, recs[i].usage, `op ${i} (${x.op}): the SDK's final usage is the stand-in's`);
		});
		assert.ok(recs.some((m) => m.stream) && recs.some((m) => !m.stream));
		assert.ok(new Set(recs.map((m) => m.usage.input_tokens)).size >= 3, 'the counts differ between requests');
	});

	await t.test('every inject line carries the model and the exact counts', () => {
		assertAuditMatches(vouchd, standin, NODE_ID);
		if (isRoot) assertAuditMatches(vouchd, standin, NOBODY_ID);
	});

	await t.test('vouch usage -o json: totals per workload and model', async () => {
		if (isRoot) await vouchd.auditUntil((a) => a.event === 'inject' && a.workload === NOBODY_ID, 2);
		const u = await runVouch(['usage', '-o', 'json'], { adminSocket: vouchd.adminSocket });
		assert.equal(u.code, 0, u.stderr);
		const j = JSON.parse(u.stdout);
		assertRow(j.usage.find((x) => x.workload === NODE_ID), served(standin, NODE_ID), 'demo/node');
		if (isRoot) assertRow(j.usage.find((x) => x.workload === NOBODY_ID), served(standin, NOBODY_ID), 'demo/nobody');
		assert.equal(j.usage.length, isRoot ? 2 : 1, JSON.stringify(j.usage));
		const all = standin.records.messages.filter((m) => m.status === 200);
		assert.equal(j.totals.requests, all.length);
		assert.equal(j.totals.output_tokens, sum(all, 'output_tokens'));

		const one = await runVouch(['usage', 'demo/node', '-o', 'json'], { adminSocket: vouchd.adminSocket });
		assert.deepEqual(JSON.parse(one.stdout).usage.map((x) => x.workload), [NODE_ID]);

		const text = await runVouch(['usage'], { adminSocket: vouchd.adminSocket });
		assert.equal(text.code, 0);
		const line = text.stdout.split('\n').find((l) => l.startsWith(NODE_ID));
		assert.ok(line, text.stdout);
		const recs = served(standin, NODE_ID);
		assert.deepEqual(line.split(/\s+/).slice(1, 7).map(String), [MODEL, String(recs.length), String(sum(recs, 'input_tokens')),
			String(sum(recs, 'output_tokens')), String(sum(recs, 'cache_creation_input_tokens')), String(sum(recs, 'cache_read_input_tokens'))]);
	});

	await t.test('vouch stats and vouch status show the usage', async () => {
		const s = JSON.parse((await runVouch(['stats'], { adminSocket: vouchd.adminSocket })).stdout);
		const all = standin.records.messages.filter((m) => m.status === 200);
		assert.equal(s.usage.requests, all.length);
		assert.equal(s.usage.input_tokens, sum(all, 'input_tokens'));
		const st = JSON.parse((await runVouch(['status', '-o', 'json'], { adminSocket: vouchd.adminSocket })).stdout);
		const row = st.usage.find((x) => x.workload === NODE_ID);
		assertRow(row, served(standin, NODE_ID), 'status');
	});

	await t.test('metrics: vouch_claude_tokens_total per workload, model and kind', async () => {
		const text = (await request(`http://127.0.0.1:${metricsPort}/metrics`)).body;
		const recs = served(standin, NODE_ID);
		for (const [kind, field] of [['input', 'input_tokens'], ['output', 'output_tokens'],
			['cache_creation_input', 'cache_creation_input_tokens'], ['cache_read_input', 'cache_read_input_tokens']]) {
			const line = `vouch_claude_tokens_total{workload="${NODE_ID}",model="${MODEL}",kind="${kind}"} ${sum(recs, field)}`;
			assert.ok(text.split('\n').includes(line), `${line}\nin\n${text.split('\n').filter((l) => l.startsWith('vouch_claude')).join('\n')}`);
		}
	});

	await t.test('an upstream error is audited without usage and not counted', async () => {
		standin.setFault('messages', '500');
		const r = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { maxRetries: 0 });
		standin.clearFaults();
		assert.equal(r.results[0].status, 500);
		const lines = await vouchd.auditUntil((a) => a.event === 'inject' && a.status === 500);
		assert.equal(lines.length, 1);
		assert.equal(lines[0].model, undefined);
		assert.equal(lines[0].input_tokens, undefined);
		assert.equal(lines[0].usage, undefined);
		const j = JSON.parse((await runVouch(['usage', 'demo/node', '-o', 'json'], { adminSocket: vouchd.adminSocket })).stdout);
		assert.equal(j.usage[0].requests, nNode);
	});
});

test('usage: a stream is relayed as it comes while its usage is read', async (t) => {
	const { standin, vouchd } = await startStack(t, {
		standin: { streamDelayMs: 0, holdAfterStart: true, cacheCreationInputTokens: 3, cacheReadInputTokens: 5 },
	});
	const c = spawnLines(t, NODE, [SDK_CLIENT, JSON.stringify({ plan: [{ op: 'stream', content: 'hold after start', reportFirstEvent: true }], maxRetries: 0 })], {
		cwd: REPO,
		env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp', ANTHROPIC_API_KEY: 'vouch-managed', ANTHROPIC_BASE_URL: vouchd.plainUrl },
	});
	// Generous: the first request also runs the token exchange.
	const first = await c.next(30000);
	assert.equal(first.op, 'first_event', JSON.stringify(first));
	assert.equal(first.type, 'message_start');
	const rec = standin.records.messages.at(-1);
	assert.equal(rec.held, true);
	assert.equal(rec.released, undefined, 'the client had message_start while the stand-in still held the stream open');
	assert.deepEqual(rec.events.map((e) => e.name), ['message_start']);
	assert.equal(injects(vouchd, NODE_ID).length, 0, 'no inject line before the stream ends');

	standin.releaseStreams();
	const done = await c.next(30000);
	assert.equal(done.ok, true, JSON.stringify(done));
	assert.equal(done.events.at(-1), 'message_stop');
	await waitFor(() => injects(vouchd, NODE_ID).length === 1, { timeoutMs: 10000, what: 'the inject line' });
	assertAuditMatches(vouchd, standin, NODE_ID);
	assert.ok(rec.usage.cache_creation_input_tokens === 3 && rec.usage.cache_read_input_tokens === 5);
});
