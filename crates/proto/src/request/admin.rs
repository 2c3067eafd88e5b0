//! memcached's maintenance commands for machinery rampart does not have the way memcached has
//! it (the slab allocator, the segmented LRU, the crawler thread), its key dumps, and `watch`.
//! The parser checks their arguments as memcached does, so a script gets memcached's answer to
//! a malformed one; the server decides what each well-formed one does.

/// One maintenance command, and its line (without `\r\n`) for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin<'a> {
    pub command: AdminCommand<'a>,
    pub line: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCommand<'a> {
    LruCrawler(LruCrawler<'a>),
    /// `lru mode flat|segmented`, `lru tune <hot%> <warm%> <hot factor> <warm factor>`,
    /// `lru temp_ttl <seconds>`: `valid` when memcached would answer `OK`.
    Lru {
        valid: bool,
    },
    Slabs(Slabs),
    Watch(Watch),
}

/// `lru_crawler ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LruCrawler<'a> {
    /// `crawl <classes>`: `all` or comma-separated class ids.
    Crawl(&'a [u8]),
    /// `metadump <classes|all|hash>`.
    Metadump(&'a [u8]),
    Enable,
    Disable,
    /// `sleep <microseconds>`; `None` when not a number.
    Sleep(Option<u32>),
    /// `tocrawl <items>`; `None` when not a number.
    ToCrawl(Option<u32>),
    /// Anything else: memcached's `ERROR`.
    Unknown,
}

/// `slabs ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slabs {
    Reassign {
        source: i32,
        destination: i32,
    },
    Automove(u32),
    /// A subcommand with arguments that are not numbers.
    BadFormat,
    Unknown,
}

/// `watch [filters...]`: which event streams to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// [`Watch::FETCHERS`] and the others, or'ed; 0 for a bare `watch`.
    pub streams: u8,
    /// A word memcached does not know: `ERROR`.
    pub unknown: bool,
}

impl Watch {
    pub const FETCHERS: u8 = 1;
    pub const MUTATIONS: u8 = 2;
    pub const EVICTIONS: u8 = 4;
    pub const CONNEVENTS: u8 = 8;
    /// Proxy and system streams memcached accepts; rampart has no events for them.
    pub const OTHER: u8 = 16;

    /// The stream a filter word names.
    pub fn stream(word: &[u8]) -> Option<u8> {
        Some(match word {
            b"fetchers" => Watch::FETCHERS,
            b"mutations" => Watch::MUTATIONS,
            b"evictions" => Watch::EVICTIONS,
            b"connevents" => Watch::CONNEVENTS,
            b"rawcmds" | b"proxyreqs" | b"proxyevents" | b"proxyuser" | b"sysevents" => {
                Watch::OTHER
            }
            _ => return None,
        })
    }
}
