//! DHCPv4 on the wire: a checked view over received packets, and the reply encoder.
//!
//! [`Packet::parse`] validates the whole datagram once (fixed header, magic cookie, every
//! option's length in every area the overload option names, the message type), so every
//! accessor afterwards is infallible and never panics. Options are read lazily:
//! [`Packet::option`] concatenates split instances as RFC 3396 says and borrows the bytes when
//! there is only one.
//!
//! [`ReplyWriter`] encodes a reply into a caller-supplied buffer, in the order the options are
//! given, splitting options longer than 255 bytes (RFC 3396) and spilling into the `file` and
//! `sname` fields with option 52 (RFC 2132 9.3) when the client's maximum message size would
//! otherwise be exceeded.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use dhcproto::v4::MessageType;

/// Offsets of the fixed BOOTP header fields.
pub mod field {
    use core::ops::Range;
    /// Message op code: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub const OP: usize = 0;
    /// Hardware address type.
    pub const HTYPE: usize = 1;
    /// Hardware address length.
    pub const HLEN: usize = 2;
    /// Relay hops.
    pub const HOPS: usize = 3;
    /// Transaction id.
    pub const XID: Range<usize> = 4..8;
    /// Seconds since the client began.
    pub const SECS: Range<usize> = 8..10;
    /// Flags (the broadcast bit is the top bit).
    pub const FLAGS: Range<usize> = 10..12;
    /// Client address (set when the client has one).
    pub const CIADDR: Range<usize> = 12..16;
    /// "Your" address: what the server gives.
    pub const YIADDR: Range<usize> = 16..20;
    /// Next server address.
    pub const SIADDR: Range<usize> = 20..24;
    /// Relay agent address.
    pub const GIADDR: Range<usize> = 24..28;
    /// Client hardware address.
    pub const CHADDR: Range<usize> = 28..44;
    /// Server host name, or overloaded options.
    pub const SNAME: Range<usize> = 44..108;
    /// Boot file name, or overloaded options.
    pub const FILE: Range<usize> = 108..236;
    /// The magic cookie that marks DHCP options.
    pub const COOKIE: Range<usize> = 236..240;
    /// Where the options field starts.
    pub const OPTIONS: usize = 240;
}

/// DHCP option codes, by the names their RFCs give them.
///
/// These are the codes the server reads or writes itself; any other option is handled by
/// number, from the config (see [`crate::options::DEFINITIONS`]). The values are the same as
/// those of `dhcproto`'s [`OptionCode`](crate::OptionCode) variants, which a test checks; they
/// are plain `u8` constants so they can be used in patterns and passed to
/// [`Packet::option`] and [`ReplyWriter::push`] as they are.
pub mod code {
    /// Pad, one byte with no length (RFC 2132 3.1).
    pub const PAD: u8 = 0;
    /// Subnet mask (RFC 2132 3.3).
    pub const SUBNET_MASK: u8 = 1;
    /// Routers (RFC 2132 3.5).
    pub const ROUTER: u8 = 3;
    /// Domain name servers (RFC 2132 3.8).
    pub const DOMAIN_NAME_SERVER: u8 = 6;
    /// Host name (RFC 2132 3.14).
    pub const HOST_NAME: u8 = 12;
    /// Domain name (RFC 2132 3.17).
    pub const DOMAIN_NAME: u8 = 15;
    /// Requested IP address (RFC 2132 9.1).
    pub const REQUESTED_IP_ADDRESS: u8 = 50;
    /// IP address lease time (RFC 2132 9.2).
    pub const LEASE_TIME: u8 = 51;
    /// Option overload: `file` and/or `sname` carry options (RFC 2132 9.3).
    pub const OPTION_OVERLOAD: u8 = 52;
    /// DHCP message type (RFC 2132 9.6).
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier (RFC 2132 9.7).
    pub const SERVER_IDENTIFIER: u8 = 54;
    /// Parameter request list (RFC 2132 9.8).
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum DHCP message size (RFC 2132 9.10).
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time value (RFC 2132 9.11).
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time value (RFC 2132 9.12).
    pub const REBINDING_TIME: u8 = 59;
    /// Vendor class identifier (RFC 2132 9.13).
    pub const VENDOR_CLASS_IDENTIFIER: u8 = 60;
    /// Client identifier (RFC 2132 9.14; echoed in replies per RFC 6842).
    pub const CLIENT_IDENTIFIER: u8 = 61;
    /// User class (RFC 3004).
    pub const USER_CLASS: u8 = 77;
    /// Relay agent information, which carries the [`relay_code`](super::relay_code)
    /// sub-options (RFC 3046).
    pub const RELAY_AGENT_INFORMATION: u8 = 82;
    /// Subnet selection (RFC 3011).
    pub const SUBNET_SELECTION: u8 = 118;
    /// End of the options in an area, one byte with no length (RFC 2132 3.2).
    pub const END: u8 = 255;
}

