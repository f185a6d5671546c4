//! The high-availability state machine, without I/O: it is told of heartbeats, of the client
//! packets it sees and of the time, and says whether this server answers a client.
//!
//! Failure detection is Kea's: the partner counts as unreachable when it has answered no
//! heartbeat (and sent none) for `max-response-delay`; then, unless `max-unacked-clients` is 0,
//! this server takes the partner's clients over only once more than that many of them are seen
//! retrying with `secs` past `max-ack-delay` (the partner may be cut off from us, not from them).

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use super::config::{HaConfig, Mode, Role};

/// Clocks further apart than this stop failover (Kea's rule): leases would be judged by two
/// different times.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Distinct unanswered clients remembered at most (a flood of made-up MACs cannot grow it).
const MAX_TRACKED: usize = 4096;

/// A server's high-availability state. Kea's states of the same name mean the same; Kea has no
/// `communications-interrupted` (it stays in its normal state while it counts unanswered
/// clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaState {
    /// Just started: answers no one until the partner answers or stays silent past
    /// `max-response-delay`.
    Waiting,
    /// The partner answered a server on a local store that just started: it fetches the
    /// partner's leases before it answers anyone.
    Syncing,
    /// Hot-standby, both up: the primary answers everyone, the standby no one.
    HotStandby,
    /// Load-balancing, both up: each answers its share.
    LoadBalancing,
    /// Passive-backup (or a backup in any mode): the primary answers, backups never do.
    PassiveBackup,
    /// The partner stopped answering heartbeats; its clients are watched for retries.
    CommunicationsInterrupted,
    /// The partner is down: this server answers every client.
    PartnerDown,
    /// The clocks of the pair disagree by more than a minute: each answers only its own
    /// clients, and no failover happens until an operator fixes the clocks and restarts.
    Terminated,
    /// An operator put this server in maintenance: it answers nobody but keeps its leases in
    /// step, so it can be stopped without a client noticing.
    InMaintenance,
    /// The partner is in maintenance: this server answers every client from the whole pool.
    PartnerInMaintenance,
}

impl HaState {
    /// Every state, for metrics.
    pub const ALL: [HaState; 10] = [
        HaState::Waiting,
        HaState::Syncing,
        HaState::HotStandby,
        HaState::LoadBalancing,
        HaState::PassiveBackup,
        HaState::CommunicationsInterrupted,
        HaState::PartnerDown,
        HaState::Terminated,
        HaState::InMaintenance,
        HaState::PartnerInMaintenance,
    ];

    /// The state's name, as the API, the metrics and the logs give it.
    pub fn as_str(self) -> &'static str {
        match self {
            HaState::Waiting => "waiting",
            HaState::Syncing => "syncing",
            HaState::HotStandby => "hot-standby",
            HaState::LoadBalancing => "load-balancing",
            HaState::PassiveBackup => "passive-backup",
            HaState::CommunicationsInterrupted => "communications-interrupted",
            HaState::PartnerDown => "partner-down",
            HaState::Terminated => "terminated",
            HaState::InMaintenance => "in-maintenance",
            HaState::PartnerInMaintenance => "partner-in-maintenance",
        }
    }

    /// The state a name stands for.
    pub fn from_name(name: &str) -> Option<HaState> {
        HaState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Which free addresses this server may hand out to new clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Any free address of the pool.
    Whole,
    /// The lower half of every pool range (the primary's).
    Lower,
    /// The upper half (the secondary's or standby's).
    Upper,
}

/// What the machine knows of one client packet.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The RFC 3074 hash of the client's identity.
    pub hash: u8,
    /// The packet's `secs` field.
    pub secs: u16,
    /// The client's identity (option 61, else chaddr), to count unanswered clients once each.
    pub client: &'a [u8],
}

/// The machine.
#[derive(Debug)]
pub struct Machine {
    mode: Mode,
    role: Role,
    has_partner: bool,
    max_response_delay: Duration,
    max_ack_delay: Duration,
    max_unacked: usize,
    state: HaState,
    started: Instant,
    last_contact: Option<Instant>,
    partner_state: Option<HaState>,
    unacked: HashSet<Vec<u8>>,
    not_in_scope: u64,
    /// Leases are kept in step by lease updates (local stores), so a returning server syncs
    /// and new addresses are split while the partner may be answering too.
    local_stores: bool,
    /// After this long in partner-down, the whole pool is this server's (the partner cannot
    /// still be answering clients from leases it granted before the cut).
    full_takeover_after: Duration,
    partner_down_since: Option<Instant>,
    /// An operator said the partner is down: the whole pool is this server's at once.
    operator_takeover: bool,
}

