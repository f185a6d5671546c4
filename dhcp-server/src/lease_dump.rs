//! The lease dump: every lease as CSV, written on SIGUSR1 and at shutdown when `lease-dump` is
//! set, for operators' scripts and backups.

use std::io;
use std::path::Path;

use dhcp_core::{LeaseStore, StoreError};

use crate::files::replace_file;

/// Writes every lease in `store` to `path` as CSV, replacing the file atomically: a header
/// `address,hwaddr,client_id,state,expire,subnet_id,hostname`, then one line per lease (`expire`
/// is the deadline in Unix seconds, empty for released and expired leases). Returns the number
/// of leases written. The file is synced and keeps its mode; a new one is created `0600`.
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use dhcp_core::{ClientId, HwAddr, Lease, LeaseState, LeaseStore, Timestamp};
    use dhcp_store::MemoryStore;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_dump_is_private_and_an_old_one_keeps_its_mode() {
        let store = MemoryStore::new();
        let lease = Lease {
            addr: "10.0.0.7".parse().expect("addr"),
            client: ClientId::from_bytes(&[1, 2, 0, 0, 0, 0, 7]),
            hwaddr: HwAddr::mac([2, 0, 0, 0, 0, 7]),
            subnet: 1,
            state: LeaseState::Bound { expires: Timestamp::from_secs(1_700_000_000) },
            hostname: None,
        };
        let now = Timestamp::from_secs(1_699_999_000);
        dhcp_core::block_on(store.claim(&lease, now)).expect("ready").expect("store").expect("granted");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("leases.csv");
        let written = dhcp_core::block_on(write_lease_csv(&store, &path)).expect("ready").expect("written");
        assert_eq!(written, 1);
        assert_eq!(mode(&path), 0o600, "a new dump");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        dhcp_core::block_on(write_lease_csv(&store, &path)).expect("ready").expect("written");
        assert_eq!(mode(&path), 0o644, "the operator's mode stays");
        assert!(std::fs::read_to_string(&path).expect("read").contains("10.0.0.7,"));
    }
}
