// The demo workload: an ordinary program using the official Anthropic SDK, unmodified.
// It holds no credential: ANTHROPIC_API_KEY is a placeholder that vouch strips. In the
// explicit flow ANTHROPIC_BASE_URL points at vouchd's local listener; in the transparent flow
// (`vouch run -- node demo/app.mjs`) there is no base URL at all: the SDK talks to
// https://api.anthropic.com as usual and vouchd's eBPF hooks redirect the connection. Either
// way vouchd injects a short-lived workload-identity token.
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic();
const model = process.env.DEMO_MODEL ?? 'claude-sonnet-5';

const msg = await client.messages.create({
	model,
	max_tokens: 256,
	messages: [{ role: 'user', content: 'Say hello to a workload that has no API key.' }],
});
console.log(`reply 1 (messages.create): ${msg.content.map((b) => (b.type === 'text' ? b.text : '')).join('')}`);

process.stdout.write('reply 2 (messages.stream): ');
const stream = client.messages.stream({
	model,
	max_tokens: 256,
	messages: [{ role: 'user', content: 'Now stream a reply, please.' }],
});
stream.on('text', (delta) => process.stdout.write(delta));
const final = await stream.finalMessage();
process.stdout.write('\n');
console.log(`done: ${final.stop_reason}, ${final.usage.output_tokens} output tokens`);
