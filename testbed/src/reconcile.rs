//! `hookstream-testbed reconcile`: accounts for every accepted event after a load or fault run.
//! Each id ingest accepted (`hookstream-testbed loadgen --ids-out`) must have reached each endpoint
//! of its account subscribed to its type, per the sink's record (`hookstream-testbed sink
//! --record`), or sit in the DLQ index. Anything else is lost. Exits 1 when anything is lost or
//! duplicates exceed the bound.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use clap::Args;
use hookstream_core::delivery::endpoints::EndpointCache;
use hookstream_core::dlq;
use hookstream_core::AccountId;
use serde::Serialize;

use hookstream_core::tool::ToolConfig;
use hookstream_core::tool::UsageError;

#[derive(Args)]
pub(crate) struct ReconcileArgs {
    /// Accepted event ids, one per line (`hookstream-testbed loadgen --ids-out`).
    #[arg(long)]
    ids: PathBuf,
    /// The sink's record (`hookstream-testbed sink --record`).
    #[arg(long)]
    sink_record: PathBuf,
    /// Duplicate deliveries tolerated before the run fails.
    #[arg(long, default_value_t = 0)]
    max_duplicates: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The accounting of one run.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Accounting {
    /// Distinct event ids ingest accepted.
    pub(crate) accepted: u64,
    /// (event, endpoint) pairs owed.
    pub(crate) owed: u64,
    /// Owed pairs the sink accepted.
    pub(crate) delivered: u64,
    /// Owed pairs not delivered but in the DLQ.
    pub(crate) in_dlq: u64,
    /// Owed pairs neither delivered nor in the DLQ (an accepted id seen nowhere counts once).
    pub(crate) lost: u64,
    /// Deliveries of a pair the sink had already accepted.
    pub(crate) duplicates: u64,
    /// Events the sink accepted that ingest never acknowledged (the producer saw an error or
    /// a timeout, yet the event was published).
    pub(crate) unacknowledged_delivered: u64,
}

/// One line of the sink's record.
struct Delivery {
    event: String,
    endpoint: String,
    account: String,
    event_type: String,
    duplicate: bool,
}

fn parse_record(text: &str) -> Result<Vec<Delivery>, UsageError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 8 {
                return Err(UsageError(format!(
                    "sink record line {}: expected 8 tab-separated fields, got {}",
                    n + 1,
                    f.len()
                )));
            }
            Ok(Delivery {
                event: f[0].to_owned(),
                endpoint: f[1].to_owned(),
                account: f[2].to_owned(),
                event_type: f[3].to_owned(),
                duplicate: f[7] == "1",
            })
        })
        .collect()
}

/// The accounting itself: `owed(account, event_type)` gives the endpoints an event is owed to.
fn account(
    accepted: &HashSet<String>,
    deliveries: &[Delivery],
    dead: &[(String, String, String)],
    owed: impl Fn(&str, &str) -> Vec<String>,
) -> Accounting {
    let mut out = Accounting { accepted: accepted.len() as u64, ..Default::default() };
    let mut delivered: HashSet<(&str, &str)> = HashSet::new();
    let mut known: HashMap<&str, (&str, &str)> = HashMap::new(); // event -> (account, type)
    for d in deliveries {
        if d.duplicate {
            out.duplicates += 1;
        }
        delivered.insert((&d.event, &d.endpoint));
        known.insert(&d.event, (&d.account, &d.event_type));
    }
    let mut in_dlq: HashSet<(&str, &str)> = HashSet::new();
    let mut dead_endpoints: HashMap<&str, Vec<&str>> = HashMap::new();
    for (event, endpoint, account) in dead {
        in_dlq.insert((event, endpoint));
        dead_endpoints.entry(event).or_default().push(endpoint);
        known.entry(event).or_insert((account, ""));
    }
    for event in accepted {
        let Some((account, event_type)) = known.get(event.as_str()) else {
            out.owed += 1;
            out.lost += 1;
            continue;
        };
        // A DLQ entry does not carry the type here; its endpoints are owed too.
        let mut endpoints: Vec<String> = owed(account, event_type);
        for e in dead_endpoints.get(event.as_str()).into_iter().flatten() {
            if !endpoints.iter().any(|x| x == e) {
                endpoints.push((*e).to_owned());
            }
        }
        for endpoint in endpoints {
            out.owed += 1;
            if delivered.contains(&(event.as_str(), endpoint.as_str())) {
                out.delivered += 1;
            } else if in_dlq.contains(&(event.as_str(), endpoint.as_str())) {
                out.in_dlq += 1;
            } else {
                out.lost += 1;
            }
        }
    }
    out.unacknowledged_delivered = known.keys().filter(|e| !accepted.contains(**e)).count() as u64;
    out
}

pub(crate) async fn run(config: &ToolConfig, args: ReconcileArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))
    };
    let accepted: HashSet<String> = read(&args.ids)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let deliveries = parse_record(&read(&args.sink_record)?)?;
    let pool = hookstream_core::db::connect(&config.database).await?;
    let dead: Vec<(String, String, String)> = dlq::live_keys(&pool)
        .await?
        .into_iter()
        .map(|(e, ep, a)| (e, ep.to_string(), a.to_string()))
        .collect();
    let cache = EndpointCache::default();
    cache.reload(&pool).await?;
    let accounting = account(&accepted, &deliveries, &dead, |account, event_type| {
        let Ok(account) = account.parse::<AccountId>() else { return Vec::new() };
        cache.matching(account, event_type).iter().map(|e| e.target.id.to_string()).collect()
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&accounting)?);
    } else {
        let a = &accounting;
        println!(
            "accepted {} owed {} delivered {} in DLQ {} lost {} duplicates {} (bound {}) delivered but unacknowledged {}",
            a.accepted,
            a.owed,
            a.delivered,
            a.in_dlq,
            a.lost,
            a.duplicates,
            args.max_duplicates,
            a.unacknowledged_delivered
        );
    }
    anyhow::ensure!(accounting.lost == 0, "{} owed deliveries lost", accounting.lost);
    anyhow::ensure!(
        accounting.duplicates <= args.max_duplicates,
        "{} duplicates exceed the bound of {}",
        accounting.duplicates,
        args.max_duplicates
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(event: &str, endpoint: &str, duplicate: bool) -> Delivery {
        Delivery {
            event: event.into(),
            endpoint: endpoint.into(),
            account: "acc".into(),
            event_type: "t".into(),
            duplicate,
        }
    }

    #[test]
    fn every_owed_pair_is_delivered_dead_or_lost() {
        let accepted: HashSet<String> = ["e1", "e2", "e3", "e4"].map(String::from).into();
        let deliveries = vec![
            d("e1", "p", false),
            d("e1", "q", false),
            d("e1", "q", true),
            d("e2", "p", false),
            d("e9", "p", false), // published though ingest answered an error
        ];
        let dead = vec![("e3".to_owned(), "p".to_owned(), "acc".to_owned())];
        let a = account(&accepted, &deliveries, &dead, |_, _| vec!["p".into(), "q".into()]);
        assert_eq!(
            a,
            Accounting {
                accepted: 4,
                // e1: p, q delivered; e2: p delivered, q lost; e3: p dead, q lost; e4: unseen.
                owed: 7,
                delivered: 3,
                in_dlq: 1,
                lost: 3,
                duplicates: 1,
                unacknowledged_delivered: 1,
            }
        );
    }

    #[test]
    fn a_malformed_record_names_the_line() {
        let e = parse_record("a\tb\tc\td\te\tf\tg\t0\nbad line\n").err().expect("error");
        assert!(e.0.contains("line 2"), "{}", e.0);
    }
}
