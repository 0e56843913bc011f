//! The response-cache service: decides, per request, whether to answer
//! from storage, load through the cache, or step aside.
//!
//! The decision for a hit is made in `call`, with one lookup of a fresh
//! entry and no allocation but the answer's headers: the answer goes back
//! in a ready [`ResponseCacheFuture`]. Everything else that is cached (a
//! miss, a stale entry, a request for the origin) runs the boxed loading
//! path below, which goes through the cache's single flight.

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::conditional::Conditions;
use super::fetch::{fetch, internal_error, SharedSlot};
use super::future::ResponseCacheFuture;
use super::invalidate::{is_safe, Target};
use super::key::{ResourceKey, VariantKey};
use super::policy::Directives;
use super::revalidate::revalidate;
use super::slot::{Handoff, Slot};
use super::stored::StoredResponse;
use super::Core;
use crate::http::body::GuardedBody;

/// Loads one request may take part in before it calls the handler on its
/// own: its first, and one after learning its resource's `Vary`.
const MOST_LOADS: u32 = 2;

/// The service [`ResponseCacheLayer`](super::ResponseCacheLayer) makes.
/// Clones share the stored responses.
///
/// The inner service must be `Clone + Send + 'static` with a `Send`
/// future: a miss runs it inside the cache's load, a Tokio task of its own,
/// so a client that hangs up does not cancel the load the others wait for.
/// Bodies must be `Unpin` (axum's and hyper's are).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use surgeguard::http::ResponseCacheLayer;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// let layer = ResponseCacheLayer::builder().build()?;
/// let service = layer.layer(service_fn(|_: http::Request<()>| async {
///     let response = http::Response::builder()
///         .header("cache-control", "max-age=60")
///         .body(Full::new(Bytes::from("page")))?;
///     Ok::<_, http::Error>(response)
/// }));
/// let request = || http::Request::get("/page").body(()).unwrap();
/// service.clone().oneshot(request()).await?;
/// let hit = service.oneshot(request()).await?;
/// assert_eq!(hit.headers()["age"], "0");
/// assert_eq!(layer.stats().hits, 1);
/// # Ok(())
/// # }
/// ```
pub struct ResponseCacheService<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S> ResponseCacheService<S> {
    pub(super) fn new(inner: S, core: Arc<Core>) -> Self {
        ResponseCacheService { inner, core }
    }
}

impl<S: Clone> Clone for ResponseCacheService<S> {
    fn clone(&self) -> Self {
        ResponseCacheService {
            inner: self.inner.clone(),
            core: Arc::clone(&self.core),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ResponseCacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Send + 'static,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseCacheFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let head_only = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            ref method if is_safe(method) => {
                return ResponseCacheFuture::inner(self.inner.call(request))
            }
            _ => {
                let target = Target::of(&self.core, &request);
                return ResponseCacheFuture::invalidating(self.inner.call(request), target);
            }
        };
        let directives = Directives::of(request.headers());
        if directives.no_store {
            return ResponseCacheFuture::inner(self.inner.call(request));
        }
        let core = &*self.core;
        let conditions = Conditions::of(request.headers());
        let key = variant_key(core, &request);
        let found = core.entries.get(&key);
        if let Some(stored) = &found {
            let now = core.clock.now();
            if stored.satisfies(now, &directives) {
                return ResponseCacheFuture::ready(stored.respond(now, &conditions, head_only));
            }
            // Stored, but not fresh enough to answer as it is: not a hit.
            core.recounted_hits.fetch_add(1, Ordering::Relaxed);
        }
        if directives.only_if_cached && !head_only {
            // RFC 9111 §5.2.1.7: nothing stored that may answer.
            let mut response = Response::new(GuardedBody::empty());
            *response.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
            return ResponseCacheFuture::ready(response);
        }
        if head_only {
            // A HEAD is answered from a fresh stored GET, never stored itself.
            return ResponseCacheFuture::inner(self.inner.call(request));
        }
        let wants_origin = directives.wants_origin();
        if found.is_none() && !wants_origin {
            // The loading lookup counts this miss again.
            core.recounted_misses.fetch_add(1, Ordering::Relaxed);
        }
        // The service that was polled ready serves this request; the
        // clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let core = Arc::clone(&self.core);
        let slot = Slot::new(request);
        ResponseCacheFuture::loading(Box::pin(async move {
            match found {
                Some(stale) => {
                    revalidate(core, inner, slot, key, stale, conditions, wants_origin).await
                }
                None => {
                    let request = Pending {
                        slot,
                        key,
                        conditions,
                    };
                    if wants_origin {
                        refresh(core, inner, request).await
                    } else {
                        load(core, inner, request).await
                    }
                }
            }
        }))
    }
}

/// A request on the loading path.
struct Pending<ReqBody, ResBody: Body, E> {
    slot: SharedSlot<ReqBody, ResBody, E>,
    key: VariantKey,
    conditions: Conditions,
}

