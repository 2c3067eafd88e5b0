use proptest::prelude::*;

use super::*;

/// Cilium's starfighter guide, one rule per line of it.
const STARFIGHTER: &str = "\
# Cilium's memcached guide, as a rampart policy.
[role pilot]
allow version,quit,mn

[identity user:awing cert:awing]
include pilot
allow get,set key:awing-coord

[identity user:xwing cert:xwing]
include pilot
allow get,set key:xwing-coord

[identity user:tracker cert:tracker]
include pilot
allow get key:awing-coord key:xwing-coord
";

fn user(name: &str) -> IdentityName {
    IdentityName::User(name.to_owned())
}

#[test]
fn starfighter_policy_is_expressible_one_to_one() {
    let policy = Policy::parse(STARFIGHTER).expect("parses");
    assert_eq!(policy.rule_count(), 4);
    assert_eq!(policy.identity_count(), 6);
    let awing = policy.grants(&user("awing"));
    assert_eq!(awing.check_key(b"awing-coord", Rights::GET), Ok(()));
    assert_eq!(awing.check_key(b"awing-coord", Rights::SET), Ok(()));
    assert_eq!(
        awing.check_key(b"xwing-coord", Rights::GET),
        Err(Denial::Key)
    );
    assert_eq!(awing.check_command(Rights::DELETE), Err(Denial::Command));
    assert_eq!(awing.check_keyless(Rights::VERSION), Ok(()));
    assert_eq!(awing.check_keyless(Rights::FLUSH_ALL), Err(Denial::Command));
    let tracker = policy.grants(&IdentityName::Cert("tracker".into()));
    assert_eq!(tracker.check_key(b"xwing-coord", Rights::GET), Ok(()));
    assert_eq!(tracker.check_key(b"awing-coord", Rights::GET), Ok(()));
    assert_eq!(tracker.check_command(Rights::SET), Err(Denial::Command));
    assert_eq!(
        tracker.check_key(b"awing-coord", Rights::SET),
        Err(Denial::Key)
    );
    // Prefixes of a granted exact key are not granted.
    assert_eq!(
        tracker.check_key(b"awing-coor", Rights::GET),
        Err(Denial::Key)
    );
    assert_eq!(
        tracker.check_key(b"awing-coordX", Rights::GET),
        Err(Denial::Key)
    );
    // Whoever the policy does not name may do nothing.
    let nobody = policy.grants(&IdentityName::Anonymous);
    assert_eq!(nobody.check_keyless(Rights::VERSION), Err(Denial::Command));
    assert!(!policy.names(&IdentityName::Anonymous));
}

#[test]
fn a_deny_subtracts_from_a_role_wherever_it_is_written() {
    let policy = Policy::parse(
        "[role ops]\nallow @data prefix:\nallow @session,@stats\n\
         [identity user:op]\ninclude ops\ndeny @write,delete prefix:billing-\ndeny stats\n",
    )
    .expect("parses");
    let op = policy.grants(&user("op"));
    assert_eq!(op.check_key(b"anything", Rights::SET), Ok(()));
    assert_eq!(op.check_key(b"billing-1", Rights::GET), Ok(()));
    assert_eq!(op.check_key(b"billing-1", Rights::SET), Err(Denial::Key));
    assert_eq!(op.check_key(b"billing-1", Rights::DELETE), Err(Denial::Key));
    assert_eq!(op.check_keyless(Rights::STATS), Err(Denial::Command));
    assert_eq!(op.check_keyless(Rights::QUIT), Ok(()));
}

#[test]
fn regexes_match_the_whole_key() {
    let policy = Policy::parse("[identity psk:metrics]\nallow @arith,add regex:ctr-[0-9]+\n")
        .expect("parses");
    let grants = policy.grants(&IdentityName::Psk("metrics".into()));
    assert_eq!(grants.check_key(b"ctr-12", Rights::INCR), Ok(()));
    assert_eq!(grants.check_key(b"ctr-12x", Rights::INCR), Err(Denial::Key));
    assert_eq!(grants.check_key(b"xctr-12", Rights::INCR), Err(Denial::Key));
    assert_eq!(
        grants.check_key(b"ctr-1", Rights::INCR | Rights::ADD),
        Ok(())
    );
    assert_eq!(grants.check_command(Rights::GET), Err(Denial::Command));
}

