//! An upstream's `healthchecks`, from Kong's shape (seconds, one interval
//! for healthy and one for unhealthy targets, failures counted by kind) to
//! Frameway's (milliseconds, one interval, one count of failures in a
//! row). Where the two cannot say the same thing the field is refused.

use serde_json::json;

use super::super::schema::{ActiveSection, Failures, HealthchecksSection};
use super::yaml::{Doc, Fields, Node};

/// Kong's default for `active.healthy.http_statuses`.
const ACTIVE_HEALTHY: [u16; 2] = [200, 302];

pub(super) fn translate(doc: &mut Doc, node: &Node<'_>, what: &str) -> Option<HealthchecksSection> {
    let mut f = Fields::of(doc, node, format!("{what} healthchecks"))?;
    f.at_default(doc, "threshold", json!(0));
    let mut checks = HealthchecksSection::default();
    // Off in Kong until counts are given.
    checks.passive.unhealthy.failures = 0;
    if let Some(a) = f.take("active") {
        checks.active = active(doc, a, &format!("{what} healthchecks.active"));
    }
    if let Some(p) = f.take("passive") {
        passive(doc, p, &format!("{what} healthchecks.passive"), &mut checks);
    }
    f.finish(doc, |_| None);
    Some(checks)
}

/// Active checks; `None` when both of Kong's intervals are 0 (its default:
/// no probes).
fn active(doc: &mut Doc, node: &Node<'_>, what: &str) -> Option<ActiveSection> {
    let mut f = Fields::of(doc, node, what.to_owned())?;
    let mut section = ActiveSection::new();
    section.healthy.http_statuses = Some(ACTIVE_HEALTHY.to_vec());
    if let Some(kind) = f.take("type").and_then(|t| Some((t, doc.str(t, "type")?))) {
        match kind.1.get_ref().as_str() {
            "tcp" | "http" => section.kind = Some(kind.1),
            other => doc.error(
                kind.0,
                format!("{what}: type {other:?} is not supported by Frameway (tcp, http)"),
            ),
        }
    }
    if let Some(ms) = f
        .take("timeout")
        .and_then(|t| doc.seconds_as_ms(t, "timeout"))
    {
        section.timeout = ms.max(1);
    }
    // Frameway probes each target on its own timer: no pool of probers.
    if let Some(c) = f.take("concurrency") {
        doc.uint(c, "concurrency");
    }
    if let Some(path) = f.take("http_path").and_then(|p| doc.str(p, "http_path")) {
        section.http_path = path.into_inner();
    }
    f.at_default(doc, "headers", json!(null));
    f.at_default(doc, "https_sni", json!(null));
    f.at_default(doc, "https_verify_certificate", json!(true));

    let mut healthy_interval = 0;
    if let Some(h) = f.take("healthy") {
        if let Some(mut hf) = Fields::of(doc, h, format!("{what}.healthy")) {
            if let Some(i) = hf
                .take("interval")
                .and_then(|i| doc.seconds_as_ms(i, "interval"))
            {
                healthy_interval = i;
            }
            if let Some(n) = hf.take("successes").and_then(|n| doc.uint(n, "successes")) {
                section.healthy.successes = n.min(255) as u32;
            }
            if let Some(s) = hf.take("http_statuses") {
                section.healthy.http_statuses = Some(statuses(doc, s));
            }
            hf.finish(doc, |_| None);
        }
    }
    let mut unhealthy_interval = (0, None);
    if let Some(u) = f.take("unhealthy") {
        if let Some(mut uf) = Fields::of(doc, u, format!("{what}.unhealthy")) {
            if let Some(i) = uf.take("interval") {
                unhealthy_interval = (doc.seconds_as_ms(i, "interval").unwrap_or(0), Some(i));
            }
            section.unhealthy = failures(doc, &mut uf);
            uf.at_default(
                doc,
                "http_statuses",
                json!([429, 404, 500, 501, 502, 503, 504, 505]),
            );
            uf.finish(doc, |_| None);
        }
    }
    f.finish(doc, |_| None);
    match (healthy_interval, unhealthy_interval) {
        (0, (0, _)) => None,
        (h, (u, Some(node))) if h != 0 && u != 0 && h != u => {
            doc.error(
                node,
                format!(
                    "{what}: Frameway probes healthy and unhealthy targets at one interval; \
                     give both the same"
                ),
            );
            None
        }
        (h, (u, _)) => {
            if section.healthy.successes == 0 {
                doc.error(
                    node,
                    format!("{what}: healthy.successes must be 1 or more when probes run"),
                );
            }
            section.interval = h.max(u);
            Some(section)
        }
    }
}

fn passive(doc: &mut Doc, node: &Node<'_>, what: &str, checks: &mut HealthchecksSection) {
    let Some(mut f) = Fields::of(doc, node, what.to_owned()) else {
        return;
    };
    if let Some(t) = f.take("type") {
        if let Some(kind) = doc.str(t, "type") {
            if !["http", "tcp"].contains(&kind.get_ref().as_str()) {
                let message = format!(
                    "{what}: type {:?} is not supported by Frameway (tcp, http)",
                    kind.get_ref()
                );
                doc.error(t, message);
            }
        }
    }
    // A success in Frameway resets the count of failures in a row, whatever
    // its status: Kong's healthy counts have nothing to add.
    if let Some(h) = f.take("healthy") {
        if let Some(mut hf) = Fields::of(doc, h, format!("{what}.healthy")) {
            if let Some(n) = hf.take("successes") {
                doc.uint(n, "successes");
            }
            if let Some(s) = hf.take("http_statuses") {
                statuses(doc, s);
            }
            hf.finish(doc, |_| None);
        }
    }
    if let Some(u) = f.take("unhealthy") {
        if let Some(mut uf) = Fields::of(doc, u, format!("{what}.unhealthy")) {
            checks.passive.unhealthy = failures(doc, &mut uf);
            uf.at_default(doc, "http_statuses", json!([429, 500, 503]));
            uf.finish(doc, |_| None);
        }
    }
    f.finish(doc, |_| None);
}

/// Kong counts TCP failures, HTTP failures and timeouts apart; Frameway
/// counts failures of any kind. The counts given (not 0) must agree.
fn failures(doc: &mut Doc, f: &mut Fields<'_, '_>) -> Failures {
    let mut count: Option<(u64, &'static str)> = None;
    for key in ["tcp_failures", "http_failures", "timeouts"] {
        let Some(node) = f.take(key) else { continue };
        let Some(n) = doc.uint(node, key).filter(|&n| n > 0) else {
            continue;
        };
        match count {
            Some((m, first)) if m != n => {
                let message = format!(
                    "{}: Frameway counts failures of every kind together; {key} ({n}) and \
                     {first} ({m}) must agree",
                    f.what()
                );
                doc.error(node, message);
            }
            Some(_) => {}
            None => count = Some((n, key)),
        }
    }
    Failures {
        failures: count.map_or(0, |(n, _)| n.min(255) as u32),
    }
}

fn statuses(doc: &mut Doc, node: &Node<'_>) -> Vec<u16> {
    doc.seq(node, "http_statuses")
        .iter()
        .filter_map(|s| match doc.uint(s, "an HTTP status") {
            Some(n @ 100..=599) => Some(n as u16),
            Some(_) => {
                doc.error(s, "an HTTP status is from 100 to 599".to_owned());
                None
            }
            None => None,
        })
        .collect()
}
