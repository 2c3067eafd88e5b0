#!/usr/bin/perl
# Perl's Cache::Memcached::Fast (Debian libcache-memcached-fast-perl, text protocol) through
# the clients' common scenario against one server.
#
# Prints one `call -> result` line per call; tests/tests/clients.rs runs it against memcached
# and against rampart and requires identical output. CAS uniques are shown as labels C1,
# C2... in order of first appearance, version strings as <version>.
#
# Usage: perl memcached_fast.pl PORT

use strict;
use warnings;

use Cache::Memcached::Fast;

my $port = shift @ARGV or die "usage: $0 PORT\n";
my $server = "127.0.0.1:$port";
my $m = Cache::Memcached::Fast->new({
    servers => [$server],
    connect_timeout => 5,
    io_timeout => 5,
    # Values stay as sent: no compression, no UTF-8 flag, nothing serialized.
    compress_threshold => -1,
    utf8 => 0,
    # A failed server would otherwise be skipped silently for a while.
    max_failures => 0,
});

$| = 1;

my %labels;
sub cas_label {
    my ($unique) = @_;
    return 'no unique' unless defined $unique;
    # Counted before the new entry exists (`//=` would create it first).
    $labels{$unique} = 'C' . (1 + keys %labels) unless exists $labels{$unique};
    return $labels{$unique};
}

# undef (an error), false (a negative reply) and true kept apart; values shown as is.
sub shape {
    my ($result) = @_;
    return 'undef' unless defined $result;
    if (ref $result eq 'HASH') {
        return '{' . join(', ', map { "$_=" . shape($result->{$_}) } sort keys %$result) . '}';
    }
    if (ref $result eq 'ARRAY') {
        return '[' . join(', ', map { shape($_) } @$result) . ']';
    }
    return "'$result'";
}

sub show {
    my ($call, $result) = @_;
    print "$call -> ", shape($result), "\n";
    return $result;
}

sub show_gets {
    my ($call, $result) = @_;
    my $shown = defined $result ? "'$result->[1]' " . cas_label($result->[0]) : 'miss';
    print "$call -> $shown\n";
    return $result;
}

print "# version\n";
my $versions = $m->server_versions;
print "server_versions -> ", (defined $versions->{$server} ? '<version>' : 'none'), "\n";

print "# set / get\n";
show('set(k, v)', $m->set('k', 'v'));
show('get(k)', $m->get('k'));
show('get(missing)', $m->get('missing'));
show('set(empty, "")', $m->set('empty', ''));
show('get(empty)', $m->get('empty'));
show('set(bin, \0\r\n\xff)', $m->set('bin', "\0\r\n\xff"));
print 'get(bin) -> ', unpack('H*', $m->get('bin') // ''), "\n";

print "# multi-get\n";
show('set_multi(a, b, c)', scalar $m->set_multi(['a', '1'], ['b', '2'], ['c', '3']));
show('get_multi(a, b, c, missing)', $m->get_multi('a', 'b', 'c', 'missing'));
show('get_multi(missing)', $m->get_multi('missing'));

print "# add / replace\n";
show('add(a) existing', $m->add('a', 'x'));
show('add(new)', $m->add('new', 'n'));
show('get(new)', $m->get('new'));
show('replace(a)', $m->replace('a', 'A'));
show('replace(missing)', $m->replace('missing', 'x'));
show('get(a)', $m->get('a'));

print "# append / prepend\n";
show('append(a, +)', $m->append('a', '+'));
show('prepend(a, -)', $m->prepend('a', '-'));
show('append(missing)', $m->append('missing', 'x'));
show('prepend(missing)', $m->prepend('missing', 'x'));
show('get(a)', $m->get('a'));
show('get(missing) after failed append', $m->get('missing'));

print "# cas\n";
my $first = show_gets('gets(a)', $m->gets('a'));
show_gets('gets(missing)', $m->gets('missing'));
my $unique = $first ? $first->[0] : 0;
show('cas(a, current unique)', $m->cas('a', $unique, 'cas1'));
show('cas(a, stale unique)', $m->cas('a', $unique, 'cas2'));
show('cas(missing)', $m->cas('missing', $unique, 'x'));
show_gets('gets(a) after cas', $m->gets('a'));
show('get(a)', $m->get('a'));
my $multi = $m->gets_multi('a', 'b', 'missing');
print 'gets_multi(a, b, missing) -> {',
    join(', ', map { "$_='$multi->{$_}[1]' " . cas_label($multi->{$_}[0]) } sort keys %$multi),
    "}\n";

print "# incr / decr\n";
show('set(n, 10)', $m->set('n', '10'));
show('incr(n, 5)', $m->incr('n', 5));
show('decr(n, 3)', $m->decr('n', 3));
show('decr(n, 100) stops at 0', $m->decr('n', 100));
show('incr(n)', $m->incr('n'));
show('incr(missing, 1)', $m->incr('missing', 1));
show('decr(missing, 1)', $m->decr('missing', 1));
show('incr(a, 1) non-numeric', $m->incr('a', 1));
show('set(max, 2^64-1)', $m->set('max', '18446744073709551615'));
show('incr(max, 1) wraps', $m->incr('max', 1));
show('get(n)', $m->get('n'));

print "# delete\n";
show('delete(b)', $m->delete('b'));
show('delete(b) again', $m->delete('b'));
show('get(b)', $m->get('b'));
show('delete_multi(c, missing)', scalar $m->delete_multi('c', 'missing'));

print "# touch\n";
show('touch(a, 100)', $m->touch('a', 100));
show('touch(missing, 100)', $m->touch('missing', 100));
show('get(a) after touch', $m->get('a'));
show('gat(100, a)', $m->gat(100, 'a'));
show('gat(100, missing)', $m->gat(100, 'missing'));
show_gets('gats(100, a)', $m->gats(100, 'a'));
show('touch(a, -1) expires', $m->touch('a', -1));
show('get(a) after expiring touch', $m->get('a'));

print "# flush\n";
my $flushed = $m->flush_all;
show('flush_all', $flushed->{$server});
show('get(k) after flush', $m->get('k'));
show('get_multi(new, n, max) after flush', $m->get_multi('new', 'n', 'max'));
show('add(new) after flush', $m->add('new', 'again'));
show('get(new)', $m->get('new'));

print "# done\n";
