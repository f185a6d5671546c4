//! One full DORA against a server: the boot-time health check operators run before a server
//! takes traffic. The probe speaks DHCP through `dhcproto`, an implementation independent of
//! the server's own parser and writer.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How the probe reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeMode {
    /// As a client on `interface`: broadcasts from 0.0.0.0 to the server port and takes the
    /// broadcast replies, as a booting host does. Needs the client port free on that interface.
    Client {
        /// The interface to probe on.
        interface: String,
    },
    /// As a relay agent at `local`, unicasting to `server`: replies come back to `local`. The
    /// probe binds an ephemeral port and asks for replies there with the RFC 8357 relay agent
    /// port sub-option, so it runs unprivileged beside the server.
    Relay {
        /// The relay's address (giaddr); must be a local address.
        local: Ipv4Addr,
        /// The server's address and port.
        server: SocketAddrV4,
    },
}

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// How to reach the server.
    pub mode: ProbeMode,
    /// The client hardware address to use.
    pub mac: [u8; 6],
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// The server port (67).
    pub server_port: u16,
    /// The client port (68), for client mode.
    pub client_port: u16,
    /// Release the lease after it is granted, so health checks do not use up the pool.
    pub release: bool,
}

impl ProbeOptions {
    /// Defaults for `mode`: a fixed locally administered MAC, 3 s per reply, ports 67/68,
    /// release afterwards.
    pub fn new(mode: ProbeMode) -> ProbeOptions {
        ProbeOptions {
            mode,
            mac: [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01],
            timeout: Duration::from_secs(3),
            server_port: 67,
            client_port: 68,
            release: true,
        }
    }
}

/// The lease the server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLease {
    /// The address (yiaddr of the ACK).
    pub addr: Ipv4Addr,
    /// The server identifier (option 54).
    pub server_id: Option<Ipv4Addr>,
    /// Lease time in seconds (option 51).
    pub lease_time: Option<u32>,
    /// Subnet mask (option 1).
    pub subnet_mask: Option<Ipv4Addr>,
    /// Routers (option 3).
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain_name: Option<String>,
    /// Whether the lease was released after the check.
    pub released: bool,
}

/// One `key value` line per field that is set (`address`, `server-id`, `lease-time`,
/// `subnet-mask`, `routers`, `dns-servers`, `domain-name`, `released`): easy to read and to grep.
impl std::fmt::Display for ProbeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |addrs: &[Ipv4Addr]| addrs.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",");
        writeln!(f, "address {}", self.addr)?;
        if let Some(id) = self.server_id {
            writeln!(f, "server-id {id}")?;
        }
        if let Some(t) = self.lease_time {
            writeln!(f, "lease-time {t}")?;
        }
        if let Some(mask) = self.subnet_mask {
            writeln!(f, "subnet-mask {mask}")?;
        }
        if !self.routers.is_empty() {
            writeln!(f, "routers {}", list(&self.routers))?;
        }
        if !self.dns_servers.is_empty() {
            writeln!(f, "dns-servers {}", list(&self.dns_servers))?;
        }
        if let Some(domain) = &self.domain_name {
            writeln!(f, "domain-name {domain}")?;
        }
        write!(f, "released {}", self.released)
    }
}

/// Why the probe got no lease.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A socket could not be set up or used.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// No answer in time.
    #[error("no {0} within the timeout")]
    Timeout(&'static str),
    /// The server refused the REQUEST.
    #[error("server sent a NAK{}", .0.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Nak(Option<String>),
    /// The interface could not be used.
    #[error("interface {0}: {1}")]
    Interface(String, String),
}

/// Runs DISCOVER, OFFER, REQUEST, ACK (and RELEASE when asked) and returns the lease.
pub fn probe(options: &ProbeOptions) -> Result<ProbeLease, ProbeError> {
    let channel = Channel::open(options)?;
    let xid = transaction_id(options.mac);
    let discover = channel.message(options, xid, MessageType::Discover, &[]);
    let offer = channel.exchange(&discover, xid, "OFFER", |m| is_type(m, MessageType::Offer), options.timeout)?;
    let server_id = server_id(&offer);
    let mut request_opts = vec![DhcpOption::RequestedIpAddress(offer.yiaddr())];
    if let Some(id) = server_id {
        request_opts.push(DhcpOption::ServerIdentifier(id));
    }
    let request = channel.message(options, xid, MessageType::Request, &request_opts);
    let ack = channel.exchange(
        &request,
        xid,
        "ACK",
        |m| is_type(m, MessageType::Ack) || is_type(m, MessageType::Nak),
        options.timeout,
    )?;
    if is_type(&ack, MessageType::Nak) {
        let text = match ack.opts().get(OptionCode::Message) {
            Some(DhcpOption::Message(text)) => Some(text.clone()),
            _ => None,
        };
        return Err(ProbeError::Nak(text));
    }
    let mut lease = describe(&ack);
    if options.release {
        let mut release = channel.message(options, xid.wrapping_add(1), MessageType::Release, &[]);
        release.set_ciaddr(lease.addr);
        release.set_flags(Flags::default());
        if let Some(id) = lease.server_id {
            release.opts_mut().insert(DhcpOption::ServerIdentifier(id));
        }
        channel.send(&release)?;
        lease.released = true;
    }
    Ok(lease)
}

