//! One identity's keyed rules, compiled so that a decision costs a walk down the key's bytes
//! (exact keys and prefixes share one trie) and, only when that is not enough, one pass of a
//! regex set over the key: never a loop over rules.

use std::collections::BTreeMap;

use regex::bytes::{RegexSet, RegexSetBuilder};

use super::Rights;

/// Rights a matching rule allows and denies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub allow: Rights,
    pub deny: Rights,
}

impl Entry {
    fn add(&mut self, other: Entry) {
        self.allow |= other.allow;
        self.deny |= other.deny;
    }
}

/// A key pattern as the policy wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `key:<bytes>`: this key only.
    Exact(Vec<u8>),
    /// `prefix:<bytes>`: every key that starts with these bytes (`prefix:` is every key).
    Prefix(Vec<u8>),
    /// `regex:<re>`: every key the whole of which the expression matches.
    Regex(String),
}

/// Most bytes one compiled regex set may take (the `regex` crate's size limit).
pub const REGEX_SET_BYTES: usize = 8 << 20;

/// The compiled keyed rules of one identity.
#[derive(Debug)]
pub struct KeyRules {
    /// Trie nodes; node 0 is the empty prefix.
    nodes: Vec<Node>,
    /// Every node's children, contiguous per node and sorted by byte.
    edges: Vec<(u8, u32)>,
    regexes: Option<(RegexSet, Vec<Entry>)>,
    /// Whether any rule denies: without one, a walk may stop as soon as it has allowed enough.
    any_deny: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Rules on keys that start with this node's bytes.
    prefix: Entry,
    /// Rules on exactly this node's bytes.
    exact: Entry,
    first_edge: u32,
    edge_count: u32,
}

/// A trie node while rules are added.
#[derive(Default)]
struct Building {
    prefix: Entry,
    exact: Entry,
    children: BTreeMap<u8, Building>,
}

impl KeyRules {
    /// Compiles `rules`. `Err` names the index of a regex that does not compile.
    pub fn build(rules: &[(Pattern, Entry)]) -> Result<KeyRules, (usize, String)> {
        let mut root = Building::default();
        let mut expressions = Vec::new();
        let mut regex_entries = Vec::new();
        let mut any_deny = false;
        for (index, (pattern, entry)) in rules.iter().enumerate() {
            any_deny |= !entry.deny.is_empty();
            match pattern {
                Pattern::Exact(key) => descend(&mut root, key).exact.add(*entry),
                Pattern::Prefix(prefix) => descend(&mut root, prefix).prefix.add(*entry),
                Pattern::Regex(expression) => {
                    check_regex(expression).map_err(|err| (index, err))?;
                    expressions.push(format!("^(?:{expression})$"));
                    regex_entries.push(*entry);
                }
            }
        }
        let regexes = if expressions.is_empty() {
            None
        } else {
            let set = RegexSetBuilder::new(&expressions)
                .size_limit(REGEX_SET_BYTES)
                .build()
                .map_err(|err| (rules.len(), err.to_string()))?;
            Some((set, regex_entries))
        };
        let mut rules = KeyRules {
            nodes: Vec::new(),
            edges: Vec::new(),
            regexes,
            any_deny,
        };
        rules.flatten(root);
        Ok(rules)
    }

    /// Rules that match no key.
    pub fn empty() -> KeyRules {
        let mut rules = KeyRules {
            nodes: Vec::new(),
            edges: Vec::new(),
            regexes: None,
            any_deny: false,
        };
        rules.flatten(Building::default());
        rules
    }

    /// Lays the trie out breadth-first, each node's children contiguous.
    fn flatten(&mut self, root: Building) {
        let mut queue = std::collections::VecDeque::new();
        self.nodes.push(Node::default());
        queue.push_back((0usize, root));
        while let Some((at, building)) = queue.pop_front() {
            let first_edge = self.edges.len() as u32;
            for (byte, child) in building.children {
                let index = self.nodes.len();
                self.nodes.push(Node::default());
                self.edges.push((byte, index as u32));
                queue.push_back((index, child));
            }
            self.nodes[at] = Node {
                prefix: building.prefix,
                exact: building.exact,
                first_edge,
                edge_count: self.edges.len() as u32 - first_edge,
            };
        }
    }

    /// Whether every right of `need` is allowed on `key` and none of them denied.
    pub fn allows(&self, key: &[u8], need: Rights) -> bool {
        let mut sum = Entry::default();
        let enough = |sum: &Entry| !self.any_deny && sum.allow.contains(need);
        let mut node = &self.nodes[0];
        sum.add(node.prefix);
        let mut whole_key = true;
        for &byte in key {
            if enough(&sum) {
                return true;
            }
            let first = node.first_edge as usize;
            let edges = &self.edges[first..first + node.edge_count as usize];
            match edges.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(found) => {
                    node = &self.nodes[edges[found].1 as usize];
                    sum.add(node.prefix);
                }
                Err(_) => {
                    whole_key = false;
                    break;
                }
            }
        }
        if whole_key {
            sum.add(node.exact);
        }
        if !enough(&sum)
            && let Some((set, entries)) = &self.regexes
        {
            for index in set.matches(key).iter() {
                sum.add(entries[index]);
            }
        }
        sum.allow.contains(need) && sum.deny.bits() & need.bits() == 0
    }
}

fn descend<'a>(mut node: &'a mut Building, bytes: &[u8]) -> &'a mut Building {
    for &byte in bytes {
        node = node.children.entry(byte).or_default();
    }
    node
}

/// A regex must compile on its own (so the error names it) within the size limit.
pub fn check_regex(expression: &str) -> Result<(), String> {
    regex::bytes::RegexBuilder::new(&format!("^(?:{expression})$"))
        .size_limit(REGEX_SET_BYTES)
        .build()
        .map(|_| ())
        .map_err(|err| err.to_string())
}
