//! What a queue console relies on, on every backend that delivers queue messages: the listing
//! (`Kv::queue_inspect`) and the operator's changes (`Kv::queue_change`). Each behaviour is an
//! `async fn(&Kv, &ManualClock)` over a fresh, empty database whose backend reads that clock
//! (run by [`clocked_backend_suite!`](crate::clocked_backend_suite)): time moves only when a
//! test moves it, so due times, leases and backoffs are exact. Deliveries are driven step by
//! step with `queue_take`/`queue_finish`, as a listener does.

use std::time::Duration;

use openkv::{
    key, EnqueueOptions, Error, ErrorClass, Key, Kv, ManualClock, QueueChange, QueueListing,
    QueueMessageInfo, QueueMessageState,
};

/// Where every clock of these behaviours starts (Unix ms, November 2023).
pub const START_MS: i64 = 1_700_000_000_000;

/// The lease of every take here (the listener's default).
const LEASE: Duration = openkv::QUEUE_LEASE;

async fn enqueue(kv: &Kv, text: &str, options: EnqueueOptions) {
    kv.enqueue(&text.to_string(), &options).await.unwrap_or_else(|e| panic!("enqueue {text}: {e}"));
}

async fn listing(kv: &Kv, limit: usize) -> QueueListing {
    kv.queue_inspect(limit).await.unwrap_or_else(|e| panic!("queue_inspect({limit}): {e}"))
}

fn text(message: &QueueMessageInfo) -> String {
    message.payload.decode::<String>().unwrap_or_else(|e| panic!("{message:?}: {e}"))
}

/// The listed messages as (text, state, due time, attempts).
fn summary(listing: &QueueListing) -> Vec<(String, QueueMessageState, i64, u32)> {
    listing.messages.iter().map(|m| (text(m), m.state, m.due_at_ms, m.attempts)).collect()
}

fn counts(listing: &QueueListing) -> (u64, u64, u64) {
    (listing.ready, listing.delayed, listing.running)
}

/// The one listed message with this payload.
fn find<'a>(listing: &'a QueueListing, payload: &str) -> &'a QueueMessageInfo {
    let found: Vec<&QueueMessageInfo> =
        listing.messages.iter().filter(|m| text(m) == payload).collect();
    assert_eq!(found.len(), 1, "{payload:?} once in {listing:?}");
    found[0]
}

fn delay(ms: u64) -> EnqueueOptions {
    EnqueueOptions::new().delay(Duration::from_millis(ms))
}

