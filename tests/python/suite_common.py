"""What the client suites share: CAS uniques shown as labels, and one printed line per call.

The suites print `description -> result` lines that must be identical against memcached and
rampart, so anything that legitimately differs between servers (CAS uniques) is shown as a
label in order of first appearance.
"""


class CasLabels:
    """Maps real CAS uniques to C1, C2... in order of first appearance."""

    def __init__(self):
        self.labels = {}

    def label(self, unique):
        if unique is None:
            return None
        if unique not in self.labels:
            self.labels[unique] = "C%d" % (len(self.labels) + 1)
        return self.labels[unique]


CAS = CasLabels()


def show(description, call, shape=None):
    """Run call(), print `description -> result`, return the raw result (None on error)."""
    try:
        result = call()
    except Exception as exc:  # the exception type and message are the observable result
        print("%s -> raised %s: %s" % (description, type(exc).__name__, exc))
        return None
    shown = shape(result) if shape else result
    print("%s -> %r" % (description, shown))
    return result


def gets_shape(result):
    value, unique = result
    return (value, CAS.label(unique))
