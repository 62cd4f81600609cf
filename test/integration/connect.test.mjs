// The HTTPS proxy listener: curl with -x (CONNECT), TLS terminated with a leaf from the
// interception CA, credential injected; CONNECT to anything that is not a Service is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import {
	startStack, runCurl, CURL, spiffeId, yamlDocs, workloadResource, bindingResource, freePort, rawExchange,
} from './lib.mjs';

const BODY = JSON.stringify({ model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: 'via connect' }] });

test('connect: curl through the HTTPS proxy gets its credential injected', async (t) => {
	assert.ok(CURL, 'curl is installed');
	const st = await startStack(t, {
		resources: {
			'curl.yaml': yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })),
			'binding-curl.yaml': yamlDocs(bindingResource({ name: 'curl', workloadID: 'demo/curl' })),
		},
	});
	const { standin, vouchd } = st;
	const ca = join(vouchd.stateDir, 'intercept-ca.crt');
	assert.ok(existsSync(ca), `interception CA at ${ca}`);
	const env = { PATH: process.env.PATH }; // no proxy variables from the outside

	await t.test('a request for the Service succeeds with injection', async () => {
		const r = await runCurl(['-x', vouchd.proxyUrl, '--cacert', ca, `https://localhost:${standin.port}/v1/messages`,
			'-H', 'x-api-key: sk-placeholder', '-H', 'anthropic-version: 2023-06-01', '-H', 'content-type: application/json',
			'--data-binary', BODY, '-w', '\n%{http_code}'], { env });
		const lines = r.stdout.trimEnd().split('\n');
		const status = lines.pop();
		assert.equal(r.code, 0, `curl: ${r.stderr}\n--- vouchd ---\n${vouchd.stderr().slice(-3000)}`);
		assert.equal(status, '200', lines.join('\n'));
		const body = JSON.parse(lines.join('\n'));
		assert.equal(body.type, 'message');
		assert.match(body.content[0].text, /via connect/);
		const m = standin.records.messages.at(-1);
		assert.equal(m.sub, spiffeId('demo/curl'));
		assert.equal(m.authorization.length, 1);
		assert.deepEqual(m.apiKey, []);
		assert.ok(m.beta.includes('oauth-2025-04-20'));
		const inj = await vouchd.auditUntil((a) => a.event === 'inject' && a.workload === spiffeId('demo/curl'));
		assert.equal(inj.length, 1);
		assert.equal(inj[0].pid, r.pid);
	});

	await t.test('CONNECT to a host:port that is not a Service is 403', async () => {
		const before = standin.records.messages.length;
		const other = await freePort();
		const r = await runCurl(['-x', vouchd.proxyUrl, '--cacert', ca, `https://localhost:${other}/v1/messages`,
			'-H', 'anthropic-version: 2023-06-01', '--data-binary', BODY, '-w', '%{http_connect}'], { env });
		assert.notEqual(r.code, 0, 'curl fails');
		assert.equal(r.stdout.trim(), '403', `CONNECT status; stderr: ${r.stderr}`);
		const raw = await rawExchange(vouchd.proxyPort, `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`);
		assert.match(raw.text, /^HTTP\/1\.[01] 403 /);
		assert.equal(standin.records.messages.length, before, 'nothing reached the upstream');
	});

	await t.test('the TLS session is terminated by vouchd, not spliced to the upstream', async () => {
		// The upstream's own CA does not verify the leaf the workload sees.
		const r = await runCurl(['-x', vouchd.proxyUrl, '--cacert', st.certs.caFile, `https://localhost:${standin.port}/v1/messages`,
			'-H', 'anthropic-version: 2023-06-01', '--data-binary', BODY], { env });
		assert.equal(r.code, 60, `curl exit ${r.code} (60 = peer certificate not verified): ${r.stderr}`);
	});
});
