// keepalive-client — a workload that keeps ONE HTTP(S) connection open and sends a
// Messages request on it whenever it is told to. Driven over stdin, one JSON line per
// request: {"url": "http://127.0.0.1:PORT/v1/messages" | "https://api.anthropic.com/v1/messages",
// "content"?: "..."}; the line "quit" (or EOF) ends it. All requests go through one
// keep-alive agent with maxSockets 1, so they share a connection while the peer keeps it.
// Prints a first line {hello: true, pid} and then one JSON line per request:
// {i, status, json, body, reused (the socket was reused), localPort, error?}.
// Sends the placeholder x-api-key like the SDK does; never a real credential.
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';

const agents = {
	'http:': new HttpAgent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 60000 }),
	'https:': new HttpsAgent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 60000 }),
};
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
out({ hello: true, pid: process.pid });

function one(i, { url, content }) {
	const u = new URL(url);
	const body = JSON.stringify({ model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: content ?? `keepalive ${i}` }] });
	return new Promise((resolve) => {
		const fn = u.protocol === 'https:' ? httpsRequest : httpRequest;
		const req = fn(u, {
			method: 'POST', agent: agents[u.protocol], timeout: 15000,
			headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'vouch-managed', 'content-length': Buffer.byteLength(body) },
		}, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const text = Buffer.concat(chunks).toString('utf8');
				let json;
				try {
					json = JSON.parse(text);
				} catch {}
				resolve({ i, status: res.statusCode, json, body: text.slice(0, 4000), reused: req.reusedSocket, localPort: req.socket?.localPort });
			});
		});
		req.on('timeout', () => req.destroy(new Error('timeout')));
		req.on('error', (e) => resolve({ i, error: String(e.message ?? e), reused: req.reusedSocket }));
		req.end(body);
	});
}

const rl = createInterface({ input: process.stdin });
let i = 0;
for await (const line of rl) {
	if (line.trim() === 'quit') break;
	if (!line.trim()) continue;
	out(await one(i++, JSON.parse(line)));
}
for (const a of Object.values(agents)) a.destroy();
