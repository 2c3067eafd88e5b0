// Go's gomemcache (Debian golang-github-bradfitz-gomemcache-dev, text protocol) through the
// clients' common scenario against one server.
//
// Prints one `call -> result` line per call; tests/tests/clients.rs builds it in GOPATH
// mode, runs it against memcached and against rampart and requires identical output. CAS
// uniques never leave the client (Item keeps them private), so only whether each
// CompareAndSwap succeeded is shown. This version of gomemcache has no Append, Prepend or
// Version.
//
// Usage: gomemcache PORT
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// callTimeout bounds each call's socket reads and writes.
const callTimeout = 5 * time.Second

var port string

// errorName shows the library's sentinel errors by name; any other error by its message,
// with the server's port replaced (it differs between the two servers).
func errorName(err error) string {
	sentinels := []struct {
		err  error
		name string
	}{
		{memcache.ErrCacheMiss, "ErrCacheMiss"},
		{memcache.ErrCASConflict, "ErrCASConflict"},
		{memcache.ErrNotStored, "ErrNotStored"},
		{memcache.ErrServerError, "ErrServerError"},
		{memcache.ErrMalformedKey, "ErrMalformedKey"},
		{memcache.ErrNoServers, "ErrNoServers"},
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "error " + strings.ReplaceAll(err.Error(), port, "<port>")
}

func show(call string, err error) {
	if err != nil {
		fmt.Printf("%s -> %s\n", call, errorName(err))
		return
	}
	fmt.Printf("%s -> ok\n", call)
}

func showItem(call string, item *memcache.Item, err error) {
	if err != nil {
		fmt.Printf("%s -> %s\n", call, errorName(err))
		return
	}
	fmt.Printf("%s -> %q flags %d\n", call, item.Value, item.Flags)
}

func showMulti(call string, items map[string]*memcache.Item, err error) {
	if err != nil {
		fmt.Printf("%s -> %s\n", call, errorName(err))
		return
	}
	keys := make([]string, 0, len(items))
	for key := range items {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, key := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", key, items[key].Value))
	}
	fmt.Printf("%s -> {%s}\n", call, strings.Join(parts, ", "))
}

func showNumber(call string, value uint64, err error) {
	if err != nil {
		fmt.Printf("%s -> %s\n", call, errorName(err))
		return
	}
	fmt.Printf("%s -> %d\n", call, value)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gomemcache PORT")
		os.Exit(2)
	}
	port = os.Args[1]
	c := memcache.New("127.0.0.1:" + port)
	c.Timeout = callTimeout

	fmt.Println("# set / get")
	show("Set(k, v)", c.Set(&memcache.Item{Key: "k", Value: []byte("v")}))
	item, err := c.Get("k")
	showItem("Get(k)", item, err)
	item, err = c.Get("missing")
	showItem("Get(missing)", item, err)
	show("Set(flags, f, flags 42)", c.Set(&memcache.Item{Key: "flags", Value: []byte("f"), Flags: 42}))
	item, err = c.Get("flags")
	showItem("Get(flags)", item, err)
	show("Set(empty, \"\")", c.Set(&memcache.Item{Key: "empty", Value: []byte{}}))
	item, err = c.Get("empty")
	showItem("Get(empty)", item, err)
	show("Set(bin, \\0\\r\\n\\xff)", c.Set(&memcache.Item{Key: "bin", Value: []byte("\x00\r\n\xff")}))
	item, err = c.Get("bin")
	showItem("Get(bin)", item, err)
	show("Set(bad key) is refused by the client", c.Set(&memcache.Item{Key: "bad key", Value: []byte("x")}))

	fmt.Println("# multi-get")
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}} {
		show("Set("+kv[0]+", "+kv[1]+")", c.Set(&memcache.Item{Key: kv[0], Value: []byte(kv[1])}))
	}
	items, err := c.GetMulti([]string{"a", "b", "c", "missing"})
	showMulti("GetMulti(a, b, c, missing)", items, err)
	items, err = c.GetMulti([]string{"missing"})
	showMulti("GetMulti(missing)", items, err)

	fmt.Println("# add / replace")
	show("Add(a) existing", c.Add(&memcache.Item{Key: "a", Value: []byte("x")}))
	show("Add(new)", c.Add(&memcache.Item{Key: "new", Value: []byte("n")}))
	item, err = c.Get("new")
	showItem("Get(new)", item, err)
	show("Replace(a)", c.Replace(&memcache.Item{Key: "a", Value: []byte("A")}))
	show("Replace(missing)", c.Replace(&memcache.Item{Key: "missing", Value: []byte("x")}))
	item, err = c.Get("a")
	showItem("Get(a)", item, err)

	fmt.Println("# append / prepend: not in this gomemcache")

	fmt.Println("# cas")
	first, err := c.Get("a")
	showItem("Get(a) for its unique", first, err)
	if first == nil {
		first = &memcache.Item{Key: "a"}
	}
	stale := *first
	first.Value = []byte("cas1")
	show("CompareAndSwap(a, current unique)", c.CompareAndSwap(first))
	stale.Value = []byte("cas2")
	show("CompareAndSwap(a, stale unique)", c.CompareAndSwap(&stale))
	missing := stale
	missing.Key = "missing"
	show("CompareAndSwap(missing)", c.CompareAndSwap(&missing))
	item, err = c.Get("a")
	showItem("Get(a) after cas", item, err)

	fmt.Println("# incr / decr")
	show("Set(n, 10)", c.Set(&memcache.Item{Key: "n", Value: []byte("10")}))
	value, err := c.Increment("n", 5)
	showNumber("Increment(n, 5)", value, err)
	value, err = c.Decrement("n", 3)
	showNumber("Decrement(n, 3)", value, err)
	value, err = c.Decrement("n", 100)
	showNumber("Decrement(n, 100) stops at 0", value, err)
	value, err = c.Increment("n", 1)
	showNumber("Increment(n, 1)", value, err)
	value, err = c.Increment("missing", 1)
	showNumber("Increment(missing, 1)", value, err)
	value, err = c.Decrement("missing", 1)
	showNumber("Decrement(missing, 1)", value, err)
	value, err = c.Increment("a", 1)
	showNumber("Increment(a, 1) non-numeric", value, err)
	show("Set(max, 2^64-1)", c.Set(&memcache.Item{Key: "max", Value: []byte("18446744073709551615")}))
	value, err = c.Increment("max", 1)
	showNumber("Increment(max, 1) wraps", value, err)
	item, err = c.Get("n")
	showItem("Get(n)", item, err)

	fmt.Println("# delete")
	show("Delete(b)", c.Delete("b"))
	show("Delete(b) again", c.Delete("b"))
	item, err = c.Get("b")
	showItem("Get(b)", item, err)

	fmt.Println("# touch")
	show("Touch(a, 100)", c.Touch("a", 100))
	show("Touch(missing, 100)", c.Touch("missing", 100))
	item, err = c.Get("a")
	showItem("Get(a) after touch", item, err)
	show("Touch(a, -1) expires", c.Touch("a", -1))
	item, err = c.Get("a")
	showItem("Get(a) after expiring touch", item, err)

	fmt.Println("# flush")
	show("FlushAll()", c.FlushAll())
	item, err = c.Get("k")
	showItem("Get(k) after flush", item, err)
	items, err = c.GetMulti([]string{"new", "n", "max"})
	showMulti("GetMulti(new, n, max) after flush", items, err)
	show("Add(new) after flush", c.Add(&memcache.Item{Key: "new", Value: []byte("again")}))
	item, err = c.Get("new")
	showItem("Get(new)", item, err)
	show("DeleteAll()", c.DeleteAll())
	item, err = c.Get("new")
	showItem("Get(new) after DeleteAll", item, err)

	fmt.Println("# done")
}
