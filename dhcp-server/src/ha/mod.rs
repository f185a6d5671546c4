//! High availability: a pair of servers (and backups) that keeps answering when one of them
//! fails, in Kea's modes (hot-standby, load-balancing, passive-backup).
//!
//! This first part covers pairs on a shared lease store (PostgreSQL, Redis): the store's atomic
//! claims keep the leases one, so failover is only about who answers. Each server asks its
//! partner how it is every `heartbeat-delay` over the management API (`POST
//! /api/v1/ha/heartbeat`, with the API's token), and [`Ha`] decides for every client packet
//! whether this server answers it ([`state::Machine`]).

pub mod config;
mod hash;
pub mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcp_core::MessageType;
use dhcp_core::wire::{Packet, code};
use dhcp_net::Verdict;
use tracing::{info, warn};

pub use self::config::{HaConfig, Mode, Peer, Role};
pub use self::state::{HaState, Machine, Seen};
use crate::api::model::{HaPartnerStatus, HaStatus, Heartbeat};

/// The high-availability side of one server: its state machine and its partner.
#[derive(Debug)]
pub struct Ha {
    config: HaConfig,
    machine: Mutex<Machine>,
    /// For the `secs`-free check of how long this server has run, and as the machine's clock.
    epoch: Instant,
}

impl Ha {
    /// A server starting now, in `waiting`.
    pub fn new(config: HaConfig) -> Ha {
        let epoch = Instant::now();
        Ha { machine: Mutex::new(Machine::new(&config, epoch)), config, epoch }
    }

    /// The `[ha]` table it runs.
    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now.
    pub fn state(&self) -> HaState {
        self.machine().state()
    }

    /// Whether this server answers the client that sent `datagram`. A datagram that does not
    /// parse is handed to the engine, which drops and counts it.
    pub fn decide(&self, datagram: &[u8]) -> Verdict {
        let Ok(packet) = Packet::parse(datagram) else { return Verdict::Handle };
        let client_id = packet.option(code::CLIENT_IDENTIFIER);
        let key = client_id.as_deref().filter(|id| !id.is_empty()).unwrap_or(packet.chaddr());
        // Kea splits these message types by the hash and leaves any other to the primary.
        let split = matches!(
            packet.message_type(),
            MessageType::Discover
                | MessageType::Request
                | MessageType::Decline
                | MessageType::Release
                | MessageType::Inform
        );
        let hash = if split { hash::client_hash(client_id.as_deref(), packet.chaddr()) } else { 0 };
        let seen = Seen { hash, secs: packet.secs(), client: key };
        let (answer, changed) = self.machine().client_packet(seen);
        if let Some(state) = changed {
            warn!(state = state.as_str(), "HA: partner's clients go unanswered; taking them over");
        }
        if answer { Verdict::Handle } else { Verdict::Ignore }
    }

    /// What this server tells its partner: name, state, clock and how many leases it counts.
    pub fn heartbeat(&self, lease_count: u64) -> Heartbeat {
        Heartbeat {
            name: self.config.this_server.clone(),
            state: self.state().as_str().to_owned(),
            clock: unix_now(),
            lease_count,
        }
    }

    /// The partner spoke (its heartbeat, or its answer to ours).
    pub fn heard(&self, from: &Heartbeat) {
        let Some(state) = HaState::from_name(&from.state) else {
            warn!(state = from.state, "HA: the partner sent a state this server does not know");
            return;
        };
        let skew = Duration::from_secs(from.clock.abs_diff(unix_now()));
        let changed = self.machine().heard_from_partner(Instant::now(), state, skew);
        if let Some(next) = changed {
            if next == HaState::Terminated {
                warn!(skew_secs = skew.as_secs(), "HA: clocks differ by more than a minute; no failover until fixed");
            } else {
                info!(state = next.as_str(), partner = from.state, "HA: partner answers");
            }
        }
    }

    /// Time passed; returns the new state when it changed (and logs it).
    pub fn tick(&self) -> Option<HaState> {
        let changed = self.machine().tick(Instant::now());
        if let Some(next) = changed {
            warn!(state = next.as_str(), "HA: partner silent for max-response-delay");
        }
        changed
    }

    /// An operator's `ha partner-down`: take the partner's clients over now. `None` when this
    /// server may not (a backup, passive-backup mode) or already does.
    pub fn partner_down(&self) -> Option<HaState> {
        let changed = self.machine().partner_down();
        if let Some(next) = changed {
            warn!(state = next.as_str(), "HA: partner-down by operator");
        }
        changed
    }

    /// The state for the API, `dhcp-cli show ha` and the metrics.
    pub fn status(&self) -> HaStatus {
        let now = Instant::now();
        let machine = self.machine();
        HaStatus {
            this_server: self.config.this_server.clone(),
            mode: self.config.mode.as_str().to_owned(),
            role: self.config.role().as_str().to_owned(),
            state: machine.state().as_str().to_owned(),
            partner: self.config.partner().map(|p| HaPartnerStatus {
                name: p.name.clone(),
                url: p.url.clone(),
                role: p.role.as_str().to_owned(),
                state: machine.partner_state().map(|s| s.as_str().to_owned()),
                last_contact_ms: machine.since_contact(now).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            unacked_clients: machine.unacked_clients(),
            not_in_scope: machine.not_in_scope(),
            uptime_ms: u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Asks the partner how it is, every `heartbeat-delay`, until dropped; `lease_count` says
    /// how many leases this server counts. Without a partner (a primary with backups only)
    /// there is nothing to ask.
    pub async fn run_heartbeats(self: Arc<Self>, token: String, lease_count: impl Fn() -> u64) {
        let Some(partner) = self.config.partner().cloned() else { return };
        let url = format!("{}/api/v1/ha/heartbeat", partner.url);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(self.config.heartbeat_delay.max(Duration::from_millis(200))))
            .build()
            .new_agent();
        let mut interval = tokio::time::interval(self.config.heartbeat_delay);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_reachable = true;
        loop {
            interval.tick().await;
            let body = self.heartbeat(lease_count());
            let (agent, url, token) = (agent.clone(), url.clone(), token.clone());
            let answer = tokio::task::spawn_blocking(move || send_heartbeat(&agent, &url, &token, &body)).await;
            match answer {
                Ok(Ok(reply)) => {
                    if !was_reachable {
                        info!(partner = partner.name, "HA: partner reachable again");
                    }
                    was_reachable = true;
                    self.heard(&reply);
                }
                Ok(Err(reason)) => {
                    if was_reachable {
                        warn!(partner = partner.name, %reason, "HA: heartbeat not answered");
                    }
                    was_reachable = false;
                }
                Err(e) => warn!(error = %e, "HA: heartbeat task failed"),
            }
            self.tick();
        }
    }
}

/// One heartbeat over HTTP; the error says why there was no answer.
fn send_heartbeat(agent: &ureq::Agent, url: &str, token: &str, body: &Heartbeat) -> Result<Heartbeat, String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(json.as_str())
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("status {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("not a heartbeat: {e}"))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
