//! Going to the handler on a miss: call the inner service, buffer the body
//! up to the limit, and either store the response or hand it back to the
//! request it belongs to.
//!
//! Every caller puts its request in a [`Slot`] that only its own loaders
//! can reach. A response that may be shared is stored (with its own
//! time-to-live, through `insert_with_ttl`) and returned to every waiter,
//! and its caller's slot says so too ([`Handoff::Stored`]): a caller whose
//! loader became the cache's background reload finds its request's outcome
//! there. One that may not be shared (`private`, `Set-Cookie`, too large,
//! an error) goes back to its caller's slot as a [`Handoff::Answer`], and
//! the loader fails, so the cache shares nothing and falls back to a stale
//! entry within stale-if-error.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use super::conditional::Conditions;
use super::key::{vary_names, VariantKey};
use super::policy::{storable, Directives};
use super::slot::{Handoff, Running, Slot};
use super::stored::StoredResponse;
use super::Core;
use super::{date, fields, revalidate};
use crate::http::body::GuardedBody;

pub(crate) type SharedSlot<ReqBody, ResBody, E> = Arc<Slot<ReqBody, ResBody, E>>;

/// Why a load stored nothing; the caller's slot says more. `failed`: the
/// handler failed (an error, or 500, 502, 503, 504), so a stale response
/// may stand in within its stale-if-error; otherwise its answer was just
/// not shareable, and each waiter asks the handler itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotStored {
    pub(crate) failed: bool,
}

/// Runs the request in `slot` through `inner`; stores a shareable answer
/// under its variant of `key`'s resource. With `base`, a stored response
/// gone stale, the request is made conditional on its validators and a
/// `304` freshens it (RFC 9111 §4.3); see [`super::revalidate`].
pub(crate) async fn fetch<S, ReqBody, ResBody>(
    core: Arc<Core>,
    mut inner: S,
    slot: SharedSlot<ReqBody, ResBody, S::Error>,
    key: VariantKey,
    base: Option<Arc<StoredResponse>>,
) -> Result<Arc<StoredResponse>, NotStored>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
{
    // Another loader of this caller's took the request first.
    let (request, running) = slot.take().ok_or(NotStored { failed: false })?;
    // Before the handler sees the request: an unsafe request that
    // succeeds from here on may have changed what it answers.
    let invalidations = core.invalidations.count(&key.resource);
    if let Some(base) = &base {
        if let Some(current) = revalidate::already_replaced(&core, &key, base) {
            running.end(Handoff::Stored(Arc::clone(&current)));
            return Ok(current);
        }
    }
    let (mut parts, body) = request.into_parts();
    let request_headers = parts.headers.clone();
    if let Some(base) = &base {
        revalidate::make_conditional(&mut parts.headers, base);
    }
    let request = Request::from_parts(parts, body);
    let answer = match poll_fn(|cx| inner.poll_ready(cx)).await {
        Ok(()) => inner.call(request).await,
        Err(error) => Err(error),
    };
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            return hand_back(
                running,
                Handoff::Answer {
                    result: Box::new(Err(error)),
                    failed: true,
                },
            )
        }
    };
    let now = date::system_now();
    if let Some(base) = &base {
        if response.status() == StatusCode::NOT_MODIFIED {
            return revalidate::freshen(
                &core,
                running,
                &key,
                base,
                &request_headers,
                response,
                invalidations,
            );
        }
    }
    let failed = matches!(response.status().as_u16(), 500 | 502 | 503 | 504);
    let verdict = storable(
        &request_headers,
        response.status(),
        response.headers(),
        &core.rules,
        now,
    );
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let fits = declared.is_none_or(|length| length <= core.max_body_bytes as u64);
    if base.is_some() && !failed && !(verdict.is_some() && fits) {
        // A full answer that replaces the stored one without being stored
        // itself (RFC 9111 §4.3.3): the stale one is no longer the
        // resource's.
        drop(core.entries.remove(&key));
    }
    let (Some(verdict), true) = (verdict, fits) else {
        let result = Box::new(Ok(response.map(GuardedBody::inner)));
        return hand_back(running, Handoff::Answer { result, failed });
    };
    let (mut head, body) = response.into_parts();
    let body = match buffer(body, core.max_body_bytes).await {
        Buffered::Complete(bytes) => bytes,
        unfinished => {
            let result = Box::new(Ok(Response::from_parts(head, unfinished.into_body())));
            return hand_back(running, Handoff::Answer { result, failed });
        }
    };
    let Some(vary) = vary_names(&head.headers) else {
        let result = Box::new(Ok(Response::from_parts(head, GuardedBody::full(body))));
        return hand_back(running, Handoff::Answer { result, failed });
    };
    let cookies: Vec<http::HeaderValue> =
        head.headers.get_all(SET_COOKIE).iter().cloned().collect();
    let directives = Directives::of(&head.headers);
    fields::trim_for_storage(&mut head.headers, &directives, core.rules.shared);
    let stored = Arc::new(StoredResponse::new(head, body, core.clock.now(), &verdict));
    let variant = VariantKey::new(key.resource.clone(), &vary, &request_headers);
    if !core.remember_variant(&variant, vary) {
        let result = Box::new(Ok(stored.respond(
            core.clock.now(),
            &Conditions::default(),
            false,
        )));
        return hand_back(running, Handoff::Answer { result, failed });
    }
    // Storing here, with the response's own lifetime, supersedes the
    // cache's flight for `key`: its waiters still get `stored`, and the
    // flight does not store it again with the cache's default lifetime
    // (nor when `store` took it out again after an invalidation).
    core.store(&variant, &stored, verdict.time_to_live(), invalidations);
    if base.is_some() {
        // The revalidation's flight stores nothing of its own.
        drop(core.revalidations.remove(&key));
    }
    let same_key = variant == key;
    running.end(if cookies.is_empty() {
        Handoff::Stored(Arc::clone(&stored))
    } else {
        Handoff::StoredWithCookies(Arc::clone(&stored), cookies)
    });
    if same_key {
        Ok(stored)
    } else {
        Err(NotStored { failed: false })
    }
}

