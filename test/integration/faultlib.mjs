// faultlib — helpers for the fault-matrix tests (faults*.test.mjs): a closed-loop load
// generator over keep-alive connections, SSE requests the test can cut, and what
// /proc says about a process (open descriptors, resident memory, CPU time).
import { Agent, request as httpRequest } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { MESSAGE_BODY, sleep } from './lib.mjs';

export const HDRS = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed' };
export const STREAM_BODY = { ...MESSAGE_BODY, stream: true };

/** Open descriptors of pid. */
export function fdCount(pid) {
	return readdirSync(`/proc/${pid}/fd`).length;
}
/** Resident set size of pid in KiB. */
export function rssKb(pid) {
	const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
	return m ? Number(m[1]) : NaN;
}
/** User + system CPU time of pid (every thread) in clock ticks. */
export function cpuTicks(pid) {
	const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
	const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
	return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
}

/**
 * One request on an agent (keep-alive when the agent keeps them). Resolves, never
 * rejects: {ok, status, body, json, error (transport error code/message), events}.
 */
export function oneRequest(url, { agent, body = MESSAGE_BODY, timeoutMs = 20000 } = {}) {
	return new Promise((resolve) => {
		let done = false;
		const finish = (v) => {
			if (!done) {
				done = true;
				resolve(v);
			}
		};
		const req = httpRequest(`${url}/v1/messages`, { method: 'POST', agent, headers: HDRS, timeout: timeoutMs }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const text = Buffer.concat(chunks).toString('utf8');
				let json;
				try {
					json = JSON.parse(text);
				} catch {}
				finish({ ok: res.statusCode === 200 && (!body.stream || text.includes('event: message_stop')), status: res.statusCode, body: text, json });
			});
			res.on('aborted', () => finish({ ok: false, status: res.statusCode, error: 'aborted', body: Buffer.concat(chunks).toString('utf8') }));
			res.on('error', (e) => finish({ ok: false, status: res.statusCode, error: e.code ?? e.message, body: Buffer.concat(chunks).toString('utf8') }));
		});
		req.on('timeout', () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
		req.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
		req.end(JSON.stringify(body));
	});
}

/**
 * A closed-loop load generator: `concurrency` workers, each sending requests one after
 * another over its own keep-alive connection (every `streamEvery`-th one streamed).
 * Returns {results, stop()}: stop() ends the loop and resolves with every result
 * ({ok, status, error, json, t}) once the requests in flight are done.
 */
export function startLoad(url, { concurrency = 4, streamEvery = 0, timeoutMs = 20000, pauseMs = 0 } = {}) {
	const results = [];
	let running = true;
	const workers = [];
	for (let w = 0; w < concurrency; w++) {
		const agent = new Agent({ keepAlive: true, maxSockets: 1 });
		workers.push((async () => {
			for (let i = 0; running; i++) {
				const stream = streamEvery > 0 && i % streamEvery === streamEvery - 1;
				const r = await oneRequest(url, { agent, body: stream ? STREAM_BODY : MESSAGE_BODY, timeoutMs });
				r.t = Date.now();
				r.stream = stream;
				results.push(r);
				if (!r.ok) await sleep(50); // a refused or failed request: do not hammer
				else if (pauseMs) await sleep(pauseMs);
			}
			agent.destroy();
		})());
	}
	return {
		results,
		async stop() {
			running = false;
			await Promise.all(workers);
			return results;
		},
	};
}

/**
 * A streamed request over a raw socket that the caller may cut: resolves with
 * {socket, head (response head text), firstEvent} once the first SSE event arrived.
 */
export function openStream(port, { host = '127.0.0.1' } = {}) {
	return import('node:net').then(({ connect }) => new Promise((resolve, reject) => {
		const body = JSON.stringify(STREAM_BODY);
		const s = connect(port, host);
		let buf = '';
		const timer = setTimeout(() => {
			s.destroy();
			reject(new Error(`no SSE event within 15 s: ${JSON.stringify(buf.slice(0, 300))}`));
		}, 15000);
		s.on('connect', () => s.write(`POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\n` +
			`anthropic-version: 2023-06-01\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
		s.on('data', (c) => {
			buf += c.toString('latin1');
			const i = buf.indexOf('\r\n\r\n');
			if (i >= 0 && buf.includes('event: ', i)) {
				clearTimeout(timer);
				s.removeAllListeners('data');
				resolve({ socket: s, head: buf.slice(0, i), firstEvent: buf.slice(i + 4) });
			}
		});
		s.on('error', (e) => {
			clearTimeout(timer);
			reject(e);
		});
	}));
}

/** A vouchd error body names its cause: Anthropic's shape with a "vouch: ..." message. */
export function errorMessage(r) {
	return r.json?.type === 'error' && typeof r.json.error?.message === 'string' ? r.json.error.message : null;
}
