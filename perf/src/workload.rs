//! What to send: request templates encoded by `rampart-proto`, and the choice of key and
//! command for each request.
//!
//! Every key has the same length (`<prefix><index>`, the index zero-padded), so each command is
//! encoded once into a template and a request is the template with its key digits rewritten:
//! one copy per request and no allocation once the output buffer has grown.

use rampart_proto::text::{self, Frame, Limits, Parsed};
use rampart_proto::{Request, Store, StoreMode};

use crate::config::{Config, key_digits};

/// The commands a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

/// The encoded requests of one run, shared read-only by every thread.
#[derive(Debug)]
pub(crate) struct Workload {
    get: Template,
    set: Template,
    digits: usize,
    keys: u64,
    first_key: u64,
    get_ratio: f64,
}

/// One encoded request whose key digits sit at `digits_at`.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    digits_at: usize,
}

impl Workload {
    /// Encodes the templates; `config` has been validated.
    pub(crate) fn new(config: &Config) -> Workload {
        let digits = key_digits(config.first_key + config.keys);
        let mut key = config.key_prefix.clone().into_bytes();
        key.resize(key.len() + digits, b'0');
        let value: Vec<u8> = (0..config.value_size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();

        let mut set = Vec::new();
        text::encode(
            &Request::Store(Store {
                mode: StoreMode::Set,
                key: &key,
                flags: 0,
                exptime: 0,
                data: &value,
                noreply: false,
            }),
            &mut set,
        );

        // rampart-proto has no public constructor for a get's `Keys` (they borrow a parsed
        // request line), so the get is parsed from its own line and encoded back: the codec's
        // tested round trip, done once per run.
        let mut line = b"get ".to_vec();
        line.extend_from_slice(&key);
        line.extend_from_slice(b"\r\n");
        let mut get = Vec::new();
        if let Parsed::Complete {
            frame: Frame::Request(request @ Request::Get(_)),
            ..
        } = text::parse(&line, &Limits::default())
        {
            text::encode(&request, &mut get);
        } else {
            // Unreachable for a validated key; sending the line as written is still correct.
            get = line;
        }

        Workload {
            get: Template::new(get, &key, config.key_prefix.len()),
            set: Template::new(set, &key, config.key_prefix.len()),
            digits,
            keys: config.keys,
            first_key: config.first_key,
            get_ratio: config.get_ratio,
        }
    }

    /// Appends request `op` for the key `index` (`< keys`) places after the first to `out`.
    pub(crate) fn encode(&self, op: Op, index: u64, out: &mut Vec<u8>) {
        let template = match op {
            Op::Get => &self.get,
            Op::Set => &self.set,
        };
        let start = out.len();
        out.extend_from_slice(&template.bytes);
        let at = start + template.digits_at;
        write_padded(&mut out[at..at + self.digits], self.first_key + index);
    }

    /// The next random request.
    pub(crate) fn pick(&self, rng: &mut Rng) -> (Op, u64) {
        let op = if rng.unit() < self.get_ratio {
            Op::Get
        } else {
            Op::Set
        };
        (op, rng.below(self.keys))
    }

    pub(crate) fn keys(&self) -> u64 {
        self.keys
    }
}

impl Template {
    /// `key` appears in `bytes` (the encoder wrote it); its digits start `prefix_len` in.
    fn new(bytes: Vec<u8>, key: &[u8], prefix_len: usize) -> Template {
        // The command word comes first and contains no key, so the first match is the key.
        let key_at = memchr::memmem::find(&bytes, key).unwrap_or(0);
        Template {
            bytes,
            digits_at: key_at + prefix_len,
        }
    }
}

/// Writes `n` in decimal, right-aligned and zero-padded, over all of `out`.
fn write_padded(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// splitmix64: fast, statistically fine for choosing keys, and reproducible from a seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-64 * n).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(keys: u64, value_size: usize) -> Workload {
        Workload::new(&Config {
            keys,
            value_size,
            ..Config::default()
        })
    }

    #[test]
    fn requests_carry_the_padded_key() {
        let w = workload(1000, 5);
        let mut out = Vec::new();
        w.encode(Op::Get, 7, &mut out);
        w.encode(Op::Set, 999, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "get key:007\r\nset key:999 0 0 5\r\nabcde\r\n"
        );
    }

    #[test]
    fn keys_count_from_the_first_key() {
        let w = Workload::new(&Config {
            keys: 50_000,
            first_key: 10_000,
            ..Config::default()
        });
        let mut out = Vec::new();
        w.encode(Op::Get, 0, &mut out);
        w.encode(Op::Get, 49_999, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "get key:10000\r\nget key:59999\r\n"
        );
    }

    #[test]
    fn requests_parse_back_to_what_was_meant() {
        let w = workload(100, 3);
        let mut out = Vec::new();
        w.encode(Op::Set, 42, &mut out);
        let Parsed::Complete {
            consumed,
            frame: Frame::Request(Request::Store(store)),
        } = text::parse(&out, &Limits::default())
        else {
            panic!("not a set: {out:?}");
        };
        assert_eq!(consumed, out.len());
        assert_eq!(store.key, b"key:42");
        assert_eq!(store.data, b"abc");
    }

    #[test]
    fn picks_stay_in_the_key_space_and_follow_the_ratio() {
        let w = workload(10, 1);
        let mut rng = Rng::new(1);
        let mut gets = 0;
        for _ in 0..10_000 {
            let (op, key) = w.pick(&mut rng);
            assert!(key < 10);
            gets += usize::from(op == Op::Get);
        }
        // get_ratio is 0.9 by default.
        assert!((8_500..9_500).contains(&gets), "{gets}");
    }
}
