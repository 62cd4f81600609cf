// refserver.go: a reference SPIFFE Workload API server on grpc-go 1.33 (Debian), the peer of
// `make bench` (bench/run.sh). It answers from an in-memory cache made at start: a P-256 CA,
// one X.509-SVID (PKCS#8 key), the CA as the X.509 bundle and a JWKS; FetchJWTSVID signs a
// fresh ES256 JWT per call (raw r||s), as vouchd mints one per call; ValidateJWTSVID checks
// its own tokens (signature, audience, expiry). It checks the security header like SPIRE and
// does no caller attestation: it is the cost of a gRPC-Go server with nothing to decide, not a
// Workload API implementation. The FetchWIT* methods are grpc-go's UNIMPLEMENTED.
//
//	refserver --socket /path.sock [--flaw NAME]
//
// --flaw serves one defect that a SPIFFE client library must refuse, so that the client-side
// checks of the tests' clients are themselves tested: sec1-key, wrong-key, two-uris, id-mismatch,
// ca-leaf, cert-sign, foreign-root (X.509-SVID) and no-kid (JWT-SVID header).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pb "wlclient/workload"
)

const td = "spiffe://ref.test"

type server struct {
	pb.UnimplementedSpiffeWorkloadAPIServer
	x509    *pb.X509SVIDResponse
	bundles *pb.X509BundlesResponse
	jwks    *pb.JWTBundlesResponse
	jwtKey  *ecdsa.PrivateKey
	kid     string
	noKid   bool
}

func header(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (s *server) FetchX509SVID(_ *pb.X509SVIDRequest, st pb.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	if err := header(st.Context()); err != nil {
		return err
	}
	if err := st.Send(s.x509); err != nil {
		return err
	}
	<-st.Context().Done()
	return nil
}

func (s *server) FetchX509Bundles(_ *pb.X509BundlesRequest, st pb.SpiffeWorkloadAPI_FetchX509BundlesServer) error {
	if err := header(st.Context()); err != nil {
		return err
	}
	if err := st.Send(s.bundles); err != nil {
		return err
	}
	<-st.Context().Done()
	return nil
}

func (s *server) FetchJWTBundles(_ *pb.JWTBundlesRequest, st pb.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	if err := header(st.Context()); err != nil {
		return err
	}
	if err := st.Send(s.jwks); err != nil {
		return err
	}
	<-st.Context().Done()
	return nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *server) FetchJWTSVID(ctx context.Context, req *pb.JWTSVIDRequest) (*pb.JWTSVIDResponse, error) {
	if err := header(ctx); err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	now := time.Now().Unix()
	jti := make([]byte, 16)
	rand.Read(jti)
	hdr := map[string]string{"alg": "ES256", "kid": s.kid, "typ": "JWT"}
	if s.noKid {
		delete(hdr, "kid")
	}
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(map[string]interface{}{"sub": td + "/bench", "aud": req.Audience, "iat": now,
		"exp": now + 300, "jti": fmt.Sprintf("%x", jti)})
	signing := b64(h) + "." + b64(c)
	d := sha256.Sum256([]byte(signing))
	r, ss, err := ecdsa.Sign(rand.Reader, s.jwtKey, d[:])
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return &pb.JWTSVIDResponse{Svids: []*pb.JWTSVID{{SpiffeId: td + "/bench", Svid: signing + "." + b64(sig)}}}, nil
}

// ValidateJWTSVID accepts only tokens this server signed: ES256 over its own key, raw r||s.
func (s *server) ValidateJWTSVID(ctx context.Context, req *pb.ValidateJWTSVIDRequest) (*pb.ValidateJWTSVIDResponse, error) {
	if err := header(ctx); err != nil {
		return nil, err
	}
	if req.Audience == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.Svid == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	bad := func(why string) error { return status.Error(codes.InvalidArgument, "invalid JWT-SVID: "+why) }
	parts := strings.Split(req.Svid, ".")
	if len(parts) != 3 {
		return nil, bad("not a compact JWS")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, bad("signature")
	}
	d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&s.jwtKey.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, bad("signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, bad("claims")
	}
	var claims map[string]interface{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, bad("claims")
	}
	if exp, _ := claims["exp"].(float64); exp < float64(time.Now().Unix()) {
		return nil, bad("expired")
	}
	aud, _ := claims["aud"].([]interface{})
	found := false
	for _, a := range aud {
		found = found || a == req.Audience
	}
	if !found {
		return nil, bad("audience not accepted")
	}
	st, err := structpb.NewStruct(claims)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sub, _ := claims["sub"].(string)
	return &pb.ValidateJWTSVIDResponse{SpiffeId: sub, Claims: st}, nil
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func main() {
	sock := flag.String("socket", "", "Unix socket path")
	flaw := flag.String("flaw", "", "serve this defect (see the top of refserver.go)")
	flag.Parse()
	if *sock == "" {
		log.Fatal("--socket is required")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"ref"}},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDer, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, _ := x509.ParseCertificate(caDer)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	id, _ := url.Parse(td + "/bench")
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"ref"}},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), URIs: []*url.URL{id},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	svidID, bundleDer := id.String(), caDer
	switch *flaw {
	case "two-uris":
		other, _ := url.Parse(td + "/other")
		leafTmpl.URIs = append(leafTmpl.URIs, other)
	case "id-mismatch":
		svidID = td + "/other"
	case "ca-leaf":
		leafTmpl.IsCA, leafTmpl.BasicConstraintsValid = true, true
	case "cert-sign":
		leafTmpl.KeyUsage |= x509.KeyUsageCertSign
	case "foreign-root":
		// The bundle is another CA with the same name, which did not sign the leaf.
		otherKey, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(gerr)
		bundleDer, err = x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &otherKey.PublicKey, otherKey)
		must(err)
	case "", "sec1-key", "wrong-key", "no-kid":
	default:
		log.Fatalf("unknown --flaw %q", *flaw)
	}
	leafDer, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	must(err)
	var keyDer []byte
	switch *flaw {
	case "sec1-key":
		keyDer, err = x509.MarshalECPrivateKey(leafKey)
	case "wrong-key":
		other, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(gerr)
		keyDer, err = x509.MarshalPKCS8PrivateKey(other)
	default:
		keyDer, err = x509.MarshalPKCS8PrivateKey(leafKey)
	}
	must(err)
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	kid := b64(jwtKey.PublicKey.X.Bytes()[:8])
	jwks, _ := json.Marshal(map[string]interface{}{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": kid,
		"x": b64(jwtKey.PublicKey.X.FillBytes(make([]byte, 32))), "y": b64(jwtKey.PublicKey.Y.FillBytes(make([]byte, 32)))}}})
	s := &server{
		x509:    &pb.X509SVIDResponse{Svids: []*pb.X509SVID{{SpiffeId: svidID, X509Svid: leafDer, X509SvidKey: keyDer, Bundle: bundleDer}}},
		bundles: &pb.X509BundlesResponse{Bundles: map[string][]byte{td: bundleDer}},
		jwks:    &pb.JWTBundlesResponse{Bundles: map[string][]byte{td: jwks}},
		jwtKey:  jwtKey, kid: kid, noKid: *flaw == "no-kid",
	}
	os.Remove(*sock)
	l, err := net.Listen("unix", *sock)
	must(err)
	os.Chmod(*sock, 0777)
	g := grpc.NewServer()
	pb.RegisterSpiffeWorkloadAPIServer(g, s)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		g.Stop()
	}()
	fmt.Println("refserver: serving on", *sock)
	if err := g.Serve(l); err != nil {
		log.Fatal(err)
	}
}