/// Sub-option codes inside the relay agent information option
/// ([`code::RELAY_AGENT_INFORMATION`]).
pub mod relay_code {
    /// Agent circuit id: the port or circuit the request came in on (RFC 3046 2.1).
    pub const CIRCUIT_ID: u8 = 1;
    /// Agent remote id: the remote end of the circuit (RFC 3046 2.2).
    pub const REMOTE_ID: u8 = 2;
    /// Link selection: the subnet the client is on, when giaddr cannot say (RFC 3527).
    pub const LINK_SELECTION: u8 = 5;
    /// Relay agent source port: the relay listens on the port it sent from, not 67
    /// (RFC 8357).
    pub const RELAY_SOURCE_PORT: u8 = 19;
}

/// The DHCP magic cookie, 99.130.83.99.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The smallest packet that can carry DHCP options: the BOOTP header and the cookie.
pub const MIN_PACKET_LEN: usize = field::OPTIONS;
/// Replies are padded to at least this size, the BOOTP minimum some relays insist on.
pub const MIN_REPLY_LEN: usize = 300;
/// The DHCP payload every client must accept: 576-byte IP datagram less IP and UDP headers.
pub const DEFAULT_MAX_MESSAGE: usize = 576 - 28;
/// The broadcast bit in `flags`.
pub const BROADCAST_FLAG: u16 = 0x8000;

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;

/// Why a datagram was not accepted as a DHCPv4 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than the BOOTP header and the magic cookie.
    #[error("packet of {len} bytes is shorter than the {MIN_PACKET_LEN}-byte header")]
    Truncated {
        /// The datagram's length.
        len: usize,
    },
    /// The op code is not the one expected: a BOOTREPLY sent to the server, or an unknown op.
    #[error("unexpected op code {0}")]
    WrongOp(u8),
    /// The hardware address length is over the 16 bytes `chaddr` holds.
    #[error("hardware address length {0} exceeds 16")]
    HlenTooLong(u8),
    /// The four bytes after the header are not 99.130.83.99.
    #[error("wrong magic cookie")]
    BadMagicCookie,
    /// An option's length runs past the end of the area it is in.
    #[error("option {code} at offset {offset} overruns its area")]
    OptionOverrun {
        /// The option code.
        code: u8,
        /// Where the option starts, counted from the start of the packet.
        offset: usize,
    },
    /// The option overload option has a value other than 1, 2 or 3.
    #[error("option overload value {0} is not 1, 2 or 3")]
    BadOverload(u8),
    /// An option whose size is fixed has another size.
    #[error("option {code} has length {len}")]
    BadOptionLength {
        /// The option code.
        code: u8,
        /// Its length, after RFC 3396 concatenation.
        len: usize,
    },
    /// The client identifier (option 61) is empty or only a type byte.
    #[error("client identifier is shorter than two bytes")]
    BadClientId,
    /// No DHCP message type (option 53): a BOOTP request, which this server does not serve.
    #[error("no DHCP message type option")]
    MissingMessageType,
}

/// The three places options may live, in RFC 3396 concatenation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Options,
    File,
    Sname,
}

