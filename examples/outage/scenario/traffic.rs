//! The traffic plan: every request of a run, when it is due, what it asks
//! for and who sends it. Both modes replay the same plan (same seed), so
//! the only difference between the two runs is the shop.
//!
//! * **Open loop**: arrivals are a Poisson process at the scheduled rate,
//!   whatever the shop does; a slow shop does not slow the crowd down (no
//!   coordinated omission).
//! * **Shape**: the baseline rate for the first fifth of the run, the sales
//!   event (baseline × spike) until four fifths, then the baseline again, so
//!   the report shows whether the shop recovers.
//! * **Shoppers**: 20,000 of them, each with its own address; they browse
//!   products (Zipf-popular, s = 0.9 over 10,000 products, the skew web
//!   caches see), the catalogue, static assets and search, and 5 % of their
//!   requests are checkouts.
//! * **Abusers**: during the event, 4 scrapers send 10 % of the peak rate
//!   between them, all to the search page (uncacheable and the database's
//!   most expensive query).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::Settings;

/// Distinct products in the shop.
pub const PRODUCTS: u32 = 10_000;
/// Zipf exponent of product popularity.
pub const ZIPF_S: f64 = 0.9;
/// Distinct shoppers (client addresses).
pub const SHOPPERS: u32 = 20_000;
/// Scrapers hammering the search page during the event.
pub const ABUSERS: u8 = 4;
/// Share of the peak rate the abusers send between them.
pub const ABUSIVE_SHARE: f64 = 0.10;
/// The event starts and ends at these fractions of the run.
pub const SPIKE_WINDOW: (f64, f64) = (0.2, 0.8);

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `GET /product/{id}`: one database read (cacheable).
    Product(u32),
    /// `GET /catalogue`: one heavier read, the same for everyone.
    Catalogue,
    /// `GET /static/{n}`: an asset from disk.
    Asset(u8),
    /// `GET /search?q={n}`: the most expensive query, never cacheable.
    Search(u32),
    /// `POST /checkout`: a write; the request that earns the money.
    Checkout,
}

/// The kinds of page, for per-kind figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// [`Page::Product`].
    Product,
    /// [`Page::Catalogue`].
    Catalogue,
    /// [`Page::Asset`].
    Asset,
    /// [`Page::Search`].
    Search,
    /// [`Page::Checkout`].
    Checkout,
}

impl Page {
    /// The request's path and query.
    pub fn path(self) -> String {
        match self {
            Page::Product(id) => format!("/product/{id}"),
            Page::Catalogue => "/catalogue".to_owned(),
            Page::Asset(n) => format!("/static/{n}.css"),
            Page::Search(term) => format!("/search?q={term}"),
            Page::Checkout => "/checkout".to_owned(),
        }
    }

    /// Checkout posts; everything else gets.
    pub fn is_post(self) -> bool {
        matches!(self, Page::Checkout)
    }

    /// The page's kind.
    pub fn kind(self) -> PageKind {
        match self {
            Page::Product(_) => PageKind::Product,
            Page::Catalogue => PageKind::Catalogue,
            Page::Asset(_) => PageKind::Asset,
            Page::Search(_) => PageKind::Search,
            Page::Checkout => PageKind::Checkout,
        }
    }
}

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// An ordinary shopper (10.x.y.z).
    Shopper(u32),
    /// A scraper (203.0.113.x, a documentation range).
    Abuser(u8),
}

impl Sender {
    /// The address the shop sees, sent in `X-Forwarded-For` as a load
    /// balancer in front of the shop would.
    pub fn address(self) -> IpAddr {
        match self {
            Sender::Shopper(n) => {
                let [_, a, b, c] = n.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(10, a, b, c))
            }
            Sender::Abuser(n) => IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)),
        }
    }
}

/// One request of the plan.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    /// When it is due, from the start of the run.
    pub at: Duration,
    /// What it asks for.
    pub page: Page,
    /// Who sends it.
    pub sender: Sender,
}

/// Which part of the run an instant falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the event.
    Baseline,
    /// The sales event.
    Spike,
    /// After it.
    Recovery,
}

/// The phase at `at` into a run of `settings`.
pub fn phase_at(settings: &Settings, at: Duration) -> Phase {
    let fraction = at.as_secs_f64() / settings.duration.as_secs_f64();
    if fraction < SPIKE_WINDOW.0 {
        Phase::Baseline
    } else if fraction < SPIKE_WINDOW.1 {
        Phase::Spike
    } else {
        Phase::Recovery
    }
}

/// The shoppers' scheduled rate at `at` (divided by the slowdown).
fn shopper_rate(settings: &Settings, at: Duration) -> f64 {
    let rate = match phase_at(settings, at) {
        Phase::Spike => settings.peak_rps() * (1.0 - ABUSIVE_SHARE),
        Phase::Baseline | Phase::Recovery => settings.baseline_rps,
    };
    rate / settings.slowdown
}

/// Every request of a run, in the order they are due.
pub fn plan(settings: &Settings) -> Vec<Planned> {
    let mut rng = SplitMix64(settings.seed);
    let zipf = Zipf::new(PRODUCTS, ZIPF_S);
    let end = settings.duration.as_secs_f64();
    let mut planned = Vec::new();

    let mut t = 0.0;
    loop {
        t += rng.exponential(shopper_rate(settings, Duration::from_secs_f64(t)));
        if t >= end {
            break;
        }
        let page = match rng.unit() {
            u if u < 0.55 => Page::Product(zipf.sample(rng.unit())),
            u if u < 0.65 => Page::Catalogue,
            u if u < 0.80 => Page::Asset((rng.next() % 20) as u8),
            u if u < 0.95 => Page::Search((rng.next() % 1_000_000) as u32),
            _ => Page::Checkout,
        };
        let sender = Sender::Shopper((rng.next() % u64::from(SHOPPERS)) as u32);
        planned.push(Planned {
            at: Duration::from_secs_f64(t),
            page,
            sender,
        });
    }

    let (from, to) = (SPIKE_WINDOW.0 * end, SPIKE_WINDOW.1 * end);
    let per_abuser = settings.peak_rps() * ABUSIVE_SHARE / f64::from(ABUSERS) / settings.slowdown;
    for abuser in 1..=ABUSERS {
        let mut t = from;
        loop {
            t += rng.exponential(per_abuser);
            if t >= to {
                break;
            }
            planned.push(Planned {
                at: Duration::from_secs_f64(t),
                page: Page::Search((rng.next() % 1_000_000) as u32),
                sender: Sender::Abuser(abuser),
            });
        }
    }
    planned.sort_by_key(|p| p.at);
    planned
}

/// Steele, Lea and Flood's SplitMix64: small, fast, and plenty for a
/// traffic plan.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential gap for a Poisson process of `rate` per second.
    fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

/// Zipf sampling by inverse transform over the cumulative weights.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: u32, s: f64) -> Self {
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (1..=n)
            .map(|rank| {
                total += 1.0 / f64::from(rank).powf(s);
                total
            })
            .collect();
        for c in &mut cumulative {
            *c /= total;
        }
        Zipf { cumulative }
    }

    /// The product for a uniform draw `u`; product 0 is the most popular.
    fn sample(&self, u: f64) -> u32 {
        let rank = self.cumulative.partition_point(|&c| c < u);
        rank.min(self.cumulative.len() - 1) as u32
    }
}
