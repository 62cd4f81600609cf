// Fault matrix (issue 6.3), faults under load: resource reloads and SIGHUP while a load
// generator runs (no failed request except those the change means to refuse), vouchd
// restarted under load (clean errors while it is down, success after), 10k idle
// keep-alive connections, descriptor exhaustion (refusals are answered, the accept loop
// does not spin), and 60 s of steady load (RSS growth < 5 % after warm-up, no descriptor
// growth). Time-dependent steps have generous timeouts and no timing assertions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import {
	startStack, startVouchd, waitFor, sleep, yamlDocs, workloadResource, bindingResource, spiffeId,
} from './lib.mjs';
import { fdCount, rssKb, cpuTicks, oneRequest, startLoad, errorMessage } from './faultlib.mjs';

const summary = (rs) => {
	const by = {};
	for (const r of rs) {
		const k = r.ok ? 'ok' : `${r.status ?? ''}${r.error ? ` ${r.error}` : ''}`;
		by[k] = (by[k] ?? 0) + 1;
	}
	return JSON.stringify(by);
};
const failures = (rs) => rs.filter((r) => !r.ok);
const fdList = (pid) => {
	try {
		return execFileSync('sh', ['-c', `ls -l /proc/${pid}/fd | awk '{print $NF}' | sed 's/:.*//' | sort | uniq -c | tr -s ' \n' ' '`]).toString();
	} catch {
		return '?';
	}
};

// vouchd's TCP sockets to port (its pooled upstream connections to the stand-in: kept
// on purpose, bounded by the pool, closed when idle), and every TCP/unix socket it holds
// with its peer, for a diagnostic.
const upstreamSockets = (pid, port) => {
	try {
		return execFileSync('ss', ['-Htnp', 'state', 'established', 'dport', `= :${port}`]).toString()
			.split('\n').filter((l) => l.includes(`pid=${pid},`)).length;
	} catch {
		return 0;
	}
};
const socketList = (pid) => {
	try {
		return execFileSync('ss', ['-Htuxanp']).toString().split('\n').filter((l) => l.includes(`pid=${pid},`))
			.map((l) => l.replace(/\s+/g, ' ').replace(/ users:.*/, '')).join(' | ');
	} catch {
		return '?';
	}
};

