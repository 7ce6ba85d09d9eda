//! Typed identifiers, so an account id can never be passed where an endpoint id is meant.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: the owner of API keys, endpoints and events. Also the Kafka message key.
    AccountId
);
uuid_id!(
    /// A webhook endpoint of an account.
    EndpointId
);
uuid_id!(
    /// An entry of the DLQ index.
    DeadLetterId
);
uuid_id!(
    /// An API key's public id (the key itself is stored only as a hash).
    ApiKeyId
);
uuid_id!(
    /// A DLQ redrive started through the API.
    RedriveJobId
);

/// An event's id: a UUIDv7 chosen by ingest, or derived from the client's `Idempotency-Key`
/// ([`EventId::for_key`]). It is the `webhook-id` receivers deduplicate on.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct EventId(pub String);

impl EventId {
    /// The longest id accepted (an `Idempotency-Key` longer than this is refused).
    pub const MAX_LEN: usize = 255;

    /// A new, time-ordered (UUIDv7) id.
    pub fn new() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    /// The id of the event an account sent with `Idempotency-Key: key`: the same for every
    /// request and replica of that account (UUIDv5 in the account's namespace), another for
    /// any other account using the same key, so receivers deduplicating on `webhook-id` never
    /// drop one account's event as a copy of another's.
    pub fn for_key(account: AccountId, key: &str) -> Self {
        Self(Uuid::new_v5(&account.0, key.as_bytes()).to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id as a client sends it back (in a path): only what [`EventId::new`] and
/// [`EventId::for_key`] make, a UUID; anything else names no event.
impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(|u| Self(u.to_string()))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = AccountId::new();
        let parsed: AccountId = id.to_string().parse().expect("parse");
        assert_eq!(id, parsed);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn new_event_ids_are_time_ordered() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn a_key_names_one_event_per_account() {
        let (a, b) = (AccountId::new(), AccountId::new());
        assert_eq!(EventId::for_key(a, "signup-42"), EventId::for_key(a, "signup-42"));
        assert_ne!(EventId::for_key(a, "signup-42"), EventId::for_key(b, "signup-42"));
        assert_ne!(EventId::for_key(a, "signup-42"), EventId::for_key(a, "signup-43"));
        // Fixed: a client (and scripts/faults.sh, with Python's uuid.uuid5) may compute it.
        let account: AccountId = "01a24a96-0a04-7119-8bf2-0d83fa6d0d62".parse().expect("id");
        assert_eq!(
            EventId::for_key(account, "signup-42").as_str(),
            "a45e0cdb-2d0d-5537-93db-e3a68622cc4f"
        );
    }

    #[test]
    fn only_uuids_parse_as_event_ids() {
        let id = EventId::new();
        assert_eq!(id.as_str().parse::<EventId>().ok(), Some(id));
        for bad in ["", "a\0b", "signup-42", "../x", &"f".repeat(300)] {
            assert_eq!(bad.parse::<EventId>().ok(), None, "{bad:?}");
        }
    }
}
