// The dashboard (issue 7.7, docs/DASHBOARD.md) rendered by headless Chromium from vouchd's
// loopback listener after real traffic: the access map, workloads with token TTLs, recent
// denials (a hostile request path shows as text, never as markup), the static-key figure;
// `vouch status` prints the same summary and `-o json` is the same object as /api/status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import {
	startStack, freePort, runSdkClient, runProcess, request, runVouch, spiffeId, waitFor, CURL,
} from './lib.mjs';

const CHROMIUM = (() => {
	for (const c of ['chromium', 'chromium-browser']) {
		try {
			return execFileSync('sh', ['-c', `command -v ${c}`]).toString().trim();
		} catch {}
	}
	return null;
})();

// Load url in headless Chromium, let its scripts run, return {dom, log}. The log is
// Chromium's stderr with console messages (CSP violations and script errors show there).
function renderPage(url) {
	const profile = mkdtempSync(join(tmpdir(), 'vouch-chromium-'));
	return new Promise((resolve, reject) => {
		const args = ['--headless', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
			`--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0', '--virtual-time-budget=4000',
			'--dump-dom', url];
		if (process.getuid?.() === 0) args.unshift('--no-sandbox'); // Chromium refuses root otherwise
		const p = spawn(CHROMIUM, args, { stdio: ['ignore', 'pipe', 'pipe'] });
		const out = [], err = [];
		p.stdout.on('data', (c) => out.push(c));
		p.stderr.on('data', (c) => err.push(c));
		const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
		p.on('error', reject);
		p.on('close', (code) => {
			clearTimeout(timer);
			rmSync(profile, { recursive: true, force: true });
			const dom = Buffer.concat(out).toString();
			if (!dom.includes('</html>')) reject(new Error(`chromium exited ${code} without a page: ${Buffer.concat(err).toString().slice(-2000)}`));
			else resolve({ dom, log: Buffer.concat(err).toString() });
		});
	});
}

// The text of the element with id (first match), tags stripped, entities left as they are.
function byId(dom, id) {
	const m = new RegExp(`<[a-z]+[^>]*\\bid="${id}"[^>]*>([\\s\\S]*?)</(?:span|tbody|table|svg|p|div)>`).exec(dom);
	return m ? m[1] : null;
}

test('dashboard: the page renders the agent\'s state in headless Chromium; vouch status says the same', async (t) => {
	if (!CHROMIUM) {
		t.skip('chromium is not installed (scripts/install-deps.sh installs it)');
		return;
	}
	const port = await freePort();
	const { standin, vouchd, dir } = await startStack(t, { config: { metrics: { listen: `127.0.0.1:${port}` } } });
	const base = `http://127.0.0.1:${port}`;

	// Traffic: one served workload (SDK, plain and streaming), kept running so its token stays
	// cached (a workload's tokens are dropped when its last process exits), and a denied
	// request whose path carries markup.
	const live = runSdkClient(vouchd.plainUrl, [{ op: 'create' }, { op: 'stream' }], { durationMs: 15000, intervalMs: 1000, maxRetries: 0 });
	await waitFor(() => standin.records.messages.length >= 2, { timeoutMs: 20000, what: 'the SDK client\'s first requests' });
	// The denied workload's executable sits in a directory named with markup: the path
	// reaches the denial record (exe, and the reason naming the process) verbatim.
	const evilDir = join(dir, '<img src=x onerror=document.title="owned">');
	mkdirSync(evilDir);
	const evilCurl = join(evilDir, 'curl');
	copyFileSync(CURL, evilCurl);
	chmodSync(evilCurl, 0o755);
	const denied = await runProcess(evilCurl, ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '{}', `${vouchd.plainUrl}/v1/messages`]);
	assert.equal(denied.stdout, '403', denied.stderr);
	assert.equal((await vouchd.auditUntil((a) => a.event === 'deny' && a.exe === evilCurl)).length, 1, 'the denial is audited');

	// A static-key scan report as `vouch scan --report` sends it; one place is a file whose
	// name carries markup (file names are the scanned host's users' choice).
	const report = { cmd: 'scan-report', total: 2, places: 2, processes: 12, files: 3, truncated: false, findings: [
		{ kind: 'anthropic-api-key', prefix: 'sk-ant-api03-', fingerprint: 'sha256:4b4b9ebaec9f', source: 'process', where: 'pid 4242 env ANTHROPIC_API_KEY (/usr/bin/python3, uid 1000)', workload: null },
		{ kind: 'generic-secret', prefix: '', fingerprint: 'sha256:a313c26e98a7', source: 'file', where: '/srv/<img src=x onerror=document.title="owned2">/.env:3', workload: null },
	] };
	const accepted = await new Promise((resolve, reject) => {
		const c = net.connect(vouchd.adminSocket);
		let buf = '';
		c.on('connect', () => c.end(JSON.stringify(report) + '\n'));
		c.on('data', (d) => { buf += d; });
		c.on('error', reject);
		c.on('close', () => resolve(JSON.parse(buf)));
	});
	assert.equal(accepted.accepted, true, JSON.stringify(accepted));

	let st, status, node;
	await waitFor(async () => {
		st = await request(`${base}/api/status`);
		status = JSON.parse(st.body);
		node = status.paths.find((p) => p.workload === spiffeId('demo/node'));
		return node?.requests >= 2;
	}, { timeoutMs: 20000, intervalMs: 200, what: 'two injected requests counted on the path' });
	assert.equal(st.status, 200);
	assert.ok(node, `the bound workload is an access path: ${st.body}`);
	assert.ok(node.requests >= 2, `its requests are counted: ${JSON.stringify(node)}`);
	assert.ok(node.token_ttl_s > 0, `its token TTL is shown: ${JSON.stringify(node)}`);
	assert.match(node.first_use ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'first use, from the inventory');
	assert.ok(node.last_use >= node.first_use, JSON.stringify(node));
	assert.ok(status.denials.length >= 1);

	await t.test('Chromium renders the access map, the workloads and the denials', async () => {
		const { dom, log } = await renderPage(`${base}/dashboard/`);
		assert.match(dom, /<body[^>]*data-rendered="\d+"/, `the script ran and rendered (log: ${log.slice(-1500)})`);
		assert.doesNotMatch(log, /Content Security Policy|Uncaught|SyntaxError|TypeError/, 'no CSP violation or script error');
		assert.match(byId(dom, 'ready') ?? '', /ready/);
		assert.equal(byId(dom, 'n-paths'), String(status.paths.length));
		// The access map: the workload, its source and the service as SVG nodes, joined by edges.
		const map = byId(dom, 'map') ?? '';
		assert.match(map, new RegExp(`<text[^>]*>${spiffeId('demo/node').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}</text>`), 'workload node');
		assert.match(map, /<text[^>]*>standin<\/text>/, 'credential source node');
		assert.match(map, /<text[^>]*>anthropic-api<\/text>/, 'service node');
		assert.ok((map.match(/<path class="edge/g) ?? []).length >= 2, 'edges workload → source → service');
		// The workloads table carries the token TTL as text ("58m 12s" style).
		const wl = byId(dom, 'workloads') ?? '';
		assert.match(wl, new RegExp(spiffeId('demo/node').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
		assert.match(wl, /<td>\d+m \d+s<\/td>|<td>\d+h \d+m<\/td>|<td>\d+s<\/td>/, 'a token TTL is shown');
		// The hostile path is text: escaped in the DOM, no <img> element, the title untouched.
		const den = byId(dom, 'denials') ?? '';
		assert.match(den, /&lt;img src=x onerror=/, 'the executable path is shown as text');
		assert.doesNotMatch(dom, /<img[\s>]/i, 'no element was created from agent data');
		assert.match(dom, /<title>vouch — access paths<\/title>/, 'the page title was not rewritten by a script in the data');
		assert.equal(byId(dom, 'n-static'), '2', 'the trust-debt figure from the last report');
		const sk = byId(dom, 'static') ?? '';
		assert.match(sk, /sha256:4b4b9ebaec9f/);
		assert.match(sk, /pid 4242 env ANTHROPIC_API_KEY/);
		assert.match(sk, /&lt;img src=x onerror=document.title="owned2"&gt;/, 'a hostile file name is text');
		assert.match(byId(dom, 'scanned') ?? '', /last scan/);
	});

	await t.test('the page and its data answer only a loopback Host, read-only, with a strict CSP', async () => {
		const page = await request(`${base}/dashboard/`);
		assert.equal(page.status, 200);
		assert.match(page.headers['content-security-policy'] ?? '', /default-src 'none'.*script-src 'self'/);
		assert.equal(page.headers['x-content-type-options'], 'nosniff');
		const rebound = await request(`${base}/api/status`, { headers: { host: `vouch.attacker.example:${port}` } });
		assert.equal(rebound.status, 421, 'a rebound DNS name gets nothing');
		assert.ok(!rebound.body.includes('demo/node'));
		for (const [host, want] of [['127.0.0.1.attacker.example', 421], ['localhost.attacker.example', 421], ['127.1', 421],
			['128.0.0.1', 421], ['[::2]', 421], ['', 421], [`localhost:${port}`, 200], [`127.9.8.7:${port}`, 200], [`[::1]:${port}`, 200]]) {
			const r = await request(`${base}/api/status`, { headers: { host } });
			assert.equal(r.status, want, `Host "${host}"`);
		}
		const post = await request(`${base}/api/status`, { method: 'POST', headers: { 'content-length': '0' } });
		assert.equal(post.status, 405, post.body);
	});

	await t.test('vouch status prints the same summary; -o json is the /api/status object', async () => {
		const r = await runVouch(['status'], { adminSocket: vouchd.adminSocket });
		assert.equal(r.code, 0, r.stderr);
		assert.match(r.stdout, /ACCESS PATHS/);
		assert.match(r.stdout, new RegExp(`${spiffeId('demo/node').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\s+standin\\s+anthropic-api\\s+\\d+`));
		assert.match(r.stdout, /RECENT DENIALS \([1-9]/);
		assert.match(r.stdout, /<img src=x onerror=/, 'the hostile name is printed as text (control characters would be replaced)');
		const j = await runVouch(['status', '-o', 'json'], { adminSocket: vouchd.adminSocket });
		assert.equal(j.code, 0, j.stderr);
		const cli = JSON.parse(j.stdout);
		assert.deepEqual(cli.paths.map((p) => [p.workload, p.source, p.service]), status.paths.map((p) => [p.workload, p.source, p.service]));
	});
	const done = await live;
	assert.equal(done.code, 0, `the workload kept working throughout: ${done.stderr}`);
});