test('faults/load: resource reloads and SIGHUP under load fail no request; removing the binding refuses with 403, restoring it recovers', async (t) => {
	const { vouchd } = await startStack(t, { config: { reloadIntervalMs: 100 } });
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');
	const load = startLoad(vouchd.plainUrl, { concurrency: 6, streamEvery: 4 });
	await sleep(500);
	const other = (i) => yamlDocs(workloadResource({ name: 'other', workloadID: `demo/other${i}`, selectors: [{ 'process:uid': 4242 }] }));
	for (let i = 0; i < 10; i++) {
		vouchd.writeResource('other.yaml', other(i)); // a change that concerns nobody here
		vouchd.writeResource('binding-node.yaml', yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' }))); // rewritten as is
		process.kill(vouchd.pid, 'SIGHUP');
		await sleep(250);
	}
	vouchd.writeResource('broken.yaml', 'kind: [unterminated\n'); // invalid: the last good set stays
	process.kill(vouchd.pid, 'SIGHUP');
	await sleep(1000);
	const steady = await load.stop();
	assert.ok(steady.length >= 20, `the load ran (${steady.length} requests)`);
	assert.deepEqual(failures(steady).slice(0, 3), [], `no request failed across reloads: ${summary(steady)}`);
	assert.ok(vouchd.audit().some((a) => a.event === 'reload'), 'reloads were audited');
	vouchd.removeResource('broken.yaml');

	// An intended change: the binding goes away → 403 naming the missing binding; back → 200.
	const load2 = startLoad(vouchd.plainUrl, { concurrency: 4 });
	await sleep(400);
	vouchd.removeResource('binding-node.yaml');
	process.kill(vouchd.pid, 'SIGHUP');
	await waitFor(() => load2.results.slice(-4).length === 4 && load2.results.slice(-4).every((r) => r.status === 403),
		{ timeoutMs: 15000, what: `403 after the binding was removed (${summary(load2.results)})` });
	const cut = load2.results.length;
	vouchd.writeResource('binding-node.yaml', yamlDocs(bindingResource({ name: 'node', workloadID: 'demo/node' })));
	process.kill(vouchd.pid, 'SIGHUP');
	await waitFor(() => load2.results.slice(cut).some((r) => r.ok), { timeoutMs: 15000, what: 'success after the binding came back' });
	await sleep(500);
	const changed = await load2.stop();
	for (const r of changed.filter((x) => !x.ok)) {
		assert.equal(r.status, 403, `only the intended refusal: ${summary(changed)}`);
		assert.match(errorMessage(r) ?? '', /binding|vouch explain/i, r.body);
	}
	assert.ok(changed.at(-1).ok, 'the last requests succeed again');
	assert.equal(vouchd.exited, null, 'vouchd did not crash');
});

for (const sig of ['SIGTERM', 'SIGKILL']) test(`faults/load: vouchd restarted (${sig}) under load → clean errors while it is down, success after`, async (t) => {
	const { vouchd, certs } = await startStack(t);
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');
	const load = startLoad(vouchd.plainUrl, { concurrency: 4, streamEvery: 3, timeoutMs: 15000 });
	await sleep(1000);
	if (sig === 'SIGTERM') {
		const stopped = await vouchd.stop(); // mid-load
		assert.deepEqual(stopped, { code: 0, signal: null }, 'vouchd exits cleanly on SIGTERM under load');
	} else {
		process.kill(vouchd.pid, 'SIGKILL');
		await waitFor(() => vouchd.exited, { what: 'vouchd killed' });
	}
	const downFrom = load.results.length;
	await sleep(1000);
	const again = await startVouchd(t, {
		dir: vouchd.dir, oidcPort: vouchd.oidcPort, plainPort: vouchd.plainPort, proxyPort: vouchd.proxyPort,
		upstreamCAFile: certs.caFile,
	});
	const upAt = Date.now();
	await waitFor(() => load.results.some((r) => r.t > upAt && r.ok), { timeoutMs: 20000, what: `success after the restart (${summary(load.results)})` });
	await sleep(1500);
	const all = await load.stop();
	// while vouchd was down or going down: refused or closed connections, or a JSON error
	// naming the cause; never a hang, never a non-JSON answer
	const bad = all.filter((r) => !r.ok && !(
		['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'aborted'].includes(r.error) ||
		(r.status >= 500 && errorMessage(r))));
	assert.deepEqual(bad.slice(0, 3), [], `clean errors only: ${summary(all)}`);
	assert.ok(all.slice(downFrom).some((r) => !r.ok), `the clients saw vouchd down: ${summary(all)}`);
	const tail = all.filter((r) => r.t > Date.now() - 1000);
	assert.ok(tail.length > 0 && tail.every((r) => r.ok), `after the restart every request succeeds: ${summary(tail)}`);
	assert.equal(again.exited, null);
	t.diagnostic(`${sig}: ${summary(all)}`);
});

/** Open n TCP connections to port (in batches), resolve with the sockets. */
async function openIdle(port, n, { batch = 500 } = {}) {
	const socks = [];
	for (let i = 0; i < n; i += batch) {
		const part = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Promise((resolve) => {
			const s = netConnect(port, '127.0.0.1');
			s.on('connect', () => resolve(s));
			s.on('error', () => resolve(s));
		})));
		for (const s of part) s.on('error', () => {});
		socks.push(...part);
	}
	return socks;
}

/** CPU ticks vouchd used over ms. */
async function cpuOver(pid, ms) {
	const a = cpuTicks(pid);
	await sleep(ms);
	return cpuTicks(pid) - a;
}