/// Counts are of every message (not only the listed ones) and agree with the states; the
/// list puts running messages first, then orders by due time, then by id; a running message
/// is due when its lease runs out; a limit cuts the list, never the counts.
pub async fn queue_listing_counts_states_and_order(kv: &Kv, clock: &ManualClock) {
    let empty = listing(kv, 10).await;
    assert_eq!((counts(&empty), empty.messages.len()), ((0, 0, 0), 0));

    enqueue(kv, "first", EnqueueOptions::new()).await; // due at START
    clock.advance(Duration::from_millis(1));
    enqueue(kv, "in a minute", delay(60_000)).await; // due at START + 60 001
    enqueue(kv, "second", EnqueueOptions::new()).await; // due at START + 1
    enqueue(kv, "in ten seconds", delay(10_000)).await; // due at START + 10 001
    let taken = kv.queue_take(1, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].due_ms, START_MS, "the earliest due is taken first");

    let all = listing(kv, 10).await;
    assert_eq!(counts(&all), (1, 2, 1), "ready, delayed, running: {all:?}");
    let lease_end = START_MS + 1 + LEASE.as_millis() as i64;
    assert_eq!(
        summary(&all),
        [
            ("first".to_string(), QueueMessageState::Running, lease_end, 1),
            ("second".to_string(), QueueMessageState::Ready, START_MS + 1, 0),
            ("in ten seconds".to_string(), QueueMessageState::Delayed, START_MS + 10_001, 0),
            ("in a minute".to_string(), QueueMessageState::Delayed, START_MS + 60_001, 0),
        ]
    );
    assert_eq!(all.messages[0].id, taken[0].id, "the running one is the one taken");
    assert_eq!(all.total(), 4);

    // A limit shortens the list, never the counts.
    let two = listing(kv, 2).await;
    assert_eq!(counts(&two), (1, 2, 1));
    assert_eq!(two.messages, all.messages[..2]);
    let none = listing(kv, 0).await;
    assert_eq!((counts(&none), none.messages.len()), ((1, 2, 1), 0));

    // Time passing moves messages between states: the ten-second one falls due, and the
    // running one's lease (never renewed) runs out, which makes it ready again, due since.
    clock.advance(Duration::from_millis(10_000));
    let later = listing(kv, 10).await;
    assert_eq!(counts(&later), (3, 1, 0), "{later:?}");
    assert_eq!(
        summary(&later),
        [
            ("second".to_string(), QueueMessageState::Ready, START_MS + 1, 0),
            ("first".to_string(), QueueMessageState::Ready, lease_end, 1),
            ("in ten seconds".to_string(), QueueMessageState::Ready, START_MS + 10_001, 0),
            ("in a minute".to_string(), QueueMessageState::Delayed, START_MS + 60_001, 0),
        ]
    );

    // Messages due at the same time are listed by id.
    for n in 0..3 {
        enqueue(kv, &format!("same time {n}"), EnqueueOptions::new()).await;
    }
    let listed = listing(kv, 20).await;
    let ids: Vec<&str> = listed
        .messages
        .iter()
        .filter(|m| text(m).starts_with("same time"))
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "equal due times in id order");
}

/// A failed attempt counts, shortens the remaining backoff and makes the message wait the
/// interval it used; the dead-letter keys come back as the keys enqueued; after the last
/// failure the message is gone from the listing and its keys hold the payload.
pub async fn queue_listing_follows_failed_attempts(kv: &Kv, clock: &ManualClock) {
    let dead = key!["dead letters", "job"];
    let options = EnqueueOptions::new()
        .backoff_schedule([Duration::from_millis(1_000), Duration::from_millis(2_000)])
        .keys_if_undelivered([dead.clone(), key!["also"]]);
    enqueue(kv, "flaky", options).await;

    let fresh = listing(kv, 10).await;
    let m = find(&fresh, "flaky");
    assert_eq!((m.state, m.attempts), (QueueMessageState::Ready, 0));
    assert_eq!(m.backoff_ms, [1_000, 2_000]);
    let keys: Vec<Key> = m.keys_if_undelivered.iter().map(|k| Key::decode(k).unwrap()).collect();
    assert_eq!(keys, [dead.clone(), key!["also"]], "the dead-letter keys round-trip");

    // The default schedule is Deno's, listed as such.
    enqueue(kv, "default schedule", delay(3_600_000)).await;
    let default = listing(kv, 10).await;
    assert_eq!(find(&default, "default schedule").backoff_ms, [100, 1_000, 5_000, 30_000, 60_000]);
    assert!(find(&default, "default schedule").keys_if_undelivered.is_empty());

    // Attempt 1 fails: waits 1 s, one interval left.
    let taken = kv.queue_take(1, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1);
    let id = taken[0].id.clone();
    assert_eq!(find(&listing(kv, 10).await, "flaky").attempts, 1, "counted when taken");
    kv.queue_finish(vec![(id.clone(), false)]).await.unwrap();
    let after_one = listing(kv, 10).await;
    let m = find(&after_one, "flaky");
    assert_eq!(m.id, id, "the id is stable across attempts");
    assert_eq!(
        (m.state, m.due_at_ms, m.attempts, m.backoff_ms.clone()),
        (QueueMessageState::Delayed, START_MS + 1_000, 1, vec![2_000])
    );
    assert_eq!(m.keys_if_undelivered.len(), 2);

    // Attempt 2 fails: waits 2 s, no interval left.
    clock.advance(Duration::from_millis(1_000));
    assert_eq!(find(&listing(kv, 10).await, "flaky").state, QueueMessageState::Ready);
    let taken = kv.queue_take(1, LEASE).await.unwrap();
    assert_eq!((taken.len(), taken[0].attempt), (1, 2));
    let running = listing(kv, 10).await;
    assert_eq!(
        (find(&running, "flaky").state, find(&running, "flaky").attempts),
        (QueueMessageState::Running, 2)
    );
    kv.queue_finish(vec![(id.clone(), false)]).await.unwrap();
    let after_two = listing(kv, 10).await;
    let m = find(&after_two, "flaky");
    assert_eq!((m.attempts, m.backoff_ms.is_empty()), (2, true));
    assert_eq!(m.due_at_ms, START_MS + 3_000);

    // Attempt 3, the last, fails: gone, and the payload is at the dead-letter keys.
    clock.advance(Duration::from_millis(2_000));
    let taken = kv.queue_take(1, LEASE).await.unwrap();
    assert_eq!(taken[0].attempt, 3);
    kv.queue_finish(vec![(id, false)]).await.unwrap();
    let end = listing(kv, 10).await;
    assert!(end.messages.iter().all(|m| text(m) != "flaky"), "{end:?}");
    assert_eq!(counts(&end), (0, 1, 0), "only the default-schedule message is left");
    let letter = kv.get(&dead).await.unwrap().expect("the dead letter");
    assert_eq!(letter.value.decode::<String>().unwrap(), "flaky");
}

