// Java's spymemcached (Debian libspymemcached-java) through the clients' common scenario
// against one server, in the text or the binary protocol.
//
// Prints one `call -> result` line per call (an exception as `raised <class>`);
// tests/tests/clients.rs compiles it with the image's JDK, runs it against memcached and
// against rampart and requires identical output. CAS uniques are shown as labels C1, C2...
// in order of first appearance, version strings as <version>.
//
// Usage: java -cp spymemcached.jar:. SpyClient PORT text|binary

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import net.spy.memcached.AddrUtil;
import net.spy.memcached.CASValue;
import net.spy.memcached.ConnectionFactoryBuilder;
import net.spy.memcached.FailureMode;
import net.spy.memcached.MemcachedClient;

public class SpyClient {
    /** How long one call may take, in seconds. */
    private static final int CALL_TIMEOUT_SECONDS = 5;

    private static final Map<Long, String> LABELS = new HashMap<>();

    private static String casLabel(long unique) {
        return LABELS.computeIfAbsent(unique, u -> "C" + (LABELS.size() + 1));
    }

    /** Futures are waited for (bounded); maps are shown sorted by key. */
    private static String shape(Object result) throws Exception {
        if (result instanceof Future) {
            return shape(((Future<?>) result).get(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS));
        }
        if (result instanceof CASValue) {
            CASValue<?> value = (CASValue<?>) result;
            return "'" + value.getValue() + "' " + casLabel(value.getCas());
        }
        if (result instanceof Map) {
            return new TreeMap<>((Map<?, ?>) result).toString();
        }
        if (result instanceof String) {
            return "'" + result + "'";
        }
        return String.valueOf(result);
    }

    private static Object show(String call, Callable<Object> op) {
        String shown;
        Object result = null;
        try {
            result = op.call();
            shown = shape(result);
        } catch (Exception err) {
            // The class is what the client decided; its message may name a connection.
            Throwable cause = err.getCause() == null ? err : err.getCause();
            shown = "raised " + cause.getClass().getSimpleName();
        }
        System.out.println(call + " -> " + shown);
        return result;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !Arrays.asList("text", "binary").contains(args[1])) {
            System.err.println("usage: SpyClient PORT text|binary");
            System.exit(2);
        }
        ConnectionFactoryBuilder.Protocol protocol = args[1].equals("binary")
                ? ConnectionFactoryBuilder.Protocol.BINARY
                : ConnectionFactoryBuilder.Protocol.TEXT;
        MemcachedClient c = new MemcachedClient(
                new ConnectionFactoryBuilder()
                        .setProtocol(protocol)
                        .setOpTimeout(CALL_TIMEOUT_SECONDS * 1000)
                        // Fail a call at once rather than queue it for a reconnect.
                        .setFailureMode(FailureMode.Cancel)
                        .build(),
                AddrUtil.getAddresses("127.0.0.1:" + args[0]));
        try {
            scenario(c, protocol == ConnectionFactoryBuilder.Protocol.BINARY);
        } finally {
            c.shutdown(1, TimeUnit.SECONDS);
        }
        System.out.println("# done");
    }

    private static void scenario(MemcachedClient c, boolean binary) {
        System.out.println("# version");
        show("getVersions", () -> {
            String version = c.getVersions().values().stream().findFirst().orElse(null);
            return version != null && !version.isEmpty() ? "<version>" : version;
        });

        System.out.println("# set / get");
        show("set(k, v)", () -> c.set("k", 0, "v"));
        show("get(k)", () -> c.get("k"));
        show("get(missing)", () -> c.get("missing"));
        show("set(empty, \"\")", () -> c.set("empty", 0, ""));
        show("get(empty)", () -> c.get("empty"));
        show("set(int, 12)", () -> c.set("int", 0, 12));
        show("get(int)", () -> c.get("int"));

        System.out.println("# multi-get");
        show("set(a, 1)", () -> c.set("a", 0, "1"));
        show("set(b, 2)", () -> c.set("b", 0, "2"));
        show("set(c, 3)", () -> c.set("c", 0, "3"));
        show("getBulk(a, b, c, missing)", () -> c.getBulk("a", "b", "c", "missing"));
        show("getBulk(missing)", () -> c.getBulk("missing"));

        System.out.println("# add / replace");
        show("add(a) existing", () -> c.add("a", 0, "x"));
        show("add(new)", () -> c.add("new", 0, "n"));
        show("get(new)", () -> c.get("new"));
        show("replace(a)", () -> c.replace("a", 0, "A"));
        show("replace(missing)", () -> c.replace("missing", 0, "x"));
        show("get(a)", () -> c.get("a"));

        System.out.println("# append / prepend");
        show("append(a, +)", () -> c.append("a", "+"));
        show("prepend(a, -)", () -> c.prepend("a", "-"));
        show("append(missing)", () -> c.append("missing", "x"));
        show("prepend(missing)", () -> c.prepend("missing", "x"));
        show("get(a)", () -> c.get("a"));
        show("get(missing) after failed append", () -> c.get("missing"));

        System.out.println("# cas");
        CASValue<?> first = (CASValue<?>) show("gets(a)", () -> c.gets("a"));
        show("gets(missing)", () -> c.gets("missing"));
        long unique = first == null ? 0 : first.getCas();
        show("cas(a, current unique)", () -> c.cas("a", unique, "cas1"));
        show("cas(a, stale unique)", () -> c.cas("a", unique, "cas2"));
        show("cas(missing)", () -> c.cas("missing", unique, "x"));
        show("gets(a) after cas", () -> c.gets("a"));
        show("get(a)", () -> c.get("a"));

        System.out.println("# incr / decr");
        show("set(n, 10)", () -> c.set("n", 0, "10"));
        show("incr(n, 5)", () -> c.incr("n", 5));
        show("decr(n, 3)", () -> c.decr("n", 3));
        show("decr(n, 100) stops at 0", () -> c.decr("n", 100));
        show("incr(n, 1)", () -> c.incr("n", 1));
        show("incr(missing, 1)", () -> c.incr("missing", 1));
        show("decr(missing, 1)", () -> c.decr("missing", 1));
        show("get(missing) after incr", () -> c.get("missing"));
        if (binary) {
            show("incr(a, 1) non-numeric", () -> c.incr("a", 1));
        } else {
            // In text the CLIENT_ERROR reply makes spymemcached drop the connection and
            // cancel whatever is queued behind it until it has reconnected: which calls
            // fail would depend on timing.
            System.out.println("# incr of a non-numeric value: binary only");
        }
        show("get(n)", () -> c.get("n"));

        System.out.println("# delete");
        show("delete(b)", () -> c.delete("b"));
        show("delete(b) again", () -> c.delete("b"));
        show("get(b)", () -> c.get("b"));

        System.out.println("# touch");
        show("touch(a, 100)", () -> c.touch("a", 100));
        show("touch(missing, 100)", () -> c.touch("missing", 100));
        show("get(a) after touch", () -> c.get("a"));
        if (binary) {
            // Text has no gat in spymemcached (UnsupportedOperationException).
            show("getAndTouch(a, 100)", () -> c.getAndTouch("a", 100));
        }

        System.out.println("# flush");
        show("flush()", () -> c.flush());
        show("get(k) after flush", () -> c.get("k"));
        show("getBulk(new, n, int) after flush", () -> c.getBulk("new", "n", "int"));
        show("add(new) after flush", () -> c.add("new", 0, "again"));
        show("get(new)", () -> c.get("new"));
    }
}
