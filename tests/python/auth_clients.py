#!/usr/bin/env python3
"""Real clients authenticating to one server: pymemcache with memcached's ASCII auth (the
`set` of `<user> <password>` that `-Y` expects), python-binary-memcached with SASL PLAIN.

Each mode prints one line per step, `what -> result`, so tests/tests/auth.rs can require
the exact output.

Modes:
  ascii       pymemcache: a command before authenticating, a wrong password, the right one,
              then set/get/delete
  sasl        bmemcached with --user/--password (optionally over TLS with --ca): set, get,
              get_multi, delete; a wrong password must fail

Usage: auth_clients.py MODE --port PORT --user U --password P [--ca CA_FILE]
"""

import argparse
import ssl
import sys

TIMEOUT_SECONDS = 10
HOST = "127.0.0.1"


def ascii_mode(args):
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheClientError

    client = Client((HOST, args.port), timeout=TIMEOUT_SECONDS, connect_timeout=TIMEOUT_SECONDS)
    try:
        client.get("before")
        print("get before auth -> served")
    except MemcacheClientError as err:
        print(f"get before auth -> {err}")
    client.close()
    for label, password in (("wrong", args.password + "x"), ("right", args.password)):
        client = Client((HOST, args.port), timeout=TIMEOUT_SECONDS, connect_timeout=TIMEOUT_SECONDS)
        try:
            stored = client.set("auth", f"{args.user} {password}", noreply=False)
            print(f"auth {label} -> stored={stored}")
        except MemcacheClientError as err:
            print(f"auth {label} -> {err}")
            client.close()
            continue
        print(f"set -> {client.set('k', 'v1', noreply=False)}")
        print(f"get -> {client.get('k')!r}")
        print(f"delete -> {client.delete('k', noreply=False)}")
        print(f"get after delete -> {client.get('k')!r}")
        client.close()


def sasl_mode(args):
    import bmemcached

    tls = None
    if args.ca:
        tls = ssl.create_default_context(cafile=args.ca)
    for label, password in (("wrong", args.password + "x"), ("right", args.password)):
        client = bmemcached.Client(
            [f"{HOST}:{args.port}"],
            args.user,
            password,
            socket_timeout=TIMEOUT_SECONDS,
            tls_context=tls,
        )
        try:
            print(f"{label}: set -> {client.set('k', 'v1')}")
            print(f"{label}: get -> {client.get('k')!r}")
            client.set("k2", "v2")
            print(f"{label}: get_multi -> {sorted(client.get_multi(['k', 'k2', 'k3']).items())}")
            print(f"{label}: delete -> {client.delete('k')}")
        except Exception as err:  # the client raises its own types for auth failures
            print(f"{label}: {type(err).__name__}")
        client.disconnect_all()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["ascii", "sasl"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ca")
    args = parser.parse_args()
    {"ascii": ascii_mode, "sasl": sasl_mode}[args.mode](args)
    print("# done")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
