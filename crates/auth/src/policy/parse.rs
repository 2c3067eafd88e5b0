//! The policy file.
//!
//! # Format
//! ```text
//! # A comment: a line whose first non-blank character is '#'.
//! [role pilots]                        a role: rules several identities share
//! allow version,quit,mn                a keyless grant: commands only
//!
//! [identity user:awing cert:awing]     one block for one or more identities
//! include pilots                       the role's rules, as if written here
//! allow get,set key:awing-coord        commands (names and @groups) on key patterns
//! deny  set prefix:awing-lock-         a deny wins over every allow on the keys it matches
//! allow @read regex:awing-[0-9]+       a regex matches the whole key
//! ```
//! Patterns are `key:<exact key>`, `prefix:<bytes>` (`prefix:` alone is every key) and
//! `regex:<expression>` (the `regex` crate's syntax, anchored at both ends). A rule with
//! patterns may name only keyed commands, and one without only keyless ones, so that a
//! forgotten pattern is an error instead of a grant on every key.

use std::collections::HashMap;

use super::keys::{Pattern, check_regex};
use super::rights::{Rights, named};
use super::{IdentityName, MAX_KEY_BYTES, Rule};
use crate::policy::rights::NAMES;

/// A policy file that cannot be used, with the line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

/// Longest policy file line, in bytes.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Deepest chain of includes.
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Default)]
pub(super) struct Block {
    pub line: usize,
    pub names: Vec<IdentityName>,
    pub includes: Vec<(String, usize)>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Default)]
pub(super) struct File {
    pub roles: HashMap<String, Block>,
    pub identities: Vec<Block>,
    pub rule_count: usize,
}

enum Current {
    None,
    Role(String),
    Identity(usize),
}

fn error(line: usize, message: impl Into<String>) -> PolicyError {
    PolicyError {
        line,
        message: message.into(),
    }
}

pub(super) fn parse(text: &str) -> Result<File, PolicyError> {
    let mut file = File::default();
    let mut current = Current::None;
    let mut seen: HashMap<IdentityName, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.len() > MAX_LINE_BYTES {
            return Err(error(line, format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let Some(header) = header.strip_suffix(']') else {
                return Err(error(line, "a section header ends with `]`"));
            };
            let mut words = header.split_whitespace();
            match words.next() {
                Some("role") => {
                    let (Some(name), None) = (words.next(), words.next()) else {
                        return Err(error(line, "write `[role <name>]`"));
                    };
                    check_role_name(name, line)?;
                    if let Some(other) = file.roles.get(name) {
                        return Err(error(
                            line,
                            format!("role `{name}` is already defined on line {}", other.line),
                        ));
                    }
                    file.roles.insert(
                        name.to_owned(),
                        Block {
                            line,
                            ..Block::default()
                        },
                    );
                    current = Current::Role(name.to_owned());
                }
                Some("identity") => {
                    let mut names = Vec::new();
                    for word in words {
                        let name = IdentityName::parse(word).map_err(|m| error(line, m))?;
                        if let Some(other) = seen.insert(name.clone(), line) {
                            return Err(error(
                                line,
                                format!("identity {name} already has a block on line {other}"),
                            ));
                        }
                        names.push(name);
                    }
                    if names.is_empty() {
                        return Err(error(line, "write `[identity <kind>:<name> ...]`"));
                    }
                    file.identities.push(Block {
                        line,
                        names,
                        ..Block::default()
                    });
                    current = Current::Identity(file.identities.len() - 1);
                }
                _ => {
                    return Err(error(
                        line,
                        "unknown section: write `[role <name>]` or `[identity <kind>:<name> ...]`",
                    ));
                }
            }
            continue;
        }
        let block = match &current {
            Current::None => {
                return Err(error(
                    line,
                    "a rule outside any section: start with `[identity ...]` or `[role ...]`",
                ));
            }
            Current::Role(name) => file.roles.get_mut(name),
            Current::Identity(index) => file.identities.get_mut(*index),
        };
        let Some(block) = block else {
            return Err(error(line, "internal: the section vanished"));
        };
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("include") => {
                let (Some(role), None) = (words.next(), words.next()) else {
                    return Err(error(line, "write `include <role>`"));
                };
                block.includes.push((role.to_owned(), line));
            }
            Some(verb @ ("allow" | "deny")) => {
                let Some(commands) = words.next() else {
                    return Err(error(line, format!("`{verb}` needs commands")));
                };
                let rights = parse_commands(commands, line)?;
                let patterns = words
                    .map(|word| parse_pattern(word, line))
                    .collect::<Result<Vec<_>, _>>()?;
                check_kinds(rights, &patterns, commands, line)?;
                block.rules.push(Rule {
                    line,
                    allow: verb == "allow",
                    rights,
                    patterns,
                });
                file.rule_count += 1;
            }
            Some(other) => {
                return Err(error(
                    line,
                    format!(
                        "unknown word `{other}`: a line is `allow`, `deny`, `include` or a `[section]`"
                    ),
                ));
            }
            None => {}
        }
    }
    for block in file.roles.values().chain(&file.identities) {
        for (role, line) in &block.includes {
            if !file.roles.contains_key(role) {
                return Err(error(*line, format!("role `{role}` is not defined")));
            }
        }
    }
    Ok(file)
}

