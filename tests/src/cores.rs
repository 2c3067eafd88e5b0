//! rampart's cores from outside: which core owns a key, which core a connection landed on,
//! and the `stats` lines that tell.
//!
//! Key ownership is recomputed here from its definition (FNV-1a 64 with the standard offset
//! basis, murmur3's fmix64, a multiply-shift onto the shard count), pinned by a test against
//! the same values the server's unit test pins, so the test crate still depends on no
//! rampart crate.

use crate::Server;
use crate::io::Conn;

/// Connections opened, at most, to get the ones a caller asks for on each core (the kernel
/// spreads connections over the cores' `SO_REUSEPORT` sockets by a hash of the address).
pub const MAX_CONNECTIONS_TO_SPREAD: usize = 256;

/// The shard that owns `key` among `shards` (rampart's `shard::shard_for`).
pub fn owner(key: &[u8], shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    ((u128::from(hash) * shards as u128) >> 64) as usize
}

/// The `n`th key `<prefix><i>` owned by `shard` of `shards`.
pub fn key_on(shard: usize, shards: usize, prefix: &str, n: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| owner(k.as_bytes(), shards) == shard)
        .nth(n)
        .unwrap_or_default()
}

/// `STAT <name> <value>` lines of a stats reply, for the numeric values.
pub fn stats(conn: &mut Conn, group: &str) -> Vec<(String, u64)> {
    let request = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    let reply = conn.roundtrip(request.as_bytes(), b"END\r\n");
    String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("STAT ")?.split(' ');
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}

/// One value of [`stats`]; panics when it is missing.
pub fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no STAT {name} in {stats:?}"))
}

/// Connections until each of `shards` cores holds at least one (checked with `stats shards`).
pub fn conns_on_every_core(server: &Server, shards: usize) -> Vec<Conn> {
    let mut conns = Vec::new();
    while conns.len() < MAX_CONNECTIONS_TO_SPREAD {
        let mut conn = server.conn();
        let counts = stats(&mut conn, "shards");
        conns.push(conn);
        if (0..shards).all(|i| stat(&counts, &format!("shard:{i}:curr_connections")) > 0) {
            return conns;
        }
    }
    panic!(
        "{MAX_CONNECTIONS_TO_SPREAD} connections all landed on one core\n{}",
        server.diagnostics()
    );
}

/// `per_core` connections on each of `shards` cores, by core: each new connection's core is
/// the one whose `curr_connections` it raised, while every earlier one stays open (so no
/// count falls meanwhile). No other client may connect to `server` while this runs.
pub fn conns_by_core(server: &Server, shards: usize, per_core: usize) -> Vec<Vec<Conn>> {
    let mut by_core: Vec<Vec<Conn>> = (0..shards).map(|_| Vec::new()).collect();
    let mut spare = Vec::new();
    let mut before = vec![0; shards];
    for _ in 0..MAX_CONNECTIONS_TO_SPREAD {
        if by_core.iter().all(|conns| conns.len() >= per_core) {
            return by_core;
        }
        let mut conn = server.conn();
        let counts = stats(&mut conn, "shards");
        let now: Vec<u64> = (0..shards)
            .map(|i| stat(&counts, &format!("shard:{i}:curr_connections")))
            .collect();
        let raised: Vec<usize> = (0..shards).filter(|&i| now[i] > before[i]).collect();
        assert_eq!(
            raised.len(),
            1,
            "one new connection raised {raised:?}: {before:?} then {now:?}"
        );
        before = now;
        let core = raised[0];
        if by_core[core].len() < per_core {
            by_core[core].push(conn);
        } else {
            spare.push(conn);
        }
    }
    panic!(
        "{MAX_CONNECTIONS_TO_SPREAD} connections did not give {per_core} on each core\n{}",
        server.diagnostics()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_matches_the_servers_pinned_values() {
        assert_eq!(owner(b"", 4), 3);
        assert_eq!(owner(b"foo", 4), 2);
        assert_eq!(owner(b"foo", 1), 0);
    }
}
