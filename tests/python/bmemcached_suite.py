#!/usr/bin/env python3
"""Exercise python-binary-memcached's Client (the binary protocol) against one server.

Prints one line per call: what was called and what came back (or which exception was
raised). CAS uniques are printed as C1, C2... in order of first appearance; stats are
reduced to whether each of a core list of names is present.

tests/tests/bmemcached.rs runs this against memcached and against rampart and requires
identical output. Usage: bmemcached_suite.py --port PORT [--host 127.0.0.1]
"""

import argparse
import hashlib

import bmemcached

from suite_common import CAS, gets_shape, show

SOCKET_TIMEOUT_SECONDS = 5
CORE_STATS = ["pid", "uptime", "version", "curr_items", "total_items", "cmd_get",
              "cmd_set", "get_hits", "get_misses", "curr_connections", "bytes"]


def sorted_dict(result):
    return sorted(result.items())


def stats_shape(result):
    # {server: {name: value}}: which core names exist, per server.
    return [sorted(n for n in CORE_STATS if n in stats) for stats in result.values()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = "%s:%d" % (args.host, args.port)
    client = bmemcached.Client([server], socket_timeout=SOCKET_TIMEOUT_SECONDS)

    keys = ["key%d" % i for i in range(16)]
    show("flush_all", client.flush_all)
    show("get missing", lambda: client.get("missing"))
    show("set str", lambda: client.set("k", "value"))
    show("get str", lambda: client.get("k"))
    show("set bytes", lambda: client.set("b", b"\x00\x01\xff"))
    show("get bytes", lambda: client.get("b"))
    show("set int", lambda: client.set("i", 42))
    show("get int", lambda: client.get("i"))
    show("set dict", lambda: client.set("d", {"a": [1, 2]}))
    show("get dict", lambda: client.get("d"))
    show("set large", lambda: client.set("large", "x" * 300000))
    show("get large length", lambda: len(client.get("large")))
    # Incompressible (the client compresses large values), and over the 1 MiB default -I.
    huge = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(40000))
    show("set too large", lambda: client.set("huge", huge))
    show("get too large", lambda: client.get("huge"))
    show("set with time", lambda: client.set("t", "v", time=100))
    show("get with time", lambda: client.get("t"))
    show("set expired", lambda: client.set("gone", "v", time=-1))
    show("get expired", lambda: client.get("gone"))
    show("add new", lambda: client.add("a", "1"))
    show("add existing", lambda: client.add("a", "2"))
    show("get after add", lambda: client.get("a"))
    show("replace existing", lambda: client.replace("a", "3"))
    show("replace missing", lambda: client.replace("nope", "3"))
    show("get after replace", lambda: client.get("a"))
    show("set_multi", lambda: sorted(client.set_multi({k: "v-" + k for k in keys})))
    show("get_multi", lambda: client.get_multi(keys + ["missing1", "missing2"]), sorted_dict)
    show("get_multi none", lambda: client.get_multi(["m1", "m2"]), sorted_dict)
    show("delete_multi", lambda: client.delete_multi(keys[:8]))
    show("get_multi after delete", lambda: client.get_multi(keys), sorted_dict)
    show("set counter", lambda: client.set("n", "10"))
    show("incr", lambda: client.incr("n", 5))
    show("decr", lambda: client.decr("n", 3))
    show("decr below zero", lambda: client.decr("n", 100))
    show("incr missing", lambda: client.incr("nocounter", 1))
    show("decr missing", lambda: client.decr("nocounter", 1))
    show("incr non-numeric", lambda: client.incr("k", 1))
    show("incr wraps", lambda: (client.set("w", "18446744073709551615"), client.incr("w", 2)))
    show("delete", lambda: client.delete("k"))
    show("delete missing", lambda: client.delete("k"))
    show("get deleted", lambda: client.get("k"))
    unique = show("gets", lambda: client.gets("a"), gets_shape)
    show("gets missing", lambda: client.gets("nothing"), gets_shape)
    if unique is not None:
        show("cas right", lambda: client.cas("a", "4", unique[1]))
        show("cas stale", lambda: client.cas("a", "5", unique[1]))
    show("get after cas", lambda: client.get("a"))
    show("cas missing", lambda: client.cas("nothing", "5", 12345))
    show("set_multi_cas", lambda: sorted(client.set_multi_cas({"a": ("6", 1)})))
    show("stats", client.stats, stats_shape)
    show("flush_all again", client.flush_all)
    show("get after flush", lambda: client.get("a"))
    client.disconnect_all()
    print("# done")


if __name__ == "__main__":
    main()
