// Metrics, /healthz and /readyz on the loopback listener (issue 7.4, docs/METRICS.md).
// Every scrape is read by a strict parser of the Prometheus text format 0.0.4 written
// here (promtool is not used: Debian's prometheus package is a 19 MB server that starts
// itself on install), and counters are checked to move by exactly the traffic sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
	startStack, request, rawExchange, runCurl, runProcess, runVouch, waitFor, yamlDocs, workloadResource,
	freePort, makeTempDir, sleep, spiffeId, CURL, VOUCHD, MESSAGE_BODY, toYaml,
} from './lib.mjs';

const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };
const NODE_ID = spiffeId('demo/node');
const CURL_ID = spiffeId('demo/curl');
const SOURCE = 'default/standin';
const SERVICE = 'anthropic-api';

// --- a strict reader of the text format ------------------------------------------------

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseLabels(s, line) {
	const labels = {};
	let i = 0;
	while (i < s.length) {
		const eq = s.indexOf('=', i);
		assert.ok(eq > i, `label name in: ${line}`);
		const name = s.slice(i, eq);
		assert.match(name, LABEL, `label name in: ${line}`);
		assert.equal(s[eq + 1], '"', `label value quoted in: ${line}`);
		let j = eq + 2, v = '';
		for (;;) {
			assert.ok(j < s.length, `unterminated label value in: ${line}`);
			const c = s[j];
			if (c === '"') break;
			if (c === '\\') {
				const e = s[j + 1];
				assert.ok(e === '\\' || e === '"' || e === 'n', `bad escape \\${e} in: ${line}`);
				v += e === 'n' ? '\n' : e;
				j += 2;
				continue;
			}
			v += c;
			j++;
		}
		assert.ok(!(name in labels), `label ${name} twice in: ${line}`);
		labels[name] = v;
		i = j + 1;
		if (i < s.length) {
			assert.equal(s[i], ',', `labels separated by commas in: ${line}`);
			i++;
		}
	}
	return labels;
}

/** Parse a whole exposition: Map family → {type, help, samples: [{name, labels, value}]}. */
function parseExposition(text) {
	assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
	const fams = new Map();
	const seen = new Set();
	let current = null;
	const famOf = (name) => {
		for (const suffix of ['_bucket', '_sum', '_count']) {
			const base = name.endsWith(suffix) ? name.slice(0, -suffix.length) : null;
			if (base && fams.get(base)?.type === 'histogram') return base;
		}
		return name;
	};
	for (const line of text.slice(0, -1).split('\n')) {
		assert.ok(!line.includes('\r'), `no CR: ${line}`);
		let m;
		if ((m = /^# HELP (\S+) (.*)$/.exec(line))) {
			assert.match(m[1], NAME);
			const f = fams.get(m[1]) ?? { samples: [] };
			assert.equal(f.help, undefined, `HELP once for ${m[1]}`);
			f.help = m[2];
			fams.set(m[1], f);
			continue;
		}
		if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
			const f = fams.get(m[1]) ?? { samples: [] };
			assert.equal(f.type, undefined, `TYPE once for ${m[1]}`);
			assert.equal(f.samples.length, 0, `TYPE before the samples of ${m[1]}`);
			f.type = m[2];
			fams.set(m[1], f);
			current = m[1];
			continue;
		}
		assert.ok(!line.startsWith('#'), `only HELP and TYPE comments: ${line}`);
		m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		assert.ok(m, `sample line: ${JSON.stringify(line)}`);
		const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
		assert.ok(m[3] === 'NaN' || !Number.isNaN(value), `numeric value: ${line}`);
		const labels = m[2] === undefined ? {} : parseLabels(m[2], line);
		const fam = famOf(m[1]);
		assert.equal(fam, current, `samples of ${fam} follow its TYPE, together: ${line}`);
		const key = m[1] + JSON.stringify(Object.entries(labels).sort());
		assert.ok(!seen.has(key), `series once: ${line}`);
		seen.add(key);
		const f = fams.get(fam);
		if (f.type === 'counter') assert.ok(value >= 0, `a counter is not negative: ${line}`);
		f.samples.push({ name: m[1], labels, value });
	}
	for (const [name, f] of fams) {
		assert.ok(f.type && f.help !== undefined, `${name} has HELP and TYPE`);
		if (f.type !== 'histogram') continue;
		const series = new Map();
		for (const s of f.samples) {
			const { le, ...rest } = s.labels;
			const k = JSON.stringify(Object.entries(rest).sort());
			const e = series.get(k) ?? { buckets: [], labels: rest };
			if (s.name === `${name}_bucket`) {
				assert.ok(le !== undefined, `${name}_bucket has le`);
				e.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
			} else if (s.name === `${name}_sum`) e.sum = s.value;
			else if (s.name === `${name}_count`) e.count = s.value;
			series.set(k, e);
		}
		for (const e of series.values()) {
			for (let i = 1; i < e.buckets.length; i++) {
				assert.ok(e.buckets[i][0] > e.buckets[i - 1][0], `${name}: le ascending`);
				assert.ok(e.buckets[i][1] >= e.buckets[i - 1][1], `${name}: buckets cumulative`);
			}
			const inf = e.buckets.at(-1);
			assert.equal(inf?.[0], Infinity, `${name}: a +Inf bucket`);
			assert.equal(inf[1], e.count, `${name}: +Inf equals _count`);
			assert.ok(e.sum >= 0, `${name}: _sum`);
		}
	}
	return fams;
}

