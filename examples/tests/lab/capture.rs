//! tcpdump on an interface of a namespace, writing a pcap file; and the UDP payloads of such a
//! file.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use dhcp_core::wire::Packet;
use dhcp_core::{HwAddr, MessageType};

use super::{Netns, Proc, next_id, path_str};

/// A tcpdump writing what it sees to a file; stopped with SIGINT (so that the file is
/// complete) on [`stop`](Self::stop) or drop.
pub struct Capture {
    proc: Proc,
}

impl Capture {
    /// Starts tcpdump on `dev` in `ns`, recording packets that match `filter` (at most `count`
    /// of them) to `file`, its log in `log_dir`; waits until it listens.
    pub fn start(ns: &Netns, dev: &str, filter: &str, count: Option<u32>, file: &Path, log_dir: &Path) -> Capture {
        let log = log_dir.join(format!("tcpdump-{}.log", next_id()));
        let file = path_str(file);
        // A 64 MiB kernel buffer: on a busy machine (the test command runs suites side by side)
        // tcpdump is not scheduled for a while, and a burst overflows the default 2 MiB.
        let mut args = vec!["tcpdump", "-i", dev, "-U", "--immediate-mode", "-B", "65536", "-w", &file];
        let count = count.map(|c| c.to_string());
        if let Some(count) = &count {
            args.extend(["-c", count]);
        }
        args.push(filter);
        let proc = ns.spawn(&args, &log);
        proc.wait_for_log("listening on", Duration::from_secs(5));
        Capture { proc }
    }

    /// Stops tcpdump and waits until its file is complete (what dropping the capture does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.proc.stop("INT", Duration::from_secs(5));
    }
}

/// The UDP payloads of an Ethernet pcap file.
pub fn udp_payloads(file: &Path) -> Vec<Vec<u8>> {
    Capture::timed_udp_payloads(file).into_iter().map(|(_, payload)| payload).collect()
}

/// The DHCPACKs in a capture of the server's replies, in the order seen: each as the address
/// it gave and the hardware address it went to, both as text.
pub fn acks(file: &Path) -> Vec<(String, String)> {
    udp_payloads(file)
        .iter()
        .filter_map(|payload| {
            let reply = Packet::parse_reply(payload).ok()?;
            (reply.message_type() == MessageType::Ack)
                .then(|| (reply.yiaddr().to_string(), HwAddr::new(reply.chaddr()).unwrap_or_default().to_string()))
        })
        .collect()
}

impl Capture {
    /// The UDP payloads of an Ethernet pcap file, each with the time tcpdump saw it (the
    /// record header's seconds and microseconds, by the host's wall clock, which namespaces
    /// share): to tell what was on the wire before and after an event the test timed.
    pub fn timed_udp_payloads(file: &Path) -> Vec<(SystemTime, Vec<u8>)> {
        let bytes = fs::read(file).expect("read capture");
        let le32 = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let time = SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::from(le32(at)))
                + Duration::from_micros(u64::from(le32(at + 4)));
            let len = le32(at + 8) as usize;
            let Some(frame) = bytes.get(at + 16..at + 16 + len) else { break };
            at += 16 + len;
            if frame.len() < 42 || frame[12..14] != [8, 0] || frame[23] != 17 {
                continue;
            }
            let udp = &frame[14 + usize::from(frame[14] & 0x0f) * 4..];
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            if let Some(payload) = udp.get(8..udp_len) {
                out.push((time, payload.to_vec()));
            }
        }
        out
    }
}
