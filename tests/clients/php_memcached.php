<?php
// PHP's memcached extension (Debian php-memcached, libmemcached underneath) through the
// clients' common scenario against one server, in the text or the binary protocol.
//
// Prints one `call -> result (RES_...)` line per call: the value PHP returns and the
// extension's result code after it. tests/tests/clients.rs runs it against memcached and
// against rampart and requires identical output. CAS uniques are shown as labels C1, C2...
// in order of first appearance, version strings as <version>.
//
// Usage: php php_memcached.php PORT text|binary

if ($argc != 3 || !in_array($argv[2], ['text', 'binary'], true)) {
    fwrite(STDERR, "usage: php php_memcached.php PORT text|binary\n");
    exit(2);
}
$port = (int) $argv[1];

$m = new Memcached();
$m->setOptions([
    Memcached::OPT_BINARY_PROTOCOL => $argv[2] === 'binary',
    // Values stay as sent: strings are stored raw, never compressed.
    Memcached::OPT_COMPRESSION => false,
    // Milliseconds, then microseconds: bounded waits on a server that does not answer.
    Memcached::OPT_CONNECT_TIMEOUT => 5000,
    Memcached::OPT_POLL_TIMEOUT => 5000,
    Memcached::OPT_RECV_TIMEOUT => 5000000,
    Memcached::OPT_SEND_TIMEOUT => 5000000,
]);
$m->addServer('127.0.0.1', $port);

// The RES_* constant names by value, to print result codes by name.
$resultNames = [];
foreach ((new ReflectionClass('Memcached'))->getConstants() as $name => $value) {
    if (strncmp($name, 'RES_', 4) === 0) {
        $resultNames[$value] = $name;
    }
}

$labels = [];
function cas_label($unique)
{
    global $labels;
    if ($unique === null) {
        return 'no unique';
    }
    $key = (string) $unique;
    if (!isset($labels[$key])) {
        $labels[$key] = 'C' . (count($labels) + 1);
    }
    return $labels[$key];
}

function code()
{
    global $m, $resultNames;
    $code = $m->getResultCode();
    return $resultNames[$code] ?? "code $code";
}

function shape($result)
{
    if (is_array($result)) {
        ksort($result);
        $parts = [];
        foreach ($result as $key => $value) {
            $parts[] = "$key=" . shape($value);
        }
        return '{' . implode(', ', $parts) . '}';
    }
    return var_export($result, true);
}

function show($call, $result)
{
    echo "$call -> ", shape($result), ' (', code(), ")\n";
    return $result;
}

// A GET_EXTENDED result: the value and its unique's label.
function extended($item)
{
    if (!is_array($item)) {
        return var_export($item, true);
    }
    return var_export($item['value'], true) . ' ' . cas_label($item['cas'])
        . ' flags ' . $item['flags'];
}

function show_gets($call, $item)
{
    echo "$call -> ", extended($item), ' (', code(), ")\n";
    return $item;
}

echo "# version\n";
$versions = $m->getVersion();
$version = is_array($versions) ? reset($versions) : false;
echo 'getVersion -> ', (is_string($version) && $version !== '' ? '<version>' : shape($versions)),
    ' (', code(), ")\n";

echo "# set / get\n";
show('set(k, v)', $m->set('k', 'v'));
show('get(k)', $m->get('k'));
show('get(missing)', $m->get('missing'));
show('set(empty, "")', $m->set('empty', ''));
show('get(empty)', $m->get('empty'));
show('set(bin, \0\r\n\xff)', $m->set('bin', "\0\r\n\xff"));
echo 'get(bin) -> ', bin2hex((string) $m->get('bin')), ' (', code(), ")\n";
show('set(int, 12)', $m->set('int', 12));
show('get(int)', $m->get('int'));

echo "# multi-get\n";
show('setMulti(a, b, c)', $m->setMulti(['a' => '1', 'b' => '2', 'c' => '3']));
show('getMulti(a, b, c, missing)', $m->getMulti(['a', 'b', 'c', 'missing']));
show('getMulti(missing)', $m->getMulti(['missing']));

echo "# add / replace\n";
show('add(a) existing', $m->add('a', 'x'));
show('add(new)', $m->add('new', 'n'));
show('get(new)', $m->get('new'));
show('replace(a)', $m->replace('a', 'A'));
show('replace(missing)', $m->replace('missing', 'x'));
show('get(a)', $m->get('a'));

echo "# append / prepend\n";
show('append(a, +)', $m->append('a', '+'));
show('prepend(a, -)', $m->prepend('a', '-'));
show('append(missing)', $m->append('missing', 'x'));
show('prepend(missing)', $m->prepend('missing', 'x'));
show('get(a)', $m->get('a'));
show('get(missing) after failed append', $m->get('missing'));

echo "# cas\n";
$first = show_gets('get(a, GET_EXTENDED)', $m->get('a', null, Memcached::GET_EXTENDED));
show_gets('get(missing, GET_EXTENDED)', $m->get('missing', null, Memcached::GET_EXTENDED));
$unique = is_array($first) ? $first['cas'] : 0;
show('cas(current unique, a)', $m->cas($unique, 'a', 'cas1'));
show('cas(stale unique, a)', $m->cas($unique, 'a', 'cas2'));
show('cas(unique, missing)', $m->cas($unique, 'missing', 'x'));
show_gets('get(a, GET_EXTENDED) after cas', $m->get('a', null, Memcached::GET_EXTENDED));
show('get(a)', $m->get('a'));
$multi = $m->getMulti(['a', 'b', 'missing'], Memcached::GET_EXTENDED);
ksort($multi);
$parts = [];
foreach ($multi as $key => $item) {
    $parts[] = "$key=" . extended($item);
}
echo 'getMulti(a, b, missing, GET_EXTENDED) -> {', implode(', ', $parts), '} (', code(), ")\n";

echo "# incr / decr\n";
show('set(n, 10)', $m->set('n', '10'));
show('increment(n, 5)', $m->increment('n', 5));
show('decrement(n, 3)', $m->decrement('n', 3));
show('decrement(n, 100) stops at 0', $m->decrement('n', 100));
show('increment(n)', $m->increment('n'));
show('increment(missing, 1)', $m->increment('missing', 1));
show('decrement(missing, 1)', $m->decrement('missing', 1));
show('get(missing) after incr', $m->get('missing'));
show('increment(a, 1) non-numeric', $m->increment('a', 1));
show('get(n)', $m->get('n'));

echo "# delete\n";
show('delete(b)', $m->delete('b'));
show('delete(b) again', $m->delete('b'));
show('get(b)', $m->get('b'));
show('deleteMulti(c, missing)', $m->deleteMulti(['c', 'missing']));

echo "# touch\n";
show('touch(a, 100)', $m->touch('a', 100));
show('touch(missing, 100)', $m->touch('missing', 100));
show('get(a) after touch', $m->get('a'));

echo "# flush\n";
show('flush()', $m->flush());
show('get(k) after flush', $m->get('k'));
show('getMulti(new, n, int) after flush', $m->getMulti(['new', 'n', 'int']));
show('add(new) after flush', $m->add('new', 'again'));
show('get(new)', $m->get('new'));

echo "# done\n";
