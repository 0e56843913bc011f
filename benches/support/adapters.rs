//! One small trait over the caches under comparison, so every driver loop
//! (bench, replay, memory probe) is written once and monomorphised per cache:
//! no dynamic dispatch on the measured path.
//!
//! Every cache is built with its crate's defaults and only a capacity in
//! entries, so the comparison is of defaults, not of tuning.

/// `u64 -> u64` cache as the benches drive it.
pub trait ConcurrentCache: Send + Sync {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
    /// Entries resident now (after [`ConcurrentCache::sync`] for caches that
    /// apply their policy lazily).
    fn len(&self) -> usize;
    /// Applies pending policy work. Only moka defers work (its read and write
    /// logs are drained by `run_pending_tasks`); for the others this is a no-op.
    fn sync(&self) {}
}

/// The caches the benches compare, by the names used in reports and on the
/// command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Surgeguard,
    Moka,
    QuickCache,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Surgeguard, Kind::Moka, Kind::QuickCache];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Surgeguard => "surgeguard",
            Kind::Moka => "moka",
            Kind::QuickCache => "quick_cache",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

pub type Surgeguard = surgeguard::cache::Cache<u64, u64>;
pub type Moka = moka::sync::Cache<u64, u64>;
pub type QuickCache = quick_cache::sync::Cache<u64, u64>;

pub fn surgeguard(capacity: usize) -> Surgeguard {
    surgeguard::cache::Cache::builder()
        .max_capacity(capacity as u64)
        .build()
        .expect("a positive capacity is a valid surgeguard configuration")
}

pub fn moka(capacity: usize) -> Moka {
    moka::sync::Cache::new(capacity as u64)
}

pub fn quick_cache(capacity: usize) -> QuickCache {
    quick_cache::sync::Cache::new(capacity)
}

impl ConcurrentCache for Surgeguard {
    fn get(&self, key: u64) -> Option<u64> {
        surgeguard::cache::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        surgeguard::cache::Cache::insert(self, key, value);
    }
    fn len(&self) -> usize {
        surgeguard::cache::Cache::len(self)
    }
}

impl ConcurrentCache for Moka {
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
    fn len(&self) -> usize {
        self.entry_count() as usize
    }
    fn sync(&self) {
        self.run_pending_tasks();
    }
}

impl ConcurrentCache for QuickCache {
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
    fn len(&self) -> usize {
        quick_cache::sync::Cache::len(self)
    }
}