/// A request that asked for the origin (`no-cache`, `max-age=0`) with
/// nothing stored: one handler call of its own, whose answer may be
/// stored.
async fn refresh<S, ReqBody, ResBody>(
    core: Arc<Core>,
    inner: S,
    request: Pending<ReqBody, ResBody, S::Error>,
) -> Result<Response<GuardedBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
{
    let Pending {
        slot,
        key,
        conditions,
    } = request;
    let stored = fetch(Arc::clone(&core), inner, Arc::clone(&slot), key, None).await;
    if let Some(handoff) = slot.ended() {
        return answer(&core, handoff, None, &conditions);
    }
    if let Ok(stored) = stored {
        return Ok(stored.respond(core.clock.now(), &conditions, false));
    }
    match slot.ended() {
        Some(handoff) => answer(&core, handoff, None, &conditions),
        None => Ok(internal_error()),
    }
}

/// A miss: through the cache's loading, so that one handler call serves
/// every request for the key.
async fn load<S, ReqBody, ResBody>(
    core: Arc<Core>,
    inner: S,
    request: Pending<ReqBody, ResBody, S::Error>,
) -> Result<Response<GuardedBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Send + 'static,
{
    let Pending {
        slot,
        mut key,
        conditions,
    } = request;
    let mut looked_again = false;
    for _ in 0..MOST_LOADS {
        let loader = {
            let (core, inner, slot) = (Arc::clone(&core), inner.clone(), Arc::clone(&slot));
            move |key| fetch(core, inner, slot, key, None)
        };
        let loaded = core.entries.get_or_try_load_async(&key, loader).await;
        if let Some(handoff) = slot.ended() {
            return answer(&core, handoff, None, &conditions);
        }
        let now = core.clock.now();
        match loaded {
            Ok(stored) if stored.is_fresh(now) => {
                return Ok(stored.respond(now, &conditions, false));
            }
            Ok(stale) if !slot.is_taken() => {
                // Found stored after all (under the key its `Vary` gave),
                // but not fresh: revalidate it.
                return revalidate(core, inner, slot, key, stale, conditions, false).await;
            }
            Ok(_) | Err(_) => {}
        }
        if slot.is_taken() {
            // A loader of ours took the request: its outcome is the answer.
            return match slot.outcome().await {
                Some(handoff) => answer(&core, handoff, None, &conditions),
                None => Ok(internal_error()),
            };
        }
        // The load we joined ended without a result for us: it failed, or
        // its answer was not shareable. Our loader never ran, so the
        // request is still ours: look again once (its `Vary` may now be
        // known), then call the handler ourselves.
        let Some(recomputed) = slot.peek(|request| variant_key(&core, request)) else {
            return Ok(internal_error());
        };
        if looked_again {
            break;
        }
        looked_again = true;
        key = recomputed;
    }
    match slot.reclaim() {
        Some(request) => pass(inner, request).await,
        None => Ok(internal_error()),
    }
}

/// Calls `inner` with `request`, answer unchanged.
pub(crate) async fn pass<S, ReqBody, ResBody>(
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<GuardedBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    poll_fn(|cx| inner.poll_ready(cx)).await?;
    let response = inner.call(request).await?;
    Ok(response.map(GuardedBody::inner))
}

/// The key of `request` with the `Vary` its resource is known to have.
fn variant_key<B>(core: &Core, request: &Request<B>) -> VariantKey {
    let resource = ResourceKey::of(request, &core.hasher);
    if !core.varied.may_vary(&resource) {
        return VariantKey::whole(resource);
    }
    match core.variants.get(&resource) {
        Some(vary) => VariantKey::new(resource, &vary.names, request.headers()),
        None => VariantKey::whole(resource),
    }
}

/// The answer to a request whose own load ended with `handoff`. A failed
/// handler call may be answered with `stale`, within its stale-if-error.
pub(crate) fn answer<ResBody: Body, E>(
    core: &Core,
    handoff: Handoff<ResBody, E>,
    stale: Option<Arc<StoredResponse>>,
    conditions: &Conditions,
) -> Result<Response<GuardedBody<ResBody>>, E> {
    let now = core.clock.now();
    match handoff {
        Handoff::Stored(stored) => Ok(stored.respond(now, conditions, false)),
        Handoff::StoredWithCookies(stored, cookies) => {
            let mut response = stored.respond(now, conditions, false);
            for cookie in cookies {
                response
                    .headers_mut()
                    .append(http::header::SET_COOKIE, cookie);
            }
            Ok(response)
        }
        Handoff::Answer { result, failed } => {
            let stale = stale.filter(|stale| failed && stale.may_serve_on_error(now));
            match stale {
                Some(stale) => {
                    core.stale_served.fetch_add(1, Ordering::Relaxed);
                    Ok(stale.respond(now, conditions, false))
                }
                None => *result,
            }
        }
    }
}
