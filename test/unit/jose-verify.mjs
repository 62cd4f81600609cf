// jose-verify.mjs JWKS_FILE JWT AUD ISS — verify a JWT-SVID with the npm `jose` library
// (an independent JOSE implementation) against a JWKS file. JWT "-" reads it from stdin.
// Exit 0 and print "ok <kid> <sub>" when valid; exit 1 with jose's error code otherwise.
// The token itself is never printed.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const [jwksFile, jwtArg, aud, iss] = process.argv.slice(2);
if (!jwksFile || !jwtArg || !aud || !iss) {
	console.error('usage: jose-verify.mjs JWKS_FILE JWT|- AUD ISS');
	process.exit(2);
}
const jwt = (jwtArg === '-' ? readFileSync(0, 'utf8') : jwtArg).trim();
try {
	const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')));
	const hdr = decodeProtectedHeader(jwt);
	const names = Object.keys(hdr).sort().join(',');
	if (names !== 'alg,kid,typ') throw Object.assign(new Error(`header members ${names}`), { code: 'BAD_HEADER' });
	const { payload } = await jwtVerify(jwt, jwks, {
		algorithms: ['ES256'],
		audience: aud,
		issuer: iss,
		typ: 'JWT',
		requiredClaims: ['sub', 'iat', 'exp', 'jti'],
	});
	console.log(`ok ${hdr.kid} ${payload.sub}`);
} catch (e) {
	console.error(`jose: ${e.code || 'ERROR'}: ${e.message}`);
	process.exit(1);
}
