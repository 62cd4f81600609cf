// sdk-default — a workload that uses the official Anthropic TypeScript SDK with its DEFAULT
// base URL (https://api.anthropic.com): `new Anthropic()` with no options and no
// ANTHROPIC_BASE_URL. Used under `vouch run` (transparent interception), where the only
// things the environment provides are the placeholder key and the CA variables.
// argv[2]: JSON {plan: [{op: "create"|"stream", content?}], maxRetries?}.
// Prints a first line {hello: true, pid, baseURL, env: {...which variables are set}} and then
// one JSON line per operation {op, ok, pid, id?, text?, events?, status?, error?, message?}.
// Exit 0 iff every operation succeeded; 3 if ANTHROPIC_BASE_URL is set (wrong test setup).
import Anthropic from '@anthropic-ai/sdk';

if (process.env.ANTHROPIC_BASE_URL) {
	process.stdout.write(JSON.stringify({ hello: false, error: 'ANTHROPIC_BASE_URL is set' }) + '\n');
	process.exit(3);
}
const spec = JSON.parse(process.argv[2] ?? '{"plan":[{"op":"create"}]}');
const client = new Anthropic(spec.maxRetries === undefined ? {} : { maxRetries: spec.maxRetries });
const vars = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'SPIFFE_ENDPOINT_SOCKET'];
process.stdout.write(JSON.stringify({
	hello: true, pid: process.pid, baseURL: client.baseURL,
	env: Object.fromEntries(vars.map((v) => [v, process.env[v] ?? null])),
	placeholderKey: process.env.ANTHROPIC_API_KEY === 'vouch-managed',
}) + '\n');

let failures = 0;
let i = 0;
for (const step of spec.plan) {
	const body = { model: 'claude-standin-1', max_tokens: 64, messages: [{ role: 'user', content: step.content ?? `request ${i}` }] };
	const r = { op: step.op, i: i++, pid: process.pid, ok: false };
	try {
		if (step.op === 'create') {
			const msg = await client.messages.create(body);
			r.id = msg.id;
			r.text = msg.content.map((b) => b.text ?? '').join('');
		} else if (step.op === 'stream') {
			const stream = client.messages.stream(body);
			r.events = [];
			stream.on('streamEvent', (ev) => r.events.push(ev.type));
			let text = '';
			stream.on('text', (d) => { text += d; });
			const msg = await stream.finalMessage();
			r.id = msg.id;
			r.text = text;
			r.stop_reason = msg.stop_reason;
		} else {
			throw new Error(`unknown op ${step.op}`);
		}
		r.ok = true;
	} catch (e) {
		failures++;
		r.status = e.status;
		r.error = e.error ?? null;
		r.message = String(e.message ?? e).slice(0, 2000);
		if (e.cause) r.cause = String(e.cause?.message ?? e.cause).slice(0, 500);
	}
	process.stdout.write(JSON.stringify(r) + '\n');
}
process.exitCode = failures ? 1 : 0;