impl Machine {
    /// A server that starts at `now` in `waiting` (or straight in its normal state when it has
    /// no partner to wait for: a primary with backups only).
    pub fn new(config: &HaConfig, now: Instant) -> Machine {
        let mut machine = Machine {
            mode: config.mode,
            role: config.role(),
            has_partner: config.partner().is_some(),
            max_response_delay: config.max_response_delay,
            max_ack_delay: config.max_ack_delay,
            max_unacked: usize::try_from(config.max_unacked_clients).unwrap_or(usize::MAX),
            state: HaState::Waiting,
            started: now,
            last_contact: None,
            partner_state: None,
            unacked: HashSet::new(),
            not_in_scope: 0,
            local_stores: config.send_lease_updates,
            full_takeover_after: config.full_takeover_after,
            partner_down_since: None,
            operator_takeover: false,
        };
        if !machine.has_partner {
            machine.state = machine.normal();
        }
        machine
    }

    /// The state now.
    pub fn state(&self) -> HaState {
        self.state
    }

    /// What the partner said its state was in the last heartbeat.
    pub fn partner_state(&self) -> Option<HaState> {
        self.partner_state
    }

    /// How long ago the partner was last heard from.
    pub fn since_contact(&self, now: Instant) -> Option<Duration> {
        self.last_contact.map(|t| now.saturating_duration_since(t))
    }

    /// Distinct partner clients seen going unanswered while communications are interrupted.
    pub fn unacked_clients(&self) -> usize {
        self.unacked.len()
    }

    /// Client packets left to the partner.
    pub fn not_in_scope(&self) -> u64 {
        self.not_in_scope
    }

    /// The state of a healthy pair for this server's mode and role.
    fn normal(&self) -> HaState {
        match (self.mode, self.role) {
            (_, Role::Backup) | (Mode::PassiveBackup, _) => HaState::PassiveBackup,
            (Mode::HotStandby, _) => HaState::HotStandby,
            (Mode::LoadBalancing, _) => HaState::LoadBalancing,
        }
    }

    /// Whether this server may take its partner's clients over at all.
    fn can_take_over(&self) -> bool {
        self.has_partner && self.role != Role::Backup && self.mode != Mode::PassiveBackup
    }

    /// The partner answered a heartbeat, or sent one, at `now`: it is up, in `partner_state`,
    /// with its clock `skew` apart from ours. Returns the new state when it changed.
    pub fn heard_from_partner(&mut self, now: Instant, partner_state: HaState, skew: Duration) -> Option<HaState> {
        self.last_contact = Some(now);
        self.partner_state = Some(partner_state);
        let next = if skew > MAX_CLOCK_SKEW {
            HaState::Terminated
        } else {
            match self.state {
                HaState::Terminated => HaState::Terminated,
                HaState::InMaintenance => HaState::InMaintenance,
                // A server on a local store that starts knows no leases: it fetches the
                // partner's first (unless the partner is only waiting too).
                HaState::Waiting if self.local_stores && partner_state != HaState::Waiting => HaState::Syncing,
                HaState::Syncing => HaState::Syncing,
                _ if partner_state == HaState::InMaintenance && self.can_take_over() => HaState::PartnerInMaintenance,
                _ => self.normal(),
            }
        };
        self.unacked.clear();
        self.set(next, now)
    }

    /// The partner's leases are in the local store: serve.
    pub fn synced(&mut self, now: Instant) -> Option<HaState> {
        if self.state == HaState::Syncing { self.set(self.normal(), now) } else { None }
    }

    /// An operator says the partner is down: take its clients, and the whole pool, over now.
    pub fn partner_down(&mut self, now: Instant) -> Option<HaState> {
        if !self.can_take_over() {
            return None;
        }
        self.operator_takeover = true;
        self.set(HaState::PartnerDown, now)
    }

