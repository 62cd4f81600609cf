// Background refresh: with 4-second access tokens, steady traffic for ~15 s sees no failure;
// the broker re-exchanges ahead of expiry with a fresh JWT (new jti) each time, and only the
// very first exchange happens on the request path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, runSdkClient, runVouch } from './lib.mjs';

test('refresh: short-lived tokens are renewed in the background', async (t) => {
	const { standin, vouchd } = await startStack(t, { standin: { expiresIn: 4 } });
	// One SDK process, a request every 200 ms for 15 s, no SDK retries (a failure shows).
	const traffic = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }], { durationMs: 15000, intervalMs: 200, maxRetries: 0, timeoutMs: 60000 });
	const failures = traffic.results.filter((x) => !x.ok);
	assert.equal(failures.length, 0, `failed requests: ${JSON.stringify(failures.slice(0, 3))}\n${traffic.stderr}\n--- vouchd ---\n${vouchd.stderr().slice(-3000)}`);
	assert.ok(traffic.results.length >= 30, `${traffic.results.length} requests made`);

	const ok = standin.records.exchanges.filter((e) => e.result === 'ok');
	const bad = standin.records.exchanges.filter((e) => e.result !== 'ok');
	assert.deepEqual(bad.map((e) => e.reason), [], 'no exchange was rejected');
	assert.ok(ok.length >= 3, `${ok.length} exchanges in ~15 s with 4 s tokens`);
	const jtis = ok.map((e) => e.jti);
	assert.ok(jtis.every(Boolean), 'every assertion has a jti');
	assert.equal(new Set(jtis).size, jtis.length, 'every exchange used a distinct jti');
	assert.equal(standin.records.messages.length, traffic.results.length, 'one upstream request per client request');
	assert.ok(standin.records.messages.every((m) => m.status === 200), 'no upstream request failed (no expired token used)');

	const s = await runVouch(['stats'], { adminSocket: vouchd.adminSocket });
	assert.equal(s.code, 0, s.stderr);
	const stats = JSON.parse(s.stdout);
	assert.equal(stats.broker.request_path_exchanges, 1, s.stdout);
	assert.ok(stats.broker.exchanges >= ok.length, s.stdout); // read after the records: refreshes may continue
	assert.equal(stats.broker.exchange_failures, 0, s.stdout);
});
