// sdk-federation — a workload that lets the official Anthropic TypeScript SDK do its own
// workload-identity-federation exchange: `new Anthropic()` with no options, configured only by
// the environment (ANTHROPIC_IDENTITY_TOKEN_FILE, ANTHROPIC_FEDERATION_RULE_ID,
// ANTHROPIC_ORGANIZATION_ID, ANTHROPIC_SERVICE_ACCOUNT_ID, ANTHROPIC_WORKSPACE_ID,
// ANTHROPIC_BASE_URL; no ANTHROPIC_API_KEY). argv[2]: {durationMs, intervalMs, maxRetries?}
// (maxRetries defaults to 0 so a rejected exchange shows up as a failure instead of being
// retried away). Prints one JSON line per request {i, ok, t0, tDone, id?, status?, message?}.
// Exit 0 iff all ok.
import Anthropic from '@anthropic-ai/sdk';

const spec = JSON.parse(process.argv[2] ?? '{}');
if (process.env.ANTHROPIC_API_KEY) throw new Error('ANTHROPIC_API_KEY must not be set here');
const client = new Anthropic({ maxRetries: spec.maxRetries ?? 0 });
let failures = 0;
const start = Date.now();
let i = 0;
do {
	const r = { i: i++, t0: Date.now(), ok: false };
	try {
		const msg = await client.messages.create({
			model: 'claude-standin-1', max_tokens: 16, messages: [{ role: 'user', content: `federated ${r.i}` }],
		});
		r.id = msg.id;
		r.ok = true;
	} catch (e) {
		failures++;
		r.status = e.status;
		r.message = String(e.message ?? e).slice(0, 500);
	}
	r.tDone = Date.now();
	process.stdout.write(JSON.stringify(r) + '\n');
	if (spec.intervalMs) await new Promise((res) => setTimeout(res, spec.intervalMs));
} while (Date.now() - start < (spec.durationMs ?? 0));
process.exitCode = failures ? 1 : 0;
