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
use super::key::{ResourceKey, VariantKey};
use super::policy::Directives;
use super::slot::{Handoff, Slot};
use super::stale::may_answer;
use super::stored::StoredResponse;
use super::Core;
use crate::http::body::GuardedBody;

/// Loads one request may take part in before it calls the handler on its
/// own: its first, one after learning its resource's `Vary`, one after
/// setting aside an entry past its windows.
const MOST_LOADS: u32 = 3;

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
            _ => return ResponseCacheFuture::inner(self.inner.call(request)),
        };
        let directives = Directives::of(request.headers());
        if directives.no_store {
            return ResponseCacheFuture::inner(self.inner.call(request));
        }
        let core = &*self.core;
        let conditions = Conditions::of(request.headers());
        let key = variant_key(core, &request);
        let wants_origin = directives.wants_origin();
        if head_only || !wants_origin {
            if let Some(stored) = core.entries.get(&key) {
                return ResponseCacheFuture::ready(stored.respond(
                    core.clock.now(),
                    &conditions,
                    head_only,
                ));
            }
        }
        if head_only {
            // A HEAD is answered from a fresh stored GET, never stored itself.
            return ResponseCacheFuture::inner(self.inner.call(request));
        }
        if !wants_origin {
            // The loading lookup counts this miss again.
            core.recounted_misses.fetch_add(1, Ordering::Relaxed);
        }
        // The service that was polled ready serves this request; the
        // clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let core = Arc::clone(&self.core);
        let request = Pending {
            slot: Slot::new(request),
            key,
            conditions,
        };
        ResponseCacheFuture::loading(Box::pin(async move {
            if wants_origin {
                refresh(core, inner, request).await
            } else {
                load(core, inner, request).await
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

/// A request that asked for the origin (`no-cache`, `max-age=0`): one
/// handler call of its own, whose answer may refresh what is stored.
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
    let stored = fetch(Arc::clone(&core), inner, Arc::clone(&slot), key).await;
    if let Ok(stored) = stored {
        return Ok(stored.respond(core.clock.now(), &conditions, false));
    }
    match slot.ended() {
        Some(handoff) => answer(&core, handoff, None, &conditions),
        None => Ok(internal_error()),
    }
}

/// A miss or a stale entry: through the cache's loading, so that one
/// handler call serves every request for the key.
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
    // A stored response past its own windows, set aside for stale-if-error
    // while the load it asked for runs.
    let mut set_aside: Option<Arc<StoredResponse>> = None;
    let mut looked_again = false;
    for _ in 0..MOST_LOADS {
        let loader = {
            let (core, inner, slot) = (Arc::clone(&core), inner.clone(), Arc::clone(&slot));
            move |key| fetch(core, inner, slot, key)
        };
        let loaded = core.entries.get_or_try_load_async(&key, loader).await;
        if let Some(handoff) = slot.ended() {
            // Our own request's outcome; on a failure, the entry the cache
            // fell back to (or the one set aside) may stand in for it.
            let stale = loaded.ok().or(set_aside);
            return answer(&core, handoff, stale, &conditions);
        }
        let now = core.clock.now();
        let stale = match loaded {
            Ok(stored) if may_answer(&stored, now, core.stale_limits, false) => {
                return Ok(stored.respond(now, &conditions, false));
            }
            Ok(stored) => Some(stored),
            Err(_) => None,
        };
        if slot.is_taken() {
            // A loader of ours took the request (the reload behind that
            // stale answer, say): its outcome is the answer.
            let stale = stale.or(set_aside);
            return match slot.outcome().await {
                Some(handoff) => answer(&core, handoff, stale, &conditions),
                None => Ok(internal_error()),
            };
        }
        if let Some(stored) = stale {
            // Past its own windows, though within the layer's: make the
            // cache count it missing, so this request joins (or starts)
            // the one load of it; keep it for stale-if-error.
            if let Some(fresher) = core.entries.remove(&key) {
                // A replacement landed meanwhile: put it back, serve it.
                let left = fresher.freshness_left(now);
                core.entries
                    .insert_with_ttl(key.clone(), Arc::clone(&fresher), left);
                return Ok(fresher.respond(now, &conditions, false));
            }
            set_aside = Some(stored);
            continue;
        }
        // The load we joined ended without a result for us: it failed, or
        // its answer was not shareable.
        if let Some(stale) = &set_aside {
            if may_answer(stale, now, core.stale_limits, true) {
                return Ok(stale.respond(now, &conditions, false));
            }
        }
        // Our loader never ran, so the request is still ours: look again
        // once (its `Vary` may now be known), then call the handler
        // ourselves.
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
async fn pass<S, ReqBody, ResBody>(
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
        Some(vary) => VariantKey::new(resource, &vary, request.headers()),
        None => VariantKey::whole(resource),
    }
}

/// The answer to a request whose own load ended with `handoff`. A failed
/// handler call may be answered with `stale`, within its stale-if-error.
fn answer<ResBody: Body, E>(
    core: &Core,
    handoff: Handoff<ResBody, E>,
    stale: Option<Arc<StoredResponse>>,
    conditions: &Conditions,
) -> Result<Response<GuardedBody<ResBody>>, E> {
    let now = core.clock.now();
    match handoff {
        Handoff::Stored(stored) => Ok(stored.respond(now, conditions, false)),
        Handoff::Answer { result, failed } => {
            let stale =
                stale.filter(|stale| failed && may_answer(stale, now, core.stale_limits, true));
            match stale {
                Some(stale) => Ok(stale.respond(now, conditions, false)),
                None => *result,
            }
        }
    }
}
