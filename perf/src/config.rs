//! What a run does: where it connects, how much load it offers, and when it stops.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AsciiAuth;
use crate::handshake::MAX_SEQUENCE_CONNECTIONS;

/// Most requests one connection may have in flight.
pub const MAX_PIPELINE: usize = 4096;
/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 65_536;
/// Largest value the generator will store: memcached's default item ceiling (`-I 1m`) less
/// room for the item header and key.
pub const MAX_VALUE_SIZE_BYTES: usize = 1024 * 1024 - 512;
/// Longest key memcached accepts.
const MAX_KEY_BYTES: usize = rampart_proto::MAX_KEY_BYTES;

/// One load run. [`Config::default`] is a short closed-loop run against a local memcached.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `host:port` of the server.
    pub server: String,
    /// `None` for plaintext TCP.
    pub tls: Option<TlsConfig>,
    /// Authenticate every connection with memcached's ASCII authentication (`-Y`) right
    /// after connecting (after the TLS handshake); `None`: never.
    pub auth: Option<AsciiAuth>,
    /// Connections, spread round-robin over the threads.
    pub connections: usize,
    /// Requests in flight per connection; the requests that fit are sent as one write.
    pub pipeline: usize,
    /// Size of the key space: keys are `<key_prefix><first_key + i>` for `i` in `0..keys`,
    /// zero-padded to the digits of the largest.
    pub keys: u64,
    pub key_prefix: String,
    /// The first key's number; from 10^(d-1) on, no key has a leading zero, as another
    /// generator's unpadded keys (memtier_benchmark's `--key-minimum`) would not.
    pub first_key: u64,
    /// Bytes in every stored value.
    pub value_size: usize,
    /// Fraction of requests that are `get`; the rest are `set`. In `0.0..=1.0`.
    pub get_ratio: f64,
    /// Set every key once, on all connections, before measuring.
    pub prepopulate: bool,
    /// Sets in flight per connection while prepopulating; `None`: the larger of `pipeline`
    /// and 32. Depth 1 for servers that stall on pipelined TLS sets (memcached 1.6.18).
    pub prepopulate_depth: Option<usize>,
    /// When the measurement ends.
    pub stop: Stop,
    /// `None`: closed loop, every connection keeps `pipeline` requests in flight.
    /// `Some(r)`: open loop, `r` requests per second offered across all connections at fixed
    /// intended send times; latency runs from the intended time, so a slow server cannot
    /// slow the clock that measures it (no coordinated omission).
    pub rate: Option<f64>,
    /// Client threads; each drives its share of the connections with one poller.
    pub threads: usize,
    /// CPUs to pin the client threads to, round-robin; empty leaves them unpinned.
    pub cpus: Vec<usize>,
    /// A connection with requests in flight and nothing received for this long has failed;
    /// also the longest wait for in-flight replies after the measurement ends.
    pub io_timeout: Duration,
    /// Hard bound on the measurement, whatever `stop` says (for [`Stop::Requests`]).
    pub time_limit: Duration,
    /// Seed of the key and command choices; the same seed replays the same sequence.
    pub seed: u64,
}

/// When the measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop sending after this long, then wait for the replies in flight.
    Duration(Duration),
    /// Send this many requests in all, then wait for their replies.
    Requests(u64),
}

/// TLS through OpenSSL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub verify: Verify,
    /// Client certificate chain (PEM), for servers that ask for one.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); defaults to `cert` when that holds both.
    pub key: Option<PathBuf>,
    /// Name sent as SNI and checked against the certificate; defaults to the host of
    /// `server`. An IP address is checked against the certificate's IP SANs.
    pub server_name: Option<String>,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against these CA certificates (PEM).
    Ca(PathBuf),
    /// Against the system's default trust store.
    SystemRoots,
    /// Not at all: for throwaway self-signed benchmark certificates only.
    Insecure,
}

/// A [`Config`] that cannot describe a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("--server must be host:port, got {0:?}")]
    Server(String),
    #[error("--connections must be 1..={MAX_CONNECTIONS}, got {0}")]
    Connections(usize),
    #[error("--pipeline must be 1..={MAX_PIPELINE}, got {0}")]
    Pipeline(usize),
    #[error("--prepopulate-depth must be 1..={MAX_PIPELINE}, got {0}")]
    PrepopulateDepth(usize),
    #[error("--keys must be at least 1")]
    Keys,
    #[error("--first-key plus --keys must stay below 2^64")]
    FirstKey,
    #[error("keys would be {0} bytes long; memcached's limit is {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    #[error("the key prefix may not contain spaces or control bytes: {0:?}")]
    KeyPrefix(String),
    #[error("--value-size must be at most {MAX_VALUE_SIZE_BYTES}, got {0}")]
    ValueSize(usize),
    #[error("--get-ratio must be within 0..=1, got {0}")]
    GetRatio(f64),
    #[error("--rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    #[error("--duration must be positive")]
    Duration,
    #[error("--requests must be at least 1")]
    Requests,
    #[error("--threads must be at least 1")]
    Threads,
    #[error("timeouts must be positive")]
    Timeout,
    #[error("--handshakes must be 1..={MAX_SEQUENCE_CONNECTIONS}, got {0}")]
    Handshakes(u64),
    #[error("--user and --password: {0}")]
    Auth(&'static str),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: "127.0.0.1:11211".to_string(),
            tls: None,
            auth: None,
            connections: 4,
            pipeline: 1,
            keys: 10_000,
            key_prefix: "key:".to_string(),
            first_key: 0,
            value_size: 32,
            get_ratio: 0.9,
            prepopulate: false,
            prepopulate_depth: None,
            stop: Stop::Duration(Duration::from_secs(10)),
            rate: None,
            threads: 1,
            cpus: Vec::new(),
            io_timeout: Duration::from_secs(5),
            time_limit: Duration::from_secs(3600),
            seed: 0x5eed,
        }
    }
}

