//! RFC 9111 §5.1: Age.

use surgeguard::clock::ManualClock;

use crate::origin::{cached, get, seconds, Origin};

/// §5.1: an `Age` that is not a non-negative integer is ignored: the
/// response is stored as if it arrived new.
#[tokio::test]
async fn s5_1_an_invalid_age_is_ignored() {
    for invalid in ["old", "-5", "1.5", "0x10"] {
        let clock = ManualClock::new();
        let origin = Origin::new(move |_, call| {
            crate::origin::answer(
                200,
                &[("cache-control", "max-age=60"), ("age", invalid)],
                &format!("call {call}"),
            )
        });
        let cache = cached(&origin, &clock);
        get(&cache, "/r").await;
        clock.advance(seconds(10));
        let hit = get(&cache, "/r").await;
        assert_eq!(
            (hit.text(), hit.header("age")),
            ("call 1", Some("10")),
            "{invalid}"
        );
    }
}

/// §5.1: of a list of ages, the first member counts.
#[tokio::test]
async fn s5_1_the_first_member_of_a_list_counts() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60"), ("age", "20, 50")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    clock.advance(seconds(30));
    let hit = get(&cache, "/r").await;
    assert_eq!((hit.text(), hit.header("age")), ("call 1", Some("50")));
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60"), ("age", "0, old")]);
    let cache = cached(&origin, &clock);
    get(&cache, "/r").await;
    assert_eq!(get(&cache, "/r").await.header("age"), Some("0"));
}

/// §5.1: every response served from storage carries `Age`.
#[tokio::test]
async fn s5_1_every_answer_from_storage_has_an_age() {
    let clock = ManualClock::new();
    let origin = Origin::fixed(200, &[("cache-control", "max-age=60")]);
    let cache = cached(&origin, &clock);
    assert_eq!(get(&cache, "/r").await.header("age"), Some("0"));
    clock.advance(seconds(7));
    assert_eq!(get(&cache, "/r").await.header("age"), Some("7"));
    let head = crate::origin::send(&cache, "HEAD", "/r", &[]).await;
    assert_eq!((head.header("age"), head.body.len()), (Some("7"), 0));
}
