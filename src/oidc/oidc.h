/* oidc — OpenID Connect discovery for the JWT-SVID issuer (OIDC Discovery 1.0 §3/§4):
 * /.well-known/openid-configuration and the JWKS it points to. */
#ifndef VOUCH_OIDC_H
#define VOUCH_OIDC_H

#include "ca/ca.h"

/* The discovery document for issuer (trailing '/' trimmed for the jwks_uri join):
 * {issuer, jwks_uri: issuer + "/keys", response_types_supported:["id_token"],
 *  subject_types_supported:["public"], id_token_signing_alg_values_supported:["ES256"]}.
 * Caller frees. */
int oidc_discovery_json(const char *issuer, char **ret);
/* Path component of the JWKS URI ("/keys"). */
#define OIDC_JWKS_PATH "/keys"
#define OIDC_DISCOVERY_PATH "/.well-known/openid-configuration"
/* Write DIR/.well-known/openid-configuration, DIR/keys and DIR/jwks.json (the same
 * JWKS, for pasting inline) atomically (temp + rename), mode 0644 (public data). */
int oidc_export(const char *discovery_json, const char *jwks_json, const char *dir);

#endif
