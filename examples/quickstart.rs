//! A product-page cache in front of a slow "database".
//!
//! `cargo run --release --example quickstart`
//!
//! Serves 200,000 Zipf-popular product requests through a 1,000-entry cache
//! and prints how many reached the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use surgeguard::cache::Cache;

#[derive(Debug)]
struct Product {
    id: u64,
    title: String,
}

/// Stands in for a database query.
fn fetch_from_database(id: u64) -> Product {
    Product {
        id,
        title: format!("product #{id}"),
    }
}

/// Product ids with a Zipf-like popularity: a few products get most views.
fn popular_ids(count: usize, catalogue: u64) -> impl Iterator<Item = u64> {
    let mut state = 0x853C_49E6_748F_EA9B_u64;
    (0..count).map(move |_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
        // Inverse of the continuous Zipf(1) CDF over [1, catalogue].
        (catalogue as f64).powf(uniform) as u64
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache: Cache<u64, Arc<Product>> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_secs(60))
        .build()?;

    let started = Instant::now();
    let mut database_queries = 0u64;
    for id in popular_ids(200_000, 100_000) {
        let product = match cache.get(&id) {
            Some(product) => product,
            None => {
                database_queries += 1;
                let product = Arc::new(fetch_from_database(id));
                cache.insert(id, Arc::clone(&product));
                product
            }
        };
        debug_assert_eq!(product.id, id);
    }
    let stats = cache.stats();
    println!("requests:          200000");
    println!("database queries:  {database_queries}");
    println!("cache hit ratio:   {:.1} %", 100.0 * stats.hit_ratio());
    println!("entries cached:    {} of {}", cache.len(), cache.capacity());
    println!("evictions:         {}", stats.evictions);
    println!("elapsed:           {:?}", started.elapsed());
    if let Some(product) = cache.get(&1) {
        println!("most popular:      {}", product.title);
    }
    Ok(())
}