impl File {
    /// A block's rules with every included role's, transitively; a cycle is an error.
    pub(super) fn resolve(&self, block: &Block) -> Result<Vec<Rule>, PolicyError> {
        let mut rules = block.rules.clone();
        let mut stack = Vec::new();
        for (role, line) in &block.includes {
            self.include(role, *line, &mut stack, &mut rules)?;
        }
        Ok(rules)
    }

    fn include<'a>(
        &'a self,
        role: &'a str,
        line: usize,
        stack: &mut Vec<&'a str>,
        rules: &mut Vec<Rule>,
    ) -> Result<(), PolicyError> {
        if stack.contains(&role) {
            return Err(error(
                line,
                format!(
                    "role `{role}` includes itself ({} -> {role})",
                    stack.join(" -> ")
                ),
            ));
        }
        if stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(error(
                line,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
            ));
        }
        let Some(block) = self.roles.get(role) else {
            return Err(error(line, format!("role `{role}` is not defined")));
        };
        stack.push(role);
        rules.extend(block.rules.iter().cloned());
        for (inner, inner_line) in &block.includes {
            self.include(inner, *inner_line, stack, rules)?;
        }
        stack.pop();
        Ok(())
    }
}

fn check_role_name(name: &str, line: usize) -> Result<(), PolicyError> {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Ok(())
    } else {
        Err(error(
            line,
            format!("role name `{name}`: letters, digits, `_`, `-` and `.` only"),
        ))
    }
}

fn parse_commands(list: &str, line: usize) -> Result<Rights, PolicyError> {
    let mut rights = Rights::NONE;
    for name in list.split(',') {
        if name.is_empty() {
            return Err(error(line, format!("an empty command name in `{list}`")));
        }
        match named(name) {
            Some(granted) => rights |= granted,
            None => {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                return Err(error(
                    line,
                    format!(
                        "unknown command or group `{name}`; known: {}",
                        known.join(" ")
                    ),
                ));
            }
        }
    }
    Ok(rights)
}

fn parse_pattern(word: &str, line: usize) -> Result<Pattern, PolicyError> {
    if let Some(key) = word.strip_prefix("key:") {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(error(
                line,
                format!("`{word}`: a key is 1 to {} bytes", MAX_KEY_BYTES),
            ));
        }
        return Ok(Pattern::Exact(key.as_bytes().to_vec()));
    }
    if let Some(prefix) = word.strip_prefix("prefix:") {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(error(
                line,
                format!("`{word}`: longer than any key ({} bytes)", MAX_KEY_BYTES),
            ));
        }
        return Ok(Pattern::Prefix(prefix.as_bytes().to_vec()));
    }
    if let Some(expression) = word.strip_prefix("regex:") {
        check_regex(expression).map_err(|m| error(line, format!("`{word}`: {m}")))?;
        return Ok(Pattern::Regex(expression.to_owned()));
    }
    Err(error(
        line,
        format!(
            "`{word}` is no key pattern: write key:<key>, prefix:<bytes> or regex:<expression>"
        ),
    ))
}

fn check_kinds(
    rights: Rights,
    patterns: &[Pattern],
    commands: &str,
    line: usize,
) -> Result<(), PolicyError> {
    let keyless = rights.minus(Rights::KEYED);
    if patterns.is_empty() {
        if rights.bits() & Rights::KEYED.bits() != 0 {
            return Err(error(
                line,
                format!(
                    "`{commands}` names commands on keys but no key pattern (prefix: is every key)"
                ),
            ));
        }
    } else if !keyless.is_empty() {
        let names: Vec<&str> = keyless.names().collect();
        return Err(error(
            line,
            format!(
                "{} take no key: grant them in a rule without patterns",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}