/// A validated, borrowed DHCPv4 request.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
    overload: u8,
    message_type: MessageType,
}

impl<'a> Packet<'a> {
    /// Validates `buf` as a DHCPv4 request (BOOTREQUEST). Never panics, whatever the bytes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_op(buf, OP_REQUEST)
    }

    /// Validates `buf` as a DHCPv4 reply (BOOTREPLY), for clients, probes and tests.
    pub fn parse_reply(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_op(buf, OP_REPLY)
    }

    fn parse_op(buf: &'a [u8], op: u8) -> Result<Self, ParseError> {
        if buf.len() < MIN_PACKET_LEN {
            return Err(ParseError::Truncated { len: buf.len() });
        }
        if buf[field::OP] != op {
            return Err(ParseError::WrongOp(buf[field::OP]));
        }
        if buf[field::HLEN] > 16 {
            return Err(ParseError::HlenTooLong(buf[field::HLEN]));
        }
        if buf[field::COOKIE] != MAGIC_COOKIE {
            return Err(ParseError::BadMagicCookie);
        }
        let mut packet = Packet { buf, overload: 0, message_type: MessageType::Unknown(0) };
        // The main area must be valid before its overload option can be trusted.
        let mut overload = None;
        scan(buf, Area::Options, |code, data| {
            if code == code::OPTION_OVERLOAD && overload.is_none() {
                overload = Some(data.first().copied());
            }
        })?;
        match overload {
            None => {}
            Some(Some(v @ 1..=3)) => packet.overload = v,
            Some(Some(v)) => return Err(ParseError::BadOverload(v)),
            Some(None) => {
                return Err(ParseError::BadOptionLength { code: code::OPTION_OVERLOAD, len: 0 });
            }
        }
        for area in packet.extra_areas() {
            scan(buf, area, |_, _| {})?;
        }
        packet.message_type = match packet.option(code::MESSAGE_TYPE) {
            None => return Err(ParseError::MissingMessageType),
            Some(data) if data.len() == 1 => MessageType::from(data[0]),
            Some(data) => {
                return Err(ParseError::BadOptionLength { code: code::MESSAGE_TYPE, len: data.len() });
            }
        };
        packet.check_fixed_length(code::REQUESTED_IP_ADDRESS, 4)?;
        packet.check_fixed_length(code::SERVER_IDENTIFIER, 4)?;
        packet.check_fixed_length(code::MAX_MESSAGE_SIZE, 2)?;
        packet.check_fixed_length(code::SUBNET_SELECTION, 4)?;
        if packet.option(code::CLIENT_IDENTIFIER).is_some_and(|id| id.len() < 2) {
            return Err(ParseError::BadClientId);
        }
        Ok(packet)
    }

    fn check_fixed_length(&self, code: u8, want: usize) -> Result<(), ParseError> {
        match self.option(code) {
            Some(data) if data.len() != want => Err(ParseError::BadOptionLength { code, len: data.len() }),
            _ => Ok(()),
        }
    }

    fn extra_areas(&self) -> impl Iterator<Item = Area> + use<> {
        let overload = self.overload;
        [(Area::File, 1u8), (Area::Sname, 2u8)]
            .into_iter()
            .filter(move |(_, bit)| overload & bit != 0)
            .map(|(area, _)| area)
    }

    /// The raw datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The DHCP message type (option 53).
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// Hardware address type.
    pub fn htype(&self) -> u8 {
        self.buf[field::HTYPE]
    }

    /// Relay hops.
    pub fn hops(&self) -> u8 {
        self.buf[field::HOPS]
    }

    /// Transaction id.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes(array4(&self.buf[field::XID]))
    }

    /// Seconds since the client began its exchange: what a high-availability partner reads to
    /// see that clients go unanswered.
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes([self.buf[field::SECS.start], self.buf[field::SECS.start + 1]])
    }

    /// The flags field.
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[field::FLAGS.start], self.buf[field::FLAGS.start + 1]])
    }

    /// Whether the client asked for broadcast replies.
    pub fn broadcast(&self) -> bool {
        self.flags() & BROADCAST_FLAG != 0
    }

    /// The client's current address, or 0.0.0.0.
    pub fn ciaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array4(&self.buf[field::CIADDR]))
    }

    /// The relay agent's address, or 0.0.0.0 for a client on the server's own link.
    pub fn giaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array4(&self.buf[field::GIADDR]))
    }

    /// The client hardware address: the first `hlen` bytes of `chaddr`.
    pub fn chaddr(&self) -> &'a [u8] {
        let hlen = usize::from(self.buf[field::HLEN]);
        &self.buf[field::CHADDR.start..field::CHADDR.start + hlen]
    }

    /// The address the server gives (replies only).
    pub fn yiaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array4(&self.buf[field::YIADDR]))
    }

    /// The next server address.
    pub fn siaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array4(&self.buf[field::SIADDR]))
    }

    /// The whole 16-byte `chaddr` field, copied into replies as it came.
    pub fn chaddr_field(&self) -> &'a [u8] {
        &self.buf[field::CHADDR]
    }

    /// The value of option `code`, with split instances concatenated (RFC 3396).
    pub fn option(&self, code: u8) -> Option<Cow<'a, [u8]>> {
        let mut found: Option<Cow<'a, [u8]>> = None;
        let mut visit = |c: u8, data: &'a [u8]| {
            if c == code {
                found = Some(match found.take() {
                    None => Cow::Borrowed(data),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.extend_from_slice(data);
                        Cow::Owned(joined)
                    }
                });
            }
        };
        // The areas were validated in `parse`, so scanning cannot fail here.
        let _ = scan(self.buf, Area::Options, &mut visit);
        for area in self.extra_areas() {
            let _ = scan(self.buf, area, &mut visit);
        }
        found
    }

    /// Whether option `code` is present.
    pub fn has_option(&self, code: u8) -> bool {
        self.option(code).is_some()
    }

    /// An IPv4 address option (validated to be 4 bytes long for 50, 54 and 118).
    pub fn option_addr(&self, code: u8) -> Option<Ipv4Addr> {
        let data = self.option(code)?;
        (data.len() == 4).then(|| Ipv4Addr::new(data[0], data[1], data[2], data[3]))
    }

    /// Every option instance in concatenation order, as `(code, data)`.
    pub fn raw_options(&self) -> Vec<(u8, &'a [u8])> {
        let mut out = Vec::new();
        let _ = scan(self.buf, Area::Options, |c, d| out.push((c, d)));
        for area in self.extra_areas() {
            let _ = scan(self.buf, area, |c, d| out.push((c, d)));
        }
        out
    }
}

