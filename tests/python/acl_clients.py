#!/usr/bin/env python3
"""Cilium's starfighter scenario with real clients, as one identity: pymemcache (text) and
python-binary-memcached (binary) try every operation of the guide on both keys, and print one
line per step, `client op key -> result`, so tests/tests/acl.rs can require the exact output
for each identity.

The identity comes from a user and password (pymemcache's ASCII auth, bmemcached's SASL
PLAIN) or from a TLS client certificate (--cert/--key, with --ca to verify the server).

Usage: acl_clients.py --port PORT --pilot NAME [--user U --password P] [--ca CA --cert C --key K]
"""

import argparse
import ssl
import sys

TIMEOUT_SECONDS = 10
HOST = "127.0.0.1"
KEYS = ("awing-coord", "xwing-coord")


def tls_context(args):
    if not args.ca:
        return None
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    return context


def outcome(step):
    """Runs `step`, returning its result or the error it raised, as one short string."""
    try:
        return repr(step())
    except Exception as err:  # each client raises its own types; the message is what matters
        return f"{type(err).__name__}: {err}"


def text_client(args):
    from pymemcache.client.base import Client

    client = Client(
        (HOST, args.port),
        timeout=TIMEOUT_SECONDS,
        connect_timeout=TIMEOUT_SECONDS,
        tls_context=tls_context(args),
    )

    def authenticated(step):
        # pymemcache closes its connection after any error and opens a new one for the next
        # command: ASCII auth is per connection, so authenticate again first.
        if args.user and client.sock is None:
            client.set("auth", f"{args.user} {args.password}", noreply=False)
        return outcome(step)

    if args.user:
        stored = client.set("auth", f"{args.user} {args.password}", noreply=False)
        print(f"text auth -> {stored}")
    for key in KEYS:
        value = f"{args.pilot}-text"
        print(f"text set {key} -> {authenticated(lambda: client.set(key, value, noreply=False))}")
        print(f"text get {key} -> {authenticated(lambda: client.get(key))}")
    print(f"text get_many -> {authenticated(lambda: sorted(client.get_many(KEYS).items()))}")
    delete = authenticated(lambda: client.delete(KEYS[0], noreply=False))
    print(f"text delete {KEYS[0]} -> {delete}")
    client.close()


def binary_client(args):
    import bmemcached

    def on_fresh_client(step):
        # bmemcached's get_multi raises at the first error status and leaves the responses
        # after it unread, so the next command would read a stale one: each step gets its
        # own connection, and the output is the server's answer to that step alone.
        client = bmemcached.Client(
            [f"{HOST}:{args.port}"],
            args.user,
            args.password,
            socket_timeout=TIMEOUT_SECONDS,
            tls_context=tls_context(args),
        )
        try:
            return outcome(lambda: step(client))
        finally:
            client.disconnect_all()

    for key in KEYS:
        value = f"{args.pilot}-binary"
        print(f"binary set {key} -> {on_fresh_client(lambda c: c.set(key, value))}")
        print(f"binary get {key} -> {on_fresh_client(lambda c: c.get(key))}")
    many = on_fresh_client(lambda c: sorted(c.get_multi(list(KEYS)).items()))
    print(f"binary get_multi -> {many}")
    print(f"binary delete {KEYS[0]} -> {on_fresh_client(lambda c: c.delete(KEYS[0]))}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pilot", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    text_client(args)
    binary_client(args)
    print("# done")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
