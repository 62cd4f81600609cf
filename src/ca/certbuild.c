#include "ca/certbuild.h"

#include "ca/keyfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The one place OpenSSL errors turn into -errno: drain the queue, report e. */
static int ossl_fail(int e)
{
	ERR_clear_error();
	return e;
}

/* Never prompt for a passphrase: an encrypted key file is simply unparseable here. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* One P-256 key generation context, set up once: EVP_PKEY_Q_keygen fetches the algorithm
 * and parses the group name on every call (about half of its cost with OpenSSL 3.0).
 * An EVP_PKEY_CTX is not safe for concurrent use, hence the lock; generation itself is
 * short (one scalar multiplication). */
static pthread_mutex_t keygen_lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_PKEY_CTX *keygen_ctx;

/* The public point of a key made by certbuild_keygen, kept with the key (ex_data, freed
 * with it): reading it back through the provider's parameters costs ~6 µs each time,
 * and a leaf needs it twice (SPKI, PKCS#8). Public data, plain malloc. */
static int point_idx = -1;
static pthread_once_t point_once = PTHREAD_ONCE_INIT;

static void point_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	free(ptr);
}

static void point_index(void)
{
	point_idx = EVP_PKEY_get_ex_new_index(0, NULL, NULL, NULL, point_free);
}

static const unsigned char *cached_point(const EVP_PKEY *key)
{
	pthread_once(&point_once, point_index);
	return point_idx >= 0 ? EVP_PKEY_get_ex_data(key, point_idx) : NULL;
}

static int p256_point(const EVP_PKEY *key, unsigned char out[static 65]);

int certbuild_keygen(EVP_PKEY **ret)
{
	EVP_PKEY *k = NULL;

	pthread_mutex_lock(&keygen_lock);
	if (!keygen_ctx) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		if (c && EVP_PKEY_keygen_init(c) == 1 &&
		    EVP_PKEY_CTX_set_group_name(c, "P-256") == 1)
			keygen_ctx = c;
		else
			EVP_PKEY_CTX_free(c);
	}
	if (keygen_ctx && EVP_PKEY_generate(keygen_ctx, &k) != 1)
		k = NULL;
	pthread_mutex_unlock(&keygen_lock);
	if (!k)
		return ossl_fail(-EIO);
	unsigned char *pt = malloc(65);
	pthread_once(&point_once, point_index);
	if (pt && point_idx >= 0 && p256_point(k, pt) == 0 &&
	    EVP_PKEY_set_ex_data(k, point_idx, pt) == 1)
		pt = NULL; /* the key owns it now */
	free(pt);
	ERR_clear_error();
	*ret = k;
	return 0;
}

/* The uncompressed public point (65 bytes) of a P-256 key. */
static int p256_point(const EVP_PKEY *key, unsigned char out[static 65])
{
	const unsigned char *c = cached_point(key);
	size_t n = 0;

	if (c) {
		memcpy(out, c, 65);
		return 0;
	}
	if (!certbuild_is_p256(key) ||
	    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, 65, &n) !=
		1 ||
	    n != 65 || out[0] != 0x04)
		return -EINVAL;
	return 0;
}

/* SubjectPublicKeyInfo of a P-256 key set directly (RFC 5480: id-ecPublicKey with the
 * namedCurve prime256v1, the point as the BIT STRING): X509_set_pubkey goes through an
 * OSSL_ENCODER, which costs OpenSSL 3.0 some 200 µs per certificate. The X509 object then
 * has no decoded key (OpenSSL 3.0 decodes only in d2i): for certificates that are only
 * signed and serialized. Other key types take the generic path. */
static int set_pubkey(X509 *x, EVP_PKEY *pub)
{
	unsigned char pt[65], *penc;

	if (p256_point(pub, pt) < 0) {
		ERR_clear_error();
		return X509_set_pubkey(x, pub) ? 0 : -EIO;
	}
	penc = OPENSSL_memdup(pt, sizeof(pt));
	if (!penc)
		return -ENOMEM;
	if (!X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
				    V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), penc,
				    (int)sizeof(pt))) {
		OPENSSL_free(penc);
		return -EIO;
	}
	return 0;
}

