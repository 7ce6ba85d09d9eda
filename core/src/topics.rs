//! Topic names, all under one configurable prefix (default `hookstream.`).

use std::time::Duration;

use crate::envelope::Priority;

/// The default retry schedule (seed 000): 1 s, 5 s, 25 s, 125 s, 625 s.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
    Duration::from_secs(125),
    Duration::from_secs(625),
];

/// Names every topic of one hookstream installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
    retry_delays: Vec<Duration>,
}

impl Topics {
    /// Topic names under `prefix`, with one retry tier per delay of `retry_delays`.
    pub fn new(prefix: impl Into<String>, retry_delays: Vec<Duration>) -> Self {
        Self { prefix: prefix.into(), retry_delays }
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The event topic of a priority lane, e.g. `hookstream.events.normal`.
    pub fn events(&self, priority: Priority) -> String {
        format!("{}events.{}", self.prefix, priority.as_str())
    }

    /// All three event topics, highest lane first.
    pub fn all_events(&self) -> Vec<String> {
        Priority::ALL.iter().map(|p| self.events(*p)).collect()
    }

    /// The retry tier topic of one delay, e.g. `hookstream.retry.25s`.
    pub fn retry(&self, delay: Duration) -> String {
        format!("{}retry.{}", self.prefix, delay_label(delay))
    }

    /// The configured retry delays, in order.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// All retry tier topics, shortest delay first.
    pub fn all_retries(&self) -> Vec<String> {
        self.retry_delays.iter().map(|d| self.retry(*d)).collect()
    }

    /// The park topic: tasks beyond an endpoint's in-memory bound wait here for their slot
    /// of the endpoint's rate (DESIGN.md, "Fairness"), e.g. `hookstream.park`.
    pub fn park(&self) -> String {
        format!("{}park", self.prefix)
    }

    /// What the retrier consumes: every retry tier, then the park topic.
    pub fn delayed(&self) -> Vec<String> {
        let mut delayed = self.all_retries();
        delayed.push(self.park());
        delayed
    }

    /// The dead-letter topic.
    pub fn dlq(&self) -> String {
        format!("{}dlq", self.prefix)
    }

    /// Every topic the pipeline uses: lanes, retry tiers, park, DLQ.
    pub fn all(&self) -> Vec<String> {
        let mut all = self.all_events();
        all.extend(self.delayed());
        all.push(self.dlq());
        all
    }
}

/// A delay as it appears in a topic name: whole seconds as `25s`, anything else as `250ms`.
///
/// Not humantime's format: `125s` must stay `125s`, not `2m 5s`, and names hold no spaces.
pub fn delay_label(delay: Duration) -> String {
    if delay.subsec_millis() == 0 && delay.as_secs() > 0 {
        format!("{}s", delay.as_secs())
    } else {
        format!("{}ms", delay.as_millis())
    }
}

/// Whether a string is usable as a topic name prefix (Kafka allows `[a-zA-Z0-9._-]`).
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 200
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design_table() {
        let t = Topics::new("hookstream.", DEFAULT_RETRY_SCHEDULE.to_vec());
        assert_eq!(t.events(Priority::Normal), "hookstream.events.normal");
        assert_eq!(
            t.all_retries(),
            [
                "hookstream.retry.1s",
                "hookstream.retry.5s",
                "hookstream.retry.25s",
                "hookstream.retry.125s",
                "hookstream.retry.625s"
            ]
        );
        assert_eq!(t.dlq(), "hookstream.dlq");
        assert_eq!(t.park(), "hookstream.park");
        assert_eq!(t.all().len(), 10);
    }

    #[test]
    fn sub_second_delays_are_labelled_in_milliseconds() {
        assert_eq!(delay_label(Duration::from_millis(200)), "200ms");
        assert_eq!(delay_label(Duration::from_millis(1500)), "1500ms");
        assert_eq!(delay_label(Duration::from_secs(625)), "625s");
    }

    #[test]
    fn prefixes_with_illegal_characters_are_rejected() {
        assert!(is_valid_prefix("hookstream."));
        assert!(is_valid_prefix("t-1_a."));
        assert!(!is_valid_prefix("hook stream"));
        assert!(!is_valid_prefix("a/b"));
    }
}
