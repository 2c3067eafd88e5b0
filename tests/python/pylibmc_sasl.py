#!/usr/bin/python3
"""pylibmc (libmemcached with Cyrus SASL) authenticating to a server with SASL: Cyrus picks
the strongest mechanism both sides offer (SCRAM-SHA-256 when the server lists it). Prints
one line per step; run with the system python3, which Debian's python3-pylibmc serves.

Usage: pylibmc_sasl.py --port PORT --user U --password P
"""

import argparse
import sys

import pylibmc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    for label, password in (("wrong", args.password + "x"), ("right", args.password)):
        client = pylibmc.Client(
            [f"127.0.0.1:{args.port}"],
            binary=True,
            username=args.user,
            password=password,
            behaviors={"connect_timeout": 5000, "receive_timeout": 5000000, "send_timeout": 5000000},
        )
        try:
            print(f"{label}: set -> {client.set('k', 'v1')}")
            print(f"{label}: get -> {client.get('k')!r}")
            print(f"{label}: get_multi -> {sorted(client.get_multi(['k', 'k2']).items())}")
            print(f"{label}: delete -> {client.delete('k')}")
        except pylibmc.Error as err:
            print(f"{label}: {type(err).__name__}")
        client.disconnect_all()
    print("# done")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