/// The socket the probe talks through and where it sends.
struct Channel {
    socket: UdpSocket,
    to: SocketAddrV4,
    giaddr: Ipv4Addr,
    relay_port: Option<u16>,
}

impl Channel {
    fn open(options: &ProbeOptions) -> Result<Channel, ProbeError> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        let channel = match &options.mode {
            ProbeMode::Client { interface } => {
                socket
                    .bind_device(Some(interface.as_bytes()))
                    .map_err(|e| ProbeError::Interface(interface.clone(), e.to_string()))?;
                socket.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, options.client_port)))?;
                Channel {
                    socket: socket.into(),
                    to: SocketAddrV4::new(Ipv4Addr::BROADCAST, options.server_port),
                    giaddr: Ipv4Addr::UNSPECIFIED,
                    relay_port: None,
                }
            }
            ProbeMode::Relay { local, server } => {
                socket.bind(&SockAddr::from(SocketAddrV4::new(*local, 0)))?;
                let socket: UdpSocket = socket.into();
                let port = socket.local_addr()?.port();
                Channel { socket, to: *server, giaddr: *local, relay_port: Some(port) }
            }
        };
        Ok(channel)
    }

    fn message(&self, options: &ProbeOptions, xid: u32, kind: MessageType, extra: &[DhcpOption]) -> Message {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootRequest)
            .set_xid(xid)
            .set_chaddr(&options.mac)
            .set_giaddr(self.giaddr)
            .set_flags(Flags::default().set_broadcast());
        if !self.giaddr.is_unspecified() {
            msg.set_hops(1);
        }
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::DomainName,
            OptionCode::AddressLeaseTime,
        ]));
        for opt in extra {
            opts.insert(opt.clone());
        }
        if let Some(port) = self.relay_port {
            // Option 82 with only sub-option 19 (RFC 8357): reply to the relay at this port.
            // dhcproto has no variant for sub-option 19, so it goes in as raw bytes.
            let mut info = v4::relay::RelayAgentInformation::default();
            let sub = v4::relay::UnknownInfo::new(v4::relay::RelayCode::from(19), port.to_be_bytes().to_vec());
            info.insert(v4::relay::RelayInfo::Unknown(sub));
            opts.insert(DhcpOption::RelayAgentInformation(info));
        }
        msg
    }

    fn send(&self, msg: &Message) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(300);
        msg.encode(&mut Encoder::new(&mut bytes)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.socket.send_to(&bytes, self.to)?;
        Ok(())
    }

    /// Sends `msg` and waits for a reply with `xid` that `wanted` accepts, resending once
    /// halfway through the timeout (a lost datagram is normal on a busy network).
    fn exchange(
        &self,
        msg: &Message,
        xid: u32,
        what: &'static str,
        wanted: impl Fn(&Message) -> bool,
        timeout: Duration,
    ) -> Result<Message, ProbeError> {
        self.send(msg)?;
        let start = Instant::now();
        let mut resent = false;
        let mut buf = [0u8; 1500];
        loop {
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(ProbeError::Timeout(what));
            }
            if !resent && elapsed >= timeout / 2 {
                self.send(msg)?;
                resent = true;
            }
            let wait = if resent { timeout - elapsed } else { timeout / 2 - elapsed };
            self.socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(reply) = buf.get(..len).and_then(|b| Message::decode(&mut Decoder::new(b)).ok()) else {
                continue;
            };
            if reply.opcode() == Opcode::BootReply && reply.xid() == xid && wanted(&reply) {
                return Ok(reply);
            }
        }
    }
}

fn is_type(msg: &Message, kind: MessageType) -> bool {
    matches!(msg.opts().get(OptionCode::MessageType), Some(DhcpOption::MessageType(t)) if *t == kind)
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
        _ => None,
    }
}

fn describe(ack: &Message) -> ProbeLease {
    let opts = ack.opts();
    ProbeLease {
        addr: ack.yiaddr(),
        server_id: server_id(ack),
        lease_time: match opts.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
            _ => None,
        },
        subnet_mask: match opts.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => Some(*m),
            _ => None,
        },
        routers: match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.clone(),
            _ => Vec::new(),
        },
        dns_servers: match opts.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d.clone(),
            _ => Vec::new(),
        },
        domain_name: match opts.get(OptionCode::DomainName) {
            Some(DhcpOption::DomainName(d)) => Some(d.clone()),
            _ => None,
        },
        released: false,
    }
}

/// A transaction id that differs between runs and between MACs.
fn transaction_id(mac: [u8; 6]) -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ std::process::id()
}