    /// An operator puts this server in maintenance (`on`), or takes it out: it then answers
    /// as a healthy pair does, and its partner steps back when it hears so.
    pub fn maintenance(&mut self, on: bool, now: Instant) -> Option<HaState> {
        match (on, self.state) {
            (true, _) if self.has_partner => self.set(HaState::InMaintenance, now),
            (false, HaState::InMaintenance) => self.set(self.normal(), now),
            _ => None,
        }
    }

    /// Which free addresses this server may give new clients at `now`. With a shared store
    /// (whose atomic claims keep leases one) always the whole pool. With local stores, halves
    /// whenever both servers might allocate at once: in load-balancing always, and in any mode
    /// while the partner is unreachable (it may be cut off from us but not from its clients),
    /// until an operator's partner-down or `full-takeover-after` in partner-down.
    pub fn share(&self, now: Instant) -> Share {
        if !self.local_stores {
            return Share::Whole;
        }
        let own_half = if self.role == Role::Primary { Share::Lower } else { Share::Upper };
        let full_takeover = self.operator_takeover
            || self.partner_down_since.is_some_and(|t| now.saturating_duration_since(t) >= self.full_takeover_after);
        match self.state {
            HaState::PartnerInMaintenance => Share::Whole,
            HaState::PartnerDown if full_takeover => Share::Whole,
            HaState::PartnerDown | HaState::CommunicationsInterrupted | HaState::Terminated => own_half,
            HaState::LoadBalancing => own_half,
            _ => Share::Whole,
        }
    }

    /// Time passed: checks whether the partner has been silent too long. Returns the new state
    /// when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<HaState> {
        if !self.has_partner || self.state == HaState::Terminated {
            return None;
        }
        let silent = now.saturating_duration_since(self.last_contact.unwrap_or(self.started));
        if silent < self.max_response_delay {
            return None;
        }
        match self.state {
            // Nobody answers the clients yet: a partner silent since our start is down.
            HaState::Waiting if self.can_take_over() => self.set(HaState::PartnerDown, now),
            HaState::Waiting => self.set(self.normal(), now),
            HaState::HotStandby | HaState::LoadBalancing if self.max_unacked == 0 => {
                self.set(HaState::PartnerDown, now)
            }
            HaState::HotStandby | HaState::LoadBalancing => self.set(HaState::CommunicationsInterrupted, now),
            // The partner was in maintenance and is gone now, as planned: it gave no leases
            // of its own since, so the whole pool stays this server's.
            HaState::PartnerInMaintenance => {
                let changed = self.set(HaState::PartnerDown, now);
                self.operator_takeover = true;
                changed
            }
            _ => None,
        }
    }

    /// A client packet arrived at `now`: whether this server answers it. Packets of the
    /// partner's clients feed the unanswered-client count while communications are interrupted,
    /// and the one that tips it over is answered. Returns the answer and the new state when it
    /// changed.
    pub fn client_packet(&mut self, seen: Seen<'_>, now: Instant) -> (bool, Option<HaState>) {
        if self.in_own_scope(seen.hash) {
            return (true, None);
        }
        let mut changed = None;
        if self.state == HaState::CommunicationsInterrupted
            && u64::from(seen.secs) * 1000 >= self.max_ack_delay.as_millis() as u64
        {
            if self.unacked.len() < MAX_TRACKED {
                self.unacked.insert(seen.client.to_vec());
            }
            if self.unacked.len() > self.max_unacked {
                changed = self.set(HaState::PartnerDown, now);
            }
        }
        let answer = self.state == HaState::PartnerDown;
        if !answer {
            self.not_in_scope += 1;
        }
        (answer, changed)
    }

    /// Whether a client with `hash` is this server's to answer in the current state.
    fn in_own_scope(&self, hash: u8) -> bool {
        match self.state {
            HaState::Waiting | HaState::Syncing | HaState::InMaintenance => false,
            HaState::PartnerDown | HaState::PartnerInMaintenance => true,
            _ => match (self.mode, self.role) {
                (_, Role::Backup) => false,
                (Mode::LoadBalancing, role) => super::hash::share_of(hash, 2) == u8::from(role == Role::Secondary),
                (_, role) => role == Role::Primary,
            },
        }
    }

    fn set(&mut self, next: HaState, now: Instant) -> Option<HaState> {
        if next == self.state {
            return None;
        }
        self.partner_down_since = (next == HaState::PartnerDown).then_some(now);
        if next != HaState::PartnerDown {
            self.operator_takeover = false;
        }
        self.state = next;
        if next != HaState::CommunicationsInterrupted {
            self.unacked.clear();
        }
        Some(next)
    }
}