/// Removing a waiting message deletes it; removing a running one deletes it too, and its
/// listener's later finish changes nothing: it never comes back, not after a failed finish,
/// not when its lease would have run out. An unknown id is `Ok(false)`.
pub async fn queue_remove_waiting_and_running(kv: &Kv, clock: &ManualClock) {
    enqueue(kv, "ready", EnqueueOptions::new()).await;
    let dead = key!["never written"];
    let options = delay(60_000).keys_if_undelivered([dead.clone()]).backoff_schedule([]);
    enqueue(kv, "delayed", options).await;
    let before = listing(kv, 10).await;
    let delayed_id = find(&before, "delayed").id.clone();

    assert!(kv.queue_change(&delayed_id, QueueChange::Remove).await.unwrap());
    let after = listing(kv, 10).await;
    assert_eq!(counts(&after), (1, 0, 0));
    assert_eq!(summary(&after).len(), 1);
    assert!(!kv.queue_change(&delayed_id, QueueChange::Remove).await.unwrap(), "gone already");

    let taken = kv.queue_take(10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1);
    let running_id = taken[0].id.clone();
    assert_eq!(counts(&listing(kv, 10).await), (0, 0, 1));
    assert!(kv.queue_change(&running_id, QueueChange::Remove).await.unwrap());
    let removed = listing(kv, 10).await;
    assert_eq!((counts(&removed), removed.messages.len()), ((0, 0, 0), 0));

    // The listener finishes its attempt afterwards, as failed: ignored, nothing requeued.
    kv.queue_finish(vec![(running_id.clone(), false)]).await.unwrap();
    kv.queue_finish(vec![(running_id.clone(), true)]).await.unwrap();
    assert_eq!(listing(kv, 10).await.total(), 0);
    // Past every backoff and lease: nothing to take, nothing due.
    clock.advance(Duration::from_secs(3_600));
    assert!(kv.queue_take(10, LEASE).await.unwrap().is_empty());
    assert_eq!(listing(kv, 10).await.total(), 0);
    assert_eq!(kv.get(&dead).await.unwrap(), None, "a removed message writes no dead letter");

    assert!(!kv.queue_change("no-such-message", QueueChange::Remove).await.unwrap());
    assert!(!kv.queue_change("no-such-message", QueueChange::DueNow).await.unwrap());
}

