//! Base64 for meta keys (`b` flag), with memcached's exact decoding rules.
//!
//! memcached's decoder skips bytes outside the alphabet, wants a multiple of four remaining
//! symbols, and stops at the first block holding `=` (one or two of them; more is an error).
//! A result of zero bytes is an error too (`CLIENT_ERROR error decoding key`).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Not in the alphabet (and not `=`): skipped.
const SKIP: u8 = 0x80;

const fn decode_table() -> [u8; 256] {
    let mut table = [SKIP; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = 0;
    table
}

const DECODE: [u8; 256] = decode_table();

/// Decodes `src` into `out`, returning the length, or `None` where memcached returns 0.
pub fn decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let symbols = src
        .iter()
        .filter(|&&b| DECODE[usize::from(b)] != SKIP)
        .count();
    if symbols == 0 || symbols % 4 != 0 || symbols / 4 * 3 > out.len() {
        return None;
    }
    let mut len = 0;
    let mut block = [0u8; 4];
    let mut filled = 0;
    let mut pad = 0;
    for &b in src {
        let value = DECODE[usize::from(b)];
        if value == SKIP {
            continue;
        }
        if b == b'=' {
            pad += 1;
        }
        block[filled] = value;
        filled += 1;
        if filled == 4 {
            out[len] = (block[0] << 2) | (block[1] >> 4);
            out[len + 1] = (block[1] << 4) | (block[2] >> 2);
            out[len + 2] = (block[2] << 6) | block[3];
            len += 3;
            filled = 0;
            if pad > 0 {
                match pad {
                    1 => len -= 1,
                    2 => len -= 2,
                    _ => return None,
                }
                break;
            }
        }
    }
    (len > 0).then_some(len)
}

/// Appends the padded base64 form of `src`.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    for chunk in src.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let symbols = [
            b[0] >> 2,
            ((b[0] & 3) << 4) | (b[1] >> 4),
            ((b[1] & 15) << 2) | (b[2] >> 6),
            b[2] & 63,
        ];
        for (i, &s) in symbols.iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[usize::from(s)]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; 64];
        decode(s, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn decodes_like_memcached() {
        // Each checked against memcached 1.6.18 with `mg <key> b k`.
        assert_eq!(dec(b"Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(dec(b"Zm9v!").as_deref(), Some(&b"foo"[..]));
        assert_eq!(dec(b"Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(dec(b"Z=9v").as_deref(), Some(&b"d\x0f"[..]));
        assert_eq!(dec(b"Zm9"), None);
        assert_eq!(dec(b"Zm9v=="), None);
        assert_eq!(dec(b"Zg"), None);
        assert_eq!(dec(b"===="), None);
    }

    #[test]
    fn encodes_with_padding() {
        let mut out = Vec::new();
        encode(b"d\x0f", &mut out);
        assert_eq!(out, b"ZA8=");
        out.clear();
        encode(b"foob", &mut out);
        assert_eq!(out, b"Zm9vYg==");
        assert_eq!(dec(&out).as_deref(), Some(&b"foob"[..]));
    }
}
