#!/usr/bin/python3
"""pylibmc (libmemcached) with ketama consistent hashing over three instances: keys are
spread, an instance that stops is ejected from the continuum after its first failures and
its keys move to the others, and once it is back on its port (after dead_timeout) they hash
to it again.

Behaviors: ketama=True (consistent hashing, MD5 of "host:port"), remove_failed=1 with
failure_limit=1 (eject an instance after one failure), retry_timeout and dead_timeout (when
to try a failed or ejected instance again).

Prints `fact: yes` lines and counts that depend only on the servers' behaviour and the ports,
so tests/tests/scaleout.rs can require identical output from three rampart instances and
three memcached instances (notes, `~ ` lines, show where keys landed and are not compared). Exceptions are shown by class name only (their
messages carry addresses). Cues `@stop 1` and `@start 1` ask the test to stop instance 1
(SIGTERM) and to start it again on its port. Run with the system python3 (Debian's
python3-pylibmc).

Usage: scaleout_pylibmc.py --ports P0,P1,P2
"""

import time

import pylibmc

from scaleout_common import (HOST, Direct, count_by, cue, curr_items, fact, holders, in_order, note,
                             parse_args, say)

N_KEYS = 300
# Long enough that each pass over the keys below ends before libmemcached retries an
# ejected instance, so the counts printed do not depend on timing (a pass takes well under a
# second, but a loaded two-CPU machine has stretched such a phase past one).
RETRY_TIMEOUT_SECONDS = 4
DEAD_TIMEOUT_SECONDS = 4
REJOIN_BOUND_SECONDS = 15
POLL_SECONDS = 0.05
BEHAVIORS = {
    "ketama": True,
    "remove_failed": 1,
    "failure_limit": 1,
    "retry_timeout": RETRY_TIMEOUT_SECONDS,
    "dead_timeout": DEAD_TIMEOUT_SECONDS,
    "connect_timeout": 2000,  # milliseconds
    "send_timeout": 5000000,  # microseconds
    "receive_timeout": 5000000,
}


def value(key, generation):
    return "%s:v%d" % (key, generation)


class Raised:
    """An exception a call raised, by class name (its message carries addresses)."""

    def __init__(self, err):
        self.name = type(err).__name__

    def __repr__(self):
        return self.name


def call(f, *args):
    """The result of f(*args), or the exception it raised as a Raised."""
    try:
        return f(*args)
    except pylibmc.Error as err:
        return Raised(err)


def outcome(got, expected):
    if isinstance(got, Raised):
        return got.name
    if got == expected:
        return "hit"
    return "miss" if got is None else "wrong value"


def main():
    args = parse_args(__doc__)
    ports = args.ports
    client = pylibmc.Client(["%s:%d" % (HOST, port) for port in ports], behaviors=BEHAVIORS)
    keys = ["user:%04d" % i for i in range(N_KEYS)]

    # 1. All three up: every key is stored once; ketama spreads them.
    print("# three instances")
    fact("every set is stored", all(client.set(k, value(k, 1)) is True for k in keys))
    fact("get_multi reads every key back",
         client.get_multi(keys) == {k: value(k, 1) for k in keys})
    held = holders(ports, keys)
    fact("each key is on exactly one instance", all(len(held[k]) == 1 for k in keys))
    first = {k: held[k][0] for k in keys}
    per_instance = [sum(1 for k in keys if first[k] == i) for i in range(3)]
    note("keys per instance", per_instance)
    fact("each instance holds some keys", all(n > 0 for n in per_instance))
    fact("curr_items of each instance is its share", curr_items(ports) == per_instance)

    # 2. Instance 1 stopped: the first calls to it fail, it is ejected, its keys move.
    cue("stop 1")
    print("# instance 1 stopped")
    results = [(first[k], outcome(call(client.get, k), value(k, 1))) for k in keys]
    note("get per first instance", count_by(results))
    say("gets of instance 1's keys, in order", in_order(o for i, o in results if i == 1))
    fact("keys of instances 0 and 2 still hit",
         all(o == "hit" for i, o in results if i != 1))
    fact("no key of instance 1 is served", all(o != "hit" for i, o in results if i == 1))
    sets = [(first[k], call(client.set, k, value(k, 2))) for k in keys]
    note("set per first instance", count_by((i, repr(r)) for i, r in sets))
    fact("every set is stored on the remaining instances", all(r is True for _, r in sets))
    fact("get_multi reads every key back",
         client.get_multi(keys) == {k: value(k, 2) for k in keys})
    live = [ports[0], ports[2]]
    held = holders(live, keys)
    fact("instance 0's and 2's keys stayed where they were",
         all(held[k] == [[0, 2].index(first[k])] for k in keys if first[k] != 1))
    fact("each of instance 1's keys is on one other instance",
         all(len(held[k]) == 1 for k in keys if first[k] == 1))
    moved = {k: [0, 2][held[k][0]] for k in keys if first[k] == 1}
    note("instance 1's keys moved to", count_by(("instance", i) for i in moved.values()))

    # 3. Instance 1 back on its port: after dead_timeout libmemcached adds it again.
    cue("start 1")
    print("# instance 1 restarted on its port")
    probe = next(k for k in keys if first[k] == 1)
    direct = Direct(ports[1])
    deadline = time.monotonic() + REJOIN_BOUND_SECONDS
    back = False
    while not back and time.monotonic() < deadline:
        call(client.set, probe, "probe")
        back = direct.get(probe) == b"probe"
        if not back:
            time.sleep(POLL_SECONDS)
    fact("instance 1 is back in the continuum", back)
    call(client.delete, probe)
    direct.close()
    results = [(first[k], outcome(call(client.get, k), value(k, 2))) for k in keys]
    note("get per first instance", count_by(results))
    fact("instance 1's keys miss: it restarted empty",
         all(o == "miss" for i, o in results if i == 1))
    fact("the other keys still hit", all(o == "hit" for i, o in results if i != 1))
    fact("every set is stored", all(client.set(k, value(k, 3)) is True for k in keys))
    held = holders(ports, keys)
    fact("each key is written to its first instance again", all(first[k] in held[k] for k in keys))
    fact("instance 1's keys left stale copies where they had moved",
         all(sorted(held[k]) == sorted([1, moved[k]]) for k in moved))
    fact("curr_items of instance 1 is its share again", curr_items(ports)[1] == per_instance[1])
    fact("get_multi reads every key back",
         client.get_multi(keys) == {k: value(k, 3) for k in keys})
    client.disconnect_all()
    print("# done", flush=True)


if __name__ == "__main__":
    main()
