// `vouch validate`: the published seed resources (plus the WorkloadIdentity they name) are
// valid; broken files give FILE:LINE:COL lines at the offending node and exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HERE, makeTempDir, runVouch, haveVouchd, VOUCH } from './lib.mjs';

const SEED = join(HERE, 'fixtures', 'seed-riptides-anthropic.yaml');
const SEED_WL = join(HERE, 'fixtures', 'seed-workload.yaml');

function diagLines(out, file) {
	return out.split('\n').filter((l) => l.startsWith(`${file}:`));
}

test('validate: the seed with its WorkloadIdentity is valid', async (t) => {
	assert.ok(haveVouchd(), `vouch is built at ${VOUCH}`);
	const r = await runVouch(['validate', SEED, SEED_WL]);
	assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
	const dir = makeTempDir(t);
	copyFileSync(SEED, join(dir, 'seed.yaml'));
	copyFileSync(SEED_WL, join(dir, 'workload.yml'));
	const d = await runVouch(['validate', dir]);
	assert.equal(d.code, 0, `directory form: ${d.stdout}\n${d.stderr}`);
});

test('validate: the seed alone names a workload ID nothing defines', async () => {
	const r = await runVouch(['validate', SEED]);
	assert.equal(r.code, 1, r.stdout);
	assert.ok(diagLines(r.stdout, SEED).length >= 1, r.stdout);
});

const BROKEN = {
	'unknown field': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: CredentialBinding\nmetadata:\n  name: b\nspec:\n  credentialSorce: x\n  workloadID: demo/app\n',
		line: 6,
	},
	'unknown kind': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentityy\nmetadata:\n  name: w\nspec: {}\n',
		line: 2,
	},
	'unknown apiVersion': {
		text: 'apiVersion: vouch.dev/v9\nkind: Service\nmetadata:\n  name: s\nspec:\n  addresses: [{address: a.example, port: 443}]\n',
		line: 1,
	},
	'invalid SPIFFE path': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata:\n  name: w\nspec:\n  workloadID: demo//app/../x\n  selectors:\n  - process:uid: 0\n',
		line: 6,
	},
	'wrong type': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata:\n  name: s\nspec:\n  addresses:\n  - address: a.example\n    port: not-a-port\n  tls: true\n',
		line: 8,
	},
	'unknown selector key': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata:\n  name: w\nspec:\n  workloadID: demo/app\n  selectors:\n  - process:argv: node\n',
		line: 8,
	},
	'second document broken': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata:\n  name: w\nspec:\n  workloadID: demo/app\n  selectors:\n  - process:uid: 0\n---\napiVersion: vouch.dev/v1alpha1\nkind: WorkloadIdentity\nmetadata:\n  name: w2\nspec:\n  workloadId: demo/app2\n',
		line: 15,
	},
	'YAML syntax error': {
		text: 'apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata:\n  name: "unterminated\nspec: {}\n',
		line: null,
	},
};

test('validate: broken files give FILE:LINE:COL lines and exit 1', async (t) => {
	const dir = makeTempDir(t);
	for (const [name, { text, line }] of Object.entries(BROKEN)) {
		await t.test(name, async () => {
			const file = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
			writeFileSync(file, text);
			const r = await runVouch(['validate', file]);
			assert.equal(r.code, 1, `exit status; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
			const lines = diagLines(r.stdout, file);
			assert.ok(lines.length >= 1, `a FILE:LINE:COL line in:\n${r.stdout}`);
			for (const l of lines) assert.match(l, /^[^:]+:\d+:\d+: \S/, l);
			if (line !== null) assert.ok(lines.some((l) => l.startsWith(`${file}:${line}:`)), `an error at line ${line}:\n${r.stdout}`);
		});
	}
	await t.test('a missing file', async () => {
		const r = await runVouch(['validate', join(dir, 'does-not-exist.yaml')]);
		assert.equal(r.code, 1, r.stdout + r.stderr);
	});
});
