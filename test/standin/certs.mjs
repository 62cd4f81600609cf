// certs — a throwaway test CA and a TLS server leaf for the Claude stand-in, made with the
// openssl CLI (ECDSA P-256). The leaf covers DNS:localhost, IP:127.0.0.1 and
// DNS:api.anthropic.com, EKU serverAuth. Keys are written 0600. Test-only material.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args, cwd) {
	try {
		return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
	} catch (e) {
		throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString() ?? e.message}`);
	}
}

/**
 * Generate ca.crt/ca.key and server.crt/server.key in dir (created if missing).
 * @param {string} dir
 * @param {{names?: string[], ips?: string[], days?: number}} [opts]
 * @returns {{dir, caFile, caKeyFile, certFile, keyFile, caPem, certPem, keyPem}}
 */
export function generateCerts(dir, opts = {}) {
	const names = opts.names ?? ['localhost', 'api.anthropic.com'];
	const ips = opts.ips ?? ['127.0.0.1'];
	const days = String(opts.days ?? 2);
	mkdirSync(dir, { recursive: true, mode: 0o700 });
	const caKeyFile = join(dir, 'ca.key'), caFile = join(dir, 'ca.crt');
	const keyFile = join(dir, 'server.key'), certFile = join(dir, 'server.crt');
	const csr = join(dir, 'server.csr'), ext = join(dir, 'server.ext');

	openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
		'-keyout', caKeyFile, '-out', caFile, '-days', days, '-subj', '/CN=vouch test CA (stand-in)',
		'-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,keyCertSign,cRLSign',
		'-addext', 'subjectKeyIdentifier=hash'], dir);
	openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
		'-keyout', keyFile, '-out', csr, '-subj', '/CN=localhost'], dir);
	const san = [...names.map((n) => `DNS:${n}`), ...ips.map((i) => `IP:${i}`)].join(',');
	writeFileSync(ext, [
		'[v3]',
		'basicConstraints=critical,CA:FALSE',
		'keyUsage=critical,digitalSignature',
		'extendedKeyUsage=serverAuth',
		`subjectAltName=${san}`,
		'subjectKeyIdentifier=hash',
		'authorityKeyIdentifier=keyid',
		'',
	].join('\n'));
	openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKeyFile, '-set_serial',
		'0x' + Math.floor(Math.random() * 2 ** 48).toString(16), '-days', days, '-sha256',
		'-extfile', ext, '-extensions', 'v3', '-out', certFile], dir);
	chmodSync(caKeyFile, 0o600);
	chmodSync(keyFile, 0o600);
	return {
		dir, caFile, caKeyFile, certFile, keyFile,
		caPem: readFileSync(caFile, 'utf8'),
		certPem: readFileSync(certFile, 'utf8'),
		keyPem: readFileSync(keyFile, 'utf8'),
	};
}