bool certbuild_is_p256(const EVP_PKEY *key)
{
	char name[64];
	size_t len = 0;

	if (!key || !EVP_PKEY_is_a(key, "EC"))
		return false;
	if (cached_point(key))
		return true; /* made by certbuild_keygen: P-256 */
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
					    &len)) {
		ERR_clear_error();
		return false;
	}
	return strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0;
}

/* RFC 5280 §4.1.2.2: positive, at most 20 octets. 16 random bytes with the top bit
 * clear and the low bit of the first byte set: positive, non-zero, always 16 octets. */
static int set_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int ret = -EIO;

	if (RAND_bytes(b, sizeof(b)) != 1)
		goto out;
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x01);
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto out;
	ret = 0;
out:
	BN_free(bn);
	return ret;
}

int certbuild_new(const char *o, const char *cn, EVP_PKEY *pub, time_t nb, time_t na, bool der_only,
		  X509 **ret)
{
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	int r = -EIO;

	if (!x || !X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0)
		goto out;
	name = X509_NAME_new();
	if (!name)
		goto out;
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)o, -1, -1,
					0))
		goto out;
	if (cn && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					      -1, -1, 0)) {
		r = -EINVAL;
		goto out;
	}
	if (!X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
	    (der_only ? set_pubkey(x, pub) < 0 : !X509_set_pubkey(x, pub)) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), nb) || !ASN1_TIME_set(X509_getm_notAfter(x), na))
		goto out;
	*ret = x;
	x = NULL;
	r = 0;
out:
	X509_NAME_free(name);
	X509_free(x);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return ossl_fail(-EINVAL);
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : ossl_fail(-EIO);
}

int certbuild_leaf_exts(X509 *x, X509 *issuer, unsigned ku, bool client_auth)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	ASN1_BIT_STRING *kus = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	const ASN1_OCTET_STRING *issuer_ski = X509_get0_subject_key_id(issuer);
	const unsigned char *pk = NULL;
	unsigned char md[SHA_DIGEST_LENGTH];
	unsigned int mdlen = 0;
	int pklen = 0, r = -EIO;

	if (!bc || !kus || !eku || !ski || !akid)
		goto out;
	if (!issuer_ski) {
		r = -EINVAL; /* the issuer must carry a subjectKeyIdentifier (ours all do) */
		goto out;
	}
	bc->ca = 0;
	/* KeyUsage bit numbers (RFC 5280 §4.2.1.3): digitalSignature 0, keyEncipherment 2,
	 * keyAgreement 4. */
	if (!ASN1_BIT_STRING_set_bit(kus, 0, 1) ||
	    ((ku & CERTBUILD_KU_KEY_ENCIPHERMENT) && !ASN1_BIT_STRING_set_bit(kus, 2, 1)) ||
	    ((ku & CERTBUILD_KU_KEY_AGREEMENT) && !ASN1_BIT_STRING_set_bit(kus, 4, 1)))
		goto out;
	if (!sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
	    (client_auth && !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth))))
		goto out;
	/* subjectKeyIdentifier: SHA-1 of the subjectPublicKey BIT STRING (RFC 5280
	 * §4.2.1.2 method 1, what OpenSSL's "hash" computes); authorityKeyIdentifier: the
	 * issuer's. */
	if (!X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(x)) || !pk ||
	    EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    !ASN1_OCTET_STRING_set(ski, md, (int)mdlen))
		goto out;
	akid->keyid = ASN1_OCTET_STRING_dup(issuer_ski);
	if (!akid->keyid)
		goto out;
	if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) != 1 ||
	    X509_add1_ext_i2d(x, NID_key_usage, kus, 1, X509V3_ADD_DEFAULT) != 1 ||
	    X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) != 1 ||
	    X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT) != 1 ||
	    X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	r = 0;
