//! How many requests may run at once: a fixed number, or one learned from
//! the latency of the requests that completed.
//!
//! A [`LimitAlgorithm`] sees one [`Sample`] per completed request (its
//! latency, how many ran beside it, whether it failed in a way that signals
//! overload) and answers with the new limit. The built-in adaptive ones
//! follow the algorithms Netflix's concurrency-limits library documents
//! (AIMD, Vegas, Gradient2), with fixes for the failure modes its users
//! reported:
//!
//! * [`AdaptiveLimit::aimd`]: additive increase while the limit is in use,
//!   multiplicative decrease on a drop (an error, a timeout, or a latency over
//!   [`AdaptiveLimit::latency_threshold`]).
//! * [`AdaptiveLimit::vegas`]: estimates the queue from the ratio of the
//!   no-load latency to the current one (TCP Vegas, Brakmo and Peterson,
//!   SIGCOMM 1994), once per round trip from its fastest request, so that a
//!   costly request in a mix does not read as a queue. The no-load estimate
//!   only rises from round trips in which the limit was not in use, so
//!   sustained overload cannot drift it upward (concurrency-limits issue
//!   #165), nor can requests that started before an overload and finished
//!   behind it.
//! * [`AdaptiveLimit::gradient`] (the default adaptive limit): scales the
//!   limit by the gradient between a baseline latency and the current one.
//!   Drops decrease it, so requests that all time out at the same latency do
//!   not look healthy (issue #137), and the baseline does not learn from
//!   saturated periods, so modest overload cannot creep the limit up forever
//!   (the PR #134 discussion). The baseline is the long-run average latency
//!   of the traffic mix and the tolerance widens with the mix's spread, so
//!   cheap and costly requests mixed do not pin the limit at its minimum.

mod aimd;
mod gradient;
mod vegas;

use std::fmt;
use std::time::Duration;

pub(crate) use aimd::Aimd;
pub(crate) use gradient::Gradient;
pub(crate) use vegas::Vegas;

use super::BuildError;

/// One completed request, as a limit algorithm sees it.
///
/// ```
/// use std::time::Duration;
/// use surgeguard::shed::Sample;
///
/// let sample = Sample { latency: Duration::from_millis(12), in_flight: 5, dropped: false };
/// assert!(!sample.dropped);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// How long the request held its permit.
    pub latency: Duration,
    /// Requests in flight when it started, itself included.
    pub in_flight: u32,
    /// It failed in a way that signals overload (an error or a timeout).
    pub dropped: bool,
}

/// A concurrency limit that learns from completed requests. Implement it to
/// plug your own algorithm in with
/// [`ShedderBuilder::custom_limit`](super::ShedderBuilder::custom_limit).
///
/// ```
/// use surgeguard::shed::{LimitAlgorithm, Sample};
///
/// /// Halves on a drop, otherwise adds one, between 1 and 100.
/// #[derive(Debug)]
/// struct Halving(u32);
///
/// impl LimitAlgorithm for Halving {
///     fn limit(&self) -> u32 {
///         self.0
///     }
///     fn update(&mut self, sample: Sample) -> u32 {
///         self.0 = if sample.dropped { (self.0 / 2).max(1) } else { (self.0 + 1).min(100) };
///         self.0
///     }
/// }
/// ```
pub trait LimitAlgorithm: Send + fmt::Debug + 'static {
    /// The current limit (at least 1).
    fn limit(&self) -> u32;

    /// Learns from one completed request; returns the new limit.
    fn update(&mut self, sample: Sample) -> u32;
}

/// A fixed limit: never changes.
#[derive(Debug)]
pub(crate) struct Fixed(pub(crate) u32);

impl LimitAlgorithm for Fixed {
    fn limit(&self) -> u32 {
        self.0
    }

    fn update(&mut self, _: Sample) -> u32 {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Aimd,
    Vegas,
    Gradient,
}

/// An adaptive concurrency limit, configured; the shedder builds it.
///
/// ```
/// use surgeguard::shed::{AdaptiveLimit, Shedder};
///
/// let shedder = Shedder::builder()
///     .limit(AdaptiveLimit::gradient().min(8).max(1_000))
///     .build()?;
/// assert!(shedder.limit() >= 8);
/// # Ok::<(), surgeguard::shed::BuildError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "an AdaptiveLimit does nothing until given to Shedder::builder().limit(..)"]
pub struct AdaptiveLimit {
    kind: Kind,
    min: u32,
    max: u32,
    initial: Option<u32>,
    latency_threshold: Option<Duration>,
}

impl AdaptiveLimit {
    fn new(kind: Kind) -> Self {
        AdaptiveLimit {
            kind,
            min: 1,
            max: 1_000,
            initial: None,
            latency_threshold: None,
        }
    }

