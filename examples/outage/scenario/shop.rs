//! The shop: the same handlers, served bare or behind surgeguard.
//!
//! | route | database | protected by |
//! |---|---|---|
//! | `GET /product/{id}` | `Query::Product` | an in-process product cache with single-flight loads, refresh-ahead and stale-if-error (the page itself is personalised, `private`) |
//! | `GET /catalogue` | `Query::Catalogue` | the HTTP response cache (`max-age=5`, then stale while one request revalidates) |
//! | `GET /static/{file}` | none (2 ms disk read) | the HTTP response cache (`max-age=3600`) |
//! | `GET /search?q=` | `Query::Search` | the shedder, as `Sheddable`: the first to go |
//! | `POST /checkout` | `Query::Checkout` | the shedder, as `Critical`: the last to go |
//!
//! Both shops serve `GET /metrics` (Prometheus text, through
//! `surgeguard::metrics::Reporter`). The unprotected shop runs the same
//! shedder in shadow mode: it refuses nothing, but its saturation signal
//! shows when it would have started to.
//!
//! Every request of the protected shop first passes two rate limits at once
//! (`AllOf`): 10 requests/s per client address (bursts of 20), read from
//! `X-Forwarded-For` because the shop sits behind a load balancer on
//! loopback, and 3,000 requests/s for the whole shop.
//!
//! **Why the shedder sits in front of the database, not around every
//! route.** The database is the resource that runs out. Cache hits cost
//! microseconds and need no admission; counted with database work they
//! would also blur the latency signal the adaptive limit learns from. So
//! every database query of the protected shop asks the shedder first (a
//! short queue absorbs bursts), and a refusal becomes a 503 with
//! `Retry-After`, or, for a product already cached, a stale page.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use surgeguard::cache::{Cache, CacheStats, LoadError};
use surgeguard::http::{ClientIp, ProxyHeader, RateLimitLayer, ResponseCacheLayer, TrustedProxies};
use surgeguard::limit::{AllOf, Gcra, Quota};
use surgeguard::metrics::{saturation, Reporter};
use surgeguard::shed::{AdaptiveLimit, Outcome, Priority, Rejected, ShedStats, Shedder};

use super::database::{Database, DatabaseDown, Query};
use super::Mode;

/// Per-client quota of the protected shop.
const PER_CLIENT_RPS: u32 = 10;
const PER_CLIENT_BURST: u32 = 20;
/// The whole shop's quota: what a load test showed it serves well.
const GLOBAL_RPS: u32 = 3_000;
const GLOBAL_BURST: u32 = 600;
/// How long a query may wait in the shedder's queue.
const QUEUE_DEADLINE: Duration = Duration::from_millis(250);

/// A check every checkout passes before it reaches the database: `None`
/// lets it through, `Some(wait)` refuses it with 429 and `Retry-After`. The
/// soak test puts a fleet-wide checkout limit kept in Redis here.
pub type CheckoutGate =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Duration>> + Send>> + Send + Sync>;

/// A shop listening on loopback.
pub struct RunningShop {
    /// Where it listens (127.0.0.1, an ephemeral port).
    pub address: SocketAddr,
    shop: Shop,
    /// The shedder's stats at the previous sample, for the saturation
    /// signal.
    last_sample: Mutex<ShedStats>,
}

/// What the shop's own parts saw, for the report.
#[derive(Clone, Debug)]
pub struct ShopStats {
    /// The product cache (protected only).
    pub products: Option<CacheStats>,
    /// The HTTP response cache (protected only).
    pub responses: Option<CacheStats>,
    /// The shedder (protected only).
    pub shed: Option<ShedStats>,
}

/// A reading of the shop's state while it runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShopSample {
    /// Queries waiting for a database connection.
    pub db_waiting: usize,
    /// The shedder's current concurrency limit (protected only).
    pub shed_limit: Option<u32>,
    /// `surgeguard_saturation` since the previous sample: the protected
    /// shop's shedder, or the unprotected shop's shadow one.
    pub saturation: f64,
}

impl RunningShop {
    /// Everything its caches and shedder counted.
    pub fn stats(&self) -> ShopStats {
        let guard = self.shop.protection.as_deref();
        ShopStats {
            products: guard.map(|g| g.products.stats()),
            responses: guard.map(|g| g.responses.stats()),
            shed: guard.map(|g| g.shedder.stats()),
        }
    }

