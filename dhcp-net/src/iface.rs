//! The host's interfaces: names, indexes, IPv4 addresses and hardware addresses.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use nix::ifaddrs::getifaddrs;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// The interface's name (`eth0`).
    pub name: String,
    /// Its index; 0 when the kernel gave none.
    pub index: u32,
    /// Its hardware address, when it has one (loopback has none).
    pub mac: Option<[u8; 6]>,
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Addr>,
}

/// Every interface on the host (in the caller's network namespace).
pub fn interfaces() -> std::io::Result<Vec<Interface>> {
    let mut by_name: HashMap<String, Interface> = HashMap::new();
    for entry in getifaddrs()? {
        let iface = by_name
            .entry(entry.interface_name.clone())
            .or_insert_with(|| Interface { name: entry.interface_name.clone(), ..Interface::default() });
        let Some(address) = entry.address else { continue };
        if let Some(sin) = address.as_sockaddr_in() {
            iface.addrs.push(sin.ip());
        } else if let Some(link) = address.as_link_addr() {
            iface.index = u32::try_from(link.ifindex()).unwrap_or(0);
            if let Some(mac) = link.addr() {
                iface.mac = Some(mac).filter(|m| m.iter().any(|b| *b != 0));
            }
        }
    }
    let mut all: Vec<Interface> = by_name.into_values().collect();
    all.sort_by_key(|i| i.index);
    Ok(all)
}

/// The interface called `name`.
pub fn by_name(name: &str) -> std::io::Result<Interface> {
    interfaces()?
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no interface named {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loopback() {
        let lo = by_name("lo").expect("every Linux host has lo");
        assert_ne!(lo.index, 0);
        assert!(lo.addrs.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert_eq!(lo.mac, None);
    }
}
