//! The lease dump: every lease as CSV, written on SIGUSR1 and at shutdown when `lease-dump` is
//! set, for operators' scripts and backups.

use std::io;
use std::path::Path;

use dhcp_core::{LeaseStore, StoreError};

use crate::control::replace_file;

/// Writes every lease in `store` to `path` as CSV, replacing the file atomically: a header
/// `address,hwaddr,client_id,state,expire,subnet_id,hostname`, then one line per lease (`expire`
/// is the deadline in Unix seconds, empty for released and expired leases). Returns the number
/// of leases written.
pub async fn write_lease_csv<S: LeaseStore>(store: &S, path: &Path) -> io::Result<usize> {
    let leases = store.list(None).await.map_err(|e: StoreError| io::Error::other(e.to_string()))?;
    let mut text = String::from("address,hwaddr,client_id,state,expire,subnet_id,hostname\n");
    for lease in &leases {
        let expire = lease.state.deadline().map(|t| t.as_secs().to_string()).unwrap_or_default();
        let hostname = lease.hostname.as_deref().unwrap_or("").replace([',', '\n', '\r'], " ");
        text.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            lease.addr,
            lease.hwaddr,
            lease.client,
            lease.state.name(),
            expire,
            lease.subnet,
            hostname
        ));
    }
    replace_file(path, &text)?;
    Ok(leases.len())
}
