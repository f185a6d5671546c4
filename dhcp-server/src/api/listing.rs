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
//! Listings read the store with [`LeaseStore::list_page`], in address order from `after`, a
//! store page at a time; the store filters by subnet, this module by state, MAC and client. A
//! store that reads pages natively ([`LeaseStore::list_page_native`]: the memory store, with or
//! without its journal, and SQLite) reads about one page per call, so a page of the API costs
//! about its own size (the leases it lists and those the filters skip on the way, plus one
//! more, to know whether `next` is due), a whole listing holds one store page and one chunk at a
//! time, and each store call holds the store as briefly. A store that does not (Redis, which
//! keeps no index of addresses in order, or any store left with the trait's default) would read
//! all its leases for every store page, so it is asked once for everything: a page or a whole
//! listing then costs one pass over the subnet's leases, and a whole listing holds them all
//! while it is written.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dhcp_core::{Lease, LeaseStore, StoreError};
use hyper::body::{Body as HttpBody, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, warn};

use super::error::{ApiError, store_error};
use super::model::{LEASE_STATES, LeaseInfo, LeaseList, MAX_LEASE_LIMIT, normal_id};
use crate::redact::redact_secrets;
use crate::seen::LastSeen;

/// Lease listings that may run at once.
pub(crate) const CONCURRENT_LISTINGS: usize = 2;

/// What `Retry-After` tells a listing refused because others are running, in seconds.
pub(crate) const RETRY_AFTER_SECS: u32 = 2;

/// Leases a whole listing serialises and writes at a time, and reads from the store at a time.
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
pub(crate) struct LeaseQuery {
    subnet: Option<u32>,
    state: Option<String>,
    /// Normalised with [`normal_id`]: any spelling of a MAC matches the leases' `02:00:..`.
    mac: Option<String>,
    /// Normalised with [`normal_id`].
    client: Option<String>,
    after: Option<Ipv4Addr>,
    limit: Option<usize>,
    /// The portal's search: a host name containing it (any case), or a MAC or client id
    /// equal to it (normalised with [`normal_id`]).
    text: Option<(String, String)>,
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

    /// The portal's search for `text` (a host name containing it, or a MAC or client id equal to
    /// it) above `after`.
    pub(crate) fn search(text: &str, after: Option<Ipv4Addr>) -> LeaseQuery {
        let text = text.trim();
        let wanted = (!text.is_empty()).then(|| (text.to_lowercase(), normal_id(text)));
        LeaseQuery { after, text: wanted, ..LeaseQuery::default() }
    }

    /// Whether `lease` is one the query asks for (its subnet aside: the store filters that).
    fn matches(&self, lease: &Lease) -> bool {
        let text = self.text.as_ref().is_none_or(|(lower, id)| {
            lease.hostname.as_deref().is_some_and(|h| h.to_lowercase().contains(lower.as_str()))
                || lease.hwaddr.to_string() == *id
                || lease.client.to_string() == *id
        });
        text && self.after.is_none_or(|a| lease.addr > a)
            && self.state.as_deref().is_none_or(|s| lease.state.name() == s)
            && self.mac.as_deref().is_none_or(|m| lease.hwaddr.to_string() == m)
            && self.client.as_deref().is_none_or(|c| lease.client.to_string() == c)
    }

    /// Whether the query filters on more than the subnet, so that the store's leases are not
    /// all listed.
    fn filters(&self) -> bool {
        self.state.is_some() || self.mac.is_some() || self.client.is_some() || self.text.is_some()
    }
}

/// The leases a query asks for, read from the store in address order a store page at a time.
/// It holds no reference to the store (each read is handed one), so a whole listing's writer
/// task can own it.
#[derive(Debug)]
pub(crate) struct Reader {
    query: LeaseQuery,
    /// The last address read from the store (matching or not): the next read starts above it.
    after: Option<Ipv4Addr>,
    /// Leases asked of the store at a time; `usize::MAX` asks for everything at once.
    fetch: usize,
    /// Leases read that match the query, not taken yet.
    buffered: VecDeque<Lease>,
    /// The store has nothing above `after`.
    exhausted: bool,
    /// Store reads so far.
    reads: usize,
}

