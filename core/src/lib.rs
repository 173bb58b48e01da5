//! grove-core: Grove's shared domain model, free of I/O. It will hold the SLA v2.0 types, jobs
//! and instances, Oakestra's status strings and the pure best-fit scheduler that the root and
//! cluster tiers share (see `../shared/DESIGN.md`). Nothing here yet.
