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
    /// Trie nodes, breadth first: node 0 is the empty prefix, and each node's children are
    /// contiguous, in byte order.
    nodes: Vec<Node>,
    /// Each node's first byte (`labels[i]` is node `i`'s), apart so that a node's children's
    /// bytes sit together in a cache line.
    labels: Vec<u8>,
    /// The rest of each node's bytes: a chain of bytes on which no rule ends and nothing
    /// branches is one node (a radix tree), so `key:` is one step, not four.
    tails: Vec<u8>,
    regexes: Option<(RegexSet, Vec<Entry>)>,
    /// Every right some prefix or exact rule denies on some key, and some regex rule: a
    /// request that needs none of them may stop as soon as it has been allowed enough.
    trie_denies: Rights,
    regex_denies: Rights,
    /// The root's child for each first byte (0: none; the root is never a child): a key's
    /// first step is one load.
    root_children: Box<[u32; 256]>,
    /// The rules on every key (`prefix:`), the root's.
    root_prefix: Entry,
}

/// One trie node; its children are `nodes[first_child..first_child + child_count]`, and the
/// bytes after its label are `tails[tail_start..tail_start + tail_len]`.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Rules on keys that start with this node's bytes.
    prefix: Entry,
    /// Rules on exactly this node's bytes.
    exact: Entry,
    first_child: u32,
    child_count: u16,
    tail_len: u16,
    tail_start: u32,
}

