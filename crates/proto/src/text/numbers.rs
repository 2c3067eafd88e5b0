//! Number tokens, accepted exactly as memcached's `safe_strto*` helpers accept them.
//!
//! memcached parses with C's `strtol`/`strtoul`/`strtoull`: leading white space is skipped, one
//! optional sign, at least one digit, and the digits must be followed by white space or the end
//! of the token. Unsigned parsers take a `-` only when the result would still look
//! non-negative as a signed number (`-0` passes, `-1` does not), and the 32-bit unsigned form
//! keeps only the low 32 bits on a 64-bit host (`4294967296` parses as 0).

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Sign, magnitude (saturating to `None` past u64) and whether the digits end cleanly.
fn scan(token: &[u8]) -> Option<(bool, Option<u64>)> {
    let mut i = 0;
    while i < token.len() && is_c_space(token[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < token.len() && (token[i] == b'+' || token[i] == b'-') {
        negative = token[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut value: Option<u64> = Some(0);
    while i < token.len() && token[i].is_ascii_digit() {
        let digit = u64::from(token[i] - b'0');
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(digit));
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < token.len() && !is_c_space(token[i]) {
        return None;
    }
    Some((negative, value))
}

/// memcached's `safe_strtol` into an `int32_t` (exptimes, lengths).
pub fn parse_i32(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = scan(token)?;
    // strtol saturates at LONG_MIN/LONG_MAX with ERANGE; either way memcached rejects values
    // outside int32 on the positive side. Below INT_MIN a 64-bit long still holds the value and
    // memcached truncates it; we reject it, which no client can tell apart from a bad token.
    let magnitude = i64::try_from(magnitude?).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    i32::try_from(value).ok()
}

/// memcached 1.6.18's `safe_strtol` as its meta commands use it: C's `strtol` into a 64-bit
/// `long` (out of that range is refused), then stored into an `int32_t`, keeping the low 32
/// bits (`T4294967297` is 1). The text commands keep [`parse_i32`]'s stricter range.
pub fn parse_i32_wrapping(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = scan(token)?;
    let magnitude = magnitude?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)?
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

/// memcached's `safe_strtoul` into a `uint32_t` (flags, verbosity levels).
pub fn parse_u32(token: &[u8]) -> Option<u32> {
    let value = parse_c_unsigned(token)?;
    // On a 64-bit host `unsigned long` is 64 bits and memcached stores the low 32 bits.
    Some(value as u32)
}

/// memcached's `safe_strtoull` (deltas, CAS uniques).
pub fn parse_u64(token: &[u8]) -> Option<u64> {
    parse_c_unsigned(token)
}

fn parse_c_unsigned(token: &[u8]) -> Option<u64> {
    let (negative, magnitude) = scan(token)?;
    // Past u64::MAX strtoull reports ERANGE.
    let magnitude = magnitude?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    // A result that is negative as a signed number is refused when the text had a minus sign.
    if (value as i64) < 0 && negative {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_accepts_what_strtol_accepts() {
        assert_eq!(parse_i32(b"0"), Some(0));
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"+7"), Some(7));
        assert_eq!(parse_i32(b"\t9"), Some(9));
        assert_eq!(parse_i32(b"9\r"), Some(9));
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b""), None);
        assert_eq!(parse_i32(b"-"), None);
        assert_eq!(parse_i32(b"1x"), None);
        assert_eq!(parse_i32(b"abc"), None);
    }

    #[test]
    fn meta_signed_wraps_like_memcached() {
        // Checked against memcached 1.6.18 with `mg k T<n>` and `ms k <n>`.
        assert_eq!(parse_i32_wrapping(b"99999999999"), Some(1_215_752_191));
        assert_eq!(parse_i32_wrapping(b"2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32_wrapping(b"4294967298"), Some(2));
        assert_eq!(parse_i32_wrapping(b"-9223372036854775808"), Some(0));
        assert_eq!(parse_i32_wrapping(b"9223372036854775808"), None);
        assert_eq!(parse_i32_wrapping(b"99999999999999999999"), None);
        assert_eq!(parse_i32_wrapping(b"x"), None);
    }

    #[test]
    fn unsigned_32_truncates_like_a_64_bit_memcached() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Some(0));
        assert_eq!(parse_u32(b"-0"), Some(0));
        assert_eq!(parse_u32(b"-1"), None);
    }

    #[test]
    fn unsigned_64_bounds() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"9223372036854775808"), Some(1 << 63));
    }
}
