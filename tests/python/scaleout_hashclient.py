#!/usr/bin/env python3
"""pymemcache's HashClient (rendezvous hashing, client side) over three instances: keys are
spread, an instance that stops leaves the ring and its keys move to the others, and once it
is back on its port (after dead_timeout) they hash to it again.

Client options: ignore_exc=True (a failed call returns its default instead of raising),
retry_attempts=0 (the first connection failure marks an instance dead), dead_timeout=4 (a
dead instance is put back into the ring, and tried again, after four seconds).

Prints `fact: yes` lines and counts that depend only on the servers' behaviour and the ports,
so tests/tests/scaleout.rs can require identical output from three rampart instances and
three memcached instances (notes, `~ ` lines, show where keys landed and are not compared). Cues `@stop 1` and `@start 1` ask the test to
stop instance 1 (SIGTERM) and to start it again on its port.

With --ca, every connection (the client's and the direct looks) is TLS, verified against CA.

Usage: scaleout_hashclient.py --ports P0,P1,P2 [--ca CA_FILE]
"""

import time

from pymemcache.client.hash import HashClient

from scaleout_common import HOST, TLS, count_by, cue, curr_items, fact, holders, note, parse_args

N_KEYS = 300
# pymemcache puts a dead instance back into the ring after dead_timeout whether it is up or
# not, so phase 2 below must end well within it for its counts not to depend on timing (on a
# loaded two-CPU machine it has taken over a second with TLS).
DEAD_TIMEOUT_SECONDS = 4
# How long the client may take to bring the restarted instance back into its ring.
REJOIN_BOUND_SECONDS = 15
POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 5


def value(key, generation):
    return ("%s:v%d" % (key, generation)).encode("ascii")


def outcome(got, expected):
    if got == expected:
        return "hit"
    return "miss" if got is None else "wrong value"


def main():
    args = parse_args(__doc__)
    ports = args.ports
    names = ["%s:%d" % (HOST, port) for port in ports]
    client = HashClient(
        [(HOST, port) for port in ports],
        connect_timeout=TIMEOUT_SECONDS,
        timeout=TIMEOUT_SECONDS,
        ignore_exc=True,
        retry_attempts=0,
        dead_timeout=DEAD_TIMEOUT_SECONDS,
        default_noreply=False,
        tls_context=TLS["context"],
    )
    keys = ["user:%04d" % i for i in range(N_KEYS)]

    def node(key):
        name = client.hasher.get_node(key)
        return names.index(name) if name in names else None

    # 1. All three up: every key is stored once, on the instance the ring names.
    print("# three instances")
    fact("every set is stored", all(client.set(k, value(k, 1)) for k in keys))
    fact("get_many reads every key back",
         client.get_many(keys) == {k: value(k, 1) for k in keys})
    first = {k: node(k) for k in keys}
    per_instance = [sum(1 for k in keys if first[k] == i) for i in range(3)]
    note("keys per instance", per_instance)
    fact("each instance holds some keys", all(n > 0 for n in per_instance))
    held = holders(ports, keys)
    fact("each key is on exactly the instance the ring names",
         all(held[k] == [first[k]] for k in keys))
    fact("curr_items of each instance is its share", curr_items(ports) == per_instance)

    # 2. Instance 1 stopped: its keys miss (no exception), then move to the others.
    cue("stop 1")
    print("# instance 1 stopped")
    results = [(first[k], outcome(client.get(k), value(k, 1))) for k in keys]
    note("get per first instance", count_by(results))
    fact("keys of instances 0 and 2 still hit",
         all(o == "hit" for i, o in results if i != 1))
    fact("keys of instance 1 miss", all(o == "miss" for i, o in results if i == 1))
    moved = {k: node(k) for k in keys}
    fact("instance 1 has left the ring", all(moved[k] != 1 for k in keys))
    fact("only instance 1's keys moved", all(moved[k] == first[k] for k in keys if first[k] != 1))
    note("instance 1's keys moved to",
         count_by(("instance", moved[k]) for k in keys if first[k] == 1))
    fact("every set is stored on the remaining instances",
         all(client.set(k, value(k, 2)) for k in keys))
    fact("get_many reads every key back",
         client.get_many(keys) == {k: value(k, 2) for k in keys})
    live = [ports[0], ports[2]]
    held = holders(live, keys)
    fact("each key is on the instance it moved to",
         all(held[k] == [[0, 2].index(moved[k])] for k in keys))

    # 3. Instance 1 back on its port: after dead_timeout the client adds it again.
    cue("start 1")
    print("# instance 1 restarted on its port")
    probe = next(k for k in keys if first[k] == 1)
    deadline = time.monotonic() + REJOIN_BOUND_SECONDS
    while node(probe) != 1 and time.monotonic() < deadline:
        client.get(probe)  # a call is what makes the client look at its dead instances
        time.sleep(POLL_SECONDS)
    fact("instance 1 is back in the ring", node(probe) == 1)
    fact("every key hashes to its first instance again", all(node(k) == first[k] for k in keys))
    results = [(first[k], outcome(client.get(k), value(k, 2))) for k in keys]
    note("get per first instance", count_by(results))
    fact("instance 1's keys miss: it restarted empty",
         all(o == "miss" for i, o in results if i == 1))
    fact("the other keys still hit", all(o == "hit" for i, o in results if i != 1))
    held = holders(ports, keys)
    fact("instance 1's keys left stale copies where they had moved",
         all(held[k] == [moved[k]] for k in keys if first[k] == 1))
    fact("every set is stored", all(client.set(k, value(k, 3)) for k in keys))
    held = holders(ports, keys)
    fact("each key is written to its first instance again", all(first[k] in held[k] for k in keys))
    fact("curr_items of instance 1 is its share again", curr_items(ports)[1] == per_instance[1])
    fact("get_many reads every key back",
         client.get_many(keys) == {k: value(k, 3) for k in keys})
    client.close()
    print("# done", flush=True)


if __name__ == "__main__":
    main()
