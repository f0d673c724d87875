//! Counters for `/metrics`, in Prometheus' text format: requests by endpoint and status,
//! tokens, request latency, and the queue.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// The server's counters; shared by the handlers and the engine.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
    /// Requests waiting for a sequence.
    pub(crate) queued: AtomicI64,
    /// Requests being decoded.
    pub(crate) active: AtomicI64,
    /// Prompt tokens of all requests.
    pub(crate) prompt_tokens: AtomicU64,
    /// Prompt tokens found in the cache (prefix reuse).
    pub(crate) cached_prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub(crate) generated_tokens: AtomicU64,
    /// Tokens decoded by llama.cpp (prompt and generated).
    pub(crate) decoded_tokens: AtomicU64,
    /// Generations stopped because the client went away.
    pub(crate) cancelled: AtomicU64,
    /// Generations the engine refused or failed.
    pub(crate) failed: AtomicU64,
    /// Connections open.
    pub(crate) connections_open: AtomicI64,
    /// Connections answered 503 because --max-connections were open.
    pub(crate) connections_refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn record(&self, endpoint: &str, status: u16, latency: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((endpoint.to_string(), status)).or_default() += 1;
        drop(requests);
        let seconds = latency.as_secs_f64();
        let mut histogram = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Generations cancelled because their client left.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP medllm_requests_total Requests answered, by endpoint and status.\n");
        out.push_str("# TYPE medllm_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "medllm_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let histogram = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP medllm_request_duration_seconds Time from request to the end of its response.\n",
        );
        out.push_str("# TYPE medllm_request_duration_seconds histogram\n");
        for (bound, n) in BUCKETS.iter().zip(histogram.counts.iter()) {
            let _ = writeln!(out, "medllm_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "medllm_request_duration_seconds_bucket{{le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "medllm_request_duration_seconds_sum {}", histogram.sum);
        let _ = writeln!(out, "medllm_request_duration_seconds_count {}", histogram.count);
        drop(histogram);
        let gauges: [(&str, &str, i64); 3] = [
            (
                "medllm_queue_waiting",
                "Requests waiting for a free sequence.",
                self.queued.load(Ordering::Relaxed),
            ),
            ("medllm_sequences_active", "Requests being decoded.", self.active.load(Ordering::Relaxed)),
            ("medllm_connections_open", "Connections open.", self.connections_open.load(Ordering::Relaxed)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("medllm_prompt_tokens_total", "Prompt tokens of all requests.", &self.prompt_tokens),
            (
                "medllm_prompt_tokens_cached_total",
                "Prompt tokens found already in a sequence's cache (not evaluated again).",
                &self.cached_prompt_tokens,
            ),
            ("medllm_generated_tokens_total", "Tokens generated.", &self.generated_tokens),
            ("medllm_decoded_tokens_total", "Tokens decoded by llama.cpp.", &self.decoded_tokens),
            ("medllm_cancelled_total", "Generations stopped because the client went away.", &self.cancelled),
            ("medllm_failed_total", "Generations refused or failed by the engine.", &self.failed),
            (
                "medllm_connections_refused_total",
                "Connections answered 503 because --max-connections were open.",
                &self.connections_refused,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
