//! Bourse market data, built from engine events (see ARCHITECTURE.md: the
//! feeds issue builds L1/L2/L3 and the QUIC fan-out here).
#![forbid(unsafe_code)]
