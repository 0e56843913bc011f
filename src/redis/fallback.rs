//! What decides while Redis cannot.

use std::time::Duration;

use crate::limit::{Decision, RateLimiter};

/// The policy when Redis is unreachable, slow, or the breaker is open.
///
/// * `FailOpen`: allow everything (availability over the limit).
/// * `FailClosed`: deny everything until Redis answers again.
/// * `Local { share }`: each server enforces `share` of the limit on its
///   own, in memory. With `n` servers, `share = 1 / n` keeps the fleet's
///   total near the limit; `1.0` lets each server allow the whole limit.
///
/// ```
/// use surgeguard::redis::Fallback;
/// let eight_servers = Fallback::Local { share: 1.0 / 8.0 };
/// assert_ne!(eight_servers, Fallback::FailOpen);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fallback {
    /// Allow every request.
    FailOpen,
    /// Deny every request.
    FailClosed,
    /// Limit locally to `share` (in (0, 1]) of the quota.
    Local {
        /// The share of the quota this server enforces alone.
        share: f64,
    },
}

impl Default for Fallback {
    /// `Local { share: 1.0 }`: each server still enforces the whole limit
    /// alone, so an outage multiplies the limit by the fleet's size at
    /// most. Set the share to one over the number of servers to keep it.
    fn default() -> Self {
        Fallback::Local { share: 1.0 }
    }
}

/// The fallback, ready to decide.
pub(crate) enum Deciding {
    FailOpen,
    FailClosed,
    Local(Box<dyn RateLimiter<String>>),
}

impl Deciding {
    pub(crate) fn decide(
        &self,
        key: &str,
        cost: u32,
        limit: u32,
        policy_window: Duration,
        retry_in: Duration,
    ) -> Decision {
        // Until the breaker lets a probe through, at least a second.
        let closed = Decision::Denied {
            limit,
            remaining: 0,
            retry_after: retry_in.max(Duration::from_secs(1)),
            reset_after: retry_in,
            policy_window,
        };
        match self {
            Deciding::FailOpen => Decision::Allowed {
                limit,
                remaining: limit.saturating_sub(cost),
                reset_after: Duration::ZERO,
                policy_window,
            },
            Deciding::FailClosed => closed,
            // The local share's burst may be below a cost the quota allows:
            // deny it until Redis is back.
            Deciding::Local(local) => local.check_n(&key.to_owned(), cost).unwrap_or(closed),
        }
    }
}
