// sdk-client — a workload that uses the official Anthropic TypeScript SDK the ordinary way
// (`new Anthropic()` configured from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL). Driven by a JSON
// plan in argv[2]: {plan: [{op: "create"|"stream", content?}], repeat?, durationMs?,
// intervalMs?, maxRetries?}. Prints one JSON line per operation:
// {op, ok, t0, tFirstEvent?, tDone, id?, model?, usage?, text?, status?, error?}; a "stream" step
// with reportFirstEvent: true also prints {op: "first_event", type} the moment the first
// event arrives. Exit 0 iff all ok.
import Anthropic from '@anthropic-ai/sdk';

const spec = JSON.parse(process.argv[2] ?? '{"plan":[{"op":"create"}]}');
const client = new Anthropic(spec.maxRetries === undefined ? {} : { maxRetries: spec.maxRetries });
const model = 'claude-standin-1';
let failures = 0;

async function runOne(step, i) {
	const body = { model, max_tokens: 64, messages: [{ role: 'user', content: step.content ?? `request ${i}` }] };
	const r = { op: step.op, i, t0: Date.now(), ok: false };
	try {
		if (step.op === 'create') {
			const msg = await client.messages.create(body);
			r.id = msg.id;
			r.model = msg.model;
			r.usage = msg.usage;
			r.text = msg.content.map((b) => b.text ?? '').join('');
			r.stop_reason = msg.stop_reason;
		} else if (step.op === 'stream') {
			const stream = client.messages.stream(body);
			r.events = [];
			stream.on('streamEvent', (ev) => {
				if (r.tFirstEvent === undefined) {
					r.tFirstEvent = Date.now();
					if (step.reportFirstEvent) process.stdout.write(JSON.stringify({ op: 'first_event', type: ev.type, t: r.tFirstEvent }) + '\n');
				}
				r.events.push(ev.type);
			});
			let text = '';
			stream.on('text', (d) => { text += d; });
			const msg = await stream.finalMessage();
			r.id = msg.id;
			r.model = msg.model;
			r.usage = msg.usage;
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
	}
	r.tDone = Date.now();
	process.stdout.write(JSON.stringify(r) + '\n');
}

const start = Date.now();
let i = 0;
do {
	for (const step of spec.plan) {
		await runOne(step, i++);
		if (spec.intervalMs) await new Promise((res) => setTimeout(res, spec.intervalMs));
	}
} while ((spec.durationMs && Date.now() - start < spec.durationMs) || (spec.repeat && i < spec.repeat * spec.plan.length));
process.exitCode = failures ? 1 : 0;
