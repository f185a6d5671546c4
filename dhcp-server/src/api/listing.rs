//! `GET /api/v1/leases`: the filters, pages by address, and the whole list streamed.
//!
//! - With `limit=N` (1 to [`MAX_LEASE_LIMIT`]) the answer is one page: at most N leases in
//!   address order, above `after` when it is given, and `next` (the page's last address) when
//!   more leases match. A client walks the list by passing `next` back as `after`; an address
//!   that is leased throughout the walk is listed exactly once.
//! - Without `limit` the answer is every matching lease (above `after`), in address order, in
//!   the same JSON shape as a page without `next`. It is written [`CHUNK`] leases at a time by a
//!   task that makes the next chunk only once the connection has taken the one before, so the
//!   JSON is never all in memory; a client that stops reading for [`STALL`] loses the answer
//!   (the connection is cut) and with it everything the listing held.
//! - At most [`CONCURRENT_LISTINGS`] listings, paged or whole, run at once; another gets 503 with
//!   `Retry-After` at once rather than queueing behind them.
//!
//! Every listing reads the store with [`LeaseStore::list`] (the memory store copies its leases a
//! slice at a time, letting go of its lock between slices). The store has no read of a range of
//! addresses yet, so a page costs one pass over the subnet's leases, as a whole listing does:
//! walking a million leases page by page costs a pass a page, where one whole listing costs one
//! pass. `dhcp-cli` and [`AdminClient::leases`](super::AdminClient::leases) therefore ask for
//! the whole list.

use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dhcp_core::{Lease, LeaseStore};
use hyper::body::{Body as HttpBody, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

use super::error::ApiError;
use super::model::{LEASE_STATES, LeaseInfo, LeaseList, MAX_LEASE_LIMIT, normal_id};
use super::{Admin, store_error};
use crate::seen::LastSeen;

/// Lease listings that may run at once.
pub(crate) const CONCURRENT_LISTINGS: usize = 2;

/// What `Retry-After` tells a listing refused because others are running, in seconds.
pub(crate) const RETRY_AFTER_SECS: u32 = 2;

/// Leases a whole listing serialises and writes at a time.
pub(crate) const CHUNK: usize = 1_000;

/// How long a whole listing waits for the client to take a chunk before it gives up.
pub(crate) const STALL: Duration = Duration::from_secs(30);

/// The query keys `GET /api/v1/leases` knows.
const KEYS: [&str; 6] = ["subnet", "state", "mac", "client", "after", "limit"];

/// The permits of the lease listings that may run at once; one per API router.
#[derive(Debug, Clone)]
pub(crate) struct Listings(Arc<Semaphore>);

impl Listings {
    /// Room for `n` listings at once.
    pub(crate) fn new(n: usize) -> Self {
        Listings(Arc::new(Semaphore::new(n)))
    }

    /// A permit for one listing, held until it is dropped; 503 with `Retry-After` when every
    /// permit is taken.
    fn start(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.0).try_acquire_owned().map_err(|_| {
            let running = CONCURRENT_LISTINGS;
            ApiError::busy(format!("{running} lease listings are running already; retry later"), RETRY_AFTER_SECS)
        })
    }
}

/// A `GET /api/v1/leases` query, checked.
#[derive(Debug, Default, PartialEq, Eq)]
struct LeaseQuery {
    subnet: Option<u32>,
    state: Option<String>,
    /// Normalised with [`normal_id`]: any spelling of a MAC matches the leases' `02:00:..`.
    mac: Option<String>,
    /// Normalised with [`normal_id`].
    client: Option<String>,
    after: Option<Ipv4Addr>,
    limit: Option<usize>,
}

impl LeaseQuery {
    /// Reads the query's decoded pairs; a 400 names the key at fault.
    fn parse(pairs: &[(String, String)]) -> Result<LeaseQuery, ApiError> {
        let mut query = LeaseQuery::default();
        for (i, (key, value)) in pairs.iter().enumerate() {
            // An unknown key is refused at its first occurrence, so a repeated one is known.
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(ApiError::bad(key, format!("{key} is given more than once")));
            }
            match key.as_str() {
                "subnet" => {
                    let id = value.parse().map_err(|_| ApiError::bad(key, format!("{value:?} is not a subnet id")))?;
                    query.subnet = Some(id);
                }
                "state" => {
                    if !LEASE_STATES.contains(&value.as_str()) {
                        return Err(ApiError::bad(
                            key,
                            format!("{value:?}: offered, bound, declined, released or expired"),
                        ));
                    }
                    query.state = Some(value.clone());
                }
                "mac" => query.mac = Some(normal_id(value)),
                "client" => query.client = Some(normal_id(value)),
                "after" => {
                    let addr =
                        value.parse().map_err(|_| ApiError::bad(key, format!("{value:?} is not an IPv4 address")))?;
                    query.after = Some(addr);
                }
                "limit" => {
                    let limit = value.parse().ok().filter(|n| (1..=MAX_LEASE_LIMIT).contains(n)).ok_or_else(|| {
                        ApiError::bad(key, format!("{value:?}: a number of leases from 1 to {MAX_LEASE_LIMIT}"))
                    })?;
                    query.limit = Some(limit);
                }
                _ => {
                    let known = KEYS.join(", ");
                    return Err(ApiError::bad(key, format!("unknown parameter {key:?}; known: {known}")));
                }
            }
        }
        Ok(query)
    }

    /// Whether `lease` is one the query asks for (its subnet aside: the store filters that).
    fn matches(&self, lease: &Lease) -> bool {
        self.after.is_none_or(|a| lease.addr > a)
            && self.state.as_deref().is_none_or(|s| lease.state.name() == s)
            && self.mac.as_deref().is_none_or(|m| lease.hwaddr.to_string() == m)
            && self.client.as_deref().is_none_or(|c| lease.client.to_string() == c)
    }
}

