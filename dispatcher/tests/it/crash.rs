//! SIGKILL the dispatcher mid-stream and start it again: every event is delivered at least
//! once, duplicates stay within the in-flight bound, and the replacement is given the dead
//! member's partitions once the broker evicts it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hookstream_core::envelope::Priority;
use hookstream_core::tier::RateLimit;
use hookstream_testkit::{self as testkit, eventually, KillOnDrop, Receiver};

use crate::support::World;

const EVENTS: usize = 2_000;
const IN_FLIGHT: usize = 30;

/// The session timeout of [`spawn`]ed dispatchers.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

fn spawn(world: &World, group: &str) -> KillOnDrop {
    spawn_with_session(world, group, SESSION_TIMEOUT)
}

fn spawn_with_session(world: &World, group: &str, session: Duration) -> KillOnDrop {
    // The group protocol under test: the default, or `HOOKSTREAM_KAFKA__GROUP_PROTOCOL` when the
    // run sets it (to compare `classic` with `consumer`, whose session timeout is the broker's:
    // 10 s on the dev broker).
    let protocol = std::env::var("HOOKSTREAM_KAFKA__GROUP_PROTOCOL").unwrap_or("classic".into());
    let binary = env!("CARGO_BIN_EXE_hookstream-dispatcher");
    let child = testkit::service_command(binary, &world.kafka.brokers, &world.db.config.url)
        .env("HOOKSTREAM_KAFKA__GROUP_PROTOCOL", protocol)
        .env("HOOKSTREAM_KAFKA__SESSION_TIMEOUT", format!("{}ms", session.as_millis()))
        .env("HOOKSTREAM_TOPICS__PREFIX", &world.topics.prefix)
        .env("HOOKSTREAM_ADMIN__LISTEN", format!("127.0.0.1:{}", testkit::free_port()))
        .env("HOOKSTREAM_DELIVERY__ALLOW_PRIVATE_TARGETS", "true")
        .env("HOOKSTREAM_DELIVERY__RECORD_FLUSH_INTERVAL", "10ms")
        // No retrier runs here to deliver parked work (see `support::World::config`).
        .env("HOOKSTREAM_DELIVERY__PARK_AFTER", "1h")
        .env("HOOKSTREAM_DISPATCHER__GROUP_ID", group)
        .env("HOOKSTREAM_DISPATCHER__IN_FLIGHT", IN_FLIGHT.to_string())
        .env("HOOKSTREAM_DISPATCHER__COMMIT_INTERVAL", "100ms")
        .env("HOOKSTREAM_TELEMETRY__LOG_LEVEL", "warn")
        .spawn()
        .expect("spawn dispatcher");
    KillOnDrop(child)
}

#[tokio::test]
async fn a_killed_dispatcher_loses_nothing_and_duplicates_stay_within_the_in_flight_bound() {
    let world = World::new(4).await;
    let receiver = Receiver::start().await;
    let account = world.account().await;
    // Slow enough that the kill lands mid-stream.
    world
        .endpoint(
            account,
            receiver.url("/ep"),
            &["*"],
            Some(RateLimit { per_second: 300, burst: 10 }),
        )
        .await;
    let mut expected = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let id = world.produce(account, "subscriber.created", Priority::Normal).await;
        expected.push(id.to_string());
    }
    let group = testkit::unique("crash-");

    let mut first = spawn(&world, &group);
    eventually(Duration::from_secs(60), "a third delivered", || async {
        (receiver.hits().len() >= EVENTS / 3).then_some(())
    })
    .await;
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    let at_kill = receiver.hits().len();
    assert!(at_kill < EVENTS, "killed after everything was delivered; the test proves nothing");

    let second = spawn(&world, &group);
    let counts = eventually(Duration::from_secs(90), "every event delivered", || async {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for hit in receiver.hits() {
            *counts.entry(hit.webhook_id).or_default() += 1;
        }
        expected.iter().all(|id| counts.contains_key(id)).then_some(counts)
    })
    .await;
    drop(second);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("killed at {at_kill} deliveries; {duplicates} duplicates after restart");
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates exceed the in-flight bound {IN_FLIGHT}"
    );
    assert_eq!(counts.len(), EVENTS, "no unknown ids");
}