/// `ranges` cut to the half `share` names: the first or the last half of the pool's addresses,
/// counted across its ranges.
pub(crate) fn half(ranges: &[RangeInclusive<u32>], share: Share) -> Vec<RangeInclusive<u32>> {
    let total: u64 = ranges.iter().map(|r| u64::from(r.end() - r.start()) + 1).sum();
    let lower_len = total / 2;
    let mut out = Vec::new();
    let mut seen = 0u64;
    for r in ranges {
        let len = u64::from(r.end() - r.start()) + 1;
        // Addresses of this range that fall in the lower half: the first `take`.
        let take = lower_len.saturating_sub(seen).min(len);
        let take = u32::try_from(take).unwrap_or(u32::MAX);
        match share {
            Share::Lower if take > 0 => out.push(*r.start()..=r.start() + (take - 1)),
            Share::Upper if u64::from(take) < len => out.push(r.start() + take..=*r.end()),
            _ => {}
        }
        seen += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::config::Peer;

    fn config(mode: Mode, me: Role, max_unacked: u32) -> HaConfig {
        let other = match mode {
            Mode::HotStandby => Role::Standby,
            Mode::LoadBalancing => Role::Secondary,
            Mode::PassiveBackup => Role::Backup,
        };
        let peer = |name: &str, role| Peer { name: name.into(), url: format!("http://{name}:8067"), role };
        HaConfig {
            this_server: if me == Role::Primary { "a".into() } else { "b".into() },
            mode,
            peers: vec![peer("a", Role::Primary), peer("b", other)],
            heartbeat_delay: Duration::from_secs(1),
            max_response_delay: Duration::from_secs(3),
            max_ack_delay: Duration::from_secs(1),
            max_unacked_clients: max_unacked,
            send_lease_updates: false,
            sync_lease_updates: true,
            full_takeover_after: Duration::from_secs(60),
            sync_page_size: 1000,
            tls_ca: None,
        }
    }

    fn client(id: u8, secs: u16) -> (u8, u16, [u8; 6]) {
        (id, secs, [2, 0, 0, 0, 0, id])
    }

    fn packet(m: &mut Machine, (hash, secs, id): (u8, u16, [u8; 6])) -> bool {
        m.client_packet(Seen { hash, secs, client: &id }, Instant::now()).0
    }

    #[test]
    fn hot_standby_pair_and_failover_after_unanswered_clients() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut primary = Machine::new(&config(Mode::HotStandby, Role::Primary, 2), t0);
        let mut standby = Machine::new(&config(Mode::HotStandby, Role::Standby, 2), t0);
        assert!(!packet(&mut primary, client(1, 0)), "waiting: nobody answers yet");
        assert_eq!(primary.heard_from_partner(at(1), HaState::Waiting, Duration::ZERO), Some(HaState::HotStandby));
        assert_eq!(standby.heard_from_partner(at(1), HaState::HotStandby, Duration::ZERO), Some(HaState::HotStandby));
        assert!(packet(&mut primary, client(1, 0)));
        assert!(!packet(&mut standby, client(1, 0)));

        // The primary dies at 1 s: 3 s of silence interrupts communications.
        assert_eq!(standby.tick(at(3)), None);
        assert_eq!(standby.tick(at(4)), Some(HaState::CommunicationsInterrupted));
        // Clients that have not waited long do not count; the same client retrying counts once.
        assert!(!packet(&mut standby, client(1, 0)));
        assert!(!packet(&mut standby, client(1, 4)));
        assert!(!packet(&mut standby, client(1, 6)));
        assert!(!packet(&mut standby, client(2, 2)));
        assert_eq!(standby.unacked_clients(), 2);
        // The third unanswered client tips it over, and is answered.
        let third = Seen { hash: 3, secs: 3, client: &[3] };
        assert_eq!(standby.client_packet(third, at(5)), (true, Some(HaState::PartnerDown)));
        assert!(packet(&mut standby, client(4, 0)), "partner-down: answers everyone");
        assert_eq!(standby.not_in_scope(), 5);

        // The primary comes back: the standby steps back.
        assert_eq!(standby.heard_from_partner(at(20), HaState::Waiting, Duration::ZERO), Some(HaState::HotStandby));
        assert!(!packet(&mut standby, client(5, 9)));
    }

    #[test]
    fn zero_unacked_clients_takes_over_on_silence_and_backups_never_do() {
        let t0 = Instant::now();
        let mut standby = Machine::new(&config(Mode::HotStandby, Role::Standby, 0), t0);
        standby.heard_from_partner(t0, HaState::HotStandby, Duration::ZERO);
        assert_eq!(standby.tick(t0 + Duration::from_secs(3)), Some(HaState::PartnerDown));

        let mut backup = Machine::new(&config(Mode::PassiveBackup, Role::Backup, 0), t0);
        assert_eq!(backup.tick(t0 + Duration::from_secs(10)), Some(HaState::PassiveBackup));
        assert_eq!(backup.partner_down(t0), None);
        assert!(!packet(&mut backup, client(1, 30)));
        let primary = Machine::new(&config(Mode::PassiveBackup, Role::Primary, 0), t0);
        assert_eq!(primary.state(), HaState::PassiveBackup, "no partner to wait for");
    }

    #[test]
    fn a_lone_server_takes_over_after_the_response_delay() {
        let t0 = Instant::now();
        let mut primary = Machine::new(&config(Mode::HotStandby, Role::Primary, 2), t0);
        assert_eq!(primary.tick(t0 + Duration::from_secs(2)), None);
        assert_eq!(primary.tick(t0 + Duration::from_secs(3)), Some(HaState::PartnerDown));
        assert!(packet(&mut primary, client(1, 0)));
    }

    #[test]
    fn load_balancing_splits_by_hash_and_covers_a_dead_partner() {
        let t0 = Instant::now();
        let mut a = Machine::new(&config(Mode::LoadBalancing, Role::Primary, 0), t0);
        let mut b = Machine::new(&config(Mode::LoadBalancing, Role::Secondary, 0), t0);
        a.heard_from_partner(t0, HaState::LoadBalancing, Duration::ZERO);
        b.heard_from_partner(t0, HaState::LoadBalancing, Duration::ZERO);
        let mut answered = [0u32; 2];
        for hash in 0..=255u8 {
            let (by_a, by_b) = (packet(&mut a, (hash, 0, [hash; 6])), packet(&mut b, (hash, 0, [hash; 6])));
            assert!(by_a != by_b, "exactly one answers hash {hash}");
            answered[usize::from(by_b)] += 1;
        }
        assert_eq!(answered, [128, 128]);
        assert_eq!(b.tick(t0 + Duration::from_secs(5)), Some(HaState::PartnerDown));
        assert!((0..=255u8).all(|h| packet(&mut b, (h, 0, [h; 6]))));
    }

    #[test]
    fn skewed_clocks_terminate_failover() {
        let t0 = Instant::now();
        let mut standby = Machine::new(&config(Mode::HotStandby, Role::Standby, 0), t0);
        let skew = MAX_CLOCK_SKEW + Duration::from_secs(1);
        assert_eq!(standby.heard_from_partner(t0, HaState::HotStandby, skew), Some(HaState::Terminated));
        assert_eq!(standby.tick(t0 + Duration::from_secs(30)), None);
        assert_eq!(standby.partner_down(t0), Some(HaState::PartnerDown), "an operator still can");
    }

    #[test]
    fn local_stores_sync_first_and_split_the_pool_while_apart() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let local = |mode, role| HaConfig { send_lease_updates: true, ..config(mode, role, 0) };
        let mut standby = Machine::new(&local(Mode::HotStandby, Role::Standby), t0);
        assert_eq!(standby.heard_from_partner(t0, HaState::PartnerDown, Duration::ZERO), Some(HaState::Syncing));
        assert!(!packet(&mut standby, client(1, 9)), "syncing: answers nobody");
        assert_eq!(standby.heard_from_partner(at(1), HaState::PartnerDown, Duration::ZERO), None, "still syncing");
        assert_eq!(standby.synced(at(1)), Some(HaState::HotStandby));

        let mut primary = Machine::new(&local(Mode::HotStandby, Role::Primary), t0);
        assert_eq!(primary.heard_from_partner(t0, HaState::Waiting, Duration::ZERO), Some(HaState::HotStandby));
        assert_eq!(primary.share(t0), Share::Whole, "the only one giving addresses");
        assert_eq!(primary.tick(at(3)), Some(HaState::PartnerDown));
        assert_eq!(primary.share(at(3)), Share::Lower, "the partner may still be answering");
        assert_eq!(primary.share(at(3 + 59)), Share::Lower);
        assert_eq!(primary.share(at(3 + 60)), Share::Whole, "full takeover after full-takeover-after");
        assert_eq!(standby.tick(at(5)), Some(HaState::PartnerDown));
        assert_eq!(standby.share(at(5)), Share::Upper);
        assert_eq!(standby.partner_down(at(6)), None, "already partner-down");
        let mut standby = Machine::new(&local(Mode::HotStandby, Role::Standby), t0);
        standby.heard_from_partner(t0, HaState::Waiting, Duration::ZERO);
        assert_eq!(standby.partner_down(at(1)), Some(HaState::PartnerDown));
        assert_eq!(standby.share(at(1)), Share::Whole, "an operator's partner-down gives the whole pool");

        let mut secondary = Machine::new(&local(Mode::LoadBalancing, Role::Secondary), t0);
        secondary.heard_from_partner(t0, HaState::Waiting, Duration::ZERO);
        assert_eq!(secondary.share(t0), Share::Upper, "load-balancing on local stores: always halves");
        let shared = Machine::new(&config(Mode::LoadBalancing, Role::Secondary, 0), t0);
        assert_eq!(shared.share(t0), Share::Whole, "a shared store keeps claims one by itself");
    }

    #[test]
    fn halves_split_a_pool_by_count_across_ranges() {
        let ranges = [10..=19, 100..=103];
        assert_eq!(half(&ranges, Share::Lower), vec![10..=16]);
        assert_eq!(half(&ranges, Share::Upper), vec![17..=19, 100..=103]);
        assert_eq!(half(&[5..=5], Share::Lower), Vec::<RangeInclusive<u32>>::new());
        assert_eq!(half(&[5..=5], Share::Upper), vec![5..=5]);
        let whole = [0..=u32::MAX];
        assert_eq!(half(&whole, Share::Lower), vec![0..=0x7fff_ffff]);
        assert_eq!(half(&whole, Share::Upper), vec![0x8000_0000..=u32::MAX]);
    }

    #[test]
    fn maintenance_hands_the_clients_over_and_back() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let local = |role| HaConfig { send_lease_updates: true, ..config(Mode::HotStandby, role, 2) };
        let mut primary = Machine::new(&local(Role::Primary), t0);
        let mut standby = Machine::new(&local(Role::Standby), t0);
        primary.heard_from_partner(t0, HaState::Waiting, Duration::ZERO);
        standby.heard_from_partner(t0, HaState::Waiting, Duration::ZERO);
        assert_eq!(primary.maintenance(true, at(1)), Some(HaState::InMaintenance));
        assert!(!packet(&mut primary, client(1, 0)));
        assert_eq!(primary.heard_from_partner(at(1), HaState::HotStandby, Duration::ZERO), None, "stays");
        assert_eq!(
            standby.heard_from_partner(at(1), HaState::InMaintenance, Duration::ZERO),
            Some(HaState::PartnerInMaintenance)
        );
        assert!(packet(&mut standby, client(1, 0)));
        assert_eq!(standby.share(at(1)), Share::Whole);
        // The primary is stopped for its maintenance: the standby keeps the whole pool.
        assert_eq!(standby.tick(at(5)), Some(HaState::PartnerDown));
        assert_eq!(standby.share(at(5)), Share::Whole);
        // Or it comes back out of maintenance: both return to normal.
        assert_eq!(primary.maintenance(false, at(6)), Some(HaState::HotStandby));
        assert_eq!(standby.heard_from_partner(at(6), HaState::HotStandby, Duration::ZERO), Some(HaState::HotStandby));
    }

    #[test]
    fn names_round_trip() {
        for state in HaState::ALL {
            assert_eq!(HaState::from_name(state.as_str()), Some(state));
        }
    }
}