    /// Database queries holding a shedder permit right now: zero once the
    /// traffic has drained, or a permit leaked.
    pub fn permits_in_use(&self) -> u32 {
        self.shop.shedder.in_flight()
    }

    /// Product loads in progress (protected shop): zero once the traffic
    /// has drained, or a load leaked.
    pub fn loads_in_flight(&self) -> usize {
        self.shop
            .protection
            .as_ref()
            .map_or(0, |guard| guard.products.loads_in_flight())
    }

    /// The shop's state right now.
    pub fn sample(&self) -> ShopSample {
        let now = self.shop.shedder.stats();
        let mut last = self.last_sample.lock().unwrap();
        let signal = saturation(&last, &now);
        *last = now;
        ShopSample {
            db_waiting: self.shop.db.waiting(),
            shed_limit: self.shop.protection.as_ref().map(|_| now.limit),
            saturation: signal,
        }
    }
}

/// Starts the shop for `mode` on 127.0.0.1 with an ephemeral port.
pub async fn start(mode: Mode, db: Database) -> std::io::Result<RunningShop> {
    start_with(mode, db, None, 1.0).await
}

/// As [`start`], with a gate in front of every checkout, and with rate
/// limits `slowdown` times slower and waits `slowdown` times longer, for a
/// database `slowdown` times slower (see `Settings::slowdown`).
pub async fn start_with(
    mode: Mode,
    db: Database,
    checkout_gate: Option<CheckoutGate>,
    slowdown: f64,
) -> std::io::Result<RunningShop> {
    start_on(mode, db, checkout_gate, slowdown, 0).await
}

/// As [`start_with`], on 127.0.0.1:`port` (0: an ephemeral port), for the
/// example's `--serve` mode, which runs a shop alone for a load test.
pub async fn start_on(
    mode: Mode,
    db: Database,
    checkout_gate: Option<CheckoutGate>,
    slowdown: f64,
    port: u16,
) -> std::io::Result<RunningShop> {
    let protection = match mode {
        Mode::Unprotected => None,
        Mode::Protected => Some(Arc::new(
            Protection::new(slowdown).map_err(std::io::Error::other)?,
        )),
    };
    // The unprotected shop runs the same shedder in shadow mode: it admits
    // everything, but its saturation signal shows what it would have done.
    let shedder = match &protection {
        Some(guard) => guard.shedder.clone(),
        None => database_shedder(true, slowdown).map_err(std::io::Error::other)?,
    };
    let shop = Shop {
        db,
        shedder,
        protection,
        checkout_gate,
    };
    let prometheus = prometheus();
    let mut reporter = Reporter::new().shedder(&format!("{mode}-database"), &shop.shedder);
    if let Some(guard) = &shop.protection {
        reporter = reporter.cache(&format!("{mode}-products"), &guard.products);
    }
    tokio::spawn(reporter.run(Duration::from_millis(250)));
    let routes = Router::new()
        .route(
            "/metrics",
            get(move || async move { prometheus.map_or_else(String::new, |p| p.render()) }),
        )
        .route("/product/{id}", get(product))
        .route("/catalogue", get(catalogue))
        .route("/static/{file}", get(asset))
        .route("/search", get(search))
        .route("/checkout", post(checkout))
        .with_state(shop.clone());
    let app = match &shop.protection {
        None => routes,
        Some(guard) => guard.wrap(routes)?,
    };

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, service).await {
            eprintln!("shop stopped: {error}");
        }
    });
    Ok(RunningShop {
        address,
        last_sample: Mutex::new(shop.shedder.stats()),
        shop,
    })
}

/// The process's Prometheus recorder, installed on first use (`None` if
/// another recorder was installed first).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// The shedder in front of the database. The database has 8 connections;
/// the limit learns how many queries may be in flight (waiting for a
/// connection included) before latency climbs, and never goes below 10, so
/// a fifth of it (2) stays reserved for checkouts. A short queue takes
/// bursts; a standing queue turns LIFO and fails stale requests fast.
/// (`slowdown`: the queue's deadline follows a slower database.)
fn database_shedder(shadow: bool, slowdown: f64) -> Result<Shedder, surgeguard::shed::BuildError> {
    let limits = SHEDDER_LIMITS.get().copied().unwrap_or_default();
    Shedder::builder()
        .limit(
            AdaptiveLimit::gradient()
                .min(limits.min)
                .initial(16)
                .max(limits.max),
        )
        .queue(limits.queue, limits.max_wait.mul_f64(slowdown))
        .shadow(shadow)
        .build()
}

