#!/usr/bin/python3
"""wlclient.py: a SPIFFE Workload API client on Debian's python3-grpcio (gRPC C-core) and
python3-protobuf; only this command-line wrapper is ours. Run with /usr/bin/python3 (the pyenv
python3 on PATH does not see Debian's dist-packages). Same contract as wlclient.mjs:
  wlclient.py unix:///path.sock COMMAND [ARGS...] [--no-header] [--timeout-ms N]
The message classes come from `protoc --python_out=DIR workload.proto`; DIR is given by the
WLCLIENT_PB_DIR environment variable (the test generates it under build/)."""
import base64
import json
import os
import sys

sys.path.insert(0, os.environ.get("WLCLIENT_PB_DIR", "."))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
import workload_pb2 as pb  # noqa: E402


def b64(b):
    return base64.b64encode(b).decode()


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv):
    header, timeout, spiffe_id, rest = True, 10.0, "", []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--no-header":
            header = False
        elif a == "--timeout-ms":
            i += 1
            timeout = int(argv[i]) / 1000.0
        elif a == "--spiffe-id":
            i += 1
            spiffe_id = argv[i]
        else:
            rest.append(a)
        i += 1
    if len(rest) < 2 or not rest[0].startswith("unix:"):
        sys.stderr.write("usage: wlclient.py unix:///path.sock COMMAND [ARGS...]\n")
        return 1
    target, cmd, args = rest[0], rest[1], rest[2:]
    md = [("workload.spiffe.io", "true")] if header else []
    ch = grpc.insecure_channel(target)

    def count():
        n = int(args[0]) if args else 1
        if n < 1:
            raise ValueError("a message count, not %d" % n)
        return n

    def stream(method, req, resp_cls, n, shape):
        call = ch.unary_stream("/SpiffeWorkloadAPI/" + method,
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=resp_cls.FromString)(req, metadata=md, timeout=timeout)
        got = 0
        for m in call:
            out(shape(m))
            got += 1
            if got >= n:
                call.cancel()
                return
        raise RuntimeError("stream ended after %d of %d messages" % (got, n))

    def unary(method, req, resp_cls):
        return ch.unary_unary("/SpiffeWorkloadAPI/" + method,
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=resp_cls.FromString)(req, metadata=md, timeout=timeout)

    try:
        if cmd == "x509svid":
            stream("FetchX509SVID", pb.X509SVIDRequest(), pb.X509SVIDResponse, count(),
                   lambda m: {"svids": [{"spiffe_id": s.spiffe_id, "x509_svid": b64(s.x509_svid),
                                         "x509_svid_key": b64(s.x509_svid_key), "bundle": b64(s.bundle),
                                         "hint": s.hint} for s in m.svids],
                              "federated_bundles": {k: b64(v) for k, v in m.federated_bundles.items()}})
        elif cmd in ("x509bundles", "jwtbundles"):
            method, req, resp = (("FetchX509Bundles", pb.X509BundlesRequest(), pb.X509BundlesResponse)
                                 if cmd == "x509bundles" else
                                 ("FetchJWTBundles", pb.JWTBundlesRequest(), pb.JWTBundlesResponse))
            stream(method, req, resp, count(),
                   lambda m: {"bundles": {k: b64(v) for k, v in m.bundles.items()}})
        elif cmd == "jwtsvid":
            r = unary("FetchJWTSVID", pb.JWTSVIDRequest(audience=args, spiffe_id=spiffe_id), pb.JWTSVIDResponse)
            out({"svids": [{"spiffe_id": s.spiffe_id, "svid": s.svid, "hint": s.hint} for s in r.svids]})
        elif cmd == "validate":
            r = unary("ValidateJWTSVID", pb.ValidateJWTSVIDRequest(audience=args[0] if args else "",
                                                                  svid=args[1] if len(args) > 1 else ""),
                      pb.ValidateJWTSVIDResponse)
            out({"spiffe_id": r.spiffe_id, "claims": json_format.MessageToDict(r.claims)})
        elif cmd == "wit":
            stream("FetchWITSVID", pb.WITSVIDRequest(), pb.WITSVIDResponse, 1, lambda m: {})
        else:
            sys.stderr.write("unknown command %s\n" % cmd)
            return 1
    except grpc.RpcError as e:
        out({"error": {"code": e.code().value[0], "message": e.details()}})
        return 3
    finally:
        ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