test('faults/load: 10k idle keep-alive connections are held; vouchd serves beside them and frees them all', async (t) => {
	const N = 10000;
	// the test process needs room for N sockets of its own
	execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${N + 4096}:${N + 4096}`]);
	const { vouchd } = await startStack(t, { config: { maxConnections: N + 100 } });
	const agentLimit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${vouchd.pid}/limits`, 'utf8'))[1]);
	assert.ok(agentLimit > N + 100, `vouchd raised its descriptor limit (${agentLimit})`);
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');
	await sleep(300);
	const base = fdCount(vouchd.pid), cpu0 = cpuTicks(vouchd.pid);
	const socks = await openIdle(vouchd.plainPort, N);
	t.after(() => socks.forEach((s) => s.destroy()));
	assert.equal(socks.filter((s) => s.destroyed).length, 0, 'every connection was accepted');
	await waitFor(() => fdCount(vouchd.pid) >= base + N, { timeoutMs: 60000, intervalMs: 500, what: `vouchd holding ${N} connections (has ${fdCount(vouchd.pid) - base}; ${socks.filter((s) => s.destroyed).length} closed; ${readdirSync(`/proc/${vouchd.pid}/task`).length} threads)` });
	// Every new connection is identified (socket → pid) by a thread; one pass of the BPF
	// holder iterator walks every fd on the host (10k of them are this process's), so
	// lookups are batched. Unbatched, the burst cost 10k walks of 10k descriptors: tens of
	// CPU seconds, with a newcomer waiting 15-85 s. The CPU vouchd spent absorbing it is
	// the non-timing witness (batched: ~1-3 s).
	const threads = readdirSync(`/proc/${vouchd.pid}/task`).length;
	const t0 = Date.now();
	let r;
	await waitFor(async () => (r = await oneRequest(vouchd.plainUrl, { timeoutMs: 10000 })).ok,
		{ timeoutMs: 60000, intervalMs: 500, what: `a request beside 10k idle connections (last ${JSON.stringify(r)?.slice(0, 300)})` });
	const burstTicks = cpuTicks(vouchd.pid) - cpu0;
	t.diagnostic(`first request served beside 10k idle connections after ${Date.now() - t0} ms (${threads} threads; ${burstTicks} ticks of CPU for the burst)`);
	assert.ok(burstTicks < 1500, `vouchd spent ${burstTicks / 100} s of CPU absorbing 10k new connections`);
	// a keep-alive request on one of the idle connections too
	const one = socks[N - 1];
	const body = JSON.stringify({ model: 'claude-standin-1', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
	const answer = await new Promise((resolve) => {
		let buf = '';
		one.on('data', (c) => {
			buf += c;
			if (/\r\n\r\n[\s\S]*"type":"message"/.test(buf)) resolve(buf);
		});
		one.write(`POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:${vouchd.plainPort}\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
	});
	assert.match(answer, /^HTTP\/1\.1 200 /);
	// idle means idle: no busy loop over 10k parked connections (generous: < 30 % of a CPU)
	let ticks;
	await waitFor(async () => (ticks = await cpuOver(vouchd.pid, 2000)) < 60,
		{ timeoutMs: 60000, what: `vouchd idle beside 10k idle connections (${ticks} ticks in 2 s)` });
	for (const s of socks) s.destroy();
	await waitFor(() => fdCount(vouchd.pid) <= base + 2, { timeoutMs: 60000, intervalMs: 500, what: `descriptors back to ~${base} (now ${fdCount(vouchd.pid)})` });
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'still serving');
});

test('faults/load: out of descriptors → connections over the limit get 503 naming it, the accept loop does not spin, recovery after', async (t) => {
	const { vouchd, standin } = await startStack(t);
	assert.ok((await oneRequest(vouchd.plainUrl)).ok, 'warm-up');
	await sleep(300);
	const base = fdCount(vouchd.pid), upBase = upstreamSockets(vouchd.pid, standin.port);
	const ROOM = 40, HOG = 100;
	execFileSync('prlimit', ['--pid', String(vouchd.pid), `--nofile=${base + ROOM}:${base + ROOM}`]);
	// More idle connections than vouchd has room for: the ones it cannot hold must be
	// answered and closed, not left waiting in the listen backlog.
	const hog = await openIdle(vouchd.plainPort, HOG, { batch: HOG });
	t.after(() => hog.forEach((s) => s.destroy()));
	const got = hog.map(() => '');
	hog.forEach((s, i) => s.on('data', (c) => { got[i] += c.toString('latin1'); }));
	await waitFor(() => hog.filter((s, i) => s.destroyed || got[i]).length >= HOG - ROOM,
		{ timeoutMs: 20000, what: `vouchd answering the connections it cannot hold (${hog.filter((s, i) => s.destroyed || got[i]).length} of ${HOG - ROOM})` });
	await sleep(500);
	const shed = got.filter(Boolean);
	assert.ok(shed.length >= HOG - ROOM - 5, `${shed.length} refused connections`);
	for (const text of shed) {
		assert.match(text, /^HTTP\/1\.1 503 /, text.slice(0, 200));
		assert.match(text, /"message":"vouch: vouchd is out of file descriptors; retry later"/);
	}
	// New workload requests at the limit: each is answered (served if there was room, else
	// a 503 naming the shortage), none hangs.
	const rs = await Promise.all(Array.from({ length: 10 }, () => oneRequest(vouchd.plainUrl, { timeoutMs: 15000 })));
	for (const r of rs) {
		if (r.ok) continue;
		assert.equal(r.status, 503, `${r.status} ${r.error ?? ''} ${r.body}`);
		assert.match(errorMessage(r) ?? '', /out of file descriptors|short of resources/, r.body);
	}
	assert.ok(rs.some((r) => !r.ok), 'the limit was reached');
	// at the limit, with clients still knocking, no thread spins (generous: < 30 % of a CPU)
	// (the proxy, and vouchd's other listeners: OIDC, admin and Workload API sockets)
	const others = [];
	const knock = setInterval(() => {
		oneRequest(vouchd.plainUrl, { timeoutMs: 5000 });
		for (const target of [{ port: vouchd.oidcPort, host: '127.0.0.1' }, { path: vouchd.adminSocket }, { path: vouchd.workloadApiSocket }]) {
			const s = netConnect(target);
			s.on('error', () => {});
			others.push(s);
		}
	}, 100);
	const ticks = await cpuOver(vouchd.pid, 2000);
	clearInterval(knock);
	others.forEach((s) => s.destroy());
	assert.ok(ticks < 60, `vouchd used ${ticks} ticks in 2 s at its descriptor limit (a spinning loop uses ~200)`);
	assert.equal(vouchd.exited, null, 'no crash');
	for (const s of hog) s.destroy();
	// Descriptors back: every one the hog and the knocking took is released. Requests that
	// got through at the limit may have left more pooled upstream connections than at the
	// start: those are the pool's (bounded, closed when idle), not a leak.
	const held = () => fdCount(vouchd.pid) - (upstreamSockets(vouchd.pid, standin.port) - upBase);
	await waitFor(() => held() <= base + 2, { timeoutMs: 20000,
		what: () => `descriptors back (${fdCount(vouchd.pid)} held, ${upstreamSockets(vouchd.pid, standin.port)} pooled upstream (${upBase} at the start) vs ${base}): ${fdList(vouchd.pid)}; sockets: ${socketList(vouchd.pid)}` });
	let last;
	await waitFor(async () => (last = await oneRequest(vouchd.plainUrl)).ok, { timeoutMs: 20000, intervalMs: 250, what: `recovery (last ${JSON.stringify(last)?.slice(0, 300)})` });
});

test('faults/load: 60 s of steady load → RSS growth < 5 % after warm-up, no descriptor growth, no failed request', { timeout: 180000 }, async (t) => {
	const { vouchd } = await startStack(t, { standin: { streamDelayMs: 10 } });
	const load = startLoad(vouchd.plainUrl, { concurrency: 6, streamEvery: 5 });
	await sleep(10000); // warm-up: pools, caches, thread reuse, heap at its working size
	const rss0 = rssKb(vouchd.pid), fd0 = fdCount(vouchd.pid), n0 = load.results.length;
	const samples = [];
	for (let i = 0; i < 10; i++) {
		await sleep(5000);
		samples.push({ rss: rssKb(vouchd.pid), fds: fdCount(vouchd.pid) });
	}
	const all = await load.stop();
	// Growth is compared like with like: under load at the start and at the end of the
	// measured 50 s; and once more when the load has stopped and the agent has gone idle
	// (its idle tick trims the heap within a second). The moment the clients hang up is
	// not a state to compare: closing six connections at once briefly takes memory in the
	// threads that close them (seen: +0.7 MB for that instant).
	const rss1 = samples.at(-1).rss;
	await sleep(2500);
	const rssIdle = rssKb(vouchd.pid), fd1 = fdCount(vouchd.pid);
	const n = all.length - n0;
	t.diagnostic(`requests in the measured 50 s: ${n}; RSS ${rss0} → ${rss1} KiB under load, ${rssIdle} KiB idle after; fds ${fd0} → ${fd1}; samples ${JSON.stringify(samples)}`);
	assert.ok(n > 100, `the load ran (${n} requests)`);
	assert.deepEqual(failures(all).slice(0, 3), [], `no failed request: ${summary(all)}`);
	assert.ok(rss1 < rss0 * 1.05, `RSS under load grew ${(100 * (rss1 - rss0) / rss0).toFixed(1)} % (${rss0} → ${rss1} KiB)`);
	assert.ok(rssIdle < rss0 * 1.05, `RSS once idle is ${(100 * (rssIdle - rss0) / rss0).toFixed(1)} % over the start (${rss0} → ${rssIdle} KiB)`);
	assert.ok(fd1 <= fd0, `descriptors ${fd0} → ${fd1}`);
	assert.ok(vouchd.audit().filter((a) => a.event === 'inject' && a.workload === spiffeId('demo/node')).length >= n, 'every request was audited');
});
