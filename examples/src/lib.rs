//! Nothing to embed here: the binaries under `src/bin` are thin wrappers over `dhcp-net`,
//! `dhcp-core` and `dhcp-store`, and `tests/` drives them against real DHCP clients.
