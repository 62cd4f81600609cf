// Secrets stay in memory: after a run with successes, denials, an upstream 401 and a failed
// exchange, no access token and no assertion the stand-in saw or minted appears in vouchd's
// output, the audit log, any file under vouchd's directories, the CLI's output, or any error
// body returned to a workload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	startStack, request, runSdkClient, runCurl, runVouch, filesUnder, MESSAGE_BODY, CURL, waitFor,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };

// A secret and its distinctive parts (the random tail of a token; each JWT segment but the
// header, which is not secret).
function needles(secrets) {
	const out = new Set();
	for (const s of secrets) {
		out.add(s);
		if (s.startsWith('sk-ant-')) out.add(s.slice(-24));
		const parts = s.split('.');
		if (parts.length === 3) {
			out.add(parts[1]);
			out.add(parts[2]);
		}
	}
	return [...out].filter((n) => n.length >= 16);
}

test('secrets: tokens and assertions never leave vouchd memory', async (t) => {
	const { standin, vouchd, dir } = await startStack(t, { standin: { expiresIn: 5 } });
	const bodies = [];

	// Successes through the SDK (create + stream), long enough for a background refresh.
	const sdk = await runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }], { repeat: 3, intervalMs: 700, maxRetries: 0 });
	assert.equal(sdk.code, 0, `${sdk.stdout}\n${sdk.stderr}`);
	bodies.push(sdk.stdout, sdk.stderr);

	// An upstream 401 on the messages endpoint (vouchd should invalidate and re-exchange).
	standin.setFault('messages', '401');
	bodies.push((await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY })).body);
	standin.clearFaults();

	// A failed exchange: the token endpoint rejects, the workload gets an error.
	standin.setFault('token', '401');
	await waitFor(async () => {
		const r = await request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
		bodies.push(r.body);
		return standin.records.exchanges.some((e) => e.fault === '401');
	}, { timeoutMs: 15000, intervalMs: 500, what: 'an exchange during the 401 fault' });
	standin.clearFaults();

	// A denial (curl has no identity).
	if (CURL) {
		const c = await runCurl([`${vouchd.plainUrl}/v1/messages`, '-H', 'content-type: application/json', '--data-binary', JSON.stringify(MESSAGE_BODY)], { env: { PATH: process.env.PATH } });
		bodies.push(c.stdout, c.stderr);
	}

	// CLI output.
	for (const args of [['stats'], ['explain', String(process.pid)], ['explain', String(sdk.pid)]]) {
		const r = await runVouch(args, { adminSocket: vouchd.adminSocket });
		bodies.push(r.stdout, r.stderr);
	}

	await vouchd.stop();
	const secrets = standin.secrets();
	assert.ok(standin.records.tokens.length >= 2, 'several tokens were minted');
	assert.ok(secrets.length >= 4);
	const hay = [
		['vouchd stdout/stderr', vouchd.stderr()],
		['audit log', JSON.stringify(vouchd.audit())],
		['workload-visible bodies and CLI output', bodies.join('\n')],
	];
	for (const [p, buf] of filesUnder(dir)) {
		if (p.startsWith(`${dir}/certs/`)) continue; // the stand-in's own TLS material
		hay.push([p, buf.toString('latin1')]);
	}
	for (const n of needles(secrets))
		for (const [where, text] of hay) assert.ok(!text.includes(n), `a secret (${n.slice(0, 6)}…) appears in ${where}`);

	// Fingerprints are there instead.
	assert.ok(vouchd.audit().some((a) => a.token_fp), 'audit carries token fingerprints');
});
