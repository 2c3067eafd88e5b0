#!/usr/bin/env python3
"""Python clients over TLS against one server: the `ssl` module, pymemcache, bmemcached.

Each mode prints one line per step, `what -> result`, deterministic for a given server
behaviour (no CAS values, no version numbers), so tests/tests/tls.rs can require the exact
output from both memcached and rampart.

Modes:
  ssl         set/get/delete over a raw `ssl`-wrapped socket (text protocol)
  pymemcache  pymemcache's Client with tls_context (text protocol)
  bmemcached  python-binary-memcached's Client with tls_context (binary protocol)
  resume      a second connection resumes the first one's session (`session=`); needs a
              server with ssl_session_cache
  resume_ids  as resume, over TLS 1.2 without tickets: the session is resumed by its id,
              from the server's cache (ssl_session_cache) or not at all
  resume_mtls a session from --port (no client certificate) offered to the mtls: listener
              at --port2, without a certificate: must be refused, not resumed

Usage: tls_clients.py MODE --port PORT --ca CA_FILE [--cert CRT --key KEY]
"""

import argparse
import socket
import ssl
import sys

from suite_common import show

TIMEOUT_SECONDS = 10
HOST = "127.0.0.1"


def context(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def read_until(sock, terminator):
    """Reads until the buffer ends with terminator or the peer closes (bounded by the
    socket timeout per read, and by a count of reads)."""
    buf = b""
    for _ in range(10000):
        if buf.endswith(terminator):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def connect(ctx, session=None):
    raw = socket.create_connection((HOST, ARGS.port), timeout=TIMEOUT_SECONDS)
    return ctx.wrap_socket(raw, server_hostname=HOST, session=session)


def roundtrip(sock, request, terminator=b"\r\n"):
    sock.sendall(request)
    return read_until(sock, terminator)


def mode_ssl(args):
    ctx = context(args)
    sock = connect(ctx)
    print("handshake -> ok, certificate verified")
    show("set", lambda: roundtrip(sock, b"set tls:ssl 5 0 6\r\nsecret\r\n"))
    show("get", lambda: roundtrip(sock, b"get tls:ssl\r\n", b"END\r\n"))
    show("delete", lambda: roundtrip(sock, b"delete tls:ssl\r\n"))
    show("get after delete", lambda: roundtrip(sock, b"get tls:ssl\r\n", b"END\r\n"))
    value = b"v" * 100000
    show(
        "set 100000 bytes",
        lambda: roundtrip(sock, b"set tls:big 0 0 100000\r\n" + value + b"\r\n"),
    )
    show(
        "get 100000 bytes intact",
        lambda: roundtrip(sock, b"get tls:big\r\n", b"END\r\n")
        == b"VALUE tls:big 0 100000\r\n" + value + b"\r\nEND\r\n",
    )
    sock.close()


def mode_pymemcache(args):
    from pymemcache.client.base import Client

    client = Client(
        (HOST, args.port),
        tls_context=context(args),
        connect_timeout=TIMEOUT_SECONDS,
        timeout=TIMEOUT_SECONDS,
    )
    show("set", lambda: client.set("tls:pm", b"value", expire=0, noreply=False))
    show("get", lambda: client.get("tls:pm"))
    show("add existing", lambda: client.add("tls:pm", b"x", noreply=False))
    show("set_many", lambda: client.set_many({"tls:a": b"1", "tls:b": b"2"}, noreply=False))
    show("get_many", lambda: sorted(client.get_many(["tls:a", "tls:b", "tls:none"]).items()))
    show("incr", lambda: client.incr("tls:a", 41, noreply=False))
    show("delete", lambda: client.delete("tls:pm", noreply=False))
    show("get after delete", lambda: client.get("tls:pm"))
    show("version is bytes", lambda: isinstance(client.version(), bytes))
    client.close()


def mode_bmemcached(args):
    import bmemcached

    client = bmemcached.Client(
        ["%s:%d" % (HOST, args.port)],
        tls_context=context(args),
        socket_timeout=TIMEOUT_SECONDS,
    )
    # bmemcached swallows connection errors into None/False results; the stats call below
    # shows whether a connection was made at all.
    show("set", lambda: client.set("tls:bin", "value"))
    show("get", lambda: client.get("tls:bin"))
    show("add existing", lambda: client.add("tls:bin", "x"))
    show("incr", lambda: (client.set("tls:n", "1"), client.incr("tls:n", 9)))
    show("delete", lambda: client.delete("tls:bin"))
    show("get after delete", lambda: client.get("tls:bin"))
    show("stats has pid", lambda: all("pid" in s for s in client.stats().values()))
    client.disconnect_all()


def mode_resume(args, ctx=None):
    ctx = ctx or context(args)
    first = connect(ctx)
    # TLS 1.3 sends the session ticket after the handshake; a round trip makes sure it has
    # arrived before the session is taken.
    show("first version", lambda: roundtrip(first, b"version\r\n").startswith(b"VERSION "))
    print("first session_reused -> %r" % first.session_reused)
    session = first.session
    print("first has a session -> %r" % (session is not None))
    second = connect(ctx, session=session)
    show("second version", lambda: roundtrip(second, b"version\r\n").startswith(b"VERSION "))
    print("second session_reused -> %r" % second.session_reused)
    show("first still works", lambda: roundtrip(first, b"version\r\n").startswith(b"VERSION "))
    first.close()
    second.close()


def mode_resume_ids(args):
    ctx = context(args)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    mode_resume(args, ctx)


def mode_resume_mtls(args):
    ctx = context(args)
    first = connect(ctx)
    show("first version", lambda: roundtrip(first, b"version\r\n").startswith(b"VERSION "))
    session = first.session
    print("first has a session -> %r" % (session is not None))
    raw = socket.create_connection((HOST, args.port2), timeout=TIMEOUT_SECONDS)
    try:
        second = ctx.wrap_socket(raw, server_hostname=HOST, session=session)
        reply = roundtrip(second, b"version\r\n")
        refused = not reply.startswith(b"VERSION ")
        print("resumed on mtls -> %r" % second.session_reused)
    except (ssl.SSLError, OSError):
        refused = True
    print("mtls refused the certificate-less client -> %r" % refused)
    first.close()


MODES = {
    "ssl": mode_ssl,
    "pymemcache": mode_pymemcache,
    "bmemcached": mode_bmemcached,
    "resume": mode_resume,
    "resume_ids": mode_resume_ids,
    "resume_mtls": mode_resume_mtls,
}


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port2", type=int)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    ARGS = parser.parse_args()
    MODES[ARGS.mode](ARGS)
    print("# done")
    sys.stdout.flush()


ARGS = None

if __name__ == "__main__":
    main()
