//! The settings the load tester prints are Rust that compiles against the
//! crate as it is: the function below holds, between the markers, what
//! `Recommendation::rust_snippet` writes for a fixed knee, and one test
//! checks that the renderer still writes exactly that while the compiler
//! checks (and the other test runs) the code. Rename a builder method and
//! this file stops compiling; change the template and the comparison
//! fails until the copy here is updated.

use std::time::Duration;

use surgeguard::loadtest::{Knee, Recommendation};

fn knee() -> Knee {
    let ms = Duration::from_millis;
    Knee {
        step: 14,
        target_rate: 380.0,
        rate: 380.0,
        p99: ms(28),
        mean: ms(22),
        in_flight: 8.4,
        baseline_p99: ms(21),
        baseline_mean: ms(20),
        bound: ms(42),
        beyond_tested: false,
        first_failure: None,
    }
}

fn pasted() -> Result<(), Box<dyn std::error::Error>> {
    // BEGIN SNIPPET
    use std::time::Duration;
    use surgeguard::limit::{Gcra, Quota};
    use surgeguard::shed::{AdaptiveLimit, Shedder};

    // From the load test's knee: 380 requests/s answered, p99 28 ms.
    // A fixed limit at the knee's concurrency...
    let fixed = Shedder::builder()
        .max_concurrency(9)
        .queue(8, Duration::from_millis(21))
        .build()?;
    // ...or an adaptive one between the service's parallelism and twice that.
    let adaptive = Shedder::builder()
        .limit(AdaptiveLimit::gradient().min(8).max(17))
        .queue(8, Duration::from_millis(21))
        .build()?;
    // A global rate limit at 80 % of the knee, a fifth of a second's burst.
    let global = Gcra::direct(Quota::per_second(304)?.burst(61)?).build()?;
    // END SNIPPET
    assert_eq!(fixed.limit(), 9);
    assert!((8..=17).contains(&adaptive.limit()));
    assert!(global.check().is_allowed());
    Ok(())
}

#[test]
fn the_pasted_settings_compile_and_build() {
    pasted().unwrap();
}

#[test]
fn the_renderer_writes_the_snippet_this_file_compiles() {
    let source = include_str!("loadtest_snippet.rs");
    let begin = source.find("// BEGIN SNIPPET\n").unwrap() + "// BEGIN SNIPPET\n".len();
    let end = source.find("    // END SNIPPET").unwrap();
    let pasted: String = source[begin..end]
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    let rendered = Recommendation::from_knee(&knee()).rust_snippet();
    assert_eq!(rendered, pasted);
}
