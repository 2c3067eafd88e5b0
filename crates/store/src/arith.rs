//! `incr`/`decr` number handling, byte-for-byte as memcached's `do_add_delta`.

/// Longest decimal `u64` ("18446744073709551615").
pub(crate) const MAX_U64_DIGITS: usize = 20;

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// memcached's `safe_strtoull` on an item's data: leading whitespace is skipped, a `+` or `-`
/// sign is accepted by `strtoull`, at least one digit is needed, overflow fails, and the
/// number must be followed by whitespace, NUL or the end of the value (memcached's data is
/// always followed by `"\r\n"`). A result that is negative as an `i64` fails if the value
/// holds a `-` at all. There is no length limit: `"7 apples"` is 7.
pub(crate) fn parse_u64(value: &[u8]) -> Option<u64> {
    let spaces = value.iter().take_while(|b| is_c_space(**b)).count();
    let mut rest = &value[spaces..];
    let negative = rest.first() == Some(&b'-');
    if let Some((b'-' | b'+', unsigned)) = rest.split_first() {
        rest = unsigned;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in &rest[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    match rest.get(digits) {
        None => {}
        Some(&b) if b == 0 || is_c_space(b) => {}
        Some(_) => return None,
    }
    let n = if negative { n.wrapping_neg() } else { n };
    if i64::try_from(n).is_err() && value.contains(&b'-') {
        return None;
    }
    Some(n)
}

/// incr wraps modulo 2^64; decr stops at 0.
pub(crate) fn apply_delta(value: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        value.wrapping_add(delta)
    } else {
        value.saturating_sub(delta)
    }
}

/// Writes `n` in decimal into `buf` and returns the digits.
pub(crate) fn format_u64(mut n: u64, buf: &mut [u8; MAX_U64_DIGITS]) -> &[u8] {
    let mut start = MAX_U64_DIGITS;
    loop {
        start -= 1;
        // n % 10 < 10, so the cast is lossless.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Overwrites `value` in place with `digits` padded with spaces to its old length, as
/// memcached does when the new number is not longer than the old value.
pub(crate) fn write_padded(value: &mut [u8], digits: &[u8]) {
    let (head, pad) = value.split_at_mut(digits.len());
    head.copy_from_slice(digits);
    pad.fill(b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"  42", Some(42)),
            (b"\t\r\n42", Some(42)),
            (b"42 ", Some(42)),
            (b"5  ", Some(5)),
            (b"7 apples", Some(7)),
            (b"42\r", Some(42)),
            (b"42\0zz", Some(42)),
            (b"+42", Some(42)),
            (b"-0", Some(0)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"00000000000000000000000001", Some(1)),
            (b"18446744073709551616", None),
            (b"-1", None),
            (b"-18446744073709551615", Some(1)),
            (b"", None),
            (b"   ", None),
            (b"-", None),
            (b"abc", None),
            (b"12abc", None),
            (b"0x10", None),
            (b"1.5", None),
            (b"9223372036854775808 -", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_u64(input),
                *want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn delta_wraps_and_floors() {
        assert_eq!(apply_delta(u64::MAX, true, 2), 1);
        assert_eq!(apply_delta(5, false, 10), 0);
        assert_eq!(apply_delta(100, false, 95), 5);
    }

    #[test]
    fn format_and_pad() {
        let mut buf = [0; MAX_U64_DIGITS];
        assert_eq!(format_u64(0, &mut buf), b"0");
        assert_eq!(format_u64(u64::MAX, &mut buf), b"18446744073709551615");
        let mut value = *b"100";
        write_padded(&mut value, b"5");
        assert_eq!(&value, b"5  ");
    }
}
