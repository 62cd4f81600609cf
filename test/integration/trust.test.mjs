// `vouch trust install|uninstall`: the interception CA goes into (and out of) the system trust
// store through update-ca-certificates. Run inside a private mount namespace with a tmpfs over
// /usr/local/share/ca-certificates and a recording stand-in for update-ca-certificates first
// in PATH, so the machine's own trust store is never touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, runProcess, makeTempDir, isRoot, VOUCH } from './lib.mjs';
import { UNSHARE } from './netns.mjs';

const STORE = '/usr/local/share/ca-certificates';
const FILE = `${STORE}/vouch-intercept.crt`;

test('vouch trust install/uninstall', { skip: !isRoot || !UNSHARE ? 'needs root and unshare(1) for a private mount namespace' : false }, async (t) => {
	const { vouchd, dir } = await startStack(t);
	const work = makeTempDir(t, 'vouch-trust-');
	const bin = join(work, 'bin');
	mkdirSync(bin);
	const log = join(work, 'update.log');
	writeFileSync(join(bin, 'update-ca-certificates'), `#!/bin/sh\necho run >> ${log}\n`);
	chmodSync(join(bin, 'update-ca-certificates'), 0o755);
	const out = join(work, 'installed.pem');
	mkdirSync(STORE, { recursive: true });
	const realBefore = existsSync(FILE);
	const script = [
		'set -e',
		`mount -t tmpfs tmpfs ${STORE}`,
		`V="${VOUCH} --admin-socket ${vouchd.adminSocket}"`,
		'$V trust install',
		`cp ${FILE} ${out}`,
		`stat -c %a ${FILE} > ${out}.mode`,
		'$V trust install',
		'$V trust uninstall',
		`test ! -e ${FILE}`,
		'$V trust uninstall',
	].join('\n');
	const r = await runProcess(UNSHARE, ['--mount', '--propagation', 'private', 'sh', '-c', script], {
		env: { PATH: `${bin}:${process.env.PATH}` },
	});
	assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
	const ca = readFileSync(join(dir, 'state', 'intercept-ca.crt'), 'utf8');
	assert.equal(readFileSync(out, 'utf8'), ca, 'the installed file is the interception CA');
	assert.equal(readFileSync(`${out}.mode`, 'utf8').trim(), '644');
	assert.match(r.stdout, /installed .*vouch-intercept\.crt/);
	assert.match(r.stdout, /already installed/, 'a second install is a no-op');
	assert.match(r.stdout, /removed .*vouch-intercept\.crt/);
	assert.match(r.stdout, /is not installed/, 'a second uninstall is a no-op');
	assert.equal(readFileSync(log, 'utf8').trim().split('\n').length, 4, 'the store was rebuilt after every call');
	assert.equal(existsSync(FILE), realBefore, 'the real trust store is untouched');
});

test('vouch trust refuses without root', { skip: !isRoot ? 'needs root to switch to another uid' : false }, async () => {
	const r = await runProcess(VOUCH, ['trust', 'install'], { uid: 65534, gid: 65534, env: { PATH: process.env.PATH } });
	assert.equal(r.code, 1);
	assert.match(r.stderr, /must run as root/);
});