fn array4(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

/// Walks the options in one area, calling `visit` for each. Stops at the end option or the
/// end of the area; a missing end option is tolerated, an overrun is not.
fn scan<'a>(buf: &'a [u8], area: Area, mut visit: impl FnMut(u8, &'a [u8])) -> Result<(), ParseError> {
    let (start, end) = match area {
        Area::Options => (field::OPTIONS, buf.len()),
        Area::File => (field::FILE.start, field::FILE.end),
        Area::Sname => (field::SNAME.start, field::SNAME.end),
    };
    let mut i = start;
    while i < end {
        let code = buf[i];
        match code {
            code::PAD => i += 1,
            code::END => return Ok(()),
            _ => {
                let Some(&len) = buf.get(i + 1).filter(|_| i + 1 < end) else {
                    return Err(ParseError::OptionOverrun { code, offset: i });
                };
                let data_end = i + 2 + usize::from(len);
                if data_end > end {
                    return Err(ParseError::OptionOverrun { code, offset: i });
                }
                visit(code, &buf[i + 2..data_end]);
                i = data_end;
            }
        }
    }
    Ok(())
}

/// The fixed fields of a reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyHeader<'a> {
    /// Hardware type, copied from the request.
    pub htype: u8,
    /// Hardware address length, copied from the request.
    pub hlen: u8,
    /// Transaction id, copied from the request.
    pub xid: u32,
    /// Flags, copied from the request (the broadcast bit may be forced on for relayed NAKs).
    pub flags: u16,
    /// The client's address when the reply acknowledges one it already uses.
    pub ciaddr: Ipv4Addr,
    /// The address given to the client.
    pub yiaddr: Ipv4Addr,
    /// The next server (TFTP) address.
    pub siaddr: Ipv4Addr,
    /// The relay address, copied from the request.
    pub giaddr: Ipv4Addr,
    /// The whole 16-byte chaddr field, copied from the request.
    pub chaddr: &'a [u8],
    /// Server host name for the `sname` field; `None` leaves it free for overloaded options.
    pub sname: Option<&'a [u8]>,
    /// Boot file name for the `file` field; `None` leaves it free for overloaded options.
    pub file: Option<&'a [u8]>,
}

