//! The one place that says which reply bytes may legitimately differ between memcached and
//! rampart. Everything not listed in [`NORMALISATIONS`] must be byte-identical.

use std::collections::HashMap;

/// What is normalised, and why. Docs cite this list; keep it in sync with [`Normaliser`].
pub const NORMALISATIONS: &[(&str, &str)] = &[
    (
        "version string",
        "`VERSION <anything>` becomes `VERSION <version>`: each server reports its own version.",
    ),
    (
        "stats values and order",
        "each `STAT <name> <value>` line becomes `STAT <name> <value>` with the literal text \
         `<value>`, and each run of consecutive STAT lines is sorted by name: stats are \
         compared only by which names exist.",
    ),
    (
        "CAS uniques",
        "the unique in `VALUE <key> <flags> <bytes> <unique>` headers, and in the `c<unique>` \
         flag of meta replies (`HD`, `VA`, `EX`, `NS`, `NF`, `EN`) and the `cas=<unique>` \
         field of `me`'s `ME` line, becomes `C1`, `C2`... in \
         order of first appearance on that server over the whole transcript. The same unique \
         always gets the same label, so equality and inequality of uniques is still compared; \
         the numbers themselves are not. Requests refer to them as `{C1}`...",
    ),
];

/// Meta reply codes whose flags may carry a `c<unique>` return flag.
const META_CODES: &[&[u8]] = &[b"HD", b"VA", b"EX", b"NS", b"NF", b"EN"];

/// Normalises one server's replies; holds the CAS labels seen so far.
#[derive(Debug, Default)]
pub struct Normaliser {
    labels: HashMap<Vec<u8>, usize>,
    /// `uniques[n - 1]` is the unique labelled `Cn`.
    uniques: Vec<Vec<u8>>,
}

impl Normaliser {
    pub fn new() -> Normaliser {
        Normaliser::default()
    }

    /// The real unique behind label `Cn`, if this server has shown one.
    pub fn unique(&self, label: usize) -> Option<&[u8]> {
        label
            .checked_sub(1)
            .and_then(|i| self.uniques.get(i))
            .map(Vec::as_slice)
    }

    fn label(&mut self, unique: &[u8]) -> Vec<u8> {
        let next = self.uniques.len() + 1;
        let n = *self.labels.entry(unique.to_vec()).or_insert(next);
        if n == next {
            self.uniques.push(unique.to_vec());
        }
        format!("C{n}").into_bytes()
    }

    /// Applies [`NORMALISATIONS`] to a reply. Data blocks (after `VALUE` and `VA` headers) are
    /// copied untouched; bytes after the last `\r\n` are copied as they are.
    pub fn normalise(&mut self, reply: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(reply.len());
        let mut stats: Vec<Vec<u8>> = Vec::new();
        let mut pos = 0;
        while pos < reply.len() {
            let Some(len) = memchr::memmem::find(&reply[pos..], b"\r\n") else {
                break;
            };
            let line = &reply[pos..pos + len];
            pos += len + 2;
            if let Some(name) = line.strip_prefix(b"STAT ") {
                let name = name.split(|&b| b == b' ').next().unwrap_or_default();
                stats.push([b"STAT ", name, b" <value>\r\n"].concat());
                continue;
            }
            flush_stats(&mut stats, &mut out);
            let (header, data_len) = self.normalise_line(line);
            out.extend_from_slice(&header);
            out.extend_from_slice(b"\r\n");
            if let Some(n) = data_len {
                let end = pos.saturating_add(n).min(reply.len());
                out.extend_from_slice(&reply[pos..end]);
                pos = end;
            }
        }
        flush_stats(&mut stats, &mut out);
        out.extend_from_slice(&reply[pos.min(reply.len())..]);
        out
    }