/// The database shedder's Gradient bounds and queue, as the outage
/// example's `--shed-limit`, `--queue` and `--queue-wait-ms` flags set
/// them: to try settings a load test printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShedderLimits {
    /// The Gradient limit's `min`.
    pub min: u32,
    /// Its `max`.
    pub max: u32,
    /// The queue's capacity.
    pub queue: usize,
    /// The queue's `max_wait`.
    pub max_wait: Duration,
}

impl Default for ShedderLimits {
    fn default() -> Self {
        ShedderLimits {
            min: 10,
            max: 64,
            queue: 256,
            max_wait: QUEUE_DEADLINE,
        }
    }
}

/// Set once, before any shop starts, by the example's flags; unset, every
/// shop uses [`ShedderLimits::default`].
pub static SHEDDER_LIMITS: OnceLock<ShedderLimits> = OnceLock::new();

#[derive(Clone)]
struct Shop {
    db: Database,
    /// Protected: the shedder that refuses. Unprotected: a shadow one
    /// that only watches.
    shedder: Shedder,
    protection: Option<Arc<Protection>>,
    checkout_gate: Option<CheckoutGate>,
}

/// surgeguard's parts, shared by every request of the protected shop.
struct Protection {
    shedder: Shedder,
    products: Cache<u32, Arc<str>>,
    responses: ResponseCacheLayer,
    /// Rate limits run this many times slower.
    slowdown: f64,
}

impl Protection {
    fn new(slowdown: f64) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        // See database_shedder: a limit learnt from latency, never below
        // 10, a fifth of it kept for checkouts, and a short queue.
        let shedder = database_shedder(false, slowdown)?;
        // Product rows: hot ones are refreshed in the background before
        // they expire, so a popular product never misses; if the database
        // refuses, a row up to a minute old is better than an error page.
        let products = Cache::builder()
            .max_capacity(5_000)
            .time_to_live(Duration::from_secs(15))
            .refresh_after(Duration::from_secs(5))
            .stale_while_revalidate(Duration::from_secs(10))
            .stale_if_error(Duration::from_secs(60))
            .load_timeout(Duration::from_secs(2).mul_f64(slowdown))
            .build()?;
        let responses = ResponseCacheLayer::builder()
            .max_bytes(16 << 20)
            .stale_while_revalidate(Duration::from_secs(10))
            .stale_if_error(Duration::from_secs(60))
            .build()?;
        Ok(Protection {
            shedder,
            products,
            responses,
            slowdown,
        })
    }

    /// `count` requests a second with bursts of `burst`, in a world
    /// `slowdown` times slower: both divided by it (the run's phases last
    /// as long, so a burst spent over a phase is a k-th as many requests).
    fn quota(&self, count: u32, burst: u32) -> Result<Quota, surgeguard::limit::QuotaError> {
        let burst = (f64::from(burst) / self.slowdown).round().max(1.0) as u32;
        Quota::with_period(count, Duration::from_secs_f64(self.slowdown))?.burst(burst)
    }

    /// The layers a user adds to the router: rate limits outside (a
    /// refused request costs nothing else), the response cache inside.
    fn wrap(&self, routes: Router) -> std::io::Result<Router> {
        let invalid = |e: Box<dyn std::error::Error + Send + Sync>| std::io::Error::other(e);
        let per_client = Gcra::keyed(
            self.quota(PER_CLIENT_RPS, PER_CLIENT_BURST)
                .map_err(|e| invalid(e.into()))?,
        )
        .max_keys(100_000)
        .build()
        .map_err(|e| invalid(e.into()))?;
        let global = Gcra::direct(
            self.quota(GLOBAL_RPS, GLOBAL_BURST)
                .map_err(|e| invalid(e.into()))?,
        )
        .build()
        .map_err(|e| invalid(e.into()))?;
        // The per-client limit first: it is the one that denies most often,
        // so the global one rarely has to give a unit back.
        let limits =
            AllOf::new(per_client, |client: &std::net::IpAddr| *client).and(global, |_| ());
        // The load balancer (the crowd in `client.rs`) connects from
        // loopback and writes X-Forwarded-For, the one header read.
        let load_balancer = TrustedProxies::new(["127.0.0.1/32"]).map_err(|e| invalid(e.into()))?;
        let rate_limit = RateLimitLayer::new(limits)
            .key(ClientIp::behind(load_balancer, ProxyHeader::XForwardedFor))
            .policy_name("shop")
            .map_err(|e| invalid(e.into()))?;
        Ok(routes.layer(self.responses.clone()).layer(rate_limit))
    }
}

