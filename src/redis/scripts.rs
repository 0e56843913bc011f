//! The Lua scripts: one atomic step and one round trip per decision.
//!
//! Both read the time from Redis (`TIME`), so the servers of a fleet may
//! disagree about the clock without changing any decision, and both keep
//! their whole state in the one key they are given, with an expiry, so
//! Redis memory stays bounded and a script never touches two slots of a
//! Redis Cluster. Times are integer microseconds; numbers written back are
//! formatted with `%.0f` because Lua's default formatting would round them
//! to 14 significant digits.
//!
//! Every script takes `want` and `need` units: it admits when at least
//! `need` are available and then takes up to `want` (a plain check has
//! `want = need = cost`; a lease asks for a batch but accepts less). It
//! returns `{allowed, taken, remaining, retry_after_us, reset_after_us}`.

use std::sync::LazyLock;

use redis::Script;

/// GCRA (the token bucket as one timestamp): the key holds the theoretical
/// arrival time (TAT). `ARGV`: emission interval (µs), burst, want, need.
static GCRA_SOURCE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local capacity = interval * burst
local available = math.floor((capacity - (tat - now)) / interval)
if available < 0 then available = 0 end
if available < need then
  local retry = tat + interval * need - capacity - now
  if retry < 1 then retry = 1 end
  return {0, 0, available, retry, tat - now}
end
local take = math.min(want, available)
if take == 0 then
  return {1, 0, available, 0, tat - now}
end
local new_tat = tat + interval * take
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, take, available - take, 0, new_tat - now}
";

/// The approximate sliding window (Cloudflare's two-counter estimate): the
/// key is a hash of the current window's index `w`, its count `c` and the
/// previous window's count `p`. `ARGV`: window (µs), limit, want, need.
static WINDOW_SOURCE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local index = math.floor(now / window)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(state[1]) or index
local c = tonumber(state[2]) or 0
local p = tonumber(state[3]) or 0
if w == index - 1 then
  p = c
  c = 0
elseif w ~= index then
  p = 0
  c = 0
end
local elapsed = now - index * window
local estimate = c + math.ceil(p * (window - elapsed) / window)
local available = limit - estimate
if available < 0 then available = 0 end
local reset = 0
if c > 0 then reset = 2 * window - elapsed elseif p > 0 then reset = window - elapsed end
if available < need then
  local retry
  local room = limit - c - need
  if room >= 0 then
    retry = math.ceil(window - room * window / p - elapsed)
  else
    retry = window - elapsed + math.max(0, math.ceil(window - (limit - need) * window / c))
  end
  if retry < 1 then retry = 1 end
  return {0, 0, available, retry, reset}
end
local take = math.min(want, available)
if take == 0 then
  return {1, 0, available, 0, reset}
end
c = c + take
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', index), 'c', c, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window / 1000))
return {1, take, available - take, 0, 2 * window - elapsed}
";

/// The GCRA script, loaded once per process (its SHA1 is computed here;
/// `EVALSHA` is sent and the script is loaded on `NOSCRIPT`).
pub(crate) static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_SOURCE));

/// The sliding-window script.
pub(crate) static WINDOW: LazyLock<Script> = LazyLock::new(|| Script::new(WINDOW_SOURCE));

/// What a script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) allowed: bool,
    pub(crate) taken: u32,
    pub(crate) remaining: u32,
    pub(crate) retry_after_us: u64,
    pub(crate) reset_after_us: u64,
}

impl Reply {
    /// Reads the script's five integers; anything else is a protocol error.
    pub(crate) fn parse(values: &[i64]) -> Option<Reply> {
        let [allowed, taken, remaining, retry, reset] = values else {
            return None;
        };
        let non_negative = |v: i64| u64::try_from(v).ok();
        Some(Reply {
            allowed: *allowed == 1,
            taken: u32::try_from(*taken).ok()?,
            remaining: u32::try_from(*remaining).unwrap_or(u32::MAX),
            retry_after_us: non_negative(*retry)?,
            reset_after_us: non_negative(*reset).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_strictly() {
        assert_eq!(
            Reply::parse(&[1, 1, 9, 0, 100]),
            Some(Reply {
                allowed: true,
                taken: 1,
                remaining: 9,
                retry_after_us: 0,
                reset_after_us: 100
            })
        );
        assert_eq!(Reply::parse(&[1, 1, 9, 0]), None, "too short");
        assert_eq!(Reply::parse(&[0, 0, 0, -5, 0]), None, "negative retry");
        assert_eq!(Reply::parse(&[1, -1, 0, 0, 0]), None, "negative take");
    }

    #[test]
    fn scripts_have_distinct_hashes() {
        assert_ne!(GCRA.get_hash(), WINDOW.get_hash());
    }
}
