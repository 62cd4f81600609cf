#!/usr/bin/env node
// wlclient.mjs — a SPIFFE Workload API client on @grpc/grpc-js + @grpc/proto-loader (real gRPC
// libraries; only this command-line wrapper is ours). The contract shared with wlclient.go and
// wlclient.py:
//   wlclient.mjs unix:///path.sock COMMAND [ARGS...] [--no-header] [--timeout-ms N]
//   x509svid N | x509bundles N | jwtbundles N   first N messages of the stream, one JSON line each
//   jwtsvid AUD [AUD...] [--spiffe-id ID]       FetchJWTSVID
//   validate AUD TOKEN                          ValidateJWTSVID
//   wit                                         FetchWITSVID
// Bytes are base64. A gRPC error prints {"error":{"code","message"}} and exits 3; others exit 1.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const PROTO = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../src/workload/workload.proto');

function parseArgs(argv) {
	const o = { header: true, timeoutMs: 10000, spiffeId: '', rest: [] };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === '--no-header') o.header = false;
		else if (a === '--timeout-ms') o.timeoutMs = Number(argv[++i]);
		else if (a === '--spiffe-id') o.spiffeId = argv[++i];
		else o.rest.push(a);
	}
	return o;
}

const b64 = (b) => Buffer.from(b ?? []).toString('base64');
const b64map = (m) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, b64(v)]));

/** google.protobuf.Value/Struct (proto-loader objects) → plain JSON. */
function plainValue(v) {
	if (!v) return null;
	switch (v.kind) {
	case 'nullValue': return null;
	case 'numberValue': return v.numberValue;
	case 'stringValue': return v.stringValue;
	case 'boolValue': return v.boolValue;
	case 'structValue': return plainStruct(v.structValue);
	case 'listValue': return (v.listValue?.values ?? []).map(plainValue);
	default: return null;
	}
}
const plainStruct = (s) => Object.fromEntries(Object.entries(s?.fields ?? {}).map(([k, v]) => [k, plainValue(v)]));

function fail(err) {
	if (err && typeof err.code === 'number') {
		process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.details ?? err.message } }) + '\n');
		process.exit(3);
	}
	process.stderr.write(`wlclient: ${err?.stack ?? err}\n`);
	process.exit(1);
}

async function main() {
	const [target, cmd, ...args] = process.argv.slice(2);
	const o = parseArgs(args);
	if (!target?.startsWith('unix:') || !cmd) {
		process.stderr.write('usage: wlclient.mjs unix:///path.sock COMMAND [ARGS...]\n');
		process.exit(1);
	}
	const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });
	const pkg = grpc.loadPackageDefinition(def);
	const client = new pkg.SpiffeWorkloadAPI(target, grpc.credentials.createInsecure());
	const md = new grpc.Metadata();
	if (o.header) md.set('workload.spiffe.io', 'true');
	const deadline = new Date(Date.now() + o.timeoutMs);
	const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

	const count = () => {
		const n = Number(o.rest[0] ?? 1);
		if (!Number.isInteger(n) || n < 1) throw new Error(`a message count, not ${o.rest[0]}`);
		return n;
	};
	const stream = (method, n, shape) => new Promise((res, rej) => {
		let got = 0;
		const call = client[method]({}, md, { deadline });
		call.on('data', (m) => {
			out(shape(m));
			if (++got >= n) {
				call.cancel();
				res();
			}
		});
		call.on('error', (e) => (got >= n && e.code === grpc.status.CANCELLED ? res() : rej(e)));
		call.on('end', () => (got >= n ? res() : rej(new Error(`stream ended after ${got} of ${n} messages`))));
	});
	const unary = (method, req) => new Promise((res, rej) => client[method](req, md, { deadline }, (e, r) => (e ? rej(e) : res(r))));

	switch (cmd) {
	case 'x509svid':
		await stream('FetchX509SVID', count(), (m) => ({
			svids: m.svids.map((s) => ({ spiffe_id: s.spiffe_id, x509_svid: b64(s.x509_svid), x509_svid_key: b64(s.x509_svid_key), bundle: b64(s.bundle), hint: s.hint })),
			federated_bundles: b64map(m.federated_bundles),
		}));
		break;
	case 'x509bundles':
		await stream('FetchX509Bundles', count(), (m) => ({ bundles: b64map(m.bundles) }));
		break;
	case 'jwtbundles':
		await stream('FetchJWTBundles', count(), (m) => ({ bundles: b64map(m.bundles) }));
		break;
	case 'jwtsvid': {
		const r = await unary('FetchJWTSVID', { audience: o.rest, spiffe_id: o.spiffeId });
		out({ svids: r.svids.map((s) => ({ spiffe_id: s.spiffe_id, svid: s.svid, hint: s.hint })) });
		break;
	}
	case 'validate': {
		const r = await unary('ValidateJWTSVID', { audience: o.rest[0] ?? '', svid: o.rest[1] ?? '' });
		out({ spiffe_id: r.spiffe_id, claims: plainStruct(r.claims) });
		break;
	}
	case 'wit':
		await stream('FetchWITSVID', 1, (m) => m);
		break;
	default:
		throw new Error(`unknown command ${cmd}`);
	}
	client.close();
}

main().catch(fail);