    /// Additive increase, multiplicative decrease (x0.9 on a drop).
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::aimd().min(4).max(200);
    /// ```
    pub fn aimd() -> Self {
        AdaptiveLimit::new(Kind::Aimd)
    }

    /// Vegas: grows while the estimated queue is short, shrinks when long.
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::vegas().max(500);
    /// ```
    pub fn vegas() -> Self {
        AdaptiveLimit::new(Kind::Vegas)
    }

    /// Gradient: follows the ratio of baseline to current latency.
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::gradient().min(8).max(1_000);
    /// ```
    pub fn gradient() -> Self {
        AdaptiveLimit::new(Kind::Gradient)
    }

    /// The lowest the limit goes (default 1).
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::gradient().min(8);
    /// ```
    pub fn min(mut self, min: u32) -> Self {
        self.min = min;
        self
    }

    /// The highest the limit goes (default 1,000).
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::gradient().max(64);
    /// ```
    pub fn max(mut self, max: u32) -> Self {
        self.max = max;
        self
    }

    /// Where the limit starts (default: `min` scaled up to 20 if that is
    /// within bounds).
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// let limit = AdaptiveLimit::aimd().initial(50);
    /// ```
    pub fn initial(mut self, initial: u32) -> Self {
        self.initial = Some(initial);
        self
    }

    /// A request slower than this counts as a drop (default: none; only
    /// requests recorded as dropped are). AIMD learns nothing from latency
    /// otherwise, so give it one.
    ///
    /// ```
    /// # use surgeguard::shed::AdaptiveLimit;
    /// # use std::time::Duration;
    /// let limit = AdaptiveLimit::aimd().latency_threshold(Duration::from_millis(250));
    /// ```
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = Some(threshold);
        self
    }

    /// Validates the settings and builds the algorithm.
    pub(crate) fn build(self) -> Result<Box<dyn LimitAlgorithm>, BuildError> {
        if self.min == 0 {
            return Err(BuildError::ZeroLimit);
        }
        if self.min > self.max {
            return Err(BuildError::MinAboveMax {
                min: self.min,
                max: self.max,
            });
        }
        if self.latency_threshold == Some(Duration::ZERO) {
            return Err(BuildError::ZeroDuration {
                setting: "latency_threshold",
            });
        }
        let initial = self.initial.unwrap_or(20).clamp(self.min, self.max);
        let bounds = Bounds {
            min: self.min,
            max: self.max,
            threshold: self.latency_threshold,
        };
        Ok(match self.kind {
            Kind::Aimd => Box::new(Aimd::new(initial, bounds)),
            Kind::Vegas => Box::new(Vegas::new(initial, bounds)),
            Kind::Gradient => Box::new(Gradient::new(initial, bounds)),
        })
    }
}

/// Settings every adaptive algorithm shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) min: u32,
    pub(crate) max: u32,
    threshold: Option<Duration>,
}

impl Bounds {
    /// Whether `sample` signals overload: recorded as dropped, or slower
    /// than the latency threshold.
    pub(crate) fn is_drop(&self, sample: &Sample) -> bool {
        sample.dropped || self.threshold.is_some_and(|limit| sample.latency > limit)
    }

    /// `limit` rounded and kept within bounds.
    pub(crate) fn clamp(&self, limit: f64) -> f64 {
        limit.clamp(f64::from(self.min), f64::from(self.max))
    }
}

/// Request costs shared by the adaptive limits' unit tests.
#[cfg(test)]
mod test_costs {
    /// Query costs of a database: 2 ms (80 %) and 20 ms (20 %), in turn.
    pub(super) fn mixed_cost_ms(request: usize) -> f64 {
        if request % 5 == 4 {
            20.0
        } else {
            2.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(
            AdaptiveLimit::aimd().min(0).build().unwrap_err(),
            BuildError::ZeroLimit
        );
        assert_eq!(
            AdaptiveLimit::vegas().min(10).max(5).build().unwrap_err(),
            BuildError::MinAboveMax { min: 10, max: 5 }
        );
        assert_eq!(
            AdaptiveLimit::gradient()
                .latency_threshold(Duration::ZERO)
                .build()
                .unwrap_err(),
            BuildError::ZeroDuration {
                setting: "latency_threshold"
            }
        );
        let limit = AdaptiveLimit::gradient().min(30).max(40).build().unwrap();
        assert_eq!(limit.limit(), 30, "the initial limit is kept within bounds");
    }
}