out:
	AUTHORITY_KEYID_free(akid);
	ASN1_OCTET_STRING_free(ski);
	sk_ASN1_OBJECT_free(eku); /* the objects are OpenSSL's static ones */
	ASN1_BIT_STRING_free(kus);
	BASIC_CONSTRAINTS_free(bc);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_add_san(X509 *x, enum certbuild_san kind, const char *value)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_STRING *str = NULL;
	unsigned char ip[16];
	int r = -EIO, type, iplen = 0;

	if (!gens || !gen)
		goto out;
	switch (kind) {
	case CERTBUILD_SAN_IP:
		if (inet_pton(AF_INET, value, ip) == 1) {
			iplen = 4;
		} else if (inet_pton(AF_INET6, value, ip) == 1) {
			iplen = 16;
		} else {
			r = -EINVAL;
			goto out;
		}
		type = GEN_IPADD;
		str = ASN1_OCTET_STRING_new();
		if (!str || !ASN1_OCTET_STRING_set(str, ip, iplen))
			goto out;
		break;
	case CERTBUILD_SAN_URI:
	case CERTBUILD_SAN_DNS:
		type = kind == CERTBUILD_SAN_URI ? GEN_URI : GEN_DNS;
		str = ASN1_IA5STRING_new();
		if (!str || !ASN1_STRING_set(str, value, -1))
			goto out;
		break;
	default:
		r = -EINVAL;
		goto out;
	}
	GENERAL_NAME_set0_value(gen, type, str);
	str = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto out;
	gen = NULL;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	r = 0;
out:
	ASN1_STRING_free(str);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_sign(X509 *x, EVP_PKEY *key)
{
	return X509_sign(x, key, EVP_sha256()) > 0 ? 0 : ossl_fail(-EIO);
}

EVP_MD_CTX *certbuild_signer_new(EVP_PKEY *key)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!md || !sha256_md() || EVP_DigestSignInit(md, NULL, sha256_md(), NULL, key) != 1) {
		EVP_MD_CTX_free(md);
		ERR_clear_error();
		return NULL;
	}
	return md;
}

int certbuild_sign_ctx(X509 *x, EVP_MD_CTX *md)
{
	return X509_sign_ctx(x, md) > 0 ? 0 : ossl_fail(-EIO);
}