/// What [`ReplyWriter::finish`] reports about the options it could not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeReport {
    /// Options left out because even the overloaded fields were full.
    pub omitted: usize,
    /// Whether `file`/`sname` carried options (option 52 was added).
    pub overloaded: bool,
}

/// Encodes a reply into a caller-supplied buffer.
///
/// Options are queued with [`push`](ReplyWriter::push) in the order they should appear and
/// written by [`finish`](ReplyWriter::finish), which fits them into `max_len` bytes.
#[derive(Debug)]
pub struct ReplyWriter<'o> {
    opts: Vec<(u8, &'o [u8])>,
}

impl Default for ReplyWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'o> ReplyWriter<'o> {
    /// An empty writer.
    pub fn new() -> Self {
        ReplyWriter { opts: Vec::with_capacity(16) }
    }

    /// Queues option `code` with `data` (any length; longer than 255 is split per RFC 3396).
    pub fn push(&mut self, code: u8, data: &'o [u8]) {
        self.opts.push((code, data));
    }

    /// Whether option `code` is already queued.
    pub fn contains(&self, code: u8) -> bool {
        self.opts.iter().any(|(c, _)| *c == code)
    }

    /// Writes the reply into `out` (cleared first), keeping the DHCP message within `max_len`
    /// bytes (never below [`DEFAULT_MAX_MESSAGE`]). Options that fit nowhere are left out,
    /// last ones first, and counted in the report.
    pub fn finish(&self, header: &ReplyHeader<'_>, max_len: usize, out: &mut Vec<u8>) -> EncodeReport {
        let max_len = max_len.max(DEFAULT_MAX_MESSAGE);
        out.clear();
        write_header(header, out);
        let wanted: usize = self.opts.iter().map(|(_, d)| encoded_len(d.len())).sum::<usize>() + 1;
        let mut report = EncodeReport::default();
        if MIN_PACKET_LEN + wanted <= max_len {
            for (code, data) in &self.opts {
                write_split(out, *code, data);
            }
            out.push(code::END);
        } else {
            report = self.write_overloaded(header, max_len, out);
        }
        if out.len() < MIN_REPLY_LEN {
            out.resize(MIN_REPLY_LEN, 0);
        }
        report
    }