    /// One line without its `\r\n`; the length of the data block that follows, if any.
    fn normalise_line(&mut self, line: &[u8]) -> (Vec<u8>, Option<usize>) {
        if line.starts_with(b"VERSION ") {
            return (b"VERSION <version>".to_vec(), None);
        }
        let mut tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if tokens[0] == b"VALUE" && (tokens.len() == 4 || tokens.len() == 5) {
            let data_len = parse_len(tokens[3]);
            if tokens.len() == 5 {
                let label = self.label(tokens[4]);
                tokens[4] = &label;
                return (tokens.join(&b' '), data_len);
            }
            return (line.to_vec(), data_len);
        }
        if META_CODES.contains(&tokens[0]) {
            let data_len = if tokens[0] == b"VA" {
                tokens.get(1).and_then(|t| parse_len(t))
            } else {
                None
            };
            let flags_from = if tokens[0] == b"VA" { 2 } else { 1 };
            let mut out: Vec<Vec<u8>> = tokens.iter().map(|t| t.to_vec()).collect();
            for token in out.iter_mut().skip(flags_from) {
                if let Some(unique) = token.strip_prefix(b"c")
                    && !unique.is_empty()
                    && unique.iter().all(u8::is_ascii_digit)
                {
                    let label = self.label(unique);
                    *token = [b"c".as_slice(), &label].concat();
                }
            }
            return (out.join(&b' '), data_len);
        }
        if tokens[0] == b"ME" {
            let mut out: Vec<Vec<u8>> = tokens.iter().map(|t| t.to_vec()).collect();
            for token in out.iter_mut().skip(2) {
                if let Some(unique) = token.strip_prefix(b"cas=")
                    && !unique.is_empty()
                    && unique.iter().all(u8::is_ascii_digit)
                {
                    let label = self.label(unique);
                    *token = [b"cas=".as_slice(), &label].concat();
                }
            }
            return (out.join(&b' '), None);
        }
        (line.to_vec(), None)
    }
}

fn parse_len(token: &[u8]) -> Option<usize> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

fn flush_stats(stats: &mut Vec<Vec<u8>>, out: &mut Vec<u8>) {
    stats.sort();
    for line in stats.drain(..) {
        out.extend_from_slice(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_labels_follow_first_appearance() {
        let mut n = Normaliser::new();
        let got = n.normalise(b"VALUE a 0 1 17\r\nx\r\nVALUE b 0 1 9\r\ny\r\nEND\r\n");
        assert_eq!(
            got,
            b"VALUE a 0 1 C1\r\nx\r\nVALUE b 0 1 C2\r\ny\r\nEND\r\n"
        );
        let again = n.normalise(b"VALUE c 0 1 17\r\nz\r\nEND\r\n");
        assert_eq!(again, b"VALUE c 0 1 C1\r\nz\r\nEND\r\n");
        assert_eq!(n.unique(2), Some(b"9".as_slice()));
        assert_eq!(n.unique(3), None);
        assert_eq!(n.normalise(b"HD c9 k\r\n"), b"HD cC2 k\r\n");
        assert_eq!(
            n.normalise(b"ME k exp=-1 la=0 cas=9 fetch=no cls=1 size=63\r\n"),
            b"ME k exp=-1 la=0 cas=C2 fetch=no cls=1 size=63\r\n"
        );
    }

    #[test]
    fn data_blocks_are_not_normalised() {
        let mut n = Normaliser::new();
        let reply = b"VALUE a 0 12\r\nVERSION 1 2\r\nEND\r\n";
        assert_eq!(n.normalise(reply), reply);
    }

    #[test]
    fn stats_keep_only_sorted_names() {
        let mut n = Normaliser::new();
        let got = n.normalise(b"STAT pid 12\r\nSTAT uptime 3\r\nSTAT bytes 0\r\nEND\r\n");
        assert_eq!(
            got,
            b"STAT bytes <value>\r\nSTAT pid <value>\r\nSTAT uptime <value>\r\nEND\r\n"
        );
        assert_eq!(n.normalise(b"VERSION 1.6.18\r\n"), b"VERSION <version>\r\n");
    }

    #[test]
    fn partial_lines_are_kept() {
        let mut n = Normaliser::new();
        assert_eq!(n.normalise(b"STORED\r\nVALU"), b"STORED\r\nVALU");
    }
}
