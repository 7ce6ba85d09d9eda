//! Account tiers (seed 000's subscriber-count tiers) and the limits they default to.

use serde::{Deserialize, Serialize};

/// An account's size class; an account's own limits override its tier's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Under 10,000 subscribers.
    #[default]
    Small,
    /// 10,000 subscribers or more.
    Medium,
    /// 50,000 subscribers or more.
    Large,
    /// 100,000 subscribers or more.
    Xlarge,
}

/// A rate and a burst, in events per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained events per second.
    pub per_second: u32,
    /// Events allowed at once above the sustained rate.
    pub burst: u32,
}

impl Tier {
    /// The tier's name as stored in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Medium => "medium",
            Tier::Large => "large",
            Tier::Xlarge => "xlarge",
        }
    }

    /// Parses a stored tier name.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "small" => Some(Tier::Small),
            "medium" => Some(Tier::Medium),
            "large" => Some(Tier::Large),
            "xlarge" => Some(Tier::Xlarge),
            _ => None,
        }
    }

    /// Default intake limit at ingest: bigger accounts send more.
    pub fn default_ingest_limit(self) -> RateLimit {
        match self {
            Tier::Small => RateLimit { per_second: 200, burst: 400 },
            Tier::Medium => RateLimit { per_second: 1_000, burst: 2_000 },
            Tier::Large => RateLimit { per_second: 5_000, burst: 10_000 },
            Tier::Xlarge => RateLimit { per_second: 10_000, burst: 20_000 },
        }
    }
}

impl Tier {
    /// Default delivery limit per account (all its endpoints together): bigger accounts get
    /// more, but never so much that one can take the whole dispatcher (seed 000's fairness).
    pub fn default_delivery_limit(self) -> RateLimit {
        match self {
            Tier::Small => RateLimit { per_second: 100, burst: 200 },
            Tier::Medium => RateLimit { per_second: 500, burst: 1_000 },
            Tier::Large => RateLimit { per_second: 2_000, burst: 4_000 },
            Tier::Xlarge => RateLimit { per_second: 10_000, burst: 20_000 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_round_trip_and_grow() {
        for t in [Tier::Small, Tier::Medium, Tier::Large, Tier::Xlarge] {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert!(
            Tier::Xlarge.default_ingest_limit().per_second
                > Tier::Small.default_ingest_limit().per_second
        );
        assert_eq!(Tier::parse("huge"), None);
    }
}
