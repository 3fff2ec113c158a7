//! The agent's side of `/v1/agent/…`: enrolment, the held configuration poll, reports.

use std::time::Duration;

use arca_api::agent::{AgentConfig, AgentReport, EnrollAnswer, EnrollRequest};
use reqwest::blocking::{Client as Http, Response};
use reqwest::StatusCode;

use crate::error::{Error, Result};

/// How long the server holds a poll while nothing changes.
pub const POLL_WAIT_SECONDS: u64 = 25;

/// A connection to the agent's server.
#[derive(Clone)]
pub struct Client {
    http: Http,
    base: String,
    token: String,
}

fn http(ca_cert: Option<&std::path::Path>) -> Result<Http> {
    let mut b = Http::builder()
        .connect_timeout(Duration::from_secs(15))
        // A held poll lasts up to POLL_WAIT_SECONDS; anything far longer is a dead connection.
        .timeout(Duration::from_secs(POLL_WAIT_SECONDS + 35))
        .user_agent(concat!("arca-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Error::Config(format!("{} is not a PEM certificate: {e}", path.display())))?;
        b = b.add_root_certificate(cert);
    }
    if let Some(cert) = arca_store::extra_root_certificate().map_err(|e| Error::Config(e.to_string()))? {
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| Error::Config(format!("setting up HTTPS: {e}")))
}

fn refused(resp: Response) -> Error {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(body);
    Error::Refused { status, message }
}

fn unreachable(e: reqwest::Error) -> Error {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    Error::Unreachable(s)
}

impl Client {
    /// A client of `server` with the device `token`.
    pub fn new(server: &str, token: &str, ca_cert: Option<&std::path::Path>) -> Result<Client> {
        Ok(Client { http: http(ca_cert)?, base: server.trim_end_matches('/').to_string(), token: token.to_string() })
    }

    /// Enrols with a one-time code (no token yet).
    pub fn enroll(server: &str, ca_cert: Option<&std::path::Path>, req: &EnrollRequest) -> Result<EnrollAnswer> {
        let url = format!("{}/v1/agent/enroll", server.trim_end_matches('/'));
        let body = serde_json::to_vec(req).map_err(|e| Error::Config(e.to_string()))?;
        let resp = http(ca_cert)?
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(unreachable)?;
        if !resp.status().is_success() {
            return Err(refused(resp));
        }
        let text = resp.text().map_err(unreachable)?;
        serde_json::from_str(&text).map_err(|e| Error::Unreachable(format!("unexpected enrolment answer: {e}")))
    }

    /// The configuration, held by the server up to `wait` seconds while it equals `known`;
    /// `None` when it did not change.
    pub fn poll(&self, known: Option<&str>, wait: u64) -> Result<Option<AgentConfig>> {
        let mut url = format!("{}/v1/agent/config?wait={wait}", self.base);
        if let Some(k) = known {
            url.push_str(&format!("&known={k}"));
        }
        let resp = self.http.get(url).bearer_auth(&self.token).send().map_err(unreachable)?;
        match resp.status() {
            StatusCode::NO_CONTENT => Ok(None),
            s if s.is_success() => {
                let text = resp.text().map_err(unreachable)?;
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| Error::Unreachable(format!("unexpected configuration: {e}")))
            }
            _ => Err(refused(resp)),
        }
    }

    /// Sends a report.
    pub fn report(&self, report: &AgentReport) -> Result<()> {
        let body = serde_json::to_vec(report).map_err(|e| Error::Config(e.to_string()))?;
        let resp = self
            .http
            .post(format!("{}/v1/agent/report", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(unreachable)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(refused(resp))
        }
    }
}
