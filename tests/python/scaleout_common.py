"""What the scale-out scripts share: cues to the test that runs them, facts, and direct looks
at one instance of a cluster.

A script is run by tests/tests/scaleout.rs against a cluster of three instances. Where it
needs the cluster to change (an instance stopped, restarted on its port) it prints a cue line,
`@stop 1` or `@start 1`, and waits for the test to answer `ok` on standard input. Every other
line it prints is compared between a cluster of rampart instances and one of memcached
instances, except notes (lines starting `~ `): which key lands where depends on the ports,
which differ between the two clusters. So nothing but a note may depend on anything but the
servers' behaviour: no ports, timings, CAS values or error messages that carry addresses.

Only the standard library: the pymemcache script runs under the interpreter that has
pymemcache, the pylibmc script under the system python3 that Debian's python3-pylibmc serves.
"""

import argparse
import socket
import ssl
import sys

HOST = "127.0.0.1"
TIMEOUT_SECONDS = 5
# Upper bound on reads for one reply, so that a confused server cannot keep a script reading.
MAX_READS = 10000
# Set by parse_args when --ca is given: every connection, the client's and Direct's, is TLS.
TLS = {"context": None}


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--ports", required=True, help="comma-separated ports of the instances")
    parser.add_argument("--ca", help="CA file: connect with TLS, verifying the instances")
    args = parser.parse_args()
    args.ports = [int(p) for p in args.ports.split(",")]
    if args.ca:
        TLS["context"] = ssl.create_default_context(cafile=args.ca)
    return args


def cue(what):
    """Asks the test to act (`stop 1`, `start 1`) and waits until it has."""
    print("@" + what, flush=True)
    reply = sys.stdin.readline().strip()
    if reply != "ok":
        sys.exit("the test did not carry out %r: %r" % (what, reply))


def fact(description, holds):
    """One line that must read `yes`; the test fails on any line ending in `: NO`."""
    print("%s: %s" % (description, "yes" if holds else "NO"), flush=True)


def say(description, value):
    print("%s: %s" % (description, value), flush=True)


def note(description, value):
    """A line that depends on where keys land (the ports): shown, not compared."""
    print("~ %s: %s" % (description, value), flush=True)


def in_order(outcomes):
    """A sequence of outcomes as its distinct beginning and the outcome of all the rest,
    e.g. `ConnectionError, ServerDead, then miss for the rest`: independent of how many keys
    an instance has, as long as the beginning is shorter than that."""
    outcomes = [str(o) for o in outcomes]
    if not outcomes:
        return "none"
    start = len(outcomes)
    while start > 0 and outcomes[start - 1] == outcomes[-1]:
        start -= 1
    head = outcomes[:start]
    return ", ".join(head + ["then %s for the rest" % outcomes[-1]] if head else
                     ["%s for all" % outcomes[-1]])


class Direct:
    """A plain text-protocol connection to one instance, bypassing any client-side hashing."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT_SECONDS)
        if TLS["context"] is not None:
            self.sock = TLS["context"].wrap_socket(self.sock, server_hostname=HOST)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        for _ in range(MAX_READS):
            at = self.buf.find(b"\r\n")
            if at >= 0:
                line, self.buf = self.buf[:at], self.buf[at + 2:]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        raise ConnectionError("no line")

    def _exactly(self, n):
        for _ in range(MAX_READS):
            if len(self.buf) >= n:
                data, self.buf = self.buf[:n], self.buf[n:]
                return data
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        raise ConnectionError("short value")

    def get(self, key):
        """The value stored under `key` on this instance, or None."""
        self.sock.sendall(b"get %s\r\n" % key.encode("ascii"))
        value = None
        for _ in range(MAX_READS):
            line = self._line()
            if line == b"END":
                return value
            parts = line.split(b" ")
            if parts[0] != b"VALUE":
                raise ValueError("unexpected reply %r" % line)
            value = self._exactly(int(parts[3]) + 2)[:-2]
        raise ValueError("no END")

    def stat(self, name):
        self.sock.sendall(b"stats\r\n")
        found = None
        for _ in range(MAX_READS):
            line = self._line()
            if line == b"END":
                return found
            parts = line.split(b" ")
            if parts[1] == name.encode("ascii"):
                found = int(parts[2])
        raise ValueError("no END")


def holders(ports, keys):
    """For each key, the indexes of the instances that hold it (asked directly)."""
    conns = [Direct(port) for port in ports]
    try:
        return {key: [i for i, c in enumerate(conns) if c.get(key) is not None] for key in keys}
    finally:
        for c in conns:
            c.close()


def curr_items(ports):
    conns = [Direct(port) for port in ports]
    try:
        return [c.stat("curr_items") for c in conns]
    finally:
        for c in conns:
            c.close()


def count_by(pairs):
    """`{(a, b): n}` from an iterable of pairs, as a sorted list for printing."""
    counts = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return sorted(counts.items())