/** The value of the series of family name with exactly these labels (0 when absent). */
function val(fams, name, labels = {}, sampleName = name) {
	const f = fams.get(name);
	assert.ok(f, `family ${name} is exposed`);
	const want = JSON.stringify(Object.entries(labels).sort());
	const s = f.samples.find((x) => x.name === sampleName && JSON.stringify(Object.entries(x.labels).sort()) === want);
	return s ? s.value : 0;
}

// --- the test ----------------------------------------------------------------------------

test('metrics: counters, histogram, TTL gauge, readiness and the listener\'s refusals', async (t) => {
	const metricsPort = await freePort();
	const { standin, vouchd } = await startStack(t, { config: { metrics: { listen: `127.0.0.1:${metricsPort}` } } });
	const base = `http://127.0.0.1:${metricsPort}`;
	const scrape = async () => {
		const r = await request(`${base}/metrics`);
		assert.equal(r.status, 200, r.body);
		assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
		return parseExposition(r.body);
	};
	const ask = () => request(`${vouchd.plainUrl}/v1/messages`, { method: 'POST', headers: HDRS, body: MESSAGE_BODY });
	const curl = () => runCurl([`${vouchd.plainUrl}/v1/messages`, '-H', 'x-api-key: vouch-managed', '-H', 'anthropic-version: 2023-06-01',
		'-H', 'content-type: application/json', '--data-binary', JSON.stringify(MESSAGE_BODY), '-o', '/dev/null', '-w', '%{http_code}'],
	{ env: { PATH: process.env.PATH } });
	const req = (o) => ({ workload: NODE_ID, source: SOURCE, service: SERVICE, ...o });

	await t.test('/healthz answers while the loop runs; /readyz is 503 before any token', async () => {
		const h = await request(`${base}/healthz`);
		assert.equal(h.status, 200);
		assert.equal(h.body, 'ok\n');
		const r = await request(`${base}/readyz`);
		assert.equal(r.status, 503, r.body);
		assert.match(r.headers['content-type'], /^text\/plain/);
		assert.ok(r.body.startsWith('not ready:\n'), r.body);
		assert.ok(r.body.includes(`${NODE_ID} source ${SOURCE}: no token yet`), r.body);
		const st = await request(`${base}/api/status`);
		assert.equal(st.status, 200, 'the dashboard\'s status is served by the same listener');
		assert.equal(st.json?.ready, false);
	});

	let m0 = await scrape();

	await t.test('a refused exchange: errors{cause="exchange"}, exchanges{result="rejected"}, /readyz names it', async () => {
		standin.setFault('token', '401');
		const r = await ask();
		assert.ok(r.status === 502 || r.status === 503, `exchange refused → ${r.status}: ${r.body}`);
		await vouchd.auditUntil((a) => a.event === 'error', 1);
		const m = await scrape();
		assert.equal(val(m, 'vouch_errors_total', { cause: 'exchange' }) - val(m0, 'vouch_errors_total', { cause: 'exchange' }), 1);
		assert.equal(val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'rejected' }), 1);
		assert.equal(val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'ok' }), 0);
		assert.equal(val(m, 'vouch_exchange_duration_seconds', { source: SOURCE }, 'vouch_exchange_duration_seconds_count'), 1,
			'the refused exchange is timed too');
		assert.equal(val(m, 'vouch_requests_total', req({ outcome: 'injected' })), 0, 'nothing injected');
		const rz = await request(`${base}/readyz`);
		assert.equal(rz.status, 503);
		assert.ok(rz.body.includes(`${NODE_ID} source ${SOURCE}: the last token exchange failed`), rz.body);
		m0 = m;
	});

	await t.test('after the fault: requests until one succeeds; every failure is an exchange error', async () => {
		standin.clearFaults();
		let failed = 0;
		// the broker backs off after a failure (1 s): requests in that window fail at once
		await waitFor(async () => {
			const r = await ask();
			if (r.status !== 200) failed++;
			return r.status === 200;
		}, { timeoutMs: 15000, intervalMs: 300, what: 'a request to succeed after the fault' });
		await vouchd.auditUntil((a) => a.event === 'inject', 1);
		const m = await scrape();
		assert.equal(val(m, 'vouch_errors_total', { cause: 'exchange' }) - val(m0, 'vouch_errors_total', { cause: 'exchange' }), failed);
		assert.equal(val(m, 'vouch_requests_total', req({ outcome: 'injected' })), 1);
		assert.equal(val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'ok' }), 1);
		m0 = m;
	});

	await t.test('/readyz is 200 once the bound source is warm', async () => {
		const r = await request(`${base}/readyz`);
		assert.equal(r.status, 200, r.body);
		assert.equal(r.body, 'ready\n');
		assert.equal((await request(`${base}/api/status`)).json?.ready, true);
	});

	await t.test('three injected requests move the counters by exactly three', async () => {
		const exchangesBefore = standin.records.exchanges.length;
		for (let i = 0; i < 3; i++) {
			const r = await ask();
			assert.equal(r.status, 200, r.body);
		}
		await vouchd.auditUntil((a) => a.event === 'inject', 4);
		const m = await scrape();
		const d = (name, labels, sample) => val(m, name, labels, sample) - val(m0, name, labels, sample);
		assert.equal(d('vouch_requests_total', req({ outcome: 'injected' })), 3);
		assert.equal(d('vouch_requests_total', req({ outcome: 'denied' })), 0);
		assert.equal(d('vouch_connections_total', { listener: `127.0.0.1:${vouchd.plainPort}` }), 3, 'one connection per request');
		assert.equal(standin.records.exchanges.length, exchangesBefore, 'no exchange needed');
		assert.equal(d('vouch_exchanges_total', { source: SOURCE, result: 'ok' }), 0);
		assert.equal(d('vouch_token_cache_misses_total'), 0);
		assert.ok(d('vouch_token_cache_hits_total') >= 3, 'the token came from the cache');
		assert.ok(d('vouch_upstream_reuse_total') >= 1, 'pooled upstream connections were reused');
		// the exchange histogram holds every exchange the stand-in saw, ok or refused
		const exchanges = val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'ok' }) +
			val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'rejected' }) +
			val(m, 'vouch_exchanges_total', { source: SOURCE, result: 'error' });
		assert.equal(exchanges, standin.records.exchanges.length);
		assert.equal(val(m, 'vouch_exchange_duration_seconds', { source: SOURCE }, 'vouch_exchange_duration_seconds_count'), exchanges);
		// the audit log says the same
		const injects = vouchd.audit().filter((a) => a.event === 'inject');
		assert.equal(injects.length, val(m, 'vouch_requests_total', req({ outcome: 'injected' })));
		assert.ok(injects.every((a) => a.service === SERVICE), 'inject lines name the Service');
		const ex = vouchd.audit().filter((a) => a.event === 'exchange');
		assert.ok(ex.length && ex.every((a) => Number.isInteger(a.elapsed_us) && a.elapsed_us > 0), 'exchange lines carry elapsed_us');
		assert.ok(val(m, 'process_resident_memory_bytes') > 0 && val(m, 'process_open_fds') > 0);
		const start = val(m, 'process_start_time_seconds');
		assert.ok(start > Date.now() / 1000 - 3600 && start <= Date.now() / 1000 + 1, `process start time ${start}`);
		m0 = m;
	});

	await t.test('the TTL gauge is positive and decreasing', async () => {
		const ttl1 = val(m0, 'vouch_token_ttl_seconds', { workload: NODE_ID, source: SOURCE });
		assert.ok(ttl1 > 0 && ttl1 <= 600, `TTL ${ttl1} (the stand-in's tokens live 600 s)`);
		await sleep(2100);
		const ttl2 = val(await scrape(), 'vouch_token_ttl_seconds', { workload: NODE_ID, source: SOURCE });
		assert.ok(ttl2 > 0 && ttl2 < ttl1, `TTL went from ${ttl1} to ${ttl2}`);
	});

	await t.test('denials by reason: no WorkloadIdentity, then no binding', { skip: CURL ? false : 'no curl' }, async () => {
		for (let i = 0; i < 2; i++) assert.equal((await curl()).stdout, '403');
		await vouchd.auditUntil((a) => a.event === 'deny', 2);
		let m = await scrape();
		assert.equal(val(m, 'vouch_denials_total', { workload: '_none', reason: 'no_workload' }) -
			val(m0, 'vouch_denials_total', { workload: '_none', reason: 'no_workload' }), 2);
		assert.equal(val(m, 'vouch_requests_total', { workload: '_none', source: '_none', service: SERVICE, outcome: 'denied' }) -
			val(m0, 'vouch_requests_total', { workload: '_none', source: '_none', service: SERVICE, outcome: 'denied' }), 2);

		vouchd.writeResource('curl.yaml', yamlDocs(workloadResource({ name: 'curl', workloadID: 'demo/curl', selectors: [{ 'process:binary:path': CURL }] })));
		await waitFor(async () => {
			await curl();
			return vouchd.audit().some((a) => a.event === 'deny' && a.workload === CURL_ID);
		}, { timeoutMs: 10000, intervalMs: 200, what: 'a denial naming demo/curl' });
		const noWorkload = vouchd.audit().filter((a) => a.event === 'deny' && !a.workload).length;
		const noBinding = vouchd.audit().filter((a) => a.event === 'deny' && a.workload === CURL_ID).length;
		m = await scrape();
		assert.equal(val(m, 'vouch_denials_total', { workload: CURL_ID, reason: 'no_binding' }), noBinding);
		assert.equal(val(m, 'vouch_denials_total', { workload: '_none', reason: 'no_workload' }), noWorkload);
		assert.equal(val(m, 'vouch_requests_total', { workload: CURL_ID, source: '_none', service: SERVICE, outcome: 'denied' }), noBinding);
		m0 = m;
	});

	await t.test('a revoked workload\'s requests are denials with reason "revoked"', async () => {
		const r = await runVouch(['revoke', 'demo/node'], { adminSocket: vouchd.adminSocket });
		assert.equal(r.code, 0, r.stderr);
		const a = await ask();
		assert.equal(a.status, 403, a.body);
		await vouchd.auditUntil((x) => x.event === 'deny' && x.workload === NODE_ID, 1);
		const m = await scrape();
		assert.equal(val(m, 'vouch_denials_total', { workload: NODE_ID, reason: 'revoked' }), 1,
			JSON.stringify(vouchd.audit().filter((x) => x.event === 'deny').slice(-2)) + '\n' +
			m.get('vouch_denials_total').samples.map((x) => JSON.stringify(x)).join('\n'));
		// refused before a binding (and so a source) was chosen
		const denied = req({ source: '_none', outcome: 'denied' });
		assert.equal(val(m, 'vouch_requests_total', denied) - val(m0, 'vouch_requests_total', denied), 1);
		assert.equal(val(m, 'vouch_requests_total', req({ outcome: 'injected' })), val(m0, 'vouch_requests_total', req({ outcome: 'injected' })));
	});

	await t.test('the listener: 404, 405, 421, 400, 431 and one request per connection', async () => {
		assert.equal((await request(`${base}/nope`)).status, 404);
		assert.equal((await request(`${base}/metricsx`)).status, 404);
		const post = await request(`${base}/metrics`, { method: 'POST', body: '' });
		assert.equal(post.status, 405);
		assert.equal(post.headers.allow, 'GET');
		assert.equal((await request(`${base}/readyz`, { method: 'DELETE' })).status, 405);
		assert.equal((await request(`${base}/healthz`, { method: 'HEAD' })).status, 405);
		const q = await request(`${base}/metrics?name[]=x`);
		assert.equal(q.status, 200, 'a query string is ignored');
		const rebound = await request(`${base}/metrics`, { headers: { host: `attacker.example:${metricsPort}` } });
		assert.equal(rebound.status, 421, 'a Host that is not loopback (DNS rebinding) is refused');
		assert.ok(!rebound.body.includes('vouch_'), 'and carries no metrics');
		const bad = await rawExchange(metricsPort, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: x\r\n\r\n');
		assert.match(bad.text, /^HTTP\/1\.1 400 /);
		const big = await rawExchange(metricsPort, `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${'a'.repeat(9000)}\r\n\r\n`);
		assert.match(big.text, /^HTTP\/1\.1 431 /, 'a head over 8 KB');
		const body = await rawExchange(metricsPort, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc');
		assert.match(body.text, /^HTTP\/1\.1 400 /, 'a request with a body');
		const two = await rawExchange(metricsPort, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
		assert.equal(two.text.match(/HTTP\/1\.1 200/g)?.length, 1, 'one answer per connection');
		assert.match(two.text, /Connection: close/);
		assert.ok(two.closedByPeer, 'the listener closes the connection');
		// a client that sends half a head and stalls is dropped at the deadline; meanwhile
		// the listener keeps serving others
		const stall = rawExchange(metricsPort, 'GET /metrics HTTP/1.1\r\n', { timeoutMs: 20000 });
		assert.equal((await request(`${base}/healthz`)).status, 200);
		const s = await stall;
		assert.ok(s.closedByPeer, 'a stalled client is closed by the listener');
		assert.equal(s.text, '');
	});

	await t.test('/healthz and /metrics still answer after all of it', async () => {
		assert.equal((await request(`${base}/healthz`)).status, 200);
		await scrape();
	});
});

test('metrics: a non-loopback listen address is refused at config load', async (t) => {
	const dir = makeTempDir(t, 'vouch-metrics-conf-');
	mkdirSync(join(dir, 'res'));
	const check = async (metrics) => {
		const file = join(dir, 'vouchd.yaml');
		writeFileSync(file, toYaml({ stateDir: join(dir, 'state'), resourcesDir: join(dir, 'res'), metrics }) + '\n');
		return runProcess(VOUCHD, ['-t', '-c', file], { timeoutMs: 10000 });
	};
	for (const listen of ['0.0.0.0:9464', '[::]:9464', '10.1.2.3:9464', '[::ffff:192.168.0.1]:9464']) {
		const r = await check({ listen });
		assert.equal(r.code, 1, `${listen} refused`);
		assert.match(r.stderr, /metrics\.listen: .* is not a loopback address/, r.stderr);
	}
	const scalar = await check('0.0.0.0:9464');
	assert.equal(scalar.code, 1, 'the scalar form is checked the same way');
	const allowed = await check({ listen: '0.0.0.0:9464', allowNonLoopback: true });
	assert.equal(allowed.code, 0, `allowNonLoopback: true accepts it: ${allowed.stderr}`);
	const loop = await check({ listen: '127.0.0.1:9464' });
	assert.equal(loop.code, 0, loop.stderr);
	// a full start refuses too (the same loader)
	const file = join(dir, 'vouchd.yaml');
	writeFileSync(file, toYaml({ stateDir: join(dir, 'state'), resourcesDir: join(dir, 'res'), metrics: '0.0.0.0:9464' }) + '\n');
	const run = await runProcess(VOUCHD, ['-c', file], { timeoutMs: 10000 });
	assert.equal(run.code, 1);
	assert.match(run.stderr, /not a loopback address/);
});