int certbuild_self_signed_ca(EVP_PKEY *key, const char *o, const char *cn, const char *uri_san,
			     int pathlen, time_t now, uint32_t lifetime, X509 **ret)
{
	char bc[64];
	X509 *x = NULL;
	int r;

	if (pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:TRUE");
	/* notBefore a minute back: a peer whose clock lags slightly still accepts it. */
	r = certbuild_new(o, cn, key, now - 60, now + (time_t)lifetime, false, &x);
	if (r < 0)
		goto out;
	if ((r = certbuild_add_ext(x, NULL, NID_basic_constraints, bc)) < 0 ||
	    (r = certbuild_add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
	    (r = certbuild_add_ext(x, NULL, NID_subject_key_identifier, "hash")) < 0 ||
	    (r = certbuild_add_ext(x, NULL, NID_authority_key_identifier, "keyid:always")) < 0)
		goto out;
	if (uri_san && (r = certbuild_add_san(x, CERTBUILD_SAN_URI, uri_san)) < 0)
		goto out;
	if ((r = certbuild_sign(x, key)) < 0)
		goto out;
	*ret = x;
	x = NULL;
out:
	X509_free(x);
	return r;
}

int certbuild_not_after(const X509 *x, time_t *ret)
{
	struct tm tm;
	time_t t;

	if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
		return ossl_fail(-EINVAL);
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ret = t;
	return 0;
}

/* Copy a memory BIO's contents into a new secret. */
static int bio_to_secret(BIO *b, struct secret **ret)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	struct secret *s;

	if (n <= 0)
		return -EIO;
	s = secret_from(data, (size_t)n);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* Copy a memory BIO's contents into a NUL-terminated malloc()ed buffer. */
static int bio_to_heap(BIO *b, char **ret, size_t *ret_len)
{
	char *data, *p;
	long n = BIO_get_mem_data(b, &data);

	if (n <= 0)
		return -EIO;
	p = malloc((size_t)n + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, data, (size_t)n);
	p[n] = '\0';
	*ret = p;
	if (ret_len)
		*ret_len = (size_t)n;
	return 0;
}

int certbuild_key_pem(EVP_PKEY *key, struct secret **ret)
{
	/* secmem: the BIO's buffer is wiped when freed. */
	BIO *b = BIO_new(BIO_s_secmem());
	int r = -EIO;

	if (!b)
		goto out;
	if (!PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL))
		goto out;
	r = bio_to_secret(b, ret);
out:
	BIO_free(b);
	return r < 0 ? ossl_fail(r) : 0;
}

/* PKCS#8 PrivateKeyInfo (RFC 5208) of a P-256 key, written straight into a secret:
 *   SEQUENCE { INTEGER 0, SEQUENCE { OID id-ecPublicKey, OID prime256v1 },
 *              OCTET STRING { ECPrivateKey (RFC 5915): SEQUENCE { INTEGER 1,
 *                OCTET STRING d (32), [1] BIT STRING point (65) } } }
 * Every length is fixed for P-256, so this is a template with two holes. Why not
 * EVP_PKEY2PKCS8: with OpenSSL 3.0 it runs an OSSL_ENCODER (about 100 µs a key) and
 * leaves the key's DER in unwiped heap buffers; here the scalar only ever sits in the
 * secret (and a BIGNUM cleared on free). Checked against OpenSSL's own parser in
 * test_certbuild. */
static int generic_pkcs8(EVP_PKEY *key, struct secret **ret);

static const unsigned char p8_head[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06,
					0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
					0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
					0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
static const unsigned char p8_mid[] = {0xa1, 0x44, 0x03, 0x42, 0x00};
#define P8_P256_LEN (sizeof(p8_head) + 32 + sizeof(p8_mid) + 65)

static int p256_pkcs8(EVP_PKEY *key, struct secret **ret)
{
	unsigned char pt[65];
	BIGNUM *d = NULL;
	struct secret *s;
	int r = -EIO;

	if (p256_point(key, pt) < 0 ||
	    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1)
		return -EINVAL;
	s = secret_new(P8_P256_LEN);
	if (!s) {
		BN_clear_free(d);
		return -ENOMEM;
	}
	memcpy(s->data, p8_head, sizeof(p8_head));
	if (BN_bn2binpad(d, s->data + sizeof(p8_head), 32) == 32) {
		memcpy(s->data + sizeof(p8_head) + 32, p8_mid, sizeof(p8_mid));
		memcpy(s->data + sizeof(p8_head) + 32 + sizeof(p8_mid), pt, sizeof(pt));
		s->len = P8_P256_LEN;
		*ret = s;
		s = NULL;
		r = 0;
	}
	secret_free(s);
	BN_clear_free(d);
	return r;
}

int certbuild_key_pkcs8_der(EVP_PKEY *key, struct secret **ret)
{
	if (certbuild_is_p256(key)) {
		int r = p256_pkcs8(key, ret);
		if (r != -EINVAL)
			return r < 0 ? ossl_fail(r) : 0;
		ERR_clear_error();
	}
	return generic_pkcs8(key, ret);
}

static int generic_pkcs8(EVP_PKEY *key, struct secret **ret)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
	struct secret *s = NULL;
	unsigned char *p;
	int n, r = -EIO;

	if (!p8)
		goto out;
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
	if (n <= 0)
		goto out;
	s = secret_new((size_t)n);
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	p = s->data;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n)
		goto out;
	s->len = (size_t)n;
	*ret = s;
	s = NULL;
	r = 0;
out:
	secret_free(s);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_key_from_pem(const void *buf, size_t len, EVP_PKEY **ret)
{
	BIO *b;
	EVP_PKEY *k = NULL;
	int r = -EINVAL;

	if (len == 0 || len > INT32_MAX)
		return -EINVAL;
	b = BIO_new_mem_buf(buf, (int)len);
	if (!b)
		return ossl_fail(-ENOMEM);
	k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	if (!k || !certbuild_is_p256(k))
		goto out;
	*ret = k;
	k = NULL;
	r = 0;
out:
	EVP_PKEY_free(k);
	BIO_free(b);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_pubkey_pem(EVP_PKEY *key, char **ret, size_t *ret_len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int r = -EIO;

	if (!b)
		goto out;
	if (!PEM_write_bio_PUBKEY(b, key))
		goto out;
	r = bio_to_heap(b, ret, ret_len);
out:
	BIO_free(b);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_pubkey_from_pem(const void *buf, size_t len, EVP_PKEY **ret)
{
	BIO *b;
	EVP_PKEY *k = NULL;
	int r = -EINVAL;

	if (len == 0 || len > INT32_MAX)
		return -EINVAL;
	b = BIO_new_mem_buf(buf, (int)len);
	if (!b)
		return ossl_fail(-ENOMEM);
	k = PEM_read_bio_PUBKEY(b, NULL, no_passphrase, NULL);
	if (!k || !certbuild_is_p256(k))
		goto out;
	*ret = k;
	k = NULL;
	r = 0;
out:
	EVP_PKEY_free(k);
	BIO_free(b);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_cert_pem(X509 *x, char **ret, size_t *ret_len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int r = -EIO;

	if (!b)
		goto out;
	if (!PEM_write_bio_X509(b, x))
		goto out;
	r = bio_to_heap(b, ret, ret_len);
out:
	BIO_free(b);
	return r < 0 ? ossl_fail(r) : 0;
}

int certbuild_cert_der(X509 *x, unsigned char **ret, size_t *ret_len)
{
	unsigned char *buf, *p;
	int n = i2d_X509(x, NULL);

	if (n <= 0)
		return ossl_fail(-EIO);
	buf = malloc((size_t)n);
	if (!buf)
		return -ENOMEM;
	p = buf;
	if (i2d_X509(x, &p) != n) {
		free(buf);
		return ossl_fail(-EIO);
	}
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

int certbuild_cert_from_pem(const void *buf, size_t len, X509 **ret)
{
	BIO *b;
	X509 *x;

	if (len == 0 || len > INT32_MAX)
		return -EINVAL;
	b = BIO_new_mem_buf(buf, (int)len);
	if (!b)
		return ossl_fail(-ENOMEM);
	x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (!x)
		return ossl_fail(-EINVAL);
	*ret = x;
	return 0;
}

int certbuild_read_cert(const char *path, bool follow, X509 **ret)
{
	struct secret *s = NULL;
	int r = keyfile_read(path, KEYFILE_MAX, follow ? KEYFILE_FOLLOW : 0, &s);

	if (r < 0)
		return r;
	r = certbuild_cert_from_pem(s->data, s->len, ret);
	secret_free(s);
	return r;
}

int certbuild_read_key(const char *path, bool follow, EVP_PKEY **ret)
{
	struct secret *s = NULL;
	int r =
	    keyfile_read(path, KEYFILE_MAX, KEYFILE_PRIVATE | (follow ? KEYFILE_FOLLOW : 0), &s);

	if (r < 0)
		return r;
	r = certbuild_key_from_pem(s->data, s->len, ret);
	secret_free(s);
	return r;
}

int certbuild_check_ca_pair(X509 *cert, EVP_PKEY *key, time_t now)
{
	time_t na;

	if (!certbuild_is_p256(key) || X509_check_private_key(cert, key) != 1 ||
	    X509_check_ca(cert) < 1)
		return ossl_fail(-EINVAL);
	if (certbuild_not_after(cert, &na) < 0)
		return -EINVAL;
	if (na <= now)
		return -EKEYEXPIRED;
	return 0;
}

static int write_cert(const char *path, X509 *x)
{
	char *pem = NULL;
	size_t len = 0;
	int r = certbuild_cert_pem(x, &pem, &len);

	if (r < 0)
		return r;
	r = keyfile_write(path, pem, len, 0644);
	free(pem);
	return r;
}

static int write_key(const char *path, EVP_PKEY *k)
{
	struct secret *pem = NULL;
	int r = certbuild_key_pem(k, &pem);

	if (r < 0)
		return r;
	r = keyfile_write(path, pem->data, pem->len, 0600);
	secret_free(pem);
	return r;
}

int certbuild_ca_state(const struct certbuild_ca_spec *spec, time_t now, EVP_PKEY **ret_key,
		       X509 **ret_cert)
{
	char kpath[PATH_MAX], cpath[PATH_MAX];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	time_t na;
	int r;

	if ((r = keyfile_join(kpath, sizeof(kpath), spec->dir, spec->key_name)) < 0 ||
	    (r = keyfile_join(cpath, sizeof(cpath), spec->dir, spec->cert_name)) < 0)
		return r;
	r = certbuild_read_key(kpath, false, &key);
	if (r == -ENOENT) {
		/* First start. Key first: a crash between the two writes leaves a key whose
		 * certificate is issued on the next start. */
		if ((r = certbuild_keygen(&key)) < 0 || (r = write_key(kpath, key)) < 0)
			goto out;
	} else if (r < 0) {
		goto out; /* corrupt (-EINVAL) or bad mode (-EPERM): never overwrite it */
	} else {
		r = certbuild_read_cert(cpath, false, &cert);
		if (r < 0 && r != -ENOENT)
			goto out;
	}
	if (cert) {
		r = certbuild_check_ca_pair(cert, key, now);
		if (r == -EKEYEXPIRED) {
			X509_free(cert);
			cert = NULL;
		} else if (r < 0) {
			goto out;
		} else if ((r = certbuild_not_after(cert, &na)) < 0) {
			goto out;
		} else if (na - now < (time_t)spec->renew) {
			X509_free(cert);
			cert = NULL;
		}
	}
	if (!cert) {
		if ((r = certbuild_self_signed_ca(key, spec->o, spec->cn, spec->uri_san,
						  spec->pathlen, now, spec->lifetime, &cert)) < 0 ||
		    (r = write_cert(cpath, cert)) < 0)
			goto out;
	}
	*ret_key = key;
	*ret_cert = cert;
	key = NULL;
	cert = NULL;
	r = 0;
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	return r;
}

/* ---- leaf templates ---- */

/* The TBSCertificate of a leaf, encoded once by OpenSSL with placeholder values, and the
 * offsets of the bytes that differ from one leaf to the next: serial (16 octets, see
 * set_serial), notBefore and notAfter (UTCTime, 13 characters each), the P-256 point of
 * the subject key (65 octets) and its subjectKeyIdentifier (20 octets). Everything else
 * (issuer, subject, extensions with the URI SAN) is the same for every leaf of one
 * workload, so a mint patches a copy instead of building and encoding an X509 object
 * (~19 µs of a ~63 µs mint measured on the issue-5 machine). */
struct certbuild_tmpl {
	unsigned char *tbs;
	size_t len;
	size_t off_serial, off_nb, off_na, off_point, off_ski;
};

/* UTCTime (RFC 5280 §4.1.2.5.1: years 1950 through 2049) as YYMMDDHHMMSSZ. */
static int utc_time(time_t t, char out[static 14])
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || tm.tm_year < 50 || tm.tm_year > 149)
		return -ERANGE;
	const int v[6] = {tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday,
			  tm.tm_hour,	    tm.tm_min,	   tm.tm_sec};
	for (int i = 0; i < 6; i++) { /* two digits each; the century is implied */
		out[2 * i] = (char)('0' + v[i] / 10);
		out[2 * i + 1] = (char)('0' + v[i] % 10);
	}
	out[12] = 'Z';
	out[13] = '\0';
	return 0;
}

/* The only offset of needle in hay, or SIZE_MAX (absent or ambiguous). */
static size_t find_once(const unsigned char *hay, size_t n, const void *needle, size_t m)
{
	const unsigned char *p = memmem(hay, n, needle, m);

	if (!p || memmem(p + 1, n - (size_t)(p + 1 - hay), needle, m))
		return SIZE_MAX;
	return (size_t)(p - hay);
}

int certbuild_tmpl_new(X509 *issuer, const char *uri_san, unsigned ku, bool client_auth,
		       struct certbuild_tmpl **ret)
{
	/* placeholder validity: distinct, unambiguous UTCTime strings */
	const time_t nb = 1893456000; /* 2030-01-01 00:00:00 UTC */
	const time_t na = 1928234706; /* 2031-02-07 11:25:06 UTC */
	struct certbuild_tmpl *t = NULL;
	char snb[14], sna[14];
	unsigned char pt[65], ski[SHA_DIGEST_LENGTH];
	const ASN1_INTEGER *serial;
	unsigned char *der = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	int len, r;

	if ((r = certbuild_keygen(&key)) < 0 || (r = p256_point(key, pt)) < 0 ||
	    (r = certbuild_new("vouch", NULL, key, nb, na, true, &x)) < 0)
		goto out;
	r = -EIO;
	if (!X509_set_issuer_name(x, X509_get_subject_name(issuer)))
		goto out;
	/* signed once with its own key: that sets the TBS signature algorithm (no public
	 * setter in OpenSSL 3.0) to ecdsa-with-SHA256, which is what a P-256 CA signs with */
	if ((r = certbuild_leaf_exts(x, issuer, ku, client_auth)) < 0 ||
	    (r = certbuild_add_san(x, CERTBUILD_SAN_URI, uri_san)) < 0 ||
	    (r = certbuild_sign(x, key)) < 0)
		goto out;
	r = -EIO;
	len = i2d_re_X509_tbs(x, &der);
	serial = X509_get0_serialNumber(x);
	if (len <= 0 || !serial || ASN1_STRING_length(serial) != 16 || !SHA1(pt, sizeof(pt), ski) ||
	    utc_time(nb, snb) < 0 || utc_time(na, sna) < 0)
		goto out;
	t = calloc(1, sizeof(*t));
	if (!t) {
		r = -ENOMEM;
		goto out;
	}
	t->len = (size_t)len;
	t->off_serial = find_once(der, t->len, ASN1_STRING_get0_data(serial), 16);
	t->off_nb = find_once(der, t->len, snb, 13);
	t->off_na = find_once(der, t->len, sna, 13);
	t->off_point = find_once(der, t->len, pt, sizeof(pt));
	t->off_ski = find_once(der, t->len, ski, sizeof(ski));
	if (t->off_serial == SIZE_MAX || t->off_nb == SIZE_MAX || t->off_na == SIZE_MAX ||
	    t->off_point == SIZE_MAX || t->off_ski == SIZE_MAX)
		goto out; /* an encoding we do not expect: the caller builds leaves the slow way */
	t->tbs = malloc(t->len);
	if (!t->tbs) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(t->tbs, der, t->len);
	*ret = t;
	t = NULL;
	r = 0;
out:
	if (r < 0)
		ERR_clear_error();
	certbuild_tmpl_free(t);
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

void certbuild_tmpl_free(struct certbuild_tmpl *t)
{
	if (!t)
		return;
	free(t->tbs);
	free(t);
}

int certbuild_tmpl_tbs(const struct certbuild_tmpl *t, EVP_PKEY *key, time_t nb, time_t na,
		       unsigned char **ret, size_t *ret_len)
{
	unsigned char pt[65], serial[16], *tbs;
	char snb[14], sna[14];
	int r;

	if ((r = utc_time(nb, snb)) < 0 || (r = utc_time(na, sna)) < 0)
		return r;
	if (p256_point(key, pt) < 0) {
		ERR_clear_error();
		return -EINVAL;
	}
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01); /* as set_serial */
	tbs = malloc(t->len);
	if (!tbs)
		return -ENOMEM;
	memcpy(tbs, t->tbs, t->len);
	memcpy(tbs + t->off_serial, serial, sizeof(serial));
	memcpy(tbs + t->off_nb, snb, 13);
	memcpy(tbs + t->off_na, sna, 13);
	memcpy(tbs + t->off_point, pt, sizeof(pt));
	SHA1(pt, sizeof(pt), tbs + t->off_ski); /* RFC 5280 §4.2.1.2 method (1), as leaf_exts */
	*ret = tbs;
	*ret_len = t->len;
	return 0;
}

/* DER length octets of n into out (at most 4 octets used); their count. */
static size_t der_len(size_t n, unsigned char *out)
{
	if (n < 0x80) {
		out[0] = (unsigned char)n;
		return 1;
	}
	if (n < 0x100) {
		out[0] = 0x81, out[1] = (unsigned char)n;
		return 2;
	}
	out[0] = 0x82, out[1] = (unsigned char)(n >> 8), out[2] = (unsigned char)n;
	return 3;
}

int certbuild_wrap_signed(const unsigned char *tbs, size_t tbs_len, const unsigned char *sig,
			  size_t sig_len, unsigned char **ret, size_t *ret_len)
{
	/* AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758 §3.2: parameters absent) */
	static const unsigned char alg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
					    0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
	unsigned char bl[4], cl[4], *out, *p;
	size_t bn, body, cn;

	if (tbs_len > 0x8000 || sig_len == 0 || sig_len > 128)
		return -EINVAL;
	bn = der_len(sig_len + 1, bl);
	body = tbs_len + sizeof(alg) + 1 + bn + sig_len + 1;
	cn = der_len(body, cl);
	out = malloc(1 + cn + body);
	if (!out)
		return -ENOMEM;
	p = out;
	*p++ = 0x30; /* Certificate ::= SEQUENCE */
	memcpy(p, cl, cn), p += cn;
	memcpy(p, tbs, tbs_len), p += tbs_len;
	memcpy(p, alg, sizeof(alg)), p += sizeof(alg);
	*p++ = 0x03; /* signatureValue BIT STRING, no unused bits */
	memcpy(p, bl, bn), p += bn;
	*p++ = 0x00;
	memcpy(p, sig, sig_len), p += sig_len;
	*ret = out;
	*ret_len = (size_t)(p - out);
	return 0;
}

int certbuild_ecdsa_der(const unsigned char rs[static 64], unsigned char *out, size_t *ret_len)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
	unsigned char *p = out;
	int n, rc = -EINVAL;

	if (!sig || !r || !s) {
		rc = -ENOMEM;
		goto out;
	}
	if (BN_is_zero(r) || BN_is_zero(s) || !ECDSA_SIG_set0(sig, r, s))
		goto out;
	r = s = NULL; /* owned by sig */
	n = i2d_ECDSA_SIG(sig, NULL);
	if (n <= 0 || n > CERTBUILD_ECDSA_DER_MAX || i2d_ECDSA_SIG(sig, &p) != n)
		goto out;
	*ret_len = (size_t)n;
	rc = 0;
out:
	if (rc < 0)
		ERR_clear_error();
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return rc;
}

int certbuild_sign_remote(X509 *x, EVP_PKEY *tmp_key, certbuild_sign_fn sign, void *ctx,
			  unsigned char **ret, size_t *ret_len)
{
	unsigned char *tbs = NULL, h[32], rs[64], der[CERTBUILD_ECDSA_DER_MAX];
	unsigned int hlen = sizeof(h);
	size_t dlen = 0;
	int len, r;

	if (!certbuild_is_p256(tmp_key))
		return -EINVAL;
	if ((r = certbuild_sign(x, tmp_key)) < 0)
		return r;
	len = i2d_re_X509_tbs(x, &tbs);
	if (len <= 0 || !sha256_md() ||
	    EVP_Digest(tbs, (size_t)len, h, &hlen, sha256_md(), NULL) != 1) {
		r = ossl_fail(-EIO);
		goto out;
	}
	if ((r = sign(ctx, h, rs)) < 0 || (r = certbuild_ecdsa_der(rs, der, &dlen)) < 0)
		goto out;
	r = certbuild_wrap_signed(tbs, (size_t)len, der, dlen, ret, ret_len);
out:
	OPENSSL_free(tbs);
	return r;
}
