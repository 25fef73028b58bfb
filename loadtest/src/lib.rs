//! coregate-loadtest: fixture origin servers and the load harness.
