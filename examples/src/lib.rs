//! Nothing to embed here: the binaries under `src/bin` are argument parsing over
//! `dhcp-server` (the operated server and its API client) and `dhcp-net` (the probe), and
//! `tests/` drives them against real DHCP clients.
