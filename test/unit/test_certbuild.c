/* test_certbuild — the encoder-free P-256 paths of certbuild (PKCS#8 template, SPKI set
 * directly for der_only certificates) produce exactly what OpenSSL's own encoders produce,
 * and parse back to the same key. */
#include "tap.h"

#include "ca/certbuild.h"
#include "common/secret.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

int main(void)
{
	for (int i = 0; i < 50; i++) {
		EVP_PKEY *k = NULL;
		struct secret *p8 = NULL;
		X509 *fast = NULL, *slow = NULL;
		unsigned char *ref = NULL, *fd = NULL, *sd = NULL, *spki = NULL;
		time_t now = time(NULL);
		bool quiet = i > 0; /* print every check once, then only failures */

		if (certbuild_keygen(&k) < 0 || certbuild_key_pkcs8_der(k, &p8) < 0) {
			ok(0, "keygen + PKCS#8");
			break;
		}
		/* PKCS#8: byte-identical to OpenSSL's encoder, and parses to the same key */
		PKCS8_PRIV_KEY_INFO *info = EVP_PKEY2PKCS8(k);
		int rl = info ? i2d_PKCS8_PRIV_KEY_INFO(info, &ref) : -1;
		bool same = rl > 0 && (size_t)rl == p8->len && memcmp(ref, p8->data, p8->len) == 0;
		const unsigned char *q = p8->data;
		PKCS8_PRIV_KEY_INFO *back = d2i_PKCS8_PRIV_KEY_INFO(NULL, &q, (long)p8->len);
		EVP_PKEY *k2 = back ? EVP_PKCS82PKEY(back) : NULL;
		if (!quiet || !same || !k2 || EVP_PKEY_eq(k, k2) != 1)
			ok(same && k2 && EVP_PKEY_eq(k, k2) == 1,
			   "key %d: PKCS#8 template = OpenSSL's encoding (%d vs %zu bytes), parses "
			   "back "
			   "to the same key",
			   i, rl, p8->len);
		/* SPKI: a der_only certificate carries the same SubjectPublicKeyInfo */
		int fl = -1, sl = -1, pl = -1;
		if (certbuild_new("t", NULL, k, now, now + 60, true, &fast) == 0 &&
		    certbuild_new("t", NULL, k, now, now + 60, false, &slow) == 0 &&
		    certbuild_sign(fast, k) == 0 && certbuild_sign(slow, k) == 0) {
			fl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(fast), &fd);
			sl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(slow), &sd);
			pl = i2d_PUBKEY(k, &spki);
		}
		bool spki_ok = fl > 0 && fl == sl && fl == pl && memcmp(fd, sd, (size_t)fl) == 0 &&
			       memcmp(fd, spki, (size_t)fl) == 0;
		/* and the serialized der_only certificate verifies with the key */
		unsigned char *cd = NULL;
		size_t cl = 0;
		bool verifies = false;
		if (fast && certbuild_cert_der(fast, &cd, &cl) == 0) {
			const unsigned char *c = cd;
			X509 *parsed = d2i_X509(NULL, &c, (long)cl);
			verifies = parsed && X509_verify(parsed, k) == 1 &&
				   X509_check_private_key(parsed, k) == 1;
			X509_free(parsed);
		}
		if (!quiet || !spki_ok || !verifies)
			ok(spki_ok && verifies,
			   "key %d: der_only SPKI = X509_set_pubkey's = i2d_PUBKEY; the serialized "
			   "certificate verifies and matches the key",
			   i);
		free(cd);
		OPENSSL_free(fd);
		OPENSSL_free(sd);
		OPENSSL_free(spki);
		OPENSSL_free(ref);
		X509_free(fast);
		X509_free(slow);
		EVP_PKEY_free(k2);
		PKCS8_PRIV_KEY_INFO_free(back);
		PKCS8_PRIV_KEY_INFO_free(info);
		secret_free(p8);
		EVP_PKEY_free(k);
	}
	/* certbuild_leaf_exts encodes exactly what OpenSSL's config strings produce */
	{
		EVP_PKEY *ik = NULL, *lk = NULL;
		X509 *issuer = NULL, *a = NULL, *b = NULL;
		time_t now = time(NULL);
		bool same =
		    certbuild_keygen(&ik) == 0 && certbuild_keygen(&lk) == 0 &&
		    certbuild_self_signed_ca(ik, "ca", "issuer", NULL, 0, now, 3600, &issuer) ==
			0 &&
		    certbuild_new("t", NULL, lk, now, now + 60, true, &a) == 0 &&
		    certbuild_new("t", NULL, lk, now, now + 60, true, &b) == 0 &&
		    certbuild_leaf_exts(a, issuer,
					CERTBUILD_KU_KEY_ENCIPHERMENT | CERTBUILD_KU_KEY_AGREEMENT,
					true) == 0 &&
		    certbuild_add_ext(b, issuer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
		    certbuild_add_ext(b, issuer, NID_key_usage,
				      "critical,digitalSignature,keyEncipherment,keyAgreement") ==
			0 &&
		    certbuild_add_ext(b, issuer, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
		    certbuild_add_ext(b, issuer, NID_subject_key_identifier, "hash") == 0 &&
		    certbuild_add_ext(b, issuer, NID_authority_key_identifier, "keyid:always") ==
			0 &&
		    X509_get_ext_count(a) == 5 && X509_get_ext_count(b) == 5;
		for (int i = 0; same && i < 5; i++) {
			X509_EXTENSION *ea = X509_get_ext(a, i), *eb = X509_get_ext(b, i);
			const ASN1_OCTET_STRING *da = X509_EXTENSION_get_data(ea),
						*db = X509_EXTENSION_get_data(eb);
			same = OBJ_cmp(X509_EXTENSION_get_object(ea),
				       X509_EXTENSION_get_object(eb)) == 0 &&
			       X509_EXTENSION_get_critical(ea) == X509_EXTENSION_get_critical(eb) &&
			       ASN1_STRING_cmp(da, db) == 0;
		}
		ok(same,
		   "certbuild_leaf_exts = the config-string extensions, byte for byte (5 of them)");
		X509_free(a);
		X509_free(b);
		X509_free(issuer);
		EVP_PKEY_free(ik);
		EVP_PKEY_free(lk);
	}
	/* leaf templates: the patched TBS is what OpenSSL encodes for the same leaf, and the
	 * wrapped certificate is canonical DER that verifies under the issuer */
	{
		EVP_PKEY *ik = NULL;
		X509 *issuer = NULL;
		struct certbuild_tmpl *t = NULL;
		const char *id = "spiffe://example.org/ns/prod/sa/api";
		time_t now = time(NULL);
		int same = 0, canon = 0, verified = 0, runs = 20;
		bool setup =
		    certbuild_keygen(&ik) == 0 &&
		    certbuild_self_signed_ca(ik, "ca", "issuer", NULL, 0, now, 86400, &issuer) ==
			0 &&
		    certbuild_tmpl_new(issuer, id,
				       CERTBUILD_KU_KEY_ENCIPHERMENT | CERTBUILD_KU_KEY_AGREEMENT,
				       true, &t) == 0;
		ok(setup, "a leaf template is built for a P-256 issuer");
		for (int i = 0; setup && i < runs; i++) {
			EVP_PKEY *lk = NULL;
			X509 *ref = NULL, *parsed = NULL;
			unsigned char *tbs = NULL, *rtbs = NULL, *cert = NULL, *re = NULL;
			size_t tl = 0, cl = 0;
			int rl = -1, rel = -1;
			time_t nb = now - 10 + i * 7919, na = nb + 3600 + i;
			if (certbuild_keygen(&lk) < 0 ||
			    certbuild_tmpl_tbs(t, lk, nb, na, &tbs, &tl) < 0)
				goto next;
			/* the same leaf the slow way, then the template's serial copied in */
			if (certbuild_new("vouch", NULL, lk, nb, na, true, &ref) == 0 &&
			    X509_set_issuer_name(ref, X509_get_subject_name(issuer)) &&
			    certbuild_leaf_exts(ref, issuer,
						CERTBUILD_KU_KEY_ENCIPHERMENT |
						    CERTBUILD_KU_KEY_AGREEMENT,
						true) == 0 &&
			    certbuild_add_san(ref, CERTBUILD_SAN_URI, id) == 0 &&
			    certbuild_sign(ref, ik) == 0)
				rl = i2d_re_X509_tbs(ref, &rtbs);
			if (rl > 0 && (size_t)rl == tl) {
				const ASN1_INTEGER *sn = X509_get0_serialNumber(ref);
				unsigned char *at = memmem(rtbs, tl, ASN1_STRING_get0_data(sn), 16);
				/* the serials differ (random): compare everything else */
				if (at && memcmp(rtbs, tbs, (size_t)(at - rtbs)) == 0 &&
				    memcmp(at + 16, tbs + (at - rtbs) + 16,
					   tl - (size_t)(at - rtbs) - 16) == 0)
					same++;
			}
			/* sign the template TBS with the issuer key and wrap it */
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			unsigned char sig[80];
			size_t sl = sizeof(sig);
			if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ik) == 1 &&
			    EVP_DigestSign(md, sig, &sl, tbs, tl) == 1 &&
			    certbuild_wrap_signed(tbs, tl, sig, sl, &cert, &cl) == 0) {
				const unsigned char *c = cert;
				parsed = d2i_X509(NULL, &c, (long)cl);
				if (parsed && c == cert + cl) {
					rel = i2d_X509(parsed, &re);
					if (rel > 0 && (size_t)rel == cl &&
					    memcmp(re, cert, cl) == 0)
						canon++;
					if (X509_verify(parsed, ik) == 1 &&
					    X509_check_private_key(parsed, lk) == 1)
						verified++;
				}
			}
			EVP_MD_CTX_free(md);
		next:
			X509_free(parsed);
			X509_free(ref);
			OPENSSL_free(re);
			OPENSSL_free(rtbs);
			free(tbs);
			free(cert);
			EVP_PKEY_free(lk);
		}
		ok(same == runs,
		   "template TBS = OpenSSL's TBS for the same leaf, byte for byte, but "
		   "for the serial (%d of %d)",
		   same, runs);
		ok(canon == runs,
		   "wrapped certificate parses whole and re-encodes to the same DER (%d "
		   "of %d)",
		   canon, runs);
		ok(verified == runs,
		   "wrapped certificate verifies under the issuer and matches its "
		   "key (%d of %d)",
		   verified, runs);
		unsigned char *tb = NULL;
		size_t tbl = 0;
		EVP_PKEY *lk = NULL;
		ok(t && certbuild_keygen(&lk) == 0 &&
		       certbuild_tmpl_tbs(t, lk, (time_t)2524608000, now + 60, &tb, &tbl) ==
			   -ERANGE &&
		       certbuild_tmpl_tbs(t, lk, now, (time_t)2524608000, &tb, &tbl) == -ERANGE,
		   "a time past 2049 (GeneralizedTime) is -ERANGE: the caller takes the slow path");
		EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		ok(t && ed && certbuild_tmpl_tbs(t, ed, now, now + 60, &tb, &tbl) == -EINVAL,
		   "a key that is not P-256 is refused by the template");
		EVP_PKEY_free(ed);
		EVP_PKEY_free(lk);
		certbuild_tmpl_free(t);
		X509_free(issuer);
		EVP_PKEY_free(ik);
	}
	/* a non-P-256 key takes the generic path */
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	struct secret *p8 = NULL;
	X509 *x = NULL;
	ok(ed && certbuild_key_pkcs8_der(ed, &p8) == 0 && p8->len > 0 &&
	       certbuild_new("t", NULL, ed, time(NULL), time(NULL) + 60, true, &x) == 0 &&
	       X509_get0_pubkey(x) != NULL,
	   "Ed25519: generic PKCS#8 and X509_set_pubkey");
	X509_free(x);
	secret_free(p8);
	EVP_PKEY_free(ed);
	return tap_done();
}