/// Why a query brought no row.
#[derive(Debug)]
enum QueryError {
    /// The shedder refused it.
    Shed(Rejected),
    /// The database is down (only in the soak test).
    Down,
}

impl QueryError {
    /// 503 with `Retry-After` either way: a shed request and a failed
    /// database both mean "try again shortly", and the response cache
    /// serves stale-if-error on both.
    fn response(&self) -> Response {
        match self {
            QueryError::Shed(rejected) => unavailable(rejected.retry_after()),
            QueryError::Down => unavailable(Duration::from_secs(1)),
        }
    }
}

impl Shop {
    /// Runs `query` through the shedder (which, in the unprotected shop,
    /// only watches).
    async fn query(&self, priority: Priority, query: Query) -> Result<String, QueryError> {
        let permit = self
            .shedder
            .acquire(priority)
            .await
            .map_err(QueryError::Shed)?;
        match self.db.query(query).await {
            Ok(row) => {
                permit.record(Outcome::Success);
                Ok(row)
            }
            // A database that refuses at once says nothing about how much
            // load it could take: the adaptive limit does not learn from it.
            Err(DatabaseDown) => {
                permit.record(Outcome::Ignore);
                Err(QueryError::Down)
            }
        }
    }
}

async fn product(State(shop): State<Shop>, Path(id): Path<u32>) -> Response {
    let private = [(header::CACHE_CONTROL, "private, max-age=10")];
    let Some(guard) = shop.protection.clone() else {
        return match shop.query(Priority::Normal, Query::Product(id)).await {
            Ok(row) => (private, format!("<h1>{row}</h1>")).into_response(),
            Err(error) => error.response(),
        };
    };
    let loaded = guard
        .products
        .get_or_try_load_async(&id, move |id| async move {
            shop.query(Priority::Normal, Query::Product(id))
                .await
                .map(Arc::from)
        })
        .await;
    match loaded {
        Ok(row) => (private, format!("<h1>{row}</h1>")).into_response(),
        Err(LoadError::Failed(error)) => error.response(),
        Err(_) => unavailable(Duration::from_secs(1)),
    }
}

async fn catalogue(State(shop): State<Shop>) -> Response {
    match shop.query(Priority::Normal, Query::Catalogue).await {
        Ok(row) => ([(header::CACHE_CONTROL, "max-age=5")], row).into_response(),
        Err(error) => error.response(),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    // A read from disk: no database, but not free either.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let body = format!("/* {file} */ body {{ margin: 0 }}\n");
    ([(header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

async fn search(State(shop): State<Shop>, uri: axum::http::Uri) -> Response {
    let term = uri
        .query()
        .and_then(|q| q.strip_prefix("q="))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    match shop.query(Priority::Sheddable, Query::Search(term)).await {
        Ok(row) => ([(header::CACHE_CONTROL, "no-store")], row).into_response(),
        Err(error) => error.response(),
    }
}

async fn checkout(State(shop): State<Shop>) -> Response {
    if let Some(gate) = &shop.checkout_gate {
        if let Some(wait) = gate().await {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "too many orders, try again\n",
            )
                .into_response();
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    match shop.query(Priority::Critical, Query::Checkout).await {
        Ok(row) => ([(header::CACHE_CONTROL, "no-store")], row).into_response(),
        Err(error) => error.response(),
    }
}

/// 503 with `Retry-After` in whole seconds (at least 1).
fn unavailable(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs().max(1);
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, "busy, try again shortly\n").into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
