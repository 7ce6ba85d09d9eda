//! What an endpoint may be, checked before it is stored: the API, the CLI and the testbed go
//! through these rules, since [`super::endpoints::create`] and [`super::endpoints::update`]
//! take only what [`EndpointRules`] checked.

use std::net::IpAddr;
use std::ops::Deref;
use std::time::Duration;

use super::endpoints::{EndpointPatch, NewEndpoint};
use crate::delivery::guard;
use crate::schema::Schemas;
use crate::tier::RateLimit;

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// Longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 1000;
/// Most event types per endpoint.
const MAX_TYPES: usize = 50;
/// Highest per-endpoint rate accepted.
const MAX_RATE: u32 = 100_000;

/// A field that breaks a rule: `field` is a JSON pointer into the endpoint's JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// JSON pointer, e.g. `/url`, `/event_types/2`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

/// Input that passed [`EndpointRules`]; only they make one.
#[derive(Debug, Clone)]
pub struct Checked<T>(T);

impl<T> Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The rules of an installation.
#[derive(Debug, Clone)]
pub struct EndpointRules {
    /// Accept `http://` URLs (otherwise https only).
    pub allow_http: bool,
    /// Accept loopback, private and other internal targets.
    pub allow_private: bool,
    known_types: Vec<&'static str>,
}

impl EndpointRules {
    /// Rules with the event types of `schemas`.
    pub fn new(allow_http: bool, allow_private: bool, schemas: &Schemas) -> Self {
        Self { allow_http, allow_private, known_types: schemas.event_types() }
    }

    /// Checks a new endpoint, normalizing its URL.
    pub async fn check_new(&self, mut new: NewEndpoint) -> Result<Checked<NewEndpoint>, Invalid> {
        new.url = self.url(&new.url).await?;
        description(&new.description)?;
        self.event_types(&new.event_types)?;
        if let Some(l) = new.rate_limit {
            rate_limit(l)?;
        }
        Ok(Checked(new))
    }

    /// Checks a change, normalizing a new URL.
    pub async fn check_patch(
        &self,
        mut patch: EndpointPatch,
    ) -> Result<Checked<EndpointPatch>, Invalid> {
        if let Some(url) = &patch.url {
            patch.url = Some(self.url(url).await?);
        }
        if let Some(d) = &patch.description {
            description(d)?;
        }
        if let Some(t) = &patch.event_types {
            self.event_types(t)?;
        }
        if let Some(Some(l)) = patch.rate_limit {
            rate_limit(l)?;
        }
        Ok(Checked(patch))
    }

    /// Checks a URL: parseable, https unless allowed, no private target unless allowed.
    /// Returns it normalized (scheme and host in lower case, no default port, `.` segments
    /// resolved), the form stored and compared, so `https://EXAMPLE.com:443/a` and
    /// `https://example.com/a` are one endpoint URL.
    async fn url(&self, url: &str) -> Result<String, Invalid> {
        let bad = |m: &str| invalid("/url", m);
        if url.len() > MAX_URL {
            return Err(bad(&format!("longer than {MAX_URL} characters")));
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(&format!("not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(bad("must be https")),
            other => return Err(bad(&format!("scheme {other:?} is not http(s)"))),
        }
        let Some(host) = parsed.host_str() else { return Err(bad("has no host")) };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        let normalized = parsed.to_string();
        if self.allow_private {
            return Ok(normalized);
        }
        // The refusal's own text names the dispatcher's setting, which an API user cannot change.
        guard::check_literal(&parsed).map_err(|e| {
            bad(&format!(
                "{} is a loopback, private or otherwise internal address: webhooks go to public \
                 addresses only",
                e.0
            ))
        })?;
        if host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_err() {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let lookup = tokio::time::timeout(
                Duration::from_secs(3),
                tokio::net::lookup_host((host.to_owned(), port)),
            )
            .await;
            // Unresolvable now is allowed (DNS may come later); the delivery-time guard still
            // refuses private answers. Resolving to a private address now is refused.
            if let Ok(Ok(addrs)) = lookup {
                if addrs.into_iter().any(|a| guard::is_internal(a.ip())) {
                    return Err(bad(
                        "resolves to a loopback, private or otherwise internal address: webhooks \
                         go to public addresses only",
                    ));
                }
            }
        }
        Ok(normalized)
    }

    /// Checks event types against the known ones: exact, `prefix.*` covering at least one, or `*`.
    fn event_types(&self, types: &[String]) -> Result<(), Invalid> {
        if types.is_empty() {
            return Err(invalid("/event_types", "needs at least one type (or \"*\")"));
        }
        if types.len() > MAX_TYPES {
            return Err(invalid("/event_types", format!("at most {MAX_TYPES} types")));
        }
        let known = &self.known_types;
        for (i, t) in types.iter().enumerate() {
            let ok = match t.strip_suffix('*') {
                Some("") => true,
                Some(prefix) => {
                    prefix.ends_with('.') && known.iter().any(|k| k.starts_with(prefix))
                }
                None => known.contains(&t.as_str()),
            };
            if !ok {
                return Err(invalid(
                    format!("/event_types/{i}"),
                    format!("unknown event type {t:?}; known: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

fn description(d: &str) -> Result<(), Invalid> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid("/description", format!("longer than {MAX_DESCRIPTION} characters")));
    }
    Ok(())
}

fn rate_limit(l: RateLimit) -> Result<(), Invalid> {
    for (value, field) in [(l.per_second, "/rate_limit/per_second"), (l.burst, "/rate_limit/burst")]
    {
        if !(1..=MAX_RATE).contains(&value) {
            return Err(invalid(field, format!("must be between 1 and {MAX_RATE}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: bool) -> EndpointRules {
        EndpointRules::new(allow, allow, &Schemas::load().expect("schemas"))
    }

    fn new(url: &str) -> NewEndpoint {
        NewEndpoint {
            url: url.into(),
            description: String::new(),
            event_types: vec!["*".into()],
            rate_limit: None,
        }
    }

    #[tokio::test]
    async fn urls_are_normalized_and_internal_targets_refused_unless_allowed() {
        let checked = rules(false).check_new(new("https://EXAMPLE.com:443/a/./b")).await;
        assert_eq!(checked.expect("public https").url, "https://example.com/a/b");
        for (url, why) in [
            ("http://example.com/", "must be https"),
            ("https://127.0.0.1/", "public addresses only"),
            ("https://u:p@example.com/", "credentials"),
            ("ftp://example.com/", "not http(s)"),
        ] {
            let e = rules(false).check_new(new(url)).await.expect_err(url);
            assert_eq!(e.field, "/url");
            assert!(e.message.contains(why), "{url}: {}", e.message);
        }
        assert!(rules(true).check_new(new("http://127.0.0.1:9000/a")).await.is_ok());
    }

    #[tokio::test]
    async fn types_descriptions_and_limits_name_the_bad_field() {
        let mut n = new("https://example.com/");
        n.event_types = vec!["subscriber.*".into(), "nope".into()];
        assert_eq!(rules(false).check_new(n).await.expect_err("type").field, "/event_types/1");
        let mut n = new("https://example.com/");
        n.rate_limit = Some(RateLimit { per_second: 10, burst: 0 });
        assert_eq!(rules(false).check_new(n).await.expect_err("burst").field, "/rate_limit/burst");
        let patch = EndpointPatch { description: Some("x".repeat(1001)), ..Default::default() };
        assert_eq!(rules(false).check_patch(patch).await.expect_err("d").field, "/description");
    }
}