/// Up to this many children are scanned; more are searched by halves.
const SCAN_CHILDREN: usize = 16;

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
        let mut last_regex = 0;
        let mut trie_denies = Rights::NONE;
        let mut regex_denies = Rights::NONE;
        for (index, (pattern, entry)) in rules.iter().enumerate() {
            match pattern {
                Pattern::Exact(key) => {
                    trie_denies |= entry.deny;
                    descend(&mut root, key).exact.add(*entry);
                }
                Pattern::Prefix(prefix) => {
                    trie_denies |= entry.deny;
                    descend(&mut root, prefix).prefix.add(*entry);
                }
                Pattern::Regex(expression) => {
                    last_regex = index;
                    regex_denies |= entry.deny;
                    check_regex(expression).map_err(|err| (index, err))?;
                    expressions.push(anchored(expression));
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
                // The set as a whole is too large: blame the last regex, whose rule tipped it.
                .map_err(|err| (last_regex, err.to_string()))?;
            Some((set, regex_entries))
        };
        let mut rules = KeyRules {
            nodes: Vec::new(),
            labels: Vec::new(),
            tails: Vec::new(),
            regexes,
            trie_denies,
            regex_denies,
            root_children: Box::new([0; 256]),
            root_prefix: Entry::default(),
        };
        rules.flatten(root);
        Ok(rules)
    }

    /// Rules that match no key.
    pub fn empty() -> KeyRules {
        let mut rules = KeyRules {
            nodes: Vec::new(),
            labels: Vec::new(),
            tails: Vec::new(),
            regexes: None,
            trie_denies: Rights::NONE,
            regex_denies: Rights::NONE,
            root_children: Box::new([0; 256]),
            root_prefix: Entry::default(),
        };
        rules.flatten(Building::default());
        rules
    }

    /// Lays the trie out breadth-first, each node's children contiguous, chains compressed.
    fn flatten(&mut self, root: Building) {
        let mut queue = std::collections::VecDeque::new();
        self.nodes.push(Node::default());
        self.labels.push(0);
        queue.push_back((0usize, root));
        while let Some((at, building)) = queue.pop_front() {
            let first_child = self.nodes.len();
            for (byte, mut child) in building.children {
                // Follow the chain while nothing ends or branches on it.
                let tail_start = self.tails.len();
                while child.prefix == Entry::default()
                    && child.exact == Entry::default()
                    && child.children.len() == 1
                {
                    let Some((next_byte, next)) = child.children.pop_first() else {
                        break;
                    };
                    self.tails.push(next_byte);
                    child = next;
                }
                queue.push_back((self.nodes.len(), child));
                self.nodes.push(Node {
                    tail_start: tail_start as u32,
                    tail_len: (self.tails.len() - tail_start) as u16,
                    ..Node::default()
                });
                self.labels.push(byte);
            }
            let child_count = (self.nodes.len() - first_child) as u16;
            let node = &mut self.nodes[at];
            node.prefix = building.prefix;
            node.exact = building.exact;
            node.first_child = first_child as u32;
            node.child_count = child_count;
        }
        let root = self.nodes[0];
        self.root_prefix = root.prefix;
        for child in
            root.first_child as usize..root.first_child as usize + root.child_count as usize
        {
            self.root_children[usize::from(self.labels[child])] = child as u32;
        }
    }

    /// The child of the node at `index` for `byte`, if the trie has one.
    #[inline]
    fn child(&self, index: usize, byte: u8) -> Option<usize> {
        if index == 0 {
            let child = self.root_children[usize::from(byte)] as usize;
            return (child != 0).then_some(child);
        }
        let node = &self.nodes[index];
        let first = node.first_child as usize;
        let labels = self.labels.get(first..first + node.child_count as usize)?;
        let found = if labels.len() <= SCAN_CHILDREN {
            labels.iter().position(|&label| label == byte)
        } else {
            labels.binary_search(&byte).ok()
        };
        found.map(|found| first + found)
    }

    /// Whether every right of `need` is allowed on `key` and none of them denied.
    #[inline]
    pub fn allows(&self, key: &[u8], need: Rights) -> bool {
        self.decide(key, need).0
    }

    /// [`KeyRules::allows`], and when the walk settled the answer (allowed) after `n` bytes
    /// of the key, `Some(n)`: then every key that starts with the same `n` bytes is allowed
    /// `need` too. (The walk settles only when nothing denies any right of `need`, so exact and
    /// regex rules further on can only allow more; and another key with the same first `n`
    /// bytes walks through the same nodes to the same point.)
    #[inline]
    pub fn decide(&self, key: &[u8], need: Rights) -> (bool, Option<usize>) {
        let need_bits = need.bits();
        let settles = self.trie_denies.union(self.regex_denies).bits() & need_bits == 0;
        let mut index = 0;
        let mut sum = self.root_prefix;
        let mut at = 0;
        let whole_key = loop {
            if settles && sum.allow.bits() & need_bits == need_bits {
                return (true, Some(at));
            }
            let Some(&byte) = key.get(at) else {
                break true;
            };
            let Some(child) = self.child(index, byte) else {
                break false;
            };
            let node = &self.nodes[child];
            let tail = &self.tails[node.tail_start as usize..][..usize::from(node.tail_len)];
            let rest = &key[at + 1..];
            // Tails are short: compared in place, not by a memcmp call.
            if rest.len() < tail.len() || !tail.iter().zip(rest).all(|(a, b)| a == b) {
                break false;
            }
            at += 1 + tail.len();
            index = child;
            sum.add(node.prefix);
        };
        (
            self.finish(key, need, sum, whole_key.then_some(index)),
            None,
        )
    }

    /// The rest of a decision the walk could not settle: the exact rules on the whole key
    /// (`exact_at`: its node) and the regexes.
    fn finish(&self, key: &[u8], need: Rights, mut sum: Entry, exact_at: Option<usize>) -> bool {
        if let Some(index) = exact_at {
            sum.add(self.nodes[index].exact);
        }
        // The regexes can change the answer only by allowing what is still missing or by
        // denying something needed.
        if let Some((set, entries)) = &self.regexes
            && (!sum.allow.contains(need) || self.regex_denies.bits() & need.bits() != 0)
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

/// `expression` as it is matched: against the whole key, byte by byte. Keys are bytes, not
/// text: without `-u`, `.` and `[^x]` match any byte (a key need not be UTF-8), and with `s`,
/// `.` matches `\n` too; otherwise a deny rule such as `regex:.*secret.*` would miss
/// `\xffsecret` and `a\nsecret`.
pub fn anchored(expression: &str) -> String {
    format!("(?s-u)^(?:{expression})$")
}

/// A regex must compile on its own (so the error names it) within the size limit.
pub fn check_regex(expression: &str) -> Result<(), String> {
    regex::bytes::RegexBuilder::new(&anchored(expression))
        .size_limit(REGEX_SET_BYTES)
        .build()
        .map(|_| ())
        .map_err(|err| err.to_string())
}
