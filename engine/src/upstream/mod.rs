//! Upstreams: balancers and per-worker keep-alive connection pools.