impl Config {
    /// Checks every field against the bounds the generator relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .server
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(ConfigError::Server(self.server.clone()));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(ConfigError::Connections(self.connections));
        }
        if !(1..=MAX_PIPELINE).contains(&self.pipeline) {
            return Err(ConfigError::Pipeline(self.pipeline));
        }
        if let Some(depth) = self.prepopulate_depth
            && !(1..=MAX_PIPELINE).contains(&depth)
        {
            return Err(ConfigError::PrepopulateDepth(depth));
        }
        if self.keys == 0 {
            return Err(ConfigError::Keys);
        }
        let Some(end) = self.first_key.checked_add(self.keys) else {
            return Err(ConfigError::FirstKey);
        };
        if self
            .key_prefix
            .bytes()
            .any(|b| b == b' ' || b.is_ascii_control())
        {
            return Err(ConfigError::KeyPrefix(self.key_prefix.clone()));
        }
        let key_len = self.key_prefix.len() + key_digits(end);
        if key_len > MAX_KEY_BYTES {
            return Err(ConfigError::KeyTooLong(key_len));
        }
        if self.value_size > MAX_VALUE_SIZE_BYTES {
            return Err(ConfigError::ValueSize(self.value_size));
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err(ConfigError::GetRatio(self.get_ratio));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(ConfigError::Rate(rate));
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return Err(ConfigError::Duration),
            Stop::Requests(0) => return Err(ConfigError::Requests),
            _ => {}
        }
        if self.threads == 0 {
            return Err(ConfigError::Threads);
        }
        if self.io_timeout.is_zero() || self.time_limit.is_zero() {
            return Err(ConfigError::Timeout);
        }
        if let Some(problem) = self.auth.as_ref().and_then(AsciiAuth::problem) {
            return Err(ConfigError::Auth(problem));
        }
        Ok(())
    }

    /// Threads that will actually run: never more than there are connections.
    pub fn effective_threads(&self) -> usize {
        self.threads.clamp(1, self.connections.max(1))
    }

    /// The host part of `server`, without IPv6 brackets.
    pub fn host(&self) -> &str {
        let host = self
            .server
            .rsplit_once(':')
            .map_or(self.server.as_str(), |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Decimal digits of the largest key number below `end`, so that every key has the same
/// length.
pub(crate) fn key_digits(end: u64) -> usize {
    let mut largest = end.saturating_sub(1);
    let mut digits = 1;
    while largest >= 10 {
        largest /= 10;
        digits += 1;
    }
    digits
}

/// Parses a CPU list such as `3`, `0,2` or `0-3,8`.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU list {list:?}: {part:?} is not a CPU number"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last || last >= libc::CPU_SETSIZE as usize {
            return Err(format!(
                "bad CPU list {list:?}: {part:?} is not a CPU range"
            ));
        }
        cpus.extend(first..=last);
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn bad_fields_are_refused() {
        let base = Config::default();
        let cases = [
            Config {
                server: "nohost".into(),
                ..base.clone()
            },
            Config {
                server: ":11211".into(),
                ..base.clone()
            },
            Config {
                connections: 0,
                ..base.clone()
            },
            Config {
                pipeline: MAX_PIPELINE + 1,
                ..base.clone()
            },
            Config {
                prepopulate_depth: Some(0),
                ..base.clone()
            },
            Config {
                keys: 0,
                ..base.clone()
            },
            Config {
                key_prefix: "a b".into(),
                ..base.clone()
            },
            Config {
                key_prefix: "k".repeat(249),
                ..base.clone()
            },
            Config {
                first_key: u64::MAX,
                ..base.clone()
            },
            Config {
                get_ratio: 1.5,
                ..base.clone()
            },
            Config {
                rate: Some(0.0),
                ..base.clone()
            },
            Config {
                stop: Stop::Requests(0),
                ..base.clone()
            },
            Config {
                threads: 0,
                ..base.clone()
            },
            Config {
                auth: Some(AsciiAuth {
                    user: "alice".into(),
                    password: "two words".into(),
                }),
                ..base.clone()
            },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn keys_have_a_fixed_number_of_digits() {
        assert_eq!(key_digits(1), 1);
        assert_eq!(key_digits(10), 1);
        assert_eq!(key_digits(11), 2);
        assert_eq!(key_digits(1_000_000), 6);
        assert_eq!(key_digits(u64::MAX), 20);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("3"), Ok(vec![3]));
        assert_eq!(parse_cpu_list("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_cpu_list("4-2").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn the_host_is_the_server_without_its_port() {
        let mut config = Config::default();
        assert_eq!(config.host(), "127.0.0.1");
        config.server = "[::1]:11211".into();
        assert_eq!(config.host(), "::1");
    }
}