    fn write_overloaded(&self, header: &ReplyHeader<'_>, max_len: usize, out: &mut Vec<u8>) -> EncodeReport {
        // Capacity of each area for option bytes, keeping room for its end option (and, in the
        // main area, for option 52 itself).
        let caps = [
            max_len.saturating_sub(MIN_PACKET_LEN + 3 + 1),
            if header.file.is_none() { field::FILE.len() - 1 } else { 0 },
            if header.sname.is_none() { field::SNAME.len() - 1 } else { 0 },
        ];
        let mut areas: [Vec<u8>; 3] = [Vec::with_capacity(caps[0]), Vec::new(), Vec::new()];
        let mut cursor = Cursor { area: 0, used: [0; 3] };
        let mut omitted = 0;
        for (code, data) in &self.opts {
            // Place on a copy first, so an option that does not fit is left out whole rather
            // than written in part.
            let mut trial = cursor;
            if trial.place(&caps, data.len(), |_, _| {}) {
                cursor.place(&caps, data.len(), |area, range| {
                    areas[area].push(*code);
                    areas[area].push(range.len() as u8);
                    areas[area].extend_from_slice(&data[range]);
                });
            } else {
                omitted += 1;
            }
        }
        let file_used = !areas[1].is_empty();
        let sname_used = !areas[2].is_empty();
        let overload = u8::from(file_used) | (u8::from(sname_used) << 1);
        out.extend_from_slice(&areas[0]);
        if overload != 0 {
            out.extend_from_slice(&[code::OPTION_OVERLOAD, 1, overload]);
        }
        out.push(code::END);
        for (index, range) in [(1, field::FILE), (2, field::SNAME)] {
            let buf = &areas[index];
            if !buf.is_empty() {
                out[range.start..range.start + buf.len()].copy_from_slice(buf);
                out[range.start + buf.len()] = code::END;
            }
        }
        EncodeReport { omitted, overloaded: overload != 0 }
    }
}

/// Where the overload encoder is: the area being filled and the bytes used in each.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    area: usize,
    used: [usize; 3],
}

impl Cursor {
    /// Lays out an option of `len` data bytes from the current area on, calling `emit` with
    /// each instance's area and data range. Returns false when it does not fit.
    fn place(&mut self, caps: &[usize; 3], len: usize, mut emit: impl FnMut(usize, core::ops::Range<usize>)) -> bool {
        let mut done = 0;
        loop {
            let space = caps[self.area].saturating_sub(self.used[self.area]);
            let rest = len - done;
            // Keep an option of up to 255 bytes whole when a later area can take it whole:
            // clients that predate RFC 3396 cannot join split instances.
            let unsplit = done == 0 && rest <= 255;
            let later_fits_whole = caps[self.area + 1..].iter().any(|cap| *cap >= rest + 2);
            let must_move = space < 3 || (unsplit && space < rest + 2 && later_fits_whole);
            if must_move || (rest == 0 && space < 2) {
                if self.area + 1 == caps.len() {
                    return false;
                }
                self.area += 1;
                continue;
            }
            let take = rest.min(255).min(space - 2);
            emit(self.area, done..done + take);
            self.used[self.area] += take + 2;
            done += take;
            if done == len {
                return true;
            }
        }
    }
}

/// Bytes an option takes on the wire once split into 255-byte instances.
fn encoded_len(len: usize) -> usize {
    let instances = len.div_ceil(255).max(1);
    instances * 2 + len
}

