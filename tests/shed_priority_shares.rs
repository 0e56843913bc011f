//! The share of the limit each priority may use, measured from the outside
//! (fill the shedder with one priority until it refuses) at every limit
//! from 1 to 20 and at a few larger ones, against the table and the rule
//! the `shed` module documents ("Priorities at small limits").

use surgeguard::clock::ManualClock;
use surgeguard::shed::{Permit, Priority, Shedder};

/// How many requests of each priority the shedder admits, counted from
/// empty and in turn (Sheddable, then Normal on top, then Critical on top):
/// the cap of each, as `[critical, normal, sheddable]`.
fn measured_caps(shedder: &Shedder) -> [u32; 3] {
    let mut held: Vec<Permit> = Vec::new();
    let mut caps = [0; 3];
    for (cap, priority) in
        caps.iter_mut()
            .rev()
            .zip([Priority::Sheddable, Priority::Normal, Priority::Critical])
    {
        while let Ok(permit) = shedder.try_acquire(priority) {
            held.push(permit);
            assert!(held.len() <= 1_000_000, "no cap for {priority:?}");
        }
        *cap = held.len() as u32;
    }
    caps
}

fn with_defaults(limit: u32) -> Shedder {
    Shedder::builder()
        .max_concurrency(limit)
        .clock(ManualClock::new())
        .build()
        .unwrap()
}

/// The module documentation's table (default shares: 20 % reserved for
/// Critical, a further 10 % left by Sheddable), `(limit, normal, sheddable)`.
const DOCUMENTED: [(u32, u32, u32); 24] = [
    (1, 1, 1),
    (2, 1, 1),
    (3, 2, 1),
    (4, 3, 2),
    (5, 4, 3),
    (6, 5, 4),
    (7, 6, 5),
    (8, 7, 6),
    (9, 8, 7),
    (10, 8, 7),
    (11, 9, 8),
    (12, 10, 9),
    (13, 11, 10),
    (14, 12, 10),
    (15, 12, 11),
    (16, 13, 12),
    (17, 14, 12),
    (18, 15, 13),
    (19, 16, 14),
    (20, 16, 14),
    (50, 40, 35),
    (64, 52, 45),
    (100, 80, 70),
    (1_000, 800, 700),
];

#[test]
fn the_default_shares_match_the_documented_table() {
    for (limit, normal, sheddable) in DOCUMENTED {
        assert_eq!(
            measured_caps(&with_defaults(limit)),
            [limit, normal, sheddable],
            "limit {limit}: [critical, normal, sheddable]"
        );
    }
}

#[test]
fn small_limits_keep_a_slot_for_critical_and_less_for_sheddable() {
    let mut previous = [0; 3];
    for limit in 1..=20 {
        let [critical, normal, sheddable] = measured_caps(&with_defaults(limit));
        assert_eq!(critical, limit, "Critical may use the whole limit");
        assert!(sheddable >= 1, "limit {limit}: every priority gets a slot");
        assert!(sheddable <= normal && normal <= critical, "limit {limit}");
        if limit >= 2 {
            assert!(
                normal < critical,
                "limit {limit}: Critical keeps a slot Normal cannot take"
            );
        }
        if limit >= 3 {
            assert!(
                sheddable < normal,
                "limit {limit}: Sheddable gets strictly less than Normal"
            );
        }
        // No more is reserved than the nominal share, rounded down, unless
        // that rounds to nothing (then one slot).
        let reserved = (limit / 5).max(1);
        assert!(limit - normal <= reserved, "limit {limit}: reserve");
        let left_by_sheddable = (limit * 3 / 10).max(limit - normal + 1);
        assert!(limit - sheddable <= left_by_sheddable, "limit {limit}");
        let caps = [critical, normal, sheddable];
        assert!(
            caps.iter()
                .zip(previous)
                .all(|(now, before)| *now >= before),
            "limit {limit}: no cap falls as the limit rises ({previous:?} to {caps:?})"
        );
        previous = caps;
    }
}

#[test]
fn from_a_limit_of_10_the_shares_are_the_nominal_ones_rounded_down() {
    for limit in (10..=40).chain([64, 99, 100, 1_000, 4_321]) {
        let [_, normal, sheddable] = measured_caps(&with_defaults(limit));
        assert_eq!(normal, limit - limit / 5, "limit {limit}: 20 % reserved");
        assert_eq!(
            sheddable,
            limit - limit * 3 / 10,
            "limit {limit}: 30 % left by Sheddable"
        );
    }
}

#[test]
fn a_share_of_zero_reserves_nothing_at_any_limit() {
    for limit in 1..=20 {
        let shedder = Shedder::builder()
            .max_concurrency(limit)
            .critical_reserve(0.0)
            .sheddable_margin(0.0)
            .build()
            .unwrap();
        assert_eq!(measured_caps(&shedder), [limit, limit, limit]);
        let no_margin = Shedder::builder()
            .max_concurrency(limit)
            .sheddable_margin(0.0)
            .build()
            .unwrap();
        let [_, normal, sheddable] = measured_caps(&no_margin);
        assert_eq!(sheddable, normal, "limit {limit}: no margin");
        let no_reserve = Shedder::builder()
            .max_concurrency(limit)
            .critical_reserve(0.0)
            .build()
            .unwrap();
        let [critical, normal, sheddable] = measured_caps(&no_reserve);
        assert_eq!(normal, critical, "limit {limit}: no reserve");
        assert_eq!(sheddable, (limit - (limit / 10).max(1)).max(1));
    }
}

#[test]
fn large_shares_still_leave_every_priority_a_slot() {
    // Shares that together pass the whole limit: each priority still gets
    // one slot, and the order of the caps holds.
    for limit in 1..=20 {
        let shedder = Shedder::builder()
            .max_concurrency(limit)
            .critical_reserve(0.9)
            .sheddable_margin(0.9)
            .build()
            .unwrap();
        let [critical, normal, sheddable] = measured_caps(&shedder);
        assert_eq!(critical, limit);
        assert_eq!(sheddable, 1, "limit {limit}");
        assert_eq!(normal, (limit - (limit * 9 / 10).max(1)).max(1));
    }
}
