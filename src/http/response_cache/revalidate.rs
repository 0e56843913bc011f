//! Revalidation (RFC 9111 §4.3): a stored response that may not answer as
//! it is (stale, `no-cache`, or a request that asks for the origin's word)
//! is checked with the handler by a conditional request instead of being
//! fetched again in full.
//!
//! * The request to the handler carries `If-None-Match` with the stored
//!   `ETag` and `If-Modified-Since` with its `Last-Modified` (§4.3.1);
//!   conditions the client sent are taken off, since the layer answers
//!   them itself from what it then holds.
//! * A `304` freshens the stored response: its fields replace the stored
//!   ones (§3.2, §4.3.4), the body stays, and the result is stored again
//!   under the freshness it now has. Any other answer is a full response
//!   and is handled as on a miss (§4.3.3).
//! * The requests for one stale entry share one revalidation: they go
//!   through the single flight of a second cache, `revalidations`, which
//!   never holds a value (the loader stores into the response cache and
//!   removes its own key before it ends), so a storm for a stale key makes
//!   one conditional request. The stale entry stays in the response cache
//!   meanwhile, for stale-while-revalidate and stale-if-error answers.
//!   A request that saw the entry stale just before a revalidation ended
//!   starts a flight of its own, whose loader finds the entry replaced and
//!   returns that without calling the handler.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::conditional::Conditions;
use super::fetch::{fetch, hand_back, internal_error, NotStored, SharedSlot};
use super::key::VariantKey;
use super::policy::{storable, Directives};
use super::service::{answer, pass};
use super::slot::{Handoff, Running};
use super::stored::StoredResponse;
use super::{date, fields, Core};
use crate::cache::LoadError;
use crate::http::body::GuardedBody;

/// The entry under `key` when it is no longer `base`: another request
/// revalidated or replaced it since this one looked.
pub(crate) fn already_replaced(
    core: &Core,
    key: &VariantKey,
    base: &Arc<StoredResponse>,
) -> Option<Arc<StoredResponse>> {
    let current = core.entries.get(key)?;
    if Arc::ptr_eq(&current, base) {
        return None;
    }
    drop(core.revalidations.remove(key));
    Some(current)
}

/// Makes `headers` (a client's request) the conditional request that
/// revalidates `base`.
pub(crate) fn make_conditional(headers: &mut HeaderMap, base: &StoredResponse) {
    for name in [
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ] {
        headers.remove(name);
    }
    let (etag, last_modified) = base.validators();
    if let Some(etag) = etag {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(last_modified) = last_modified {
        headers.insert(IF_MODIFIED_SINCE, last_modified.clone());
    }
}

/// A `304` for `base`: stores `base` freshened with its fields, or, if
/// they now forbid storing, hands the freshened response to its caller.
/// `invalidations`: the resource's count when the conditional request
/// went out (an invalidation since then keeps the freshened response
/// from being stored, see `invalidate.rs`).
pub(crate) fn freshen<ReqBody, ResBody, E>(
    core: &Core,
    running: Running<ReqBody, ResBody, E>,
    key: &VariantKey,
    base: &StoredResponse,
    request_headers: &HeaderMap,
    not_modified: Response<ResBody>,
    invalidations: u64,
) -> Result<Arc<StoredResponse>, NotStored>
where
    ResBody: Body<Data = Bytes>,
{
    let (status, version, stored_headers) = base.head();
    let mut headers = fields::freshen(stored_headers, not_modified.headers());
    drop(not_modified);
    let directives = Directives::of(&headers);
    fields::trim_for_storage(&mut headers, &directives, core.rules.shared);
    let verdict = storable(
        request_headers,
        status,
        &headers,
        &core.rules,
        date::system_now(),
    );
    drop(core.revalidations.remove(key));
    let Some(verdict) = verdict else {
        drop(core.entries.remove(key));
        let mut response = Response::new(GuardedBody::full(base.body()));
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return hand_back(
            running,
            Handoff::Answer {
                result: Box::new(Ok(response)),
                failed: false,
            },
        );
    };
    let fresh = Arc::new(base.freshened(headers, core.clock.now(), &verdict));
    core.store(key, &fresh, verdict.time_to_live(), invalidations);
    running.end(Handoff::Stored(Arc::clone(&fresh)));
    Ok(fresh)
}

/// Answers a request for `key` whose stored response `stale` may not
/// answer as it is: at once within its stale-while-revalidate (one
/// revalidation behind), else after the one revalidation of it, or with
/// `stale` itself within its stale-if-error when the handler fails.
pub(crate) async fn revalidate<S, ReqBody, ResBody>(
    core: Arc<Core>,
    inner: S,
    slot: SharedSlot<ReqBody, ResBody, S::Error>,
    key: VariantKey,
    stale: Arc<StoredResponse>,
    conditions: Conditions,
    wants_origin: bool,
) -> Result<Response<GuardedBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Send + 'static,
{
    let loader = {
        let (core, inner, slot, base) = (
            Arc::clone(&core),
            inner.clone(),
            Arc::clone(&slot),
            Arc::clone(&stale),
        );
        move |key| fetch(core, inner, slot, key, Some(base))
    };
    let now = core.clock.now();
    if !wants_origin && stale.may_serve_while_revalidating(now) {
        let behind = Arc::clone(&core);
        tokio::spawn(async move {
            let revalidated = behind
                .revalidations
                .get_or_try_load_async(&key, loader)
                .await;
            drop(revalidated);
        });
        core.stale_served.fetch_add(1, Ordering::Relaxed);
        return Ok(stale.respond(now, &conditions, false));
    }
    let revalidated = core.revalidations.get_or_try_load_async(&key, loader).await;
    if let Some(handoff) = slot.ended() {
        return answer(&core, handoff, Some(stale), &conditions);
    }
    let now = core.clock.now();
    let failed = match revalidated {
        Ok(fresh) => return Ok(fresh.respond(now, &conditions, false)),
        Err(LoadError::Failed(why)) => why.failed,
        Err(_) => true,
    };
    if failed && stale.may_serve_on_error(now) {
        core.stale_served.fetch_add(1, Ordering::Relaxed);
        return Ok(stale.respond(now, &conditions, false));
    }
    // The revalidation this request joined was not shareable, or failed
    // with nothing to stand in: the handler answers this request itself.
    match slot.reclaim() {
        Some(request) => pass(inner, request).await,
        None => Ok(internal_error()),
    }
}
