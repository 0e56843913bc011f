//! The response-cache service: decides, per request, whether to answer
//! from storage, load through the cache, or step aside.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use parking_lot::Mutex;
use tower_service::Service;

use super::conditional::Conditions;
use super::fetch::{fetch, internal_error, Handoff, SharedSlot, Slot};
use super::key::{ResourceKey, VariantKey};
use super::policy::Directives;
use super::Core;
use crate::http::body::GuardedBody;

/// The future of [`ResponseCacheService`].
type CacheFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<GuardedBody<B>>, E>> + Send>>;

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
    type Future = CacheFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request; the
        // clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let core = Arc::clone(&self.core);
        Box::pin(serve(core, inner, request))
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

async fn serve<S, ReqBody, ResBody>(
    core: Arc<Core>,
    inner: S,
    request: Request<ReqBody>,
) -> Result<Response<GuardedBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Send + 'static,
{
    let head_only = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return pass(inner, request).await,
    };
    let directives = Directives::of(request.headers());
    if directives.no_store {
        return pass(inner, request).await;
    }
    let conditions = Conditions::of(request.headers());
    let key = variant_key(&core, &request);
    if head_only {
        // A HEAD is answered from a stored GET, never stored itself.
        return match core.entries.get(&key) {
            Some(stored) => Ok(stored.respond(core.clock.now(), &conditions, true)),
            None => pass(inner, request).await,
        };
    }
    let slot: SharedSlot<ReqBody, ResBody, S::Error> = Arc::new(Mutex::new(Slot::Request(request)));
    if directives.wants_origin() {
        let result = fetch(Arc::clone(&core), inner, Arc::clone(&slot), key).await;
        return settle(&core, &slot, result.ok(), &conditions);
    }
    let mut key = key;
    let mut first_try = true;
    loop {
        let loader = {
            let (core, inner, slot) = (Arc::clone(&core), inner.clone(), Arc::clone(&slot));
            move |key| fetch(core, inner, slot, key)
        };
        let loaded = core.entries.get_or_try_load_async(&key, loader).await;
        let handoff = take_handoff(&slot);
        match (loaded, handoff) {
            // Our load failed and the cache fell back to a stale entry:
            // serve it if the handler failed (stale-if-error), but a
            // response that is merely not shareable is the fresher answer.
            (Ok(stale), Some(Handoff::Answer { failed: true, .. })) | (Ok(stale), None) => {
                return Ok(stale.respond(core.clock.now(), &conditions, false));
            }
            (_, Some(handoff)) => return answer(&core, handoff, &conditions),
            (Err(_), None) => {}
        }
        // Our loader did not produce this result. If it never ran, the
        // request is still ours: the load we joined was not shareable, so
        // look again (its `Vary` may now be known), then call the handler.
        let request = match std::mem::replace(&mut *slot.lock(), Slot::Taken) {
            Slot::Request(request) => request,
            _ => return Ok(internal_error()),
        };
        if !first_try {
            return pass(inner, request).await;
        }
        first_try = false;
        key = variant_key(&core, &request);
        *slot.lock() = Slot::Request(request);
    }
}

/// The key of `request` with the `Vary` its resource is known to have.
fn variant_key<B>(core: &Core, request: &Request<B>) -> VariantKey {
    let resource = ResourceKey::of(request);
    match core.variants.get(&resource) {
        Some(vary) => VariantKey::new(resource, &vary, request.headers()),
        None => VariantKey::new(resource, &[], request.headers()),
    }
}

fn take_handoff<ReqBody, ResBody: Body, E>(
    slot: &SharedSlot<ReqBody, ResBody, E>,
) -> Option<Handoff<ResBody, E>> {
    let mut slot = slot.lock();
    if !matches!(*slot, Slot::Handoff(_)) {
        return None;
    }
    match std::mem::replace(&mut *slot, Slot::Taken) {
        Slot::Handoff(handoff) => Some(handoff),
        _ => None,
    }
}

fn answer<ResBody: Body, E>(
    core: &Core,
    handoff: Handoff<ResBody, E>,
    conditions: &Conditions,
) -> Result<Response<GuardedBody<ResBody>>, E> {
    match handoff {
        Handoff::Answer { result, .. } => *result,
        Handoff::Stored(stored) => Ok(stored.respond(core.clock.now(), conditions, false)),
    }
}

/// The answer to an uncoalesced load (a request that asked for the origin).
fn settle<ReqBody, ResBody: Body, E>(
    core: &Core,
    slot: &SharedSlot<ReqBody, ResBody, E>,
    stored: Option<Arc<super::StoredResponse>>,
    conditions: &Conditions,
) -> Result<Response<GuardedBody<ResBody>>, E> {
    if let Some(stored) = stored {
        return Ok(stored.respond(core.clock.now(), conditions, false));
    }
    match take_handoff(slot) {
        Some(handoff) => answer(core, handoff, conditions),
        None => Ok(internal_error()),
    }
}