/// `DueNow` makes a delayed message due at the clock's now (taken at once, listeners woken),
/// leaves an already due one its earlier time, refuses a running one with a client error that
/// says it is in flight (changing nothing), and puts one whose lease ran out back in line.
pub async fn queue_due_now(kv: &Kv, clock: &ManualClock) {
    enqueue(kv, "in an hour", delay(3_600_000)).await;
    clock.advance(Duration::from_millis(5));
    assert!(kv.queue_take(10, LEASE).await.unwrap().is_empty(), "not due yet");
    let id = find(&listing(kv, 10).await, "in an hour").id.clone();

    let mut wakeup = kv.queue_wakeup().expect("a local backend wakes its listeners");
    wakeup.borrow_and_update();
    assert!(kv.queue_change(&id, QueueChange::DueNow).await.unwrap());
    assert!(wakeup.has_changed().unwrap(), "the listeners were woken");
    let due = listing(kv, 10).await;
    assert_eq!(counts(&due), (1, 0, 0));
    assert_eq!(summary(&due), [("in an hour".into(), QueueMessageState::Ready, START_MS + 5, 0)]);
    let taken = kv.queue_take(10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1, "taken at once");
    assert_eq!((taken[0].id.as_str(), taken[0].due_ms), (id.as_str(), START_MS + 5));

    // Running: refused, and nothing changed.
    let err = kv.queue_change(&id, QueueChange::DueNow).await.unwrap_err();
    assert!(matches!(&err, Error::QueueMessageInFlight { id: in_flight } if *in_flight == id));
    assert_eq!(err.class(), ErrorClass::Client);
    let still = listing(kv, 10).await;
    assert_eq!(counts(&still), (0, 0, 1));
    assert_eq!(still.messages[0].due_at_ms, START_MS + 5 + LEASE.as_millis() as i64);
    kv.queue_finish(vec![(id, true)]).await.unwrap();
    assert_eq!(listing(kv, 10).await.total(), 0);

    // Already due: keeps its earlier time (and its place in line).
    enqueue(kv, "due", EnqueueOptions::new()).await;
    let due_id = find(&listing(kv, 10).await, "due").id.clone();
    clock.advance(Duration::from_millis(7));
    assert!(kv.queue_change(&due_id, QueueChange::DueNow).await.unwrap());
    assert_eq!(find(&listing(kv, 10).await, "due").due_at_ms, START_MS + 5);

    // A lease that ran out: ready (its listener is presumed dead), due since the lease ended;
    // DueNow is no conflict then, and the next take delivers it again.
    let taken = kv.queue_take(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(taken.len(), 1);
    clock.advance(Duration::from_secs(2));
    let lapsed = listing(kv, 10).await;
    assert_eq!(counts(&lapsed), (1, 0, 0), "a lapsed lease is ready: {lapsed:?}");
    let m = find(&lapsed, "due");
    assert_eq!((m.state, m.due_at_ms, m.attempts), (QueueMessageState::Ready, START_MS + 1_012, 1));
    assert!(kv.queue_change(&due_id, QueueChange::DueNow).await.unwrap());
    let again = kv.queue_take(10, LEASE).await.unwrap();
    assert_eq!((again.len(), again[0].attempt), (1, 2), "delivered again: {again:?}");
}

/// On a backend without queue inspection (a KV Connect database): a client error saying so,
/// for both calls.
pub async fn queue_console_is_unsupported(kv: &Kv) {
    let listed = kv.queue_inspect(10).await.unwrap_err();
    assert!(matches!(listed, Error::Unsupported(_)), "{listed:?}");
    let changed = kv.queue_change("x", QueueChange::Remove).await.unwrap_err();
    assert!(matches!(changed, Error::Unsupported(_)), "{changed:?}");
    assert_eq!(changed.class(), ErrorClass::Client);
}