/// Keys are bytes: a deny regex matches keys that are not UTF-8 or hold a newline.
#[test]
fn regexes_match_bytes_so_a_deny_cannot_be_dodged() {
    let policy =
        Policy::parse("[identity anonymous]\nallow get prefix:\ndeny get regex:.*secret.*\n")
            .expect("parses");
    let grants = policy.grants(&IdentityName::Anonymous);
    for key in [
        &b"secret"[..],
        b"\xffsecret",
        b"a\nsecret",
        b"x\xc3secret\xff",
    ] {
        assert_eq!(
            grants.check_key(key, Rights::GET),
            Err(Denial::Key),
            "{key:?}"
        );
    }
    assert_eq!(grants.check_key(b"\xffpublic", Rights::GET), Ok(()));
}

#[test]
fn mistakes_are_errors_naming_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[identity user:a]\nallow gett key:x\n",
            2,
            "unknown command or group `gett`",
        ),
        (
            "[identity user:a]\nallow @reads key:x\n",
            2,
            "unknown command or group `@reads`",
        ),
        ("[identity human:a]\n", 1, "unknown identity kind `human`"),
        ("[identity uid:abc]\n", 1, "a uid is a number"),
        ("[identity user:a]\nallow get\n", 2, "no key pattern"),
        (
            "[identity user:a]\nallow flush_all key:x\n",
            2,
            "flush_all take no key",
        ),
        (
            "[identity user:a]\nallow get keys:x\n",
            2,
            "no key pattern: write",
        ),
        ("[identity user:a]\nallow get regex:(\n", 2, "regex:("),
        (
            "[identity user:a]\ninclude nope\n",
            2,
            "role `nope` is not defined",
        ),
        ("allow get key:x\n", 1, "outside any section"),
        (
            "[identity user:a]\n[identity user:a]\n",
            2,
            "already has a block on line 1",
        ),
        ("[role r]\n[role r]\n", 2, "already defined on line 1"),
        (
            "[role a]\ninclude b\n[role b]\ninclude a\n[identity user:x]\ninclude a\n",
            4,
            "includes itself",
        ),
        (
            "[identity user:a]\npermit get key:x\n",
            2,
            "unknown word `permit`",
        ),
        ("[group x]\n", 1, "unknown section"),
        (
            "[identity user:a]\nallow get,,set key:x\n",
            2,
            "empty command name",
        ),
    ];
    for (text, line, fragment) in cases {
        let err = Policy::parse(text).expect_err(text);
        assert_eq!(err.line, *line, "{text}: {err}");
        assert!(err.message.contains(fragment), "{text}: {err}");
    }
}

#[test]
fn a_thousand_rules_compile_into_one_trie() {
    let mut text = String::from("[identity user:big]\n");
    for n in 0..500 {
        text.push_str(&format!("allow get,set key:exact-{n}\n"));
        text.push_str(&format!("allow @read prefix:tenant-{n}:\n"));
    }
    let policy = Policy::parse(&text).expect("parses");
    assert_eq!(policy.rule_count(), 1000);
    let grants = policy.grants(&user("big"));
    assert_eq!(grants.check_key(b"exact-499", Rights::SET), Ok(()));
    assert_eq!(grants.check_key(b"tenant-77:x", Rights::GET), Ok(()));
    assert_eq!(
        grants.check_key(b"tenant-77:x", Rights::SET),
        Err(Denial::Key)
    );
    assert_eq!(
        grants.check_key(b"tenant-500:x", Rights::GET),
        Err(Denial::Key)
    );
}

// The property: for random policies and requests, the compiled decision is the naive one.

#[derive(Debug, Clone)]
struct NaiveRule {
    allow: bool,
    rights: Rights,
    patterns: Vec<Pattern>,
}

fn naive_matches(pattern: &Pattern, key: &[u8]) -> bool {
    match pattern {
        Pattern::Exact(k) => k == key,
        Pattern::Prefix(p) => key.starts_with(p),
        Pattern::Regex(r) => regex::bytes::Regex::new(&keys::anchored(r))
            .expect("generated regexes compile")
            .is_match(key),
    }
}

