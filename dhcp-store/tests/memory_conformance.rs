//! The store contract on the in-memory store.

#[macro_use]
mod conformance;

suite!(async { dhcp_store::MemoryStore::new() });
