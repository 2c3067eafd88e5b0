#!/usr/bin/python3
"""pylibmc (libmemcached) with ketama and SASL over three instances that require it (`-S`):
each of the client's connections authenticates, the keys are spread over all three, and a
wrong password is refused. Run with the system python3 (Debian's python3-pylibmc).

Usage: scaleout_pylibmc_sasl.py --ports P0,P1,P2 --user U --password P
"""

import argparse

import pylibmc

from scaleout_common import HOST, fact

N_KEYS = 300
BEHAVIORS = {"ketama": True, "connect_timeout": 2000, "receive_timeout": 5000000}


def client(servers, user, password):
    return pylibmc.Client(servers, binary=True, username=user, password=password,
                          behaviors=BEHAVIORS)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    servers = ["%s:%s" % (HOST, port) for port in args.ports.split(",")]
    keys = ["user:%04d" % i for i in range(N_KEYS)]
    c = client(servers, args.user, args.password)
    fact("every set is stored", all(c.set(k, k) is True for k in keys))
    fact("get_multi reads every key back", c.get_multi(keys) == {k: k for k in keys})
    # Each instance asked on its own, authenticated, over the binary protocol.
    items = [int(client([s], args.user, args.password).get_stats()[0][1]["curr_items"])
             for s in servers]
    fact("each instance holds some keys", all(n > 0 for n in items))
    fact("the instances hold every key once", sum(items) == N_KEYS)
    wrong = client(servers, args.user, args.password + "x")
    try:
        wrong.get(keys[0])
        refused = False
    except pylibmc.Error:
        refused = True
    fact("a wrong password is refused", refused)
    print("# done", flush=True)


if __name__ == "__main__":
    main()