impl Reader {
    /// A reader of `query`'s leases asking the store for `fetch` at a time; one call for
    /// everything when the store does not read pages natively, as each call would read it all.
    fn new(query: LeaseQuery, fetch: usize, native: bool) -> Self {
        let fetch = if native { fetch.max(1) } else { usize::MAX };
        Reader { after: query.after, query, fetch, buffered: VecDeque::new(), exhausted: false, reads: 0 }
    }

    /// Reads store pages until a matching lease is buffered or the store has no more.
    async fn fill<S: LeaseStore>(&mut self, store: &S) -> Result<(), StoreError> {
        while self.buffered.is_empty() && !self.exhausted {
            if self.reads > 0 {
                // A store that answers at once (the memory store) would otherwise keep this
                // thread's other requests waiting through a long run of filtered-out pages.
                tokio::task::yield_now().await;
            }
            let page = store.list_page(self.query.subnet, self.after, self.fetch).await?;
            self.reads += 1;
            // A short page is the store's last.
            self.exhausted = page.len() < self.fetch;
            match page.last() {
                Some(last) if self.after.is_none_or(|a| last.addr > a) => self.after = Some(last.addr),
                // Empty, or a store that did not move on (which would never end).
                _ => self.exhausted = true,
            }
            let query = &self.query;
            self.buffered.extend(page.into_iter().filter(|l| query.matches(l)));
        }
        Ok(())
    }

    /// The next matching lease, `None` at the end.
    async fn next<S: LeaseStore>(&mut self, store: &S) -> Result<Option<Lease>, StoreError> {
        self.fill(store).await?;
        Ok(self.buffered.pop_front())
    }

    /// Whether no matching lease is left.
    async fn at_end<S: LeaseStore>(&mut self, store: &S) -> Result<bool, StoreError> {
        self.fill(store).await?;
        Ok(self.buffered.is_empty())
    }
}

/// A page of `limit` of the leases `query` asks for, and the last of them when more match.
///
/// The store is asked for one lease more than the page (the one that says whether `next` is
/// due), or for [`CHUNK`] at a time when the query filters on more than the subnet, so that a
/// page of a sparse filter does not take a store call per few leases.
pub(crate) async fn read_page<S: LeaseStore>(
    store: &S,
    query: LeaseQuery,
    limit: usize,
) -> Result<(Vec<Lease>, Option<Ipv4Addr>), StoreError> {
    let fetch = if query.filters() { limit.saturating_add(1).max(CHUNK) } else { limit.saturating_add(1) };
    let mut reader = Reader::new(query, fetch, store.list_page_native());
    let mut page = Vec::with_capacity(limit.min(CHUNK));
    while page.len() < limit {
        match reader.next(store).await? {
            Some(lease) => page.push(lease),
            None => break,
        }
    }
    let more = page.len() == limit && !reader.at_end(store).await?;
    let next = if more { page.last().map(|l| l.addr) } else { None };
    Ok((page, next))
}

/// What a whole listing's writer task reads the store through: it owns it, so the task can
/// outlive the request.
pub(crate) trait LeaseSource: Send + Sync + 'static {
    /// The store listed.
    type Store: LeaseStore;

    /// The store listed.
    fn store(&self) -> &Self::Store;
}

/// `GET /api/v1/leases?subnet=&state=&mac=&client=&after=&limit=`.
///
/// `source` is the server whose store is listed, `seen` when each client was last heard from.
pub(crate) async fn list_leases<Src: LeaseSource>(
    source: Arc<Src>,
    seen: Arc<LastSeen>,
    listings: Listings,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|e| ApiError::bad("query", e.body_text()))?;
    let query = LeaseQuery::parse(&pairs)?;
    let permit = listings.start()?;
    let store = source.store();
    if let Some(limit) = query.limit {
        let (page, next) = read_page(store, query, limit).await.map_err(store_error)?;
        let leases = page.iter().map(|l| LeaseInfo::new(l, seen.get(&l.hwaddr))).collect();
        return Ok(axum::Json(LeaseList { leases, next }).into_response());
    }
    // The first store page is read before answering, so a store that fails at once gets a 503
    // rather than a cut answer.
    let mut reader = Reader::new(query, CHUNK, store.list_page_native());
    reader.fill(store).await.map_err(store_error)?;
    debug!(native = store.list_page_native(), "streaming a lease listing");
    let body = stream(Arc::clone(&source), reader, seen, permit, STALL);
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