/// The reference: every right of `need` is allowed by some matching rule and denied by none.
fn naive_allows(rules: &[NaiveRule], key: Option<&[u8]>, need: Rights) -> bool {
    let mut allow = Rights::NONE;
    let mut deny = Rights::NONE;
    for rule in rules {
        let applies = match key {
            None => rule.patterns.is_empty(),
            Some(key) => rule.patterns.iter().any(|p| naive_matches(p, key)),
        };
        if applies {
            if rule.allow {
                allow |= rule.rights;
            } else {
                deny |= rule.rights;
            }
        }
    }
    allow.contains(need) && deny.bits() & need.bits() == 0
}

fn text_of(pattern: &Pattern) -> String {
    match pattern {
        Pattern::Exact(k) => format!("key:{}", String::from_utf8_lossy(k)),
        Pattern::Prefix(p) => format!("prefix:{}", String::from_utf8_lossy(p)),
        Pattern::Regex(r) => format!("regex:{r}"),
    }
}

const KEYED_NAMES: &[&str] = &[
    "get", "set", "touch", "delete", "incr", "add", "@write", "gat",
];
const KEYLESS_NAMES: &[&str] = &["version", "stats", "flush_all", "@session", "@admin"];

fn keyed_rule() -> impl Strategy<Value = NaiveRule> {
    let pattern = prop_oneof![
        "[ab]{1,3}".prop_map(|k| Pattern::Exact(k.into_bytes())),
        "[ab]{0,2}".prop_map(|p| Pattern::Prefix(p.into_bytes())),
        prop_oneof![Just("a.*"), Just("b+a?"), Just("(ab)+"), Just("[ab]b")]
            .prop_map(|r| Pattern::Regex(r.to_owned())),
    ];
    (
        any::<bool>(),
        proptest::sample::subsequence(KEYED_NAMES, 1..3),
        proptest::collection::vec(pattern, 1..3),
    )
        .prop_map(|(allow, names, patterns)| NaiveRule {
            allow,
            rights: names
                .iter()
                .fold(Rights::NONE, |r, n| r | named(n).expect("known")),
            patterns,
        })
}

fn keyless_rule() -> impl Strategy<Value = NaiveRule> {
    (
        any::<bool>(),
        proptest::sample::subsequence(KEYLESS_NAMES, 1..3),
    )
        .prop_map(|(allow, names)| NaiveRule {
            allow,
            rights: names
                .iter()
                .fold(Rights::NONE, |r, n| r | named(n).expect("known")),
            patterns: Vec::new(),
        })
}

proptest! {
    #[test]
    fn the_compiled_decision_is_the_naive_one(
        rules in proptest::collection::vec(prop_oneof![keyed_rule(), keyless_rule()], 0..12),
        requests in proptest::collection::vec(
            ("[ab]{1,4}", proptest::sample::subsequence(KEYED_NAMES, 1..3)), 1..20),
        keyless in proptest::sample::subsequence(KEYLESS_NAMES, 1..2),
    ) {
        // Split into a role and the identity's own block, to exercise includes too.
        let (role, own) = rules.split_at(rules.len() / 2);
        let mut text = String::from("[role shared]\n");
        let write = |text: &mut String, rule: &NaiveRule| {
            let names: Vec<&str> = rule.rights.names().collect();
            let patterns: Vec<String> = rule.patterns.iter().map(text_of).collect();
            text.push_str(&format!(
                "{} {} {}\n",
                if rule.allow { "allow" } else { "deny" },
                names.join(","),
                patterns.join(" ")
            ));
        };
        for rule in role {
            write(&mut text, rule);
        }
        text.push_str("[identity user:p]\ninclude shared\n");
        for rule in own {
            write(&mut text, rule);
        }
        let policy = Policy::parse(&text).expect("generated policies parse");
        let grants = policy.grants(&user("p"));
        for (key, names) in &requests {
            let need = names.iter().fold(Rights::NONE, |r, n| r | named(n).expect("known"));
            let compiled = grants.check_command(need).is_ok()
                && grants.check_key(key.as_bytes(), need).is_ok();
            prop_assert_eq!(compiled, naive_allows(&rules, Some(key.as_bytes()), need),
                "key {} need {:?}\n{}", key, need, text);
        }
        let need = keyless.iter().fold(Rights::NONE, |r, n| r | named(n).expect("known"));
        prop_assert_eq!(grants.check_keyless(need).is_ok(), naive_allows(&rules, None, need));
    }
}
