//! The shared tier's Lua scripts: each call one atomic step and one round
//! trip.
//!
//! A key's value and its lease are two Redis keys with one hash tag, so a
//! script that touches both never spans two slots of a Redis Cluster. The
//! value is a hash of its bytes (`v`) and the time it was written (`b`,
//! Redis's own clock in milliseconds, so instances whose clocks drift still
//! agree on a value's age).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: value, lease. ARGV: token, lease (ms), fresh for (ms; 0 = any age).
/// Returns `{1, bytes}` fresh, `{2}` leased, `{3, bytes}` stale and someone
/// else reloads, `{4, lease_left_ms}` busy. A lease key with no expiry is
/// none of ours (ours always expire: a stray `SET`, a key of another type):
/// it is given one lease's expiry, so it cannot stall the fleet for ever.
static FETCH_SOURCE: &str = r"
local got = redis.call('HMGET', KEYS[1], 'v', 'b')
local value, born = got[1], tonumber(got[2])
if value then
  local fresh = tonumber(ARGV[3])
  if fresh == 0 or born == nil then return {1, value} end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  if now - born < fresh then return {1, value} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  left = tonumber(ARGV[2])
end
if value then return {3, value} end
return {4, left}
";

/// KEYS: value, lease. ARGV: bytes, ttl (ms), token. Writes only while the
/// token holds the lease, and gives the lease back. Returns 1 written, 0
/// lease lost.
static FILL_SOURCE: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'b', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: lease. ARGV: token. Deletes the lease only for its holder.
static RELEASE_SOURCE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// KEYS: value, lease. ARGV: bytes, ttl (ms), channel, message. Writes
/// whoever holds the lease (the lease is cleared: a load in flight loses),
/// and tells the fleet.
static STORE_SOURCE: &str = r"
redis.call('DEL', KEYS[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'b', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// KEYS: value, lease. ARGV: channel, message.
static REMOVE_SOURCE: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
";

pub(super) static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(FETCH_SOURCE));
pub(super) static FILL: LazyLock<Script> = LazyLock::new(|| Script::new(FILL_SOURCE));
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_SOURCE));
pub(super) static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_SOURCE));
pub(super) static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_SOURCE));

/// Every script, for loading them when the tier starts.
pub(super) fn all() -> [&'static Script; 5] {
    [&FETCH, &FILL, &RELEASE, &STORE, &REMOVE]
}
