//! Table-driven negotiation cases (filled in with issue 3).
