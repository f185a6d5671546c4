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
mod peer;
mod replica;
mod runtime;
pub mod state;
pub mod store;
mod wire;

pub use self::config::{HaConfig, Mode, Peer, Role};
pub use self::replica::{LeaseChanged, ReplicaStore};
pub use self::runtime::Ha;
pub(crate) use self::runtime::assigned_leases;
pub use self::runtime::pools_fingerprint;
pub use self::state::{HaState, Machine, Seen, Share};
pub use self::store::HaStore;
pub use self::wire::{
    Change, LEASE_UPDATES_TYPE, change_from_model, decode_updates, encode_updates, from_record, record,
};
