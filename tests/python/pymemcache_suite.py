#!/usr/bin/env python3
"""Exercise every call of pymemcache's base Client against one server.

Prints one line per call: what was called and what came back (or which exception was
raised, with its message). The output is deterministic for a given server behaviour:

- CAS uniques are printed as C1, C2... in order of first appearance (equal uniques get
  equal labels);
- the version string is printed as <version>;
- stats are reduced to whether each of a core list of names is present.

Calls made with noreply on one connection are followed by a normal call on that same
connection before another connection looks at their effect: a server answers a
connection's commands in order, but nothing orders two connections.

tests/tests/pymemcache.rs runs this against memcached and against rampart and requires
identical output. Usage: pymemcache_suite.py --port PORT [--host 127.0.0.1]
"""

import argparse
import hashlib
import sys

from pymemcache.client.base import Client

from suite_common import CAS, gets_shape, show

TIMEOUT_SECONDS = 5


def gets_many_shape(result):
    return sorted((key, value, CAS.label(unique)) for key, (value, unique) in result.items())


def sorted_items(result):
    return sorted(result.items())


def version_shape(result):
    return "<version>" if isinstance(result, bytes) and result else result


# Stats that clients and dashboards commonly read. The full list of names is compared by
# the differential suite (tests/transcripts/stats.txt); here only these are checked.
CORE_STATS = [
    "pid", "uptime", "time", "version", "pointer_size", "curr_connections",
    "total_connections", "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits",
    "get_misses", "delete_hits", "delete_misses", "incr_hits", "incr_misses", "decr_hits",
    "decr_misses", "cas_hits", "cas_misses", "cas_badval", "touch_hits", "touch_misses",
    "bytes_read", "bytes_written", "limit_maxbytes", "threads", "bytes", "curr_items",
    "total_items", "evictions",
]


def show_stats(description, call):
    """Print whether each of CORE_STATS is present (values are not compared)."""
    result = show(description, call, lambda r: "%s" % type(r).__name__)
    if result is None:
        return
    names = {name.decode("ascii", "backslashreplace") for name in result}
    for name in CORE_STATS:
        print("  stat %s %s" % (name, "present" if name in names else "MISSING"))


