//! The access-policy phase: what a 1,000-rule policy (`-o acl_file`) adds to rampart's server
//! CPU per request, rampart with and without it on the same scenarios, alternating, medians.
//! Issue 15's goal is at most 3% more at depth 1 and depth 16.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::Scenario;
use super::report::{Run, median};

/// Rules in the benchmark's policy.
pub const RULES: usize = 1000;
/// The goal: server CPU per request with the policy over without, at most.
pub const GOAL_RATIO: f64 = 1.03;

/// The scenarios measured with and without the policy.
pub fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for tls in [false, true] {
        for pipeline in [1, 16] {
            all.push(Scenario {
                tls,
                pipeline,
                value_size: 32,
            });
        }
    }
    all
}

/// Writes the policy: 1,000 rules for the load generator's identity (anonymous), as an
/// operator's might look: exact keys, tenant prefixes, regexes, a few denies on writes that
/// match none of the benchmark's keys (so a set walks its whole key and cannot stop early),
/// and the rule the benchmark's keys (`key:<n>`) need, last.
pub fn write(dir: &Path) -> Result<PathBuf> {
    let mut text = String::from("# bench-tls: a 1,000-rule policy\n[identity anonymous]\n");
    let mut rules = 0;
    let mut rule = |text: &mut String, line: String| {
        text.push_str(&line);
        text.push('\n');
        rules += 1;
    };
    rule(&mut text, "allow @session,@stats".to_owned());
    for n in 0..440 {
        rule(&mut text, format!("allow get,set key:other-{n}"));
    }
    for n in 0..440 {
        rule(&mut text, format!("allow @read prefix:tenant-{n}:"));
    }
    for n in 0..97 {
        rule(&mut text, format!("allow get regex:zone-{n}-[0-9]+"));
    }
    for n in 0..20 {
        rule(&mut text, format!("deny set,delete prefix:key:x{n:02}"));
    }
    rule(&mut text, "allow get key:extra".to_owned());
    rule(&mut text, "allow get,set prefix:key:".to_owned());
    debug_assert_eq!(rules, RULES);
    let path = dir.join("bench-policy.acl");
    fs::write(&path, text)?;
    // The server drops to `nobody` before it could reread it; it reads it at start-up.
    super::server::set_mode(&path, 0o644)?;
    Ok(path)
}

/// One run of the phase.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    pub with_policy: bool,
    pub run: Run,
}

/// The phase's table: per scenario, median server CPU per request without and with the
/// policy, their ratio, and whether the goal is met.
pub fn table(runs: &[PolicyRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Access policy ({RULES} rules, `-o acl_file`): rampart's server CPU per request \
         (us), medians; goal: with/without at most {GOAL_RATIO:.2}.\n"
    );
    let _ = writeln!(t, "| scenario | without | with | with/without | goal |");
    let _ = writeln!(t, "|---|---:|---:|---:|---|");
    for scenario in scenarios() {
        let name = scenario.name();
        let cpu = |with: bool| {
            median(
                runs.iter()
                    .filter(|r| r.with_policy == with && r.run.scenario == name)
                    .map(|r| r.run.cpu_s_per_mreq),
            )
        };
        let (Some(without), Some(with)) = (cpu(false), cpu(true)) else {
            let _ = writeln!(t, "| {name} | - | - | - | not measured |");
            continue;
        };
        let ratio = with / without.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            t,
            "| {name} | {without:.2} | {with:.2} | {ratio:.3} | {} |",
            if ratio <= GOAL_RATIO {
                "met"
            } else {
                "not met"
            }
        );
    }
    t
}