/// The case of a dispatcher that crashes and is restarted on its own while events keep coming:
/// the dead member still holds its partitions (and, with the classic protocol, the group's
/// leadership) when the new one joins, and the broker must hand them to the newcomer once the
/// dead one's session expires.
#[tokio::test]
async fn a_member_killed_and_replaced_alone_reads_on_within_the_session_timeout() {
    // The default session timeout, as in `run.sh`.
    let session = Duration::from_secs(10);
    let bound = session + Duration::from_secs(10);
    let world = World::new(4).await;
    let receiver = Receiver::start().await;
    let account = world.account().await;
    world.endpoint(account, receiver.url("/ep"), &["*"], None).await;
    let group = testkit::unique("replace-");
    let stop = AtomicBool::new(false);

    let load = async {
        let mut ids = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            ids.push(world.produce(account, "subscriber.created", Priority::Normal).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ids
    };
    let crash_and_replace = async {
        let mut first = spawn_with_session(&world, &group, session);
        eventually(Duration::from_secs(60), "the first member delivers", || async {
            (receiver.hits().len() >= 200).then_some(())
        })
        .await;
        first.0.kill().expect("SIGKILL");
        first.0.wait().expect("reap");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = spawn_with_session(&world, &group, session);
        let started = Instant::now();
        let before = receiver.hits().len();
        eventually(bound, "the replacement delivers", || async {
            (receiver.hits().len() >= before + 200).then_some(())
        })
        .await;
        let resumed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        (second, resumed)
    };
    let (ids, (second, resumed)) = tokio::join!(load, crash_and_replace);
    eprintln!("the replacement delivered within {resumed:?} of its start");

    let expected: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    eventually(Duration::from_secs(60), "every event delivered", || async {
        let got: HashSet<String> = receiver.hits().into_iter().map(|h| h.webhook_id).collect();
        expected.is_subset(&got).then_some(())
    })
    .await;
    drop(second);
}

/// A second dispatcher joining a group under load takes over part of the partitions without
/// stopping delivery for long: the longest gap between two deliveries from its start until both
/// have delivered stays under the session timeout (with the classic protocol the first member
/// revokes only the partitions that move; with KIP-848 the broker assigns them).
#[tokio::test]
async fn a_second_member_joining_under_load_takes_partitions_without_a_long_stall() {
    let session = Duration::from_secs(10);
    let world = World::new(4).await;
    let receiver = Receiver::start().await;
    // Events are keyed by account: several accounts, so every partition has work.
    let mut accounts = Vec::new();
    for n in 0..8 {
        let account = world.account().await;
        world.endpoint(account, receiver.url(&format!("/ep{n}")), &["*"], None).await;
        accounts.push(account);
    }
    let group = testkit::unique("join-");
    let stop = AtomicBool::new(false);

    let load = async {
        let mut ids = Vec::new();
        for account in accounts.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            ids.push(world.produce(*account, "subscriber.created", Priority::Normal).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ids
    };
    let join = async {
        let first = spawn_with_session(&world, &group, session);
        eventually(Duration::from_secs(60), "the first member delivers", || async {
            (receiver.hits().len() >= 200).then_some(())
        })
        .await;
        let joined_at = Instant::now();
        let second = spawn_with_session(&world, &group, session);
        // Measured: the longest gap between deliveries after the join.
        tokio::time::sleep(session + Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);
        (first, second, joined_at)
    };
    let (ids, (first, second, joined_at)) = tokio::join!(load, join);
    let expected: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    eventually(Duration::from_secs(60), "every event delivered", || async {
        let got: HashSet<String> = receiver.hits().into_iter().map(|h| h.webhook_id).collect();
        expected.is_subset(&got).then_some(())
    })
    .await;
    let mut arrivals: Vec<Instant> =
        receiver.hits().iter().map(|h| h.at).filter(|at| *at >= joined_at).collect();
    arrivals.sort();
    let longest = std::iter::once(joined_at)
        .chain(arrivals.iter().copied())
        .zip(arrivals.iter().copied())
        .map(|(a, b)| b - a)
        .max()
        .unwrap_or_default();
    eprintln!("longest gap between deliveries after the second member joined: {longest:?}");
    assert!(longest < session, "delivery stalled {longest:?} when a member joined");
    drop((first, second));
}
