//! Which user a verified TLS client certificate names (`-o ssl_cert_user=<rule>`), as
//! Couchbase maps certificates to users: the subject's CN, or the first subject alternative
//! name of one type, with an optional prefix that must be there and is removed.
//!
//! # Format
//! ```text
//! cn                      the subject's common name
//! san.dns | san.email | san.uri
//!                         the first SAN of that type that yields a user
//! <source>:<prefix>       only values that start with <prefix>, which is removed
//!                         (san.uri:spiffe://example.org/ maps spiffe://example.org/web to web)
//! ```
//! The prefix is everything after the first `:` (a URI prefix has colons of its own). What is
//! left must be a valid user name (what a credential file accepts: not empty, at most
//! [`MAX_USER_BYTES`](crate::credentials::MAX_USER_BYTES) bytes, no space or control byte); a
//! value that is not names no user, and the next value of that type is tried.
//!
//! Pure: the server hands the certificate's names in ([`CertNames`]) and decides what the
//! user means (a user of the credential store, or a name for the access policy).

use thiserror::Error;

use crate::credentials::User;

/// Where in the certificate the user name is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    CommonName,
    SanDns,
    SanEmail,
    SanUri,
}

impl CertField {
    pub fn name(self) -> &'static str {
        match self {
            CertField::CommonName => "cn",
            CertField::SanDns => "san.dns",
            CertField::SanEmail => "san.email",
            CertField::SanUri => "san.uri",
        }
    }
}

/// A certificate's names, as the TLS layer read them from a verified client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct CertNames<'a> {
    pub common_name: Option<&'a str>,
    pub dns: &'a [String],
    pub emails: &'a [String],
    pub uris: &'a [String],
}

/// `-o ssl_cert_user=<rule>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUserRule {
    pub field: CertField,
    /// Must start the value; removed from it.
    pub prefix: Option<Box<str>>,
}

/// A rule that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertRuleError {
    #[error("{0:?} is no certificate field: use cn, san.dns, san.email or san.uri")]
    Field(String),
    #[error("the prefix after {0}: is empty (leave out the colon for none)")]
    EmptyPrefix(&'static str),
}

impl CertUserRule {
    /// Reads `cn`, `san.dns`, `san.email`, `san.uri`, each optionally followed by
    /// `:<prefix>`.
    pub fn parse(text: &str) -> Result<CertUserRule, CertRuleError> {
        let (field, prefix) = match text.split_once(':') {
            Some((field, prefix)) => (field, Some(prefix)),
            None => (text, None),
        };
        let field = match field {
            "cn" => CertField::CommonName,
            "san.dns" => CertField::SanDns,
            "san.email" => CertField::SanEmail,
            "san.uri" => CertField::SanUri,
            other => return Err(CertRuleError::Field(other.to_owned())),
        };
        let prefix = match prefix {
            Some("") => return Err(CertRuleError::EmptyPrefix(field.name())),
            Some(prefix) => Some(prefix.into()),
            None => None,
        };
        Ok(CertUserRule { field, prefix })
    }

    /// The user `names` map to, if any: the first value of the rule's field that has the
    /// prefix and leaves a valid user name.
    pub fn user(&self, names: &CertNames<'_>) -> Option<User> {
        let values: &[String] = match self.field {
            CertField::CommonName => {
                return names.common_name.and_then(|cn| self.strip(cn));
            }
            CertField::SanDns => names.dns,
            CertField::SanEmail => names.emails,
            CertField::SanUri => names.uris,
        };
        values.iter().find_map(|value| self.strip(value))
    }

    /// `value` without the prefix, as a user; `None` when it lacks the prefix or what is
    /// left is no user name.
    fn strip(&self, value: &str) -> Option<User> {
        let rest = match &self.prefix {
            Some(prefix) => value.strip_prefix(&**prefix)?,
            None => value,
        };
        User::named(rest)
    }
}

impl std::fmt::Display for CertUserRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field.name())?;
        if let Some(prefix) = &self.prefix {
            write!(f, ":{prefix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn user(rule: &str, names: &CertNames<'_>) -> Option<String> {
        let rule = CertUserRule::parse(rule).expect("parses");
        rule.user(names).map(|u| u.as_str().to_owned())
    }

    #[test]
    fn rules_parse_and_print_back() {
        for text in [
            "cn",
            "san.dns",
            "san.email",
            "san.uri",
            "cn:svc-",
            "san.uri:spiffe://example.org/ns/",
        ] {
            assert_eq!(CertUserRule::parse(text).expect(text).to_string(), text);
        }
        let rule = CertUserRule::parse("san.uri:spiffe://a/").expect("parses");
        assert_eq!(rule.prefix.as_deref(), Some("spiffe://a/"));
        assert!(matches!(
            CertUserRule::parse("subject"),
            Err(CertRuleError::Field(_))
        ));
        assert!(matches!(
            CertUserRule::parse("san.ip"),
            Err(CertRuleError::Field(_))
        ));
        assert!(matches!(
            CertUserRule::parse(""),
            Err(CertRuleError::Field(_))
        ));
        assert_eq!(
            CertUserRule::parse("cn:"),
            Err(CertRuleError::EmptyPrefix("cn"))
        );
    }

    #[test]
    fn the_first_value_that_yields_a_user_wins() {
        let dns = strings(&["web.internal", "svc-cache.internal"]);
        let emails = strings(&["ops@example.org"]);
        let uris = strings(&["https://example.org/x", "spiffe://example.org/ns/web"]);
        let names = CertNames {
            common_name: Some("svc-alice"),
            dns: &dns,
            emails: &emails,
            uris: &uris,
        };
        assert_eq!(user("cn", &names).as_deref(), Some("svc-alice"));
        assert_eq!(user("cn:svc-", &names).as_deref(), Some("alice"));
        assert_eq!(user("cn:bob", &names), None);
        assert_eq!(user("san.dns", &names).as_deref(), Some("web.internal"));
        assert_eq!(
            user("san.dns:svc-", &names).as_deref(),
            Some("cache.internal")
        );
        assert_eq!(
            user("san.email", &names).as_deref(),
            Some("ops@example.org")
        );
        assert_eq!(
            user("san.uri:spiffe://example.org/ns/", &names).as_deref(),
            Some("web")
        );
    }

    #[test]
    fn values_that_are_no_user_name_map_to_no_one() {
        let dns = strings(&["svc-", "svc-a b", "svc-ok"]);
        let names = CertNames {
            common_name: Some("two words"),
            dns: &dns,
            ..CertNames::default()
        };
        // A CN with a space, an empty rest, a rest with a space: skipped.
        assert_eq!(user("cn", &names), None);
        assert_eq!(user("san.dns:svc-", &names).as_deref(), Some("ok"));
        let long = "x".repeat(crate::credentials::MAX_USER_BYTES + 1);
        let names = CertNames {
            common_name: Some(&long),
            ..CertNames::default()
        };
        assert_eq!(user("cn", &names), None);
        // No CN, no SANs.
        assert_eq!(user("cn", &CertNames::default()), None);
        assert_eq!(user("san.uri", &CertNames::default()), None);
    }
}
