#!/usr/bin/python3
# bench/idle_conns.py — memory per idle keep-alive connection of a proxy (issue 5).
#
#   idle_conns.py --pid PID --target HOST:PORT --ca FILE -n N[,N2...] [--proxy-connect HOST:PORT]
#
# Reads the proxy's VmRSS (/proc/PID/status) once at the start (A), then for each step N
# in increasing order: opens more TLS connections to --target until N are open (through an
# HTTP CONNECT to --proxy-connect when given, as a workload uses vouchd's explicit proxy),
# sends one request on each new one (POST /v1/messages with an x-api-key the proxy must
# strip; the answer must be 200), keeps all of them open and idle for --hold seconds, and
# reads VmRSS again (B). Connections stay open from one step to the next, so every step is
# measured against the same starting point. Prints one line per step:
#   idle n=N ok=OK rss_before_kb=A rss_after_kb=B per_conn_kb=(B-A)/OK
# (OK: connections open and answered 200 at that step). Exit status 0 when every
# connection was answered 200, 1 otherwise (the lines are printed either way); a step that
# loses more than 1 % of its connections ends the run. Standard library only (Debian's
# python3).
import argparse
import asyncio
import ssl
import sys


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def one(args, ctx, host, port, keep, errors):
    try:
        if args.proxy_connect:
            ph, pp = args.proxy_connect.rsplit(":", 1)
            r, w = await asyncio.open_connection(ph, int(pp))
            w.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            first = head.split(b"\r\n")[0]
            if b" 200" not in first:
                raise RuntimeError(f"CONNECT: {first!r}")
            await w.start_tls(ctx, server_hostname=host)
        else:
            r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
        body = b'{"model":"bench","max_tokens":1,"messages":[]}'
        w.write(f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\nx-api-key: placeholder\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n")[0]
        cl = 0
        for h in head.split(b"\r\n")[1:]:
            if h.lower().startswith(b"content-length:"):
                cl = int(h.split(b":", 1)[1])
        await r.readexactly(cl)
        if b" 200" not in status:
            raise RuntimeError(f"answer: {status!r}")
        keep.append(w)
    except Exception as e:  # counted and reported, never fatal
        errors.append(str(e))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("-n", required=True, help="N or N1,N2,... (increasing)")
    ap.add_argument("--proxy-connect")
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--parallel", type=int, default=64)
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=args.ca)
    keep, errors = [], []
    steps = sorted(int(x) for x in args.n.split(","))
    before = rss_kb(args.pid)
    sem = asyncio.Semaphore(args.parallel)

    async def lim():
        async with sem:
            await one(args, ctx, host, int(port), keep, errors)

    tried = 0
    for n in steps:
        await asyncio.gather(*(lim() for _ in range(n - tried)))
        tried = n
        await asyncio.sleep(args.hold)  # idle: vouchd parks a connection (buffers freed) after 100 ms
        after = rss_kb(args.pid)
        ok = len(keep)
        per = (after - before) / ok if ok else 0.0
        print(f"idle n={n} ok={ok} rss_before_kb={before} rss_after_kb={after} per_conn_kb={per:.1f}", flush=True)
        if len(errors) > n // 100:
            break
    if errors:
        print(f"idle_conns: {len(errors)} failed; first: {errors[0]}", file=sys.stderr)
    for w in keep:
        w.close()
    await asyncio.sleep(0.5)
    return 0 if not errors and tried == steps[-1] else 1


sys.exit(asyncio.run(main()))
