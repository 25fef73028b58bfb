//! What one load-generator thread measured: a latency histogram, status counts, errors by kind
//! and bytes read, merged across threads at the end of a run.
//!
//! Recording a response costs an hdrhistogram increment and an array increment; nothing is
//! allocated per request.

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks (microseconds); larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits the histogram keeps.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Status codes 0..STATUS_SLOTS are counted one by one; anything else lands in slot 0.
const STATUS_SLOTS: usize = 600;

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed or timed out: an alert, a certificate that did not verify,
    /// or the server closing before it ended.
    Handshake,
    /// Reading the response failed or the connection closed before it was complete.
    Read,
    /// Writing the request failed.
    Write,
    /// No complete response within the timeout.
    Timeout,
    /// The response broke HTTP/1.1 framing.
    Parse,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Timeout,
        ErrorKind::Parse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Parse => "parse",
        }
    }
}

/// Counts of failed requests, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub connect: u64,
    pub handshake: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub parse: u64,
}

impl ErrorCounts {
    pub fn get(&self, kind: ErrorKind) -> u64 {
        match kind {
            ErrorKind::Connect => self.connect,
            ErrorKind::Handshake => self.handshake,
            ErrorKind::Read => self.read,
            ErrorKind::Write => self.write,
            ErrorKind::Timeout => self.timeout,
            ErrorKind::Parse => self.parse,
        }
    }

    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Handshake => &mut self.handshake,
            ErrorKind::Read => &mut self.read,
            ErrorKind::Write => &mut self.write,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Parse => &mut self.parse,
        }
    }

    pub fn total(&self) -> u64 {
        ErrorKind::ALL.iter().map(|&kind| self.get(kind)).sum()
    }
}

/// Measurements of one thread, or of a whole run once merged.
#[derive(Debug, Clone)]
pub struct Stats {
    pub latency_us: Histogram<u64>,
    statuses: Vec<u64>,
    pub errors: ErrorCounts,
    /// Bytes read from the server for counted requests, heads included.
    pub bytes_read: u64,
    /// Connections opened (TCP connect and, for https, the handshake done) for counted
    /// requests.
    pub connections: u64,
    /// TLS handshakes of those connections in which the server sent its certificate.
    pub handshakes_full: u64,
    /// TLS handshakes of those connections that resumed an earlier session.
    pub handshakes_resumed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
            statuses: vec![0; STATUS_SLOTS],
            errors: ErrorCounts::default(),
            bytes_read: 0,
            connections: 0,
            handshakes_full: 0,
            handshakes_resumed: 0,
        }
    }
}

impl Stats {
    pub fn record_response(&mut self, status: u16, latency_us: u64) {
        self.latency_us
            .saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
        let slot = usize::from(status);
        let slot = if slot < STATUS_SLOTS { slot } else { 0 };
        self.statuses[slot] += 1;
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        *self.errors.slot(kind) += 1;
    }

    /// Responses recorded.
    pub fn responses(&self) -> u64 {
        self.latency_us.len()
    }

    /// Non-zero status counts in ascending order; status 0 stands for codes of 600 and up.
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        self.statuses
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            // The slot index is below STATUS_SLOTS, so it fits a u16.
            .map(|(status, &count)| (status as u16, count))
            .collect()
    }

    pub fn merge(&mut self, other: &Stats) {
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (mine, theirs) in self.statuses.iter_mut().zip(&other.statuses) {
            *mine += theirs;
        }
        for kind in ErrorKind::ALL {
            *self.errors.slot(kind) += other.errors.get(kind);
        }
        self.bytes_read += other.bytes_read;
        self.connections += other.connections;
        self.handshakes_full += other.handshakes_full;
        self.handshakes_resumed += other.handshakes_resumed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_histograms_statuses_and_errors() {
        let mut a = Stats::default();
        a.record_response(200, 100);
        a.record_response(200, 0);
        a.record_error(ErrorKind::Timeout);
        let mut b = Stats::default();
        b.record_response(503, 2_000);
        b.record_response(999, LATENCY_US_MAX * 2);
        b.record_error(ErrorKind::Timeout);
        b.record_error(ErrorKind::Connect);
        b.record_error(ErrorKind::Handshake);
        b.bytes_read = 10;
        b.connections = 3;
        b.handshakes_full = 1;
        b.handshakes_resumed = 2;
        a.merge(&b);
        assert_eq!(a.responses(), 4);
        assert_eq!(a.statuses(), vec![(0, 1), (200, 2), (503, 1)]);
        assert_eq!(a.errors.timeout, 2);
        assert_eq!(a.errors.connect, 1);
        assert_eq!(a.errors.handshake, 1);
        assert_eq!(a.errors.total(), 4);
        assert_eq!(a.bytes_read, 10);
        assert_eq!(
            (a.connections, a.handshakes_full, a.handshakes_resumed),
            (3, 1, 2)
        );
        assert_eq!(a.latency_us.min(), 1);
        assert!(a.latency_us.max() >= LATENCY_US_MAX);
    }
}
