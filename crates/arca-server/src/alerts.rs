//! Delivering alerts (failed or overdue backups, tenants past their soft quota) to the
//! provider's operations: a webhook (JSON POST, for chat and ticket systems) and e-mail through
//! an SMTP server. Alerts wait in the database ([`crate::db::health`]) until every configured
//! channel took them, so a mail server that is down for an hour delays alerts but loses none.
//! E-mails carry the provider's brand; a reseller's tenant's own copy carries the reseller's.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;

use crate::branding::Brand;
use crate::db::health::Alert;
use crate::state::AppState;

/// Where alerts go.
#[derive(Clone, Default, Debug)]
pub struct AlertConfig {
    /// URL that receives each alert as a JSON POST.
    pub webhook: Option<String>,
    /// E-mail delivery.
    pub email: Option<EmailConfig>,
}

/// E-mail delivery settings.
#[derive(Clone)]
pub struct EmailConfig {
    /// `smtp://[USER:PASS@]HOST[:PORT]` (plain, for a local relay), `smtp://…?tls=required`
    /// (STARTTLS) or `smtps://…` (TLS).
    pub smtp_url: String,
    /// Sender address.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
}

/// Shown without the SMTP password.
impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &redact(&self.smtp_url))
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(|m| m.to_string()).collect::<Vec<_>>())
            .finish()
    }
}

impl AlertConfig {
    /// Whether any channel is configured.
    pub fn enabled(&self) -> bool {
        self.webhook.is_some() || self.email.is_some()
    }
}

/// Parses `a@b.example, Ops <ops@b.example>` into mailboxes.
pub fn parse_mailboxes(list: &str) -> Result<Vec<Mailbox>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Mailbox>().map_err(|e| format!("{s:?} is not an e-mail address: {e}")))
        .collect()
}

/// Sends alerts over the configured channels.
pub struct Notifier {
    config: AlertConfig,
    http: reqwest::Client,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Notifier {
    /// A notifier for `config`; fails on an SMTP URL it cannot use.
    pub fn new(config: AlertConfig) -> Result<Notifier, String> {
        let smtp = match &config.email {
            Some(e) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(&e.smtp_url)
                    .map_err(|err| format!("SMTP URL {}: {err}", redact(&e.smtp_url)))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| format!("preparing the webhook client: {e}"))?;
        Ok(Notifier { config, http, smtp })
    }

    /// Sends one alert on every channel; `Err` names the channels that failed. `customer_brand`
    /// is the brand of the tenant's reseller, when it set one: the customer's own copy of the
    /// e-mail goes out in it, the provider's in the provider's.
    pub async fn send(&self, alert: &Alert, customer_brand: Option<&Brand>) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(url) = &self.config.webhook {
            let body = json!({
                "id": alert.id,
                "kind": alert.kind,
                "tenant": alert.tenant,
                "subject": alert.subject,
                "message": alert.message,
                "created_at": alert.created_at,
                // Slack and Mattermost incoming webhooks show `text`.
                "text": format!("{}\n{}", alert.subject, alert.message),
            });
            let request = self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
            match request.body(body.to_string()).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => errors.push(format!("webhook answered {}", r.status())),
                Err(e) => errors.push(format!("webhook: {e}")),
            }
        }
        if let (Some(e), Some(smtp)) = (&self.config.email, &self.smtp) {
            // The customer hears of its own backups' trouble too (not of the provider's storage).
            let customers = if alert.kind == "restore-check-failed" {
                Vec::new()
            } else {
                parse_mailboxes(&alert.contacts).unwrap_or_else(|err| {
                    tracing::warn!("alert {}: the tenant's alert addresses are unusable: {err}", alert.id);
                    Vec::new()
                })
            };
            let provider = crate::branding::current();
            // One message to the provider and the customer in the provider's brand; a reseller's
            // customer gets its own, in the reseller's brand.
            let messages: Vec<(Vec<Mailbox>, &Brand)> = match customer_brand {
                Some(b) if !customers.is_empty() => vec![(e.to.clone(), &provider), (customers, b)],
                _ => vec![([e.to.clone(), customers].concat(), &provider)],
            };
            for (to, brand) in messages.into_iter().filter(|(to, _)| !to.is_empty()) {
                match compose(&e.from, to, brand, alert) {
                    Ok(message) => {
                        if let Err(err) = smtp.send(message).await {
                            errors.push(format!("e-mail: {err}"));
                        }
                    }
                    Err(err) => errors.push(format!("e-mail: {err}")),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// An alert's e-mail to `to` in `brand`: its product name in the subject, its support contact
/// under the message.
fn compose(from: &Mailbox, to: Vec<Mailbox>, brand: &Brand, alert: &Alert) -> Result<Message, lettre::error::Error> {
    let mut builder =
        Message::builder().from(from.clone()).subject(format!("[{}] {}", brand.product_name, alert.subject));
    for m in to {
        builder = builder.to(m);
    }
    let mut body = alert.message.clone();
    let support = brand.support_line();
    if !support.is_empty() {
        body = format!("{body}\n\n-- \n{}\n{support}\n", brand.product_name);
    }
    builder.body(body)
}

/// The SMTP URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// One pass: raises overdue-backup alerts, then delivers every alert that is due. Several
/// server processes may run it at once: raising and each delivery attempt are claimed in the
/// database.
pub async fn tick(state: &AppState, notifier: Option<&Notifier>) {
    let now = crate::db::now();
    if let Err(e) = state.db().raise_overdue_alerts(now).await {
        tracing::warn!("checking for overdue backups: {e}");
    }
    let Some(notifier) = notifier else { return };
    let due = match state.db().due_alerts(now).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("reading alerts to deliver: {e}");
            return;
        }
    };
    for alert in due {
        match state.db().claim_alert(&alert).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("claiming alert {}: {e}", alert.id);
                continue;
            }
        }
        let brand = customer_brand(state, &alert).await;
        let outcome = notifier.send(&alert, brand.as_ref()).await;
        if let Err(e) = &outcome {
            tracing::warn!("delivering alert {} ({}), attempt {}: {e}", alert.id, alert.subject, alert.attempts + 1);
        } else {
            tracing::info!("alert {} delivered: {}", alert.id, alert.subject);
        }
        if let Err(e) = state.db().alert_attempted(alert.id, outcome.err().as_deref()).await {
            tracing::warn!("recording the delivery of alert {}: {e}", alert.id);
        }
    }
}

/// The brand of the alert's tenant's reseller, if the tenant has a reseller that set one.
async fn customer_brand(state: &AppState, alert: &Alert) -> Option<Brand> {
    let tenant = state.db().tenant(alert.tenant.as_deref()?).await.ok()?;
    crate::branding::of_reseller(state.db(), tenant.reseller_id?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_urls_hide_passwords() {
        let to = parse_mailboxes("ops@provider.example, On Call <oncall@provider.example>").unwrap();
        assert_eq!(to.len(), 2);
        assert!(parse_mailboxes("not an address").is_err());
        assert_eq!(redact("smtps://user:secret@mail.example:465"), "smtps://…@mail.example:465");
        assert_eq!(redact("smtp://localhost:25"), "smtp://localhost:25");
        assert!(Notifier::new(AlertConfig {
            webhook: None,
            email: Some(EmailConfig { smtp_url: "ftp://x".into(), from: to[0].clone(), to: to.clone() }),
        })
        .is_err());
    }
}