def digest_shape(result):
    if not isinstance(result, bytes):
        return result
    return "%d bytes, sha256 %s" % (len(result), hashlib.sha256(result).hexdigest()[:16])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = (args.host, args.port)

    c = Client(server, connect_timeout=TIMEOUT_SECONDS, timeout=TIMEOUT_SECONDS,
               default_noreply=False)
    q = Client(server, connect_timeout=TIMEOUT_SECONDS, timeout=TIMEOUT_SECONDS,
               default_noreply=True)

    print("# version")
    show("version()", c.version, version_shape)

    print("# set / get")
    show("set(k, v)", lambda: c.set(b"k", b"v"))
    show("get(k)", lambda: c.get(b"k"))
    show("get(missing)", lambda: c.get(b"missing"))
    show("get(missing, default)", lambda: c.get(b"missing", default=b"dflt"))
    show("set(k, v2, flags=42)", lambda: c.set(b"k", b"v2", flags=42))
    show("raw get k (flags)", lambda: c.raw_command(b"get k", b"END\r\n"))
    show("set(exp, x, expire=100)", lambda: c.set(b"exp", b"x", expire=100))
    show("set(past, x, expire=-1)", lambda: c.set(b"past", b"x", expire=-1))
    show("get(past)", lambda: c.get(b"past"))
    show("set(empty, '')", lambda: c.set(b"empty", b""))
    show("get(empty)", lambda: c.get(b"empty"))
    show("set(str key, str value)", lambda: c.set("skey", "svalue"))
    show("get(str key)", lambda: c.get("skey"))
    show("set(int value)", lambda: c.set(b"int", 12))
    show("get(int)", lambda: c.get(b"int"))
    show("set(binary)", lambda: c.set(b"bin", b"\x00\r\n\xff"))
    show("get(binary)", lambda: c.get(b"bin"))

    print("# set_many / get_many")
    show("set_many(a, b, c)", lambda: c.set_many({b"a": b"1", b"b": b"2", b"c": b"3"}))
    show("get_many(a, b, c, missing)", lambda: c.get_many([b"a", b"b", b"c", b"missing"]),
         sorted_items)
    show("get_many([])", lambda: c.get_many([]), sorted_items)
    show("set_multi(d)", lambda: c.set_multi({b"d": b"4"}))
    show("get_multi(d, a)", lambda: c.get_multi([b"d", b"a"]), sorted_items)

    print("# add / replace / append / prepend")
    show("add(a) existing", lambda: c.add(b"a", b"x"))
    show("add(new)", lambda: c.add(b"new", b"n"))
    show("get(new)", lambda: c.get(b"new"))
    show("replace(a)", lambda: c.replace(b"a", b"A"))
    show("replace(missing)", lambda: c.replace(b"missing", b"x"))
    show("append(a)", lambda: c.append(b"a", b"+"))
    show("append(missing)", lambda: c.append(b"missing", b"x"))
    show("prepend(a)", lambda: c.prepend(b"a", b"-"))
    show("prepend(missing)", lambda: c.prepend(b"missing", b"x"))
    show("get(a)", lambda: c.get(b"a"))

    print("# gets / cas")
    first = show("gets(a)", lambda: c.gets(b"a"), gets_shape)
    show("gets(missing)", lambda: c.gets(b"missing"), gets_shape)
    unique = first[1] if first else b"0"
    show("cas(a, current unique)", lambda: c.cas(b"a", b"cas1", unique))
    show("cas(a, stale unique)", lambda: c.cas(b"a", b"cas2", unique))
    show("cas(missing)", lambda: c.cas(b"missing", b"x", b"1"))
    show("gets(a) after cas", lambda: c.gets(b"a"), gets_shape)
    show("gets_many(a, b, missing)", lambda: c.gets_many([b"a", b"b", b"missing"]),
         gets_many_shape)
    show("gets_many([])", lambda: c.gets_many([]), gets_many_shape)

    print("# incr / decr")
    show("set(n, 10)", lambda: c.set(b"n", b"10"))
    show("incr(n, 5)", lambda: c.incr(b"n", 5))
    show("decr(n, 3)", lambda: c.decr(b"n", 3))
    show("decr(n, 100) stops at 0", lambda: c.decr(b"n", 100))
    show("incr(missing)", lambda: c.incr(b"missing", 1))
    show("decr(missing)", lambda: c.decr(b"missing", 1))
    show("incr(a) non-numeric", lambda: c.incr(b"a", 1))
    show("set(pad, 100)", lambda: c.set(b"pad", b"100"))
    show("decr(pad, 95)", lambda: c.decr(b"pad", 95))
    show("get(pad) keeps the padding", lambda: c.get(b"pad"))
    show("set(max, 2^64-1)", lambda: c.set(b"max", b"18446744073709551615"))
    show("incr(max, 1) wraps", lambda: c.incr(b"max", 1))
    show("incr(n, 1, noreply=True)", lambda: c.incr(b"n", 1, noreply=True))
    show("get(n)", lambda: c.get(b"n"))

    print("# touch")
    show("touch(a, 100)", lambda: c.touch(b"a", 100))
    show("touch(missing)", lambda: c.touch(b"missing", 100))
    show("touch(a, -1) expires", lambda: c.touch(b"a", -1))
    show("get(a)", lambda: c.get(b"a"))

    print("# gat / gats")
    show("set(g, gv)", lambda: c.set(b"g", b"gv"))
    if hasattr(c, "gat"):
        show("gat(g)", lambda: c.gat(b"g", 100))
        show("gats(g)", lambda: c.gats(b"g", 100), gets_shape)
    else:
        # pymemcache has no gat/gats (4.0.0): send them with raw_command.
        show("raw gat 100 g", lambda: c.raw_command(b"gat 100 g", b"END\r\n"))
        show("raw gat 100 missing", lambda: c.raw_command(b"gat 100 missing", b"END\r\n"))
        raw = show("raw gats 100 g (unique hidden)",
                   lambda: c.raw_command(b"gats 100 g", b"END\r\n"),
                   lambda r: r.rsplit(b" ", 1)[0] if r.startswith(b"VALUE") else r)
        if raw and raw.startswith(b"VALUE"):
            unique = raw.split(b"\r\n", 1)[0].split(b" ")[4]
            print("gats unique label -> %r" % CAS.label(unique))

    print("# delete")
    show("delete(b)", lambda: c.delete(b"b"))
    show("delete(b) again", lambda: c.delete(b"b"))
    show("delete_many(c, d, missing)", lambda: c.delete_many([b"c", b"d", b"missing"]))
    show("delete_multi([])", lambda: c.delete_multi([]))
    show("get_many(b, c, d)", lambda: c.get_many([b"b", b"c", b"d"]), sorted_items)

    print("# noreply client")
    show("q.set(nr, 1)", lambda: q.set(b"nr", b"1"))
    show("q.add(nr) existing", lambda: q.add(b"nr", b"2"))
    show("q.replace(missing)", lambda: q.replace(b"missing", b"x"))
    show("q.append(nr)", lambda: q.append(b"nr", b"0"))
    show("q.prepend(nr)", lambda: q.prepend(b"nr", b"9"))
    show("q.incr(nr, 1)", lambda: q.incr(b"nr", 1, noreply=True))
    show("q.touch(missing)", lambda: q.touch(b"missing", 10))
    show("q.delete(missing)", lambda: q.delete(b"missing"))
    show("q.set_many(x, y)", lambda: q.set_many({b"x": b"X", b"y": b"Y"}))
    show("q.delete_many(x)", lambda: q.delete_many([b"x"]))
    show("q.version() (waits for the noreply calls)", q.version, version_shape)
    show("c.get_many(nr, x, y, missing)", lambda: c.get_many([b"nr", b"x", b"y", b"missing"]),
         sorted_items)

    print("# large values")
    big = bytes(range(256)) * 2048  # 512 KiB
    show("set(big, 512 KiB)", lambda: c.set(b"big", big))
    show("get(big)", lambda: c.get(b"big"), digest_shape)
    show("set(huge, 2 MiB) over -I", lambda: c.set(b"huge", b"h" * (2 * 1024 * 1024)))
    show("get(huge)", lambda: c.get(b"huge"))
    show("get(k) after the refused value", lambda: c.get(b"k"))

    print("# errors")
    show("get(key of 251 bytes)", lambda: c.get(b"k" * 251))
    show("set(key with a space)", lambda: c.set(b"a b", b"x"))
    show("raw bogus command", lambda: c.raw_command(b"bogus"))
    show("raw set with bad length", lambda: c.raw_command(b"set k 0 0 -1"))
    show("raw verbosity 1", lambda: c.raw_command(b"verbosity 1"))
    show("raw verbosity", lambda: c.raw_command(b"verbosity"))
    show("get(k) still in sync", lambda: c.get(b"k"))

    print("# admin")
    show_stats("stats()", c.stats)
    show_stats("stats(nosuchgroup)", lambda: c.stats("nosuchgroup"))
    show("cache_memlimit(100)", lambda: c.cache_memlimit(100))
    show("shutdown() without -A", lambda: c.shutdown())
    show("get(k) after refused shutdown", lambda: c.get(b"k"))
    show("flush_all()", lambda: c.flush_all())
    show("get(k) after flush_all", lambda: c.get(b"k"))
    show("set(k, after)", lambda: c.set(b"k", b"after"))
    show("flush_all(delay=100)", lambda: c.flush_all(delay=100))
    show("get(k) after delayed flush", lambda: c.get(b"k"))
    show("q.flush_all()", lambda: q.flush_all())
    show("q.version() (waits for the flush)", q.version, version_shape)
    show("get(k) after noreply flush", lambda: c.get(b"k"))

    print("# quit / close")
    show("set(k, v)", lambda: c.set(b"k", b"v"))
    show("quit()", c.quit)
    show("get(k) reconnects after quit", lambda: c.get(b"k"))
    show("close()", c.close)
    show("get(k) reconnects after close", lambda: c.get(b"k"))
    q.close()
    c.close()
    print("# done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
