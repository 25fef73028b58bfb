//! Per-route policies, each a plain function over the parsed request head and the route's
//! compiled policy: authentication ([`jwt`], [`apikey`]), rate limiting ([`ratelimit`]) and
//! the per-endpoint circuit breaker ([`breaker`]). Policies keep their state per worker and
//! never lock.

pub mod apikey;
pub mod breaker;
pub mod jwt;
pub mod ratelimit;
