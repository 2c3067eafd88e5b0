// spymemcached (Debian's libspymemcached-java) authenticating with SASL over the binary
// protocol with one mechanism, then set and get. Prints one line per step; used by
// tests/tests/auth.rs, which compiles it with the image's JDK.
//
// Usage: java -cp spymemcached.jar:. SpyAuth PORT MECHANISM USER PASSWORD

import java.util.concurrent.TimeUnit;

import net.spy.memcached.AddrUtil;
import net.spy.memcached.ConnectionFactoryBuilder;
import net.spy.memcached.MemcachedClient;
import net.spy.memcached.auth.AuthDescriptor;
import net.spy.memcached.auth.PlainCallbackHandler;

public class SpyAuth {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        AuthDescriptor auth =
                new AuthDescriptor(new String[] {args[1]}, new PlainCallbackHandler(args[2], args[3]));
        MemcachedClient client = new MemcachedClient(
                new ConnectionFactoryBuilder()
                        .setProtocol(ConnectionFactoryBuilder.Protocol.BINARY)
                        .setAuthDescriptor(auth)
                        .setOpTimeout(3000)
                        .build(),
                AddrUtil.getAddresses("127.0.0.1:" + port));
        try {
            boolean stored = client.set("spy", 0, "v1").get(5, TimeUnit.SECONDS);
            System.out.println("set -> " + stored);
            System.out.println("get -> " + client.get("spy"));
        } catch (Exception err) {
            System.out.println("failed");
        } finally {
            client.shutdown(1, TimeUnit.SECONDS);
        }
        System.out.println("# done");
    }
}