fn write_split(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    if data.is_empty() {
        out.extend_from_slice(&[code, 0]);
        return;
    }
    for chunk in data.chunks(255) {
        out.push(code);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

fn write_header(h: &ReplyHeader<'_>, out: &mut Vec<u8>) {
    out.resize(MIN_PACKET_LEN, 0);
    out[field::OP] = OP_REPLY;
    out[field::HTYPE] = h.htype;
    out[field::HLEN] = h.hlen;
    out[field::XID].copy_from_slice(&h.xid.to_be_bytes());
    out[field::FLAGS].copy_from_slice(&h.flags.to_be_bytes());
    out[field::CIADDR].copy_from_slice(&h.ciaddr.octets());
    out[field::YIADDR].copy_from_slice(&h.yiaddr.octets());
    out[field::SIADDR].copy_from_slice(&h.siaddr.octets());
    out[field::GIADDR].copy_from_slice(&h.giaddr.octets());
    let chaddr_len = h.chaddr.len().min(16);
    out[field::CHADDR.start..field::CHADDR.start + chaddr_len].copy_from_slice(&h.chaddr[..chaddr_len]);
    if let Some(sname) = h.sname {
        let n = sname.len().min(field::SNAME.len() - 1);
        out[field::SNAME.start..field::SNAME.start + n].copy_from_slice(&sname[..n]);
    }
    if let Some(file) = h.file {
        let n = file.len().min(field::FILE.len() - 1);
        out[field::FILE.start..field::FILE.start + n].copy_from_slice(&file[..n]);
    }
    out[field::COOKIE].copy_from_slice(&MAGIC_COOKIE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn request(options: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MIN_PACKET_LEN];
        buf[field::OP] = OP_REQUEST;
        buf[field::HTYPE] = 1;
        buf[field::HLEN] = 6;
        buf[field::COOKIE].copy_from_slice(&MAGIC_COOKIE);
        buf.extend_from_slice(options);
        buf
    }

    #[test]
    fn parses_message_type_and_options() {
        let buf = request(&[53, 1, 1, 61, 3, 1, 2, 3, 255]);
        let p = Packet::parse(&buf).expect("valid");
        assert_eq!(p.message_type(), MessageType::Discover);
        assert_eq!(p.option(61).as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.option(50), None);
        assert_eq!(p.secs(), 0);
        let mut late = buf.clone();
        late[field::SECS].copy_from_slice(&[0x01, 0x02]);
        assert_eq!(Packet::parse(&late).expect("valid").secs(), 258);
    }

    #[test]
    fn concatenates_split_options_across_areas() {
        let mut buf = request(&[53, 1, 3, 52, 1, 1, 55, 2, 1, 3, 255]);
        buf[field::FILE.start..field::FILE.start + 5].copy_from_slice(&[55, 2, 6, 15, 255]);
        let p = Packet::parse(&buf).expect("valid");
        assert_eq!(p.option(55).as_deref(), Some(&[1u8, 3, 6, 15][..]));
    }

    #[test]
    fn rejects_each_malformation() {
        assert_eq!(Packet::parse(&[1u8; 10]).err(), Some(ParseError::Truncated { len: 10 }));
        let mut reply = request(&[53, 1, 1, 255]);
        reply[field::OP] = OP_REPLY;
        assert_eq!(Packet::parse(&reply).err(), Some(ParseError::WrongOp(2)));
        let mut hlen = request(&[53, 1, 1, 255]);
        hlen[field::HLEN] = 17;
        assert_eq!(Packet::parse(&hlen).err(), Some(ParseError::HlenTooLong(17)));
        let mut cookie = request(&[53, 1, 1, 255]);
        cookie[field::COOKIE.start] = 0;
        assert_eq!(Packet::parse(&cookie).err(), Some(ParseError::BadMagicCookie));
        assert_eq!(
            Packet::parse(&request(&[53, 1, 1, 12, 10, b'a'])).err(),
            Some(ParseError::OptionOverrun { code: 12, offset: 243 })
        );
        assert_eq!(Packet::parse(&request(&[53, 1, 1, 61, 0, 255])).err(), Some(ParseError::BadClientId));
        assert_eq!(Packet::parse(&request(&[12, 1, b'a', 255])).err(), Some(ParseError::MissingMessageType));
        assert_eq!(Packet::parse(&request(&[53, 1, 1, 52, 1, 7, 255])).err(), Some(ParseError::BadOverload(7)));
        assert_eq!(
            Packet::parse(&request(&[53, 1, 1, 50, 3, 1, 2, 3, 255])).err(),
            Some(ParseError::BadOptionLength { code: 50, len: 3 })
        );
    }

    #[test]
    fn codes_match_dhcproto() {
        use dhcproto::v4::OptionCode as O;
        use dhcproto::v4::relay::RelayCode as R;
        let options = [
            (code::PAD, O::Pad),
            (code::SUBNET_MASK, O::SubnetMask),
            (code::ROUTER, O::Router),
            (code::DOMAIN_NAME_SERVER, O::DomainNameServer),
            (code::HOST_NAME, O::Hostname),
            (code::DOMAIN_NAME, O::DomainName),
            (code::REQUESTED_IP_ADDRESS, O::RequestedIpAddress),
            (code::LEASE_TIME, O::AddressLeaseTime),
            (code::OPTION_OVERLOAD, O::OptionOverload),
            (code::MESSAGE_TYPE, O::MessageType),
            (code::SERVER_IDENTIFIER, O::ServerIdentifier),
            (code::PARAMETER_REQUEST_LIST, O::ParameterRequestList),
            (code::MAX_MESSAGE_SIZE, O::MaxMessageSize),
            (code::RENEWAL_TIME, O::Renewal),
            (code::REBINDING_TIME, O::Rebinding),
            (code::VENDOR_CLASS_IDENTIFIER, O::ClassIdentifier),
            (code::CLIENT_IDENTIFIER, O::ClientIdentifier),
            (code::USER_CLASS, O::UserClass),
            (code::RELAY_AGENT_INFORMATION, O::RelayAgentInformation),
            (code::SUBNET_SELECTION, O::SubnetSelection),
            (code::END, O::End),
        ];
        for (ours, theirs) in options {
            assert_eq!(O::from(ours), theirs, "option {ours}");
        }
        // dhcproto has no name for the RFC 8357 source port sub-option.
        let relay = [
            (relay_code::CIRCUIT_ID, R::AgentCircuitId),
            (relay_code::REMOTE_ID, R::AgentRemoteId),
            (relay_code::LINK_SELECTION, R::LinkSelection),
        ];
        for (ours, theirs) in relay {
            assert_eq!(R::from(ours), theirs, "sub-option {ours}");
        }
    }

    fn header() -> ReplyHeader<'static> {
        ReplyHeader {
            htype: 1,
            hlen: 6,
            xid: 7,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: &[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sname: None,
            file: None,
        }
    }

    /// Reads a reply back with the parser, to check what was written.
    fn read_back(out: &[u8]) -> Vec<u8> {
        let p = Packet::parse_reply(out).expect("reply parses");
        p.option(200).map(|c| c.into_owned()).unwrap_or_default()
    }

    #[test]
    fn small_reply_is_padded_and_in_order() {
        let mut w = ReplyWriter::new();
        w.push(53, &[2]);
        w.push(3, &[10, 0, 0, 1]);
        w.push(1, &[255, 255, 255, 0]);
        let mut out = Vec::new();
        let report = w.finish(&header(), 0, &mut out);
        assert_eq!(report, EncodeReport::default());
        assert_eq!(out.len(), MIN_REPLY_LEN);
        assert_eq!(&out[240..255], &[53, 1, 2, 3, 4, 10, 0, 0, 1, 1, 4, 255, 255, 255, 0]);
        assert_eq!(out[255], code::END);
    }

    #[test]
    fn long_option_is_split_and_rejoined() {
        let long: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let mut w = ReplyWriter::new();
        w.push(53, &[5]);
        w.push(200, &long);
        let mut out = Vec::new();
        let report = w.finish(&header(), 1500, &mut out);
        assert!(!report.overloaded);
        assert_eq!(out[240 + 3], 200);
        assert_eq!(out[240 + 4], 255);
        assert_eq!(read_back(&out), long);
    }

    #[test]
    fn overflow_spills_into_file_and_sname() {
        let long: Vec<u8> = (0..450u32).map(|i| (i * 7) as u8).collect();
        let mut w = ReplyWriter::new();
        w.push(53, &[5]);
        w.push(200, &long);
        let mut out = Vec::new();
        let report = w.finish(&header(), DEFAULT_MAX_MESSAGE, &mut out);
        assert!(report.overloaded);
        assert_eq!(report.omitted, 0);
        assert!(out.len() <= DEFAULT_MAX_MESSAGE);
        assert_eq!(read_back(&out), long);
    }

    #[test]
    fn what_fits_nowhere_is_omitted() {
        let long = vec![1u8; 1000];
        let mut w = ReplyWriter::new();
        w.push(53, &[5]);
        w.push(200, &long);
        let mut out = Vec::new();
        let report = w.finish(&header(), DEFAULT_MAX_MESSAGE, &mut out);
        assert!(out.len() <= DEFAULT_MAX_MESSAGE);
        assert_eq!(report.omitted, 1);
    }
}