/// The body of a whole listing: `{"leases":[...]}` of what `reader` reads from `source`'s store,
/// written [`CHUNK`] at a time by a task that holds `permit` until it is done, the client is
/// gone, the client took nothing for `stall`, or the store failed (the answer is then cut).
pub(crate) fn stream<Src: LeaseSource>(
    source: Arc<Src>,
    mut reader: Reader,
    seen: Arc<LastSeen>,
    permit: OwnedSemaphorePermit,
    stall: Duration,
) -> Body {
    // One chunk waits in the channel while the connection writes the one before.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _permit = permit;
        let store = source.store();
        let mut json = b"{\"leases\":[".to_vec();
        let mut first = true;
        loop {
            let mut written = 0;
            let last = loop {
                if written == CHUNK {
                    break reader.at_end(store).await;
                }
                let lease = match reader.next(store).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => break Ok(true),
                    Err(e) => break Err(e),
                };
                if !first {
                    json.push(b',');
                }
                first = false;
                let info = LeaseInfo::new(&lease, seen.get(&lease.hwaddr));
                if serde_json::to_writer(&mut json, &info).is_err() {
                    return; // Not for these types; were it to happen, the client sees a cut answer.
                }
                written += 1;
            };
            let last = match last {
                Ok(last) => last,
                Err(e) => {
                    warn!(error = %redact_secrets(&e.to_string()), "lease listing cut: the store failed");
                    return;
                }
            };
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use dhcp_core::{ClientId, HwAddr, LeaseState, PoolRef, Timestamp};
    use dhcp_store::MemoryStore;
    use http_body_util::BodyExt;

    use super::*;

    fn lease(i: u32) -> Lease {
        let hw = HwAddr::mac([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        Lease {
            addr: Ipv4Addr::from(0x0a00_0000 + i),
            client: ClientId::from_hardware(1, &hw),
            hwaddr: hw,
            subnet: 1,
            state: if i % 10 == 0 {
                LeaseState::Released
            } else {
                LeaseState::Bound { expires: Timestamp::from_secs(1_900_000_000) }
            },
            hostname: None,
        }
    }

    /// A memory store that counts the calls a listing makes, and can pretend not to read pages
    /// natively (as the Redis store does not).
    #[derive(Default)]
    struct Counted {
        inner: MemoryStore,
        not_native: bool,
        lists: AtomicUsize,
        pages: AtomicUsize,
        /// The largest `limit` asked of `list_page`.
        largest: AtomicUsize,
    }

    impl Counted {
        fn with(n: u32) -> Self {
            let store = Counted::default();
            // Written out of address order.
            for i in (0..n).map(|i| (i * 7_919) % n) {
                let stored = dhcp_core::block_on(store.inner.claim(&lease(i), Timestamp::from_secs(0)));
                assert!(matches!(stored, Some(Ok(Some(_)))), "lease {i}");
            }
            store
        }

        fn calls(&self) -> (usize, usize, usize) {
            let get = |n: &AtomicUsize| n.load(Ordering::Relaxed);
            (get(&self.lists), get(&self.pages), get(&self.largest))
        }
    }

    impl LeaseStore for Counted {
        async fn lease_by_client(&self, subnet: u32, client: &ClientId) -> Result<Option<Lease>, StoreError> {
            self.inner.lease_by_client(subnet, client).await
        }
        async fn lease_by_addr(&self, addr: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
            self.inner.lease_by_addr(addr).await
        }
        async fn claim(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
            self.inner.claim(lease, now).await
        }
        async fn allocate(
            &self,
            pool: PoolRef<'_>,
            lease: &Lease,
            now: Timestamp,
        ) -> Result<Option<Lease>, StoreError> {
            self.inner.allocate(pool, lease, now).await
        }
        async fn update_state(
            &self,
            addr: Ipv4Addr,
            client: &ClientId,
            state: LeaseState,
        ) -> Result<Option<Lease>, StoreError> {
            self.inner.update_state(addr, client, state).await
        }
        async fn reclaim_expired(&self, now: Timestamp, limit: usize) -> Result<Vec<Lease>, StoreError> {
            self.inner.reclaim_expired(now, limit).await
        }
        async fn delete(&self, addr: Ipv4Addr) -> Result<bool, StoreError> {
            self.inner.delete(addr).await
        }
        async fn list(&self, subnet: Option<u32>) -> Result<Vec<Lease>, StoreError> {
            self.lists.fetch_add(1, Ordering::Relaxed);
            self.inner.list(subnet).await
        }
        async fn list_page(
            &self,
            subnet: Option<u32>,
            after: Option<Ipv4Addr>,
            limit: usize,
        ) -> Result<Vec<Lease>, StoreError> {
            self.pages.fetch_add(1, Ordering::Relaxed);
            self.largest.fetch_max(limit, Ordering::Relaxed);
            if self.not_native {
                // What the trait's default does: the whole subnet, cut to the page.
                let mut all = self.list(subnet).await?;
                all.retain(|l| after.is_none_or(|a| l.addr > a));
                all.sort_unstable_by_key(|l| l.addr);
                all.truncate(limit);
                return Ok(all);
            }
            self.inner.list_page(subnet, after, limit).await
        }
        fn list_page_native(&self) -> bool {
            !self.not_native
        }
    }

    impl LeaseSource for Counted {
        type Store = Counted;

        fn store(&self) -> &Counted {
            self
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
                text: None,
            }
        );
    }

    fn addrs(page: &[Lease]) -> Vec<u32> {
        page.iter().map(|l| u32::from(l.addr) - 0x0a00_0000).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_page_reads_the_page_and_one_lease_more() {
        let store = Counted::with(20_000);
        let query = parse("after=10.0.39.16").expect("valid"); // lease 10,000
        let (page, next) = read_page(&store, query, 3).await.expect("the store answers");
        assert_eq!((addrs(&page), next), (vec![10_001, 10_002, 10_003], Some(Ipv4Addr::from(0x0a00_0000 + 10_003))));
        assert_eq!(store.calls(), (0, 1, 4), "one store page of the page and one lease more");
        // The last page: short, no next.
        let (page, next) = read_page(&store, parse("after=10.0.78.30").expect("valid"), 5).await.expect("answers");
        assert_eq!((addrs(&page), next), (vec![19_999], None));
        // Exactly full with nothing after: no next either.
        let (page, next) = read_page(&store, parse("after=10.0.78.29").expect("valid"), 2).await.expect("answers");
        assert_eq!((addrs(&page), next), (vec![19_998, 19_999], None));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_filtered_page_reads_store_pages_until_it_has_its_leases() {
        let store = Counted::with(20_000);
        // Every tenth lease is released: 7 of them span 70 leases, then one more says `next`.
        let (page, next) = read_page(&store, parse("state=released").expect("valid"), 7).await.expect("answers");
        assert_eq!(addrs(&page), [0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(next, Some(Ipv4Addr::from(0x0a00_0000 + 60)));
        assert_eq!(store.calls(), (0, 1, CHUNK), "store pages of a chunk for a filtered page");
        // One MAC, at the far end: the store is read page by page to the end, never at once.
        let store = Counted::with(20_000);
        let (page, next) = read_page(&store, parse("mac=02:00:00:00:4e:1f").expect("valid"), 7).await.expect("answers");
        assert_eq!((addrs(&page), next), (vec![19_999], None));
        assert_eq!(store.calls(), (0, 20_000 / CHUNK + 1, CHUNK));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_store_without_native_pages_is_read_once() {
        let store = Counted { not_native: true, ..Counted::with(3_000) };
        let (page, next) = read_page(&store, parse("state=bound").expect("valid"), 2).await.expect("answers");
        assert_eq!((addrs(&page), next), (vec![1, 2], Some(Ipv4Addr::from(0x0a00_0000 + 2))));
        assert_eq!(store.calls(), (1, 1, usize::MAX), "one call for everything, through the default");
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

    /// A whole listing of `store` for `query`, as the handler starts it.
    async fn whole(store: &Arc<Counted>, query: LeaseQuery, permit: OwnedSemaphorePermit, stall: Duration) -> Body {
        let mut reader = Reader::new(query, CHUNK, store.list_page_native());
        reader.fill(store.as_ref()).await.expect("the store answers");
        stream(Arc::clone(store), reader, Arc::default(), permit, stall)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_whole_listing_is_written_a_chunk_at_a_time() {
        for n in [0, 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7] {
            let store = Arc::new(Counted::with(n as u32));
            let listings = Listings::new(1);
            let permit = listings.start().expect("a permit");
            let mut body = whole(&store, LeaseQuery::default(), permit, STALL).await;
            let mut chunks = 0;
            let mut json = Vec::new();
            while let Some(frame) = body.frame().await {
                let data = frame.expect("no error").into_data().expect("data");
                json.extend_from_slice(&data);
                chunks += 1;
            }
            assert_eq!(chunks, n.div_ceil(CHUNK).max(1), "{n} leases");
            let list: LeaseList = serde_json::from_slice(&json).expect("one JSON document");
            let expected: Vec<LeaseInfo> = (0..n as u32).map(|i| LeaseInfo::new(&lease(i), None)).collect();
            assert_eq!(list, LeaseList { leases: expected, next: None });
            assert!(listings.start().is_ok(), "the permit is back once the listing is written");
            // A store page per chunk, and one to find the end; never the whole store at once.
            assert_eq!(store.calls(), (0, n / CHUNK + 1, CHUNK), "{n} leases");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_filtered_whole_listing_reads_the_store_a_page_at_a_time() {
        let store = Arc::new(Counted::with(10 * CHUNK as u32 + 5));
        let listings = Listings::new(1);
        let query = parse("state=released&after=10.0.0.20").expect("valid");
        let mut body = whole(&store, query, listings.start().expect("a permit"), STALL).await;
        let mut json = Vec::new();
        while let Some(frame) = body.frame().await {
            json.extend_from_slice(&frame.expect("no error").into_data().expect("data"));
        }
        let list: LeaseList = serde_json::from_slice(&json).expect("one JSON document");
        let expected: Vec<LeaseInfo> =
            (30..10 * CHUNK as u32 + 5).step_by(10).map(|i| LeaseInfo::new(&lease(i), None)).collect();
        assert_eq!(list.leases, expected);
        // 9,984 leases above 10.0.0.20: nine full store pages and a short one, which is the last.
        assert_eq!(store.calls(), (0, 10, CHUNK));
        // A store without native pages is read once, up front, as before.
        let store = Arc::new(Counted { not_native: true, ..Counted::with(3 * CHUNK as u32) });
        let mut body = whole(&store, LeaseQuery::default(), listings.start().expect("a permit"), STALL).await;
        while let Some(frame) = body.frame().await {
            frame.expect("no error");
        }
        assert_eq!(store.calls(), (1, 1, usize::MAX));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_stops_reading_loses_the_listing_and_its_permit() {
        let store = Arc::new(Counted::with(5 * CHUNK as u32));
        let listings = Listings::new(1);
        let permit = listings.start().expect("a permit");
        let mut body = whole(&store, LeaseQuery::default(), permit, Duration::from_millis(50)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(listings.start().is_ok(), "the stalled listing gave its permit back");
        // What was written before the stall arrives, then the answer is cut, not ended.
        let first = body.frame().await.expect("a frame").expect("data");
        assert!(first.into_data().is_ok_and(|d| d.starts_with(b"{\"leases\":[")));
        assert!(body.frame().await.expect("an error, not the end").is_err());
        // It read no further than the chunks it made.
        assert!(store.calls().1 <= 3, "{:?}", store.calls());
    }
}