/// Of `leases`, the `limit` lowest addresses in order, and the last of them when more remain.
fn first_page(mut leases: Vec<Lease>, limit: usize) -> (Vec<Lease>, Option<Ipv4Addr>) {
    let more = leases.len() > limit;
    if more {
        // The lowest `limit` without sorting the rest: a page costs a pass, not a sort.
        leases.select_nth_unstable_by_key(limit, |l| l.addr);
        leases.truncate(limit);
    }
    leases.sort_unstable_by_key(|l| l.addr);
    let next = if more { leases.last().map(|l| l.addr) } else { None };
    (leases, next)
}

/// `GET /api/v1/leases?subnet=&state=&mac=&client=&after=&limit=`.
pub(crate) async fn list_leases<S: LeaseStore>(
    State(admin): State<Arc<Admin<S>>>,
    Extension(listings): Extension<Listings>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let query = LeaseQuery::parse(&pairs)?;
    let permit = listings.start()?;
    let mut leases = admin.server.engine().store().list(query.subnet).await.map_err(store_error)?;
    leases.retain(|l| query.matches(l));
    if let Some(limit) = query.limit {
        let (page, next) = first_page(leases, limit);
        let leases = page.iter().map(|l| LeaseInfo::new(l, admin.seen.get(&l.hwaddr))).collect();
        return Ok(axum::Json(LeaseList { leases, next }).into_response());
    }
    leases.sort_unstable_by_key(|l| l.addr);
    debug!(leases = leases.len(), "streaming a lease listing");
    let body = stream(leases, Arc::clone(&admin.seen), permit, STALL);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What the writer of a whole listing hands the connection.
#[derive(Debug)]
enum Piece {
    /// The next part of the JSON.
    Json(Bytes),
    /// The JSON is complete.
    End,
}

/// The body of a whole listing: `{"leases":[...]}` of `leases` (sorted), written [`CHUNK`] at a
/// time by a task that holds `permit` until it is done, the client is gone, or the client took
/// nothing for `stall`.
fn stream(leases: Vec<Lease>, seen: Arc<LastSeen>, permit: OwnedSemaphorePermit, stall: Duration) -> Body {
    // One chunk waits in the channel while the connection writes the one before.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _permit = permit;
        let mut chunks = leases.chunks(CHUNK).peekable();
        let mut json = b"{\"leases\":[".to_vec();
        let mut first = true;
        loop {
            for lease in chunks.next().unwrap_or_default() {
                if !first {
                    json.push(b',');
                }
                first = false;
                let info = LeaseInfo::new(lease, seen.get(&lease.hwaddr));
                if serde_json::to_writer(&mut json, &info).is_err() {
                    return; // Not for these types; were it to happen, the client sees a cut answer.
                }
            }
            let last = chunks.peek().is_none();
            if last {
                json.extend_from_slice(b"]}");
            }
            if !send(&tx, Piece::Json(Bytes::from(std::mem::take(&mut json))), stall).await {
                debug!("lease listing abandoned: the client went away or stopped reading");
                return;
            }
            if last {
                let _ = send(&tx, Piece::End, stall).await;
                return;
            }
        }
    });
    Body::new(Listing { rx, done: false })
}

/// Hands `piece` to the connection; false when the client is gone or took nothing for `stall`.
async fn send(tx: &mpsc::Sender<Piece>, piece: Piece, stall: Duration) -> bool {
    matches!(tokio::time::timeout(stall, tx.send(piece)).await, Ok(Ok(())))
}

/// The receiving end of a whole listing, as an HTTP body. Its writer going away before the
/// [`Piece::End`] is an error, so the connection is cut rather than a short list looking whole.
struct Listing {
    rx: mpsc::Receiver<Piece>,
    done: bool,
}

