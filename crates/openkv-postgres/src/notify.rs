//! The change feed across processes: every commit `NOTIFY`s the schema's channel; one
//! `LISTEN`ing connection per process turns the other processes' notifications into
//! [`ChangeEvent`]s and queue wake-ups.
//!
//! Payload: `<instance> <versionstamp hex> <q|-> <keys>`, where keys are the changed keys in
//! hex separated by `,`, or `*` when they would not fit PostgreSQL's 8000-byte payload limit
//! (an event with unknown keys: followers re-read). PostgreSQL delivers notifications in
//! commit order, after the commit.
//!
//! If the listening connection breaks, notifications may have been missed: after reconnecting,
//! the task publishes one unknown-keys event so that every watcher re-reads.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::backend::ChangeEvent;
use crate::error::Result;
use crate::shared::{pg_error, Shared};
use crate::versionstamp::Versionstamp;

/// Payloads longer than this carry `*` instead of keys (PostgreSQL's limit is 8000 bytes).
const MAX_PAYLOAD: usize = 7900;

/// The notification of a commit.
pub(super) fn encode(instance: &str, vs: Versionstamp, enqueued: bool, keys: &[Vec<u8>]) -> String {
    let mut out = format!("{instance} {} {} ", vs.to_hex(), if enqueued { 'q' } else { '-' });
    let room = MAX_PAYLOAD.saturating_sub(out.len());
    let size: usize = keys.iter().map(|k| k.len() * 2 + 1).sum();
    if size > room || keys.is_empty() {
        out.push('*');
    } else {
        let hex: Vec<String> = keys.iter().map(hex::encode).collect();
        out.push_str(&hex.join(","));
    }
    out
}

/// A decoded notification.
#[derive(Debug, PartialEq)]
pub(super) struct Notice {
    pub instance: String,
    pub event: ChangeEvent,
    pub enqueued: bool,
}

pub(super) fn decode(payload: &str) -> Option<Notice> {
    let mut parts = payload.splitn(4, ' ');
    let instance = parts.next()?.to_owned();
    let vs = hex::decode(parts.next()?).ok()?;
    let versionstamp = Versionstamp::from_slice(&vs).ok()?;
    let enqueued = parts.next()? == "q";
    let keys = match parts.next()? {
        "*" => Vec::new(),
        list => list.split(',').map(hex::decode).collect::<Result<Vec<_>, _>>().ok()?,
    };
    Some(Notice { instance, event: ChangeEvent { versionstamp, keys: keys.into() }, enqueued })
}

/// Starts listening (the first connection is made now, so that a server that refuses it
/// fails the open); the task reconnects for ever, with a pause, and logs why.
pub(super) async fn start(shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    let first = listen(&shared).await?;
    Ok(tokio::spawn(async move {
        let mut session = Some(first);
        loop {
            let Some((client, mut messages)) = session.take() else {
                match listen(&shared).await {
                    Ok(s) => {
                        session = Some(s);
                        // Notifications sent while we were away are lost: re-read everything.
                        let _ = shared.changes.send(ChangeEvent::unknown_keys(Versionstamp::ZERO));
                        shared.queue_wakeup.wake();
                    }
                    Err(e) => {
                        tracing::warn!("openkv: cannot listen for PostgreSQL changes: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            };
            while let Some(message) = messages.recv().await {
                let Some(notice) = decode(&message) else {
                    tracing::warn!("openkv: ignoring a malformed change notification {message:?}");
                    continue;
                };
                if notice.instance == shared.instance {
                    // Our own commit: the writer published it already.
                    continue;
                }
                if notice.enqueued {
                    shared.queue_wakeup.wake();
                }
                let _ = shared.changes.send(notice.event);
            }
            drop(client);
            tracing::warn!("openkv: the PostgreSQL change listener lost its connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

/// A connection that `LISTEN`s; its notifications' payloads arrive on the receiver, which
/// ends when the connection does.
async fn listen(
    shared: &Shared,
) -> Result<(tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>)> {
    let (client, mut connection) = shared
        .driver_config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| pg_error("connecting the change listener", e))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("openkv: the change listener's connection ended: {e}");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("listen \"{}\"", shared.sql.channel))
        .await
        .map_err(|e| pg_error("listening for changes", e))?;
    Ok((client, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_round_trip_and_overflow_to_unknown_keys() {
        let vs = Versionstamp::from_version(7);
        let keys = [vec![2, b'a', 0]];
        let n = decode(&encode("ab12", vs, true, &keys[..1])).unwrap();
        assert_eq!(n.instance, "ab12");
        assert!(n.enqueued);
        assert_eq!(n.event.versionstamp, vs);
        assert_eq!(&*n.event.keys, &keys[..1]);
        let big = vec![vec![1u8; 5000]];
        let n = decode(&encode("ab12", vs, false, &big)).unwrap();
        assert!(n.event.keys.is_empty(), "too long for a payload: unknown keys");
        assert!(!n.enqueued);
        assert_eq!(decode("garbage"), None);
        assert_eq!(decode("i zz - *"), None);
    }
}
