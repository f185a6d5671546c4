//! Store URLs: `feature_for`, `unsupported_reason` and `open` never panic and agree with one
//! another. This build has only the in-memory store (no journal, SQLite, PostgreSQL or Redis),
//! so `open` can create no file and no connection whatever the URL; it runs on every input.
#![no_main]

use dhcp_core::block_on;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else { return };
    let feature = dhcp_store::feature_for(url);
    let reason = dhcp_store::unsupported_reason(url);
    if feature.is_none() {
        assert!(reason.is_some(), "{url:?}: a scheme no feature knows is unsupported");
    }
    if let Some(reason) = &reason {
        assert!(!reason.is_empty());
        assert!(reason.contains("memory:"), "{url:?}: the reason lists what this build supports: {reason}");
    }
    // The one store compiled in: `memory:` (or `memory`) and nothing after it.
    let memory = feature == Some("memory");
    assert_eq!(reason.is_none(), memory, "{url:?}: only the plain memory store is supported here");

    let opened = block_on(dhcp_store::open(url)).expect("opening a memory store, or refusing, is immediate");
    match opened {
        Ok(store) => {
            assert!(memory, "{url:?} opened a store that unsupported_reason refused");
            assert!(matches!(store, dhcp_store::AnyStore::Memory(_)));
        }
        Err(e) => {
            assert!(!memory, "{url:?}: the memory store failed to open: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
});
