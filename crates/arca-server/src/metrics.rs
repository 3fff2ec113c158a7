//! Prometheus metrics of one server process, served at `/metrics` in the text exposition format.
//!
//! The registry lives in the application state rather than in a global, so every test (and every
//! `app()`) has its own counters.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of per-tenant gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant name.
    pub tenant: String,
}

/// The server's counters.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    tenant_stored: Family<TenantLabels, Gauge>,
    tenant_quota: Family<TenantLabels, Gauge>,
    scrub_running: Gauge,
    scrub_damaged: Gauge,
    scrub_finished: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("arca_server");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register("http_requests", "HTTP requests answered, by method and status", requests.clone());
        registry.register("received_bytes", "Request body bytes received (uploads)", bytes_in.clone());
        registry.register("sent_bytes", "Response body bytes sent (downloads and listings)", bytes_out.clone());
        let tenant_stored = Family::<TenantLabels, Gauge>::default();
        let tenant_quota = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "tenant_stored_bytes",
            "Bytes stored per tenant (exact, from the catalogue)",
            tenant_stored.clone(),
        );
        registry.register("tenant_hard_quota_bytes", "Hard quota per tenant (0: unlimited)", tenant_quota.clone());
        let (scrub_running, scrub_damaged, scrub_finished) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("scrub_running", "Whether a scrub is running (1) or not (0)", scrub_running.clone());
        registry.register(
            "scrub_last_damaged_objects",
            "Damaged objects found by the newest scrub",
            scrub_damaged.clone(),
        );
        registry.register(
            "scrub_last_finished_timestamp_seconds",
            "When the newest finished scrub ended (Unix seconds; 0: never)",
            scrub_finished.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes_in,
            bytes_out,
            tenant_stored,
            tenant_quota,
            scrub_running,
            scrub_damaged,
            scrub_finished,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &str, status: u16, bytes_in: u64, bytes_out: u64) {
        self.requests.get_or_create(&RequestLabels { method: method.to_string(), status }).inc();
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }

    /// Reads every tenant's figures and the scrub state from the database (at scrape time, so every server process of
    /// a scale-out pair reports the same, current values).
    pub async fn refresh_tenants(&self, db: &crate::db::Db) {
        match db.tenants().await {
            Ok(tenants) => {
                self.tenant_stored.clear();
                self.tenant_quota.clear();
                for t in tenants {
                    let labels = TenantLabels { tenant: t.name };
                    self.tenant_stored.get_or_create(&labels).set(t.stored_bytes);
                    self.tenant_quota.get_or_create(&labels).set(t.hard_quota_bytes);
                }
            }
            Err(e) => tracing::warn!("metrics: cannot read tenants: {e}"),
        }
        match db.scrub_runs(20).await {
            Ok(runs) => {
                self.scrub_running.set(runs.first().is_some_and(|r| r.state == "running") as i64);
                self.scrub_damaged.set(runs.first().map_or(0, |r| r.damaged));
                self.scrub_finished.set(runs.iter().find(|r| r.finished_at > 0).map_or(0, |r| r.finished_at));
            }
            Err(e) => tracing::warn!("metrics: cannot read scrub runs: {e}"),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        encode(&mut out, &self.registry).expect("encoding metrics into a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.observe("PUT", 201, 1000, 0);
        m.observe("PUT", 201, 24, 0);
        m.observe("GET", 200, 0, 7);
        let text = m.render();
        assert!(text.contains(r#"arca_server_http_requests_total{method="PUT",status="201"} 2"#), "{text}");
        assert!(text.contains("arca_server_received_bytes_total 1024"), "{text}");
        assert!(text.contains("arca_server_sent_bytes_total 7"), "{text}");
    }
}