/// Gives the caller its answer, not shared: the load fails.
pub(crate) fn hand_back<ReqBody, ResBody: Body, E>(
    running: Running<ReqBody, ResBody, E>,
    handoff: Handoff<ResBody, E>,
) -> Result<Arc<StoredResponse>, NotStored> {
    let failed = matches!(handoff, Handoff::Answer { failed: true, .. });
    running.end(handoff);
    Err(NotStored { failed })
}

/// A body read as far as the limit allows.
enum Buffered<B: Body> {
    Complete(Bytes),
    /// Over the limit: what was read, then the rest unread.
    TooLarge(Bytes, B),
    /// Ended with trailers (not stored: rare, and a cache that drops them
    /// would change the response).
    WithTrailers(Bytes, http::HeaderMap),
    Failed(Bytes, B::Error),
}

impl<B: Body> Buffered<B> {
    fn into_body(self) -> GuardedBody<B> {
        match self {
            Buffered::Complete(bytes) => GuardedBody::full(bytes),
            Buffered::TooLarge(prefix, rest) => GuardedBody::prefixed(prefix, rest),
            Buffered::WithTrailers(bytes, trailers) => {
                GuardedBody::full_with_trailers(bytes, Some(trailers))
            }
            Buffered::Failed(prefix, error) => GuardedBody::failed(prefix, error),
        }
    }
}

async fn buffer<B>(mut body: B, limit: usize) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut collected = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Buffered::Complete(collected.freeze()),
            Some(Err(error)) => return Buffered::Failed(collected.freeze(), error),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    collected.extend_from_slice(&data);
                    if collected.len() > limit {
                        return Buffered::TooLarge(collected.freeze(), body);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Buffered::WithTrailers(collected.freeze(), trailers);
                    }
                }
            },
        }
    }
}

/// The answer when the load failed without a result of its own (the
/// handler panicked).
pub(crate) fn internal_error<B: Body>() -> Response<GuardedBody<B>> {
    let mut response = Response::new(GuardedBody::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
