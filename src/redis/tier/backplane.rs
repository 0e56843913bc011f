//! The backplane: one pub/sub subscription per instance, on which every
//! `insert` and `invalidate` of the fleet is announced.
//!
//! Redis pub/sub delivers at most once: a message published while this
//! instance is not subscribed is gone. So the listener is told
//! [`Invalidation::All`] each time the subscription is made, the first
//! time included (the cache may have stored values between being built and
//! the subscription), and the local tier drops everything it may have
//! missed news of.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use crate::cache::tier::Invalidation;

/// The cache's listener, held weakly: a dropped cache is not kept alive
/// (its whole local tier with it) by the tier it was built on.
pub(super) type WeakListener = Weak<dyn Fn(Invalidation<'_>) + Send + Sync>;

/// The first wait before subscribing again after a failure, doubling to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A message is this instance's id (8 bytes, big-endian) and the key.
pub(super) fn message(instance: u64, key: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + key.len());
    message.extend_from_slice(&instance.to_be_bytes());
    message.extend_from_slice(key);
    message
}

/// Which messages are this listener's own.
pub(super) struct Me {
    /// The tier's id, which its messages carry.
    pub(super) instance: u64,
    /// How many caches the tier serves: with one, a message carrying the
    /// tier's id is that cache's own write and is skipped; with more, it
    /// may be another cache's, and is heard.
    pub(super) caches: Arc<AtomicUsize>,
}

impl Me {
    fn wrote(&self, sender: u64) -> bool {
        sender == self.instance && self.caches.load(Ordering::Acquire) == 1
    }
}

/// Listens on `channel` until aborted or the cache is gone, calling
/// `listener` for each key another instance (or another cache on this
/// tier) announced.
pub(super) async fn listen(
    client: redis::Client,
    channel: String,
    me: Me,
    timeout: Duration,
    listener: WeakListener,
    subscriptions: Arc<AtomicU64>,
) {
    let mut retry = FIRST_RETRY;
    while listener.strong_count() > 0 {
        match subscribe(&client, &channel, timeout).await {
            Some(pubsub) => {
                let Some(heard) = listener.upgrade() else {
                    break;
                };
                heard(Invalidation::All);
                drop(heard);
                // Counted after the local tier was dropped: whoever waits
                // for the backplane may store from now on.
                subscriptions.fetch_add(1, Ordering::Release);
                retry = FIRST_RETRY;
                if !hear(pubsub, &me, &listener).await {
                    break;
                }
                tracing::warn!(%channel, "cache backplane lost; local copies dropped on reconnect");
            }
            None => tracing::debug!(%channel, "cache backplane: cannot subscribe yet"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
    // The cache is gone: one cache fewer hears this tier's messages.
    me.caches.fetch_sub(1, Ordering::AcqRel);
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> Option<redis::aio::PubSub> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    // Subscribing is not on any request's path: allow it longer than one
    // call, but never forever.
    match tokio::time::timeout(timeout.max(Duration::from_secs(1)), connect).await {
        Ok(Ok(pubsub)) => Some(pubsub),
        _ => None,
    }
}

/// Hears messages until the subscription ends (`true`) or the cache is
/// gone (`false`).
async fn hear(pubsub: redis::aio::PubSub, me: &Me, listener: &WeakListener) -> bool {
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Some(heard) = listener.upgrade() else {
            return false;
        };
        let payload = message.get_payload_bytes();
        let Some((sender, key)) = payload.split_first_chunk::<8>() else {
            continue;
        };
        if !me.wrote(u64::from_be_bytes(*sender)) {
            heard(Invalidation::Key(key));
        }
    }
    true
}
