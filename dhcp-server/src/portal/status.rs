//! The dashboard (per-subnet use, packet rates, HA state, store health) and the subnets page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dhcp_core::LeaseStore;
use maud::{Markup, html};

use super::page::{Refused, Viewer, answer, page, require};
use crate::api::admin::Admin;
use crate::users::Role;

/// How long the dashboard waits for the store's health check.
const HEALTH_WAIT: Duration = Duration::from_secs(1);

/// A subnet's use, as the dashboard and the subnets page show it.
struct Use {
    id: u32,
    net: String,
    pools: Vec<String>,
    total: u64,
    assigned: i64,
    declined: i64,
}

fn uses<S: LeaseStore>(admin: &Admin<S>) -> Vec<Use> {
    let engine = admin.server.engine();
    let config = engine.config();
    config
        .subnets
        .iter()
        .map(|subnet| {
            let stats = engine.stats().subnet(subnet.id);
            Use {
                id: subnet.id,
                net: subnet.net.to_string(),
                pools: subnet.pools.iter().map(|p| format!("{}-{}", p.first, p.last)).collect(),
                total: subnet.total_addresses(),
                assigned: stats.as_ref().map_or(0, |s| s.assigned_addresses()),
                declined: stats.as_ref().map_or(0, |s| s.declined_addresses()),
            }
        })
        .collect()
}

fn percent(part: i64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { part.max(0) as f64 * 100.0 / total as f64 }
}

fn use_table(uses: &[Use], with_pools: bool) -> Markup {
    html! {
        div.scroll {
            table {
                caption.muted { "Addresses by subnet" }
                thead { tr {
                    th scope="col" { "Subnet" } th scope="col" { "Network" }
                    @if with_pools { th scope="col" { "Pools" } }
                    th scope="col" .num { "Addresses" } th scope="col" .num { "Assigned" }
                    th scope="col" .num { "Declined" } th scope="col" { "In use" }
                } }
                tbody {
                    @for u in uses {
                        @let used = percent(u.assigned, u.total);
                        tr {
                            td { (u.id) } td { (u.net) }
                            @if with_pools { td { (u.pools.join(", ")) } }
                            td.num { (u.total) } td.num { (u.assigned) } td.num { (u.declined) }
                            td {
                                div.bar role="img" aria-label=(format!("{used:.1}% in use")) {
                                    span style=(format!("width: {:.1}%", used.min(100.0))) {}
                                }
                                (format!("{used:.1}%"))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /portal/`: the dashboard.
pub(crate) async fn dashboard<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer = require(&admin, &headers, Role::Viewer)?;
    let probe = admin.server.engine().store().lease_by_addr(std::net::Ipv4Addr::UNSPECIFIED);
    let store = match tokio::time::timeout(HEALTH_WAIT, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::redact::redact_secrets(&e.to_string())),
        Err(_) => Err(format!("no answer within {} s", HEALTH_WAIT.as_secs())),
    };
    let rates = admin.rates.rates();
    let ha = admin.ha.as_ref().map(|ha| ha.status());
    let stats = admin.server.engine().stats();
    let body = html! {
        section aria-labelledby="health" {
            h2 #health { "Health" }
            ul {
                li { "Store: " @match &store {
                    Ok(()) => strong.ok { "answers" },
                    Err(why) => strong role="alert" { "failing: " (why) },
                } }
                li { "Sockets: " (admin.server.sockets().len()) }
                li { "High availability: " @match &ha {
                    Some(ha) => { (ha.this_server) " is " strong { (ha.state) } " (" (ha.role) ")"
                        @if let Some(partner) = &ha.partner { "; partner " (partner.name) " is " (partner.state.as_deref().unwrap_or("unknown")) } }
                    None => span.muted { "not configured (a server on its own)" },
                } }
            }
        }
        section aria-labelledby="traffic" {
            h2 #traffic { "Traffic" }
            @match rates {
                Some(r) => p { (format!("{:.1}", r.received)) " packets/s received, " (format!("{:.1}", r.acks)) " ACKs/s, "
                    (format!("{:.1}", r.dropped)) " drops/s over the last " (format!("{:.0}", r.over)) " s." },
                None => p.muted { "Rates appear after the first samples (every few seconds)." },
            }
            p.muted { "Since start: " (stats.get(dhcp_core::Counter::Received)) " received, "
                (stats.get(dhcp_core::Counter::AckSent)) " ACKs, " (stats.get(dhcp_core::Counter::ReceiveDrop)) " dropped." }
        }
        section aria-labelledby="subnets" {
            h2 #subnets { "Subnets" }
            (use_table(&uses(&admin), false))
        }
    };
    Ok(answer(StatusCode::OK, page("Dashboard", Some(&viewer), body)))
}

/// `GET /portal/subnets`: the subnets and pools, read-only, with their use.
pub(crate) async fn subnets<S: LeaseStore + 'static>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let viewer: Viewer = require(&admin, &headers, Role::Viewer)?;
    let body = html! {
        p.muted { "Subnets and pools come from the config; an admin changes them through the config file or the API." }
        (use_table(&uses(&admin), true))
    };
    Ok(answer(StatusCode::OK, page("Subnets and pools", Some(&viewer), body)))
}
