//! memcached's maintenance commands, answered for rampart's design: one size class (class 1)
//! instead of slab classes, one LRU per shard, and a reclaim pass in each executor's turn
//! instead of the crawler and maintainer threads (docs/compatibility.md, "Maintenance
//! commands"). Arguments are checked as memcached checks them, so scripts get its replies.
//!
//! The key dumps (`lru_crawler metadump`, `stats cachedump`) and `stats detail` need every
//! shard and run in `session::whole`; this module has their class-list rules and line
//! formats.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rampart_proto::request::{LruCrawler, Slabs};
use rampart_proto::text::reply;
use rampart_store::{DumpEntry, DumpPiece};

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: class ids run 1..=63 (0 is valid and empty).
pub(crate) const SLAB_CLASSES: u32 = 64;
/// The one class every item is in.
pub(crate) const ITEM_CLASS: u32 = 1;
/// memcached's `stats cachedump` stops at 2 MB of lines.
pub(crate) const CACHEDUMP_MAX_BYTES: usize = 2 * 1024 * 1024;

/// What the maintenance commands change at run time, shown by `stats settings`.
#[derive(Debug)]
pub struct Tunables {
    pub lru_crawler: AtomicBool,
    pub lru_crawler_sleep: AtomicU32,
    pub lru_crawler_tocrawl: AtomicU32,
    pub slab_automove: AtomicU32,
    /// `stats detail on|off` (or `-D` at start).
    pub detail_enabled: AtomicBool,
    /// `stats sizes_enable|sizes_disable`.
    pub track_sizes: AtomicBool,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            lru_crawler: AtomicBool::new(true),
            lru_crawler_sleep: AtomicU32::new(100),
            lru_crawler_tocrawl: AtomicU32::new(0),
            slab_automove: AtomicU32::new(1),
            detail_enabled: AtomicBool::new(false),
            track_sizes: AtomicBool::new(false),
        }
    }
}

/// Which classes a `crawl` or `metadump` argument names: `all`, `hash` (metadump only: the
/// same items in table order) or comma-separated ids below [`SLAB_CLASSES`]. `Some(true)`
/// when it includes class 1, `None` when memcached answers `BADCLASS`.
pub(crate) fn names_item_class(classes: &[u8], hash_allowed: bool) -> Option<bool> {
    match classes {
        b"all" => return Some(true),
        b"hash" if hash_allowed => return Some(true),
        _ => {}
    }
    let mut includes = false;
    for id in classes.split(|&b| b == b',') {
        let id: u32 = std::str::from_utf8(id).ok()?.parse().ok()?;
        if id >= SLAB_CLASSES {
            return None;
        }
        includes |= id == ITEM_CLASS;
    }
    Some(includes)
}

/// Answers an `lru_crawler` subcommand other than `metadump`.
pub(crate) fn lru_crawler(command: LruCrawler<'_>, tunables: &Tunables, out: &mut Vec<u8>) {
    let line: &[u8] = match command {
        LruCrawler::Crawl(_) if !tunables.lru_crawler.load(Ordering::Relaxed) => {
            b"CLIENT_ERROR lru crawler disabled"
        }
        LruCrawler::Crawl(classes) => match names_item_class(classes, false) {
            // The next reclaim passes look at every item anyway.
            Some(_) => reply::OK,
            None => b"BADCLASS invalid class id",
        },
        LruCrawler::Enable => {
            if tunables.lru_crawler.swap(true, Ordering::Relaxed) {
                b"ERROR failed to start lru crawler thread"
            } else {
                reply::OK
            }
        }
        LruCrawler::Disable => {
            tunables.lru_crawler.store(false, Ordering::Relaxed);
            reply::OK
        }
        LruCrawler::Sleep(Some(micros)) if micros <= 1_000_000 => {
            tunables.lru_crawler_sleep.store(micros, Ordering::Relaxed);
            reply::OK
        }
        LruCrawler::Sleep(Some(_)) => b"CLIENT_ERROR sleep must be one second or less",
        LruCrawler::ToCrawl(Some(items)) => {
            tunables.lru_crawler_tocrawl.store(items, Ordering::Relaxed);
            reply::OK
        }
        LruCrawler::Sleep(None) | LruCrawler::ToCrawl(None) => {
            b"CLIENT_ERROR bad command line format"
        }
        LruCrawler::Metadump(_) | LruCrawler::Unknown => reply::ERROR,
    };
    reply::line(out, line);
}

/// Answers `slabs reassign|automove`. There is one class, so no page can move.
pub(crate) fn slabs(command: Slabs, tunables: &Tunables, out: &mut Vec<u8>) {
    let valid_class = |id: i32| (0..SLAB_CLASSES as i32).contains(&id);
    let line: &[u8] = match command {
        Slabs::Reassign {
            source,
            destination,
        } if source == destination => b"SAME src and dst class are identical",
        Slabs::Reassign {
            source,
            destination,
        } if !valid_class(source) || !valid_class(destination) => {
            b"BADCLASS invalid src or dst class id"
        }
        Slabs::Reassign { .. } => b"NOSPARE source class has no spare pages",
        Slabs::Automove(level @ 0..=2) => {
            tunables.slab_automove.store(level, Ordering::Relaxed);
            reply::OK
        }
        Slabs::Automove(_) | Slabs::Unknown => reply::ERROR,
        Slabs::BadFormat => b"CLIENT_ERROR bad command line format",
    };
    reply::line(out, line);
}

/// One `lru_crawler metadump` line (memcached's `item_metadump`): the key URL-encoded.
pub(crate) fn metadump_line(piece: &DumpPiece, entry: &DumpEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key=");
    uri_encode(piece.key(entry), out);
    let exp = if entry.exptime == 0 {
        "-1".to_string()
    } else {
        entry.exptime.to_string()
    };
    out.extend_from_slice(
        format!(
            " exp={exp} la={} cas={} fetch={} cls={ITEM_CLASS} size={}\n",
            entry.last_access,
            entry.cas,
            if entry.fetched { "yes" } else { "no" },
            entry.size
        )
        .as_bytes(),
    );
}

/// One `stats cachedump` line: `ITEM <key> [<bytes> b; <exptime> s]`.
pub(crate) fn cachedump_line(piece: &DumpPiece, entry: &DumpEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"ITEM ");
    out.extend_from_slice(piece.key(entry));
    out.extend_from_slice(format!(" [{} b; {} s]\r\n", entry.value_len, entry.exptime).as_bytes());
}

/// memcached's `uriencode`: everything but `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn uri_encode(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_follow_memcached() {
        assert_eq!(names_item_class(b"all", false), Some(true));
        assert_eq!(names_item_class(b"hash", true), Some(true));
        assert_eq!(names_item_class(b"hash", false), None);
        assert_eq!(names_item_class(b"1,2", false), Some(true));
        assert_eq!(names_item_class(b"2", false), Some(false));
        assert_eq!(names_item_class(b"63", false), Some(false));
        assert_eq!(names_item_class(b"64", false), None);
        assert_eq!(names_item_class(b"x", false), None);
    }

    #[test]
    fn keys_are_uri_encoded() {
        let mut out = Vec::new();
        uri_encode(b"a:b c~d%\x01", &mut out);
        assert_eq!(out, b"a%3Ab%20c~d%25%01");
    }
}
