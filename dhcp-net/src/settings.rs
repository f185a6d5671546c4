//! What the network side needs to know: where to listen, on which ports, and how many requests
//! to handle at once. The operated server's config file (`dhcp-server`) reads these from its
//! `[server]` table; an embedder builds them in code.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// Where the server listens: one entry of `server.listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Every interface, through one socket bound to 0.0.0.0 (`"*"`).
    All,
    /// One interface by name: bound to 0.0.0.0 with SO_BINDTODEVICE, so it also receives the
    /// broadcasts of clients that have no address yet.
    Interface(String),
    /// One local address: only datagrams sent to it (relays, renewing clients), no broadcasts.
    Address(Ipv4Addr),
}

/// A `listen` entry that is neither `"*"`, an IPv4 address nor a Linux interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an interface name, an address nor \"*\"")]
pub struct BadListen(pub String);

impl FromStr for Listen {
    type Err = BadListen;

    /// `"*"`, an IPv4 address, or an interface name (1 to 15 bytes, no `/`, `:` or whitespace).
    fn from_str(text: &str) -> Result<Listen, BadListen> {
        if text == "*" {
            return Ok(Listen::All);
        }
        if let Ok(addr) = text.parse() {
            return Ok(Listen::Address(addr));
        }
        let valid = !text.is_empty() && text.len() < 16 && !text.contains(['/', ' ', '\t', ':']);
        if valid { Ok(Listen::Interface(text.to_owned())) } else { Err(BadListen(text.to_owned())) }
    }
}

/// The sockets to open and how to drive them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    /// Where to listen; at least one entry.
    pub listen: Vec<Listen>,
    /// The port clients and relays send to.
    pub server_port: u16,
    /// The port replies to clients go to.
    pub client_port: u16,
    /// How many requests the tokio driver handles at once. 1 handles each datagram to the end
    /// before reading the next (best for the in-memory store, which never waits); a network
    /// store waits on round trips, which requests in flight together overlap.
    pub max_in_flight: usize,
    /// With `max_in_flight` above 1, answer the first datagram read after each wakeup on the
    /// receiving task itself and hand only the ones queued behind it to tasks of their own.
    /// For a store that never waits (the in-memory one) on a multi-threaded runtime: at light
    /// load every datagram is answered where it was read, with no task to spawn and no other
    /// thread to wake; under a backlog the other threads take what queues. A store that waits
    /// would hold up reading while it does: leave it off then.
    pub inline_first: bool,
    /// Bytes of datagrams each socket may queue while the server is busy (SO_RCVBUF, forced
    /// past `net.core.rmem_max` when the process may); 0 keeps the system's default, which
    /// holds only about a hundred datagrams: a burst of clients after a power cut, or a
    /// moment without the CPU, overflows it.
    pub receive_buffer: usize,
}

/// The receive buffer a socket asks for unless told otherwise: 4 MiB, some two thousand
/// datagrams.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;

impl Default for NetSettings {
    /// Every interface on the standard ports (67 and 68), one request at a time, 4 MiB of
    /// receive buffer.
    fn default() -> Self {
        NetSettings {
            listen: vec![Listen::All],
            server_port: 67,
            client_port: 68,
            max_in_flight: 1,
            inline_first: false,
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_entries() {
        assert_eq!("*".parse(), Ok(Listen::All));
        assert_eq!("127.0.0.1".parse(), Ok(Listen::Address(Ipv4Addr::LOCALHOST)));
        assert_eq!("veth0".parse(), Ok(Listen::Interface("veth0".into())));
        for bad in ["", "a/b", "a b", "fe80::1", "sixteen-bytes-xx"] {
            assert_eq!(bad.parse::<Listen>(), Err(BadListen(bad.into())), "{bad:?}");
        }
    }
}
