//! Upstreams: endpoint balancers ([`balancer`]) and per-worker keep-alive connection pools
//! ([`pool`]). Both are per-worker state: plain `&mut self`, never shared, never locked.

pub mod balancer;
pub mod pool;