impl HttpBody for Listing {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Json(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Piece::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(io::Error::other("the lease listing stopped before its end"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use dhcp_core::{ClientId, HwAddr, LeaseState, Timestamp};
    use http_body_util::BodyExt;

    use super::*;

    fn lease(i: u32) -> Lease {
        let hw = HwAddr::mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        Lease {
            addr: Ipv4Addr::from(0x0a00_0000 + i),
            client: ClientId::from_hardware(1, &hw),
            hwaddr: hw,
            subnet: 1,
            state: LeaseState::Bound { expires: Timestamp::from_secs(1_900_000_000) },
            hostname: None,
        }
    }

    fn parse(query: &str) -> Result<LeaseQuery, (StatusCode, Option<String>)> {
        let pairs: Vec<(String, String)> =
            query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
        LeaseQuery::parse(&pairs).map_err(|e| (e.status, e.field))
    }

    #[test]
    fn a_bad_parameter_is_named() {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("limit=", "limit"),
            ("after=10.0.0", "after"),
            ("after=", "after"),
            ("subnet=one", "subnet"),
            ("state=happy", "state"),
            ("page=2", "page"),
            ("limit=5&limit=6", "limit"),
        ] {
            assert_eq!(parse(query), Err((StatusCode::BAD_REQUEST, Some(field.to_owned()))), "{query}");
        }
        let query = parse("subnet=2&state=bound&mac=02-00-0A-00-00-07&after=10.0.0.9&limit=10000").expect("valid");
        assert_eq!(
            query,
            LeaseQuery {
                subnet: Some(2),
                state: Some("bound".into()),
                mac: Some("02:00:0a:00:00:07".into()),
                client: None,
                after: Some(Ipv4Addr::new(10, 0, 0, 9)),
                limit: Some(MAX_LEASE_LIMIT),
            }
        );
    }

    #[test]
    fn a_page_is_the_lowest_addresses_in_order() {
        let leases: Vec<Lease> = [7, 3, 9, 1, 5].into_iter().map(lease).collect();
        let addrs = |page: &[Lease]| page.iter().map(|l| u32::from(l.addr) & 0xff).collect::<Vec<_>>();
        let (page, next) = first_page(leases.clone(), 2);
        assert_eq!((addrs(&page), next), (vec![1, 3], Some(Ipv4Addr::new(10, 0, 0, 3))));
        let (page, next) = first_page(leases.clone(), 5);
        assert_eq!((addrs(&page), next), (vec![1, 3, 5, 7, 9], None), "no next when nothing more matches");
        let (page, next) = first_page(Vec::new(), 5);
        assert_eq!((page.len(), next), (0, None));
    }

    #[test]
    fn listings_past_the_cap_are_told_to_retry() {
        let listings = Listings::new(CONCURRENT_LISTINGS);
        let held: Vec<_> = (0..CONCURRENT_LISTINGS).map(|_| listings.start().expect("a permit")).collect();
        let refused = listings.start().expect_err("over the cap").into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry = refused.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
        assert_eq!(retry, Some(RETRY_AFTER_SECS.to_string().as_str()));
        drop(held);
        assert!(listings.start().is_ok(), "a finished listing makes room");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_whole_listing_is_written_a_chunk_at_a_time() {
        for n in [0, 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7] {
            let leases: Vec<Lease> = (0..n as u32).map(lease).collect();
            let listings = Listings::new(1);
            let permit = listings.start().expect("a permit");
            let mut body = stream(leases.clone(), Arc::default(), permit, STALL);
            let mut chunks = 0;
            let mut json = Vec::new();
            while let Some(frame) = body.frame().await {
                let data = frame.expect("no error").into_data().expect("data");
                json.extend_from_slice(&data);
                chunks += 1;
            }
            assert_eq!(chunks, n.div_ceil(CHUNK).max(1), "{n} leases");
            let list: LeaseList = serde_json::from_slice(&json).expect("one JSON document");
            let expected: Vec<LeaseInfo> = leases.iter().map(|l| LeaseInfo::new(l, None)).collect();
            assert_eq!(list, LeaseList { leases: expected, next: None });
            assert!(listings.start().is_ok(), "the permit is back once the listing is written");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_stops_reading_loses_the_listing_and_its_permit() {
        let leases: Vec<Lease> = (0..5 * CHUNK as u32).map(lease).collect();
        let listings = Listings::new(1);
        let permit = listings.start().expect("a permit");
        let mut body = stream(leases, Arc::default(), permit, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(listings.start().is_ok(), "the stalled listing gave its permit back");
        // What was written before the stall arrives, then the answer is cut, not ended.
        let first = body.frame().await.expect("a frame").expect("data");
        assert!(first.into_data().is_ok_and(|d| d.starts_with(b"{\"leases\":[")));
        assert!(body.frame().await.expect("an error, not the end").is_err());
    }
}
