//! Comparing two servers' outcomes and explaining a mismatch in escaped bytes.

use std::fmt::Write as _;

use crate::replay::{Ending, StepOutcome};
use crate::transcript::Transcript;

/// Escaped bytes longer than this are shortened in reports.
const MAX_SHOWN_BYTES: usize = 1200;
/// Runs of one byte longer than this are shown as `\{N:c}`, the transcript repeat syntax.
const MIN_RUN_TO_COLLAPSE: usize = 16;
/// Mismatching steps shown in full; the rest are only listed.
const MAX_DETAILED_STEPS: usize = 3;
/// Replies with more lines than this get a line diff in reports as well.
const MIN_LINES_FOR_DIFF: usize = 4;
/// Above this many line pairs the quadratic line diff is not attempted.
const MAX_DIFF_CELLS: usize = 4_000_000;

/// Bytes as a one-line string: printable ASCII as is, `\r`, `\n`, `\t`, `\\`, `\xHH`
/// otherwise, long runs of one byte collapsed, very long input shortened in the middle.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run > MIN_RUN_TO_COLLAPSE {
            let _ = write!(out, "\\{{{run}:{}}}", escape_byte(b));
            i += run;
            continue;
        }
        out.push_str(&escape_byte(b));
        i += 1;
    }
    if out.len() > MAX_SHOWN_BYTES {
        let head: String = out.chars().take(MAX_SHOWN_BYTES * 3 / 4).collect();
        let tail_len = MAX_SHOWN_BYTES / 4;
        let tail: String = out.chars().skip(out.chars().count() - tail_len).collect();
        return format!("{head} [... {} bytes in all ...] {tail}", bytes.len());
    }
    out
}

fn escape_byte(b: u8) -> String {
    match b {
        b'\r' => "\\r".into(),
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        b'\\' => "\\\\".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

/// A reply for a report: escaped bytes, then how it ended unless it ended normally.
pub fn describe(outcome: &StepOutcome) -> String {
    let bytes = if outcome.normalised.is_empty() {
        "(nothing)".to_string()
    } else {
        format!("\"{}\"", escape(&outcome.normalised))
    };
    match &outcome.ending {
        Ending::InSync => bytes,
        Ending::Closed => format!("{bytes} then the connection closed"),
        Ending::TimedOut => format!("{bytes} then nothing (timed out, out of sync)"),
        Ending::Failed(why) => format!("{bytes} then a failure: {why}"),
    }
}

/// `Ok` when every step got the same normalised reply with the same ending; otherwise a
/// report naming each differing step, the first few in detail.
pub fn compare(
    transcript: &Transcript,
    reference_name: &str,
    reference: &[StepOutcome],
    candidate_name: &str,
    candidate: &[StepOutcome],
) -> Result<(), String> {
    let width = reference_name.len().max(candidate_name.len()).max(7);
    let mut report = String::new();
    let mut differing = 0;
    for (index, step) in transcript.steps.iter().enumerate() {
        let (Some(a), Some(b)) = (reference.get(index), candidate.get(index)) else {
            continue;
        };
        if a.normalised == b.normalised && a.ending == b.ending {
            continue;
        }
        differing += 1;
        if differing > MAX_DETAILED_STEPS {
            let _ = writeln!(
                report,
                "also differs: step {} (line {}) {:?}",
                index + 1,
                step.line,
                step.title
            );
            continue;
        }
        let _ = writeln!(
            report,
            "\n=== {}.txt step {} (line {}): {:?} on connection `{}`",
            transcript.name,
            index + 1,
            step.line,
            step.title,
            step.conn
        );
        let _ = writeln!(
            report,
            "{:width$}: \"{}\"",
            "request",
            escape(&step.request_template())
        );
        let _ = writeln!(report, "{reference_name:width$}: {}", describe(a));
        let _ = writeln!(report, "{candidate_name:width$}: {}", describe(b));
        if let Some(at) = first_difference(&a.normalised, &b.normalised) {
            let _ = writeln!(report, "{:width$}: byte {at}", "first difference");
        }
        let a_lines = split_lines(&a.normalised);
        let b_lines = split_lines(&b.normalised);
        if a_lines.len().max(b_lines.len()) >= MIN_LINES_FOR_DIFF
            && let Some(diff) = line_diff(&a_lines, &b_lines)
        {
            let _ = writeln!(
                report,
                "lines that differ (- {reference_name}, + {candidate_name}):\n{diff}"
            );
        }
    }
    if differing == 0 {
        Ok(())
    } else {
        Err(format!(
            "{differing} of {} steps of {}.txt differ between {reference_name} and \
             {candidate_name} (after normalisation; see rampart_tests::normalise::NORMALISATIONS)\
             {report}",
            transcript.steps.len(),
            transcript.name
        ))
    }
}

/// Reply lines, each keeping its `\r\n`.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// The lines only in `a` (prefixed `-`) and only in `b` (`+`), in order, by longest common
/// subsequence; `None` when the inputs are too large to compare this way.
pub fn line_diff<T: AsRef<[u8]>>(a: &[T], b: &[T]) -> Option<String> {
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        return None;
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i].as_ref() == b[j].as_ref() {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i].as_ref() == b[j].as_ref() {
            i += 1;
            j += 1;
        } else if j == b.len() || (i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "  - {}", escape(a[i].as_ref()));
            i += 1;
        } else {
            let _ = writeln!(out, "  + {}", escape(b[j].as_ref()));
            j += 1;
        }
    }
    Some(out)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(a.iter().zip(b).take_while(|(x, y)| x == y).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_collapses_runs() {
        assert_eq!(escape(b"END\r\n"), "END\\r\\n");
        assert_eq!(escape(b"\x00\\"), "\\x00\\\\");
        let big = [b"VALUE k 0 100\r\n".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(escape(&big), "VALUE k 0 100\\r\\n\\{100:a}");
    }

    #[test]
    fn line_diff_shows_only_changed_lines() {
        let a = ["STAT a\n", "STAT b\n", "STAT c\n", "END\n"];
        let b = ["STAT a\n", "STAT c\n", "STAT d\n", "END\n"];
        let diff = line_diff(&a, &b);
        assert_eq!(diff.as_deref(), Some("  - STAT b\\n\n  + STAT d\\n\n"));
    }
}
